#!/usr/bin/env bash
# Run-overhead benchmark (issue 3): submit-to-finish wall time of `dstack run`
# of a workflow whose one command is `true`, against, in the same run, the
# fork/exec floor, `bwrap`, `docker run --rm` and a one-rule snakemake; then
# SEQ runs in a row on a fresh store, to show whether a run slows as the
# catalog grows.
#
# Usage: tests/bench/run.sh
# Environment:
#   DSTACK       the binary (default: build/cli/dstack in this repository;
#                the script runs a private copy of it)
#   RUNS=50      timed runs per tool (after WARMUP untimed ones)
#   SLOW_RUNS=20 timed runs of docker and snakemake (a second or more each)
#   WARMUP=3     untimed runs before each tool's timed ones
#   SEQ=200      runs in a row on a fresh store (every one is timed)
#   WINDOW=20    the sequence's first and last WINDOW runs are compared
#   TMPDIR       where the work folder goes (default /var/tmp; the repository
#                and the disk DSTACK_HOME live there)
#   SKIP_TMPFS=1 skip the extra dstack row with DSTACK_HOME on /dev/shm
#   SKIP_CTL=1   skip the row of runs started through a mounted tree's ctl
#   SKIP_DOCKER=1, SKIP_SNAKEMAKE=1, SKIP_BWRAP=1   report that peer skipped
#   NO_INSTALL=1 do not apt-get install missing peers (they are then reported
#                unavailable)
#   KEEP_WORK=1  keep the work folder (time files, logs) at the end
#
# Every invocation is timed by a small python3 harness (perf_counter around
# subprocess.run, stdin/stdout to /dev/null, stderr to a log): the `fork/exec`
# row runs /bin/true through the same harness, so it is both the floor and
# the harness's own cost. A peer's non-zero exit stops its measurement and
# reports it unavailable; a failing `dstack run` stops the script. Medians
# and p90 (nearest rank) in milliseconds.
#
# The script cleans up after itself: the work folder, the tmpfs store, the
# image it imported, and dockerd if (and only if) it started it.
set -euo pipefail

die() { echo "run.sh: error: $*" >&2; exit 1; }
note() { echo "run.sh: $*" >&2; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$script_dir/lib.sh"
repo_root=$(cd "$script_dir/../.." && pwd)
DSTACK=${DSTACK:-$repo_root/build/cli/dstack}
RUNS=${RUNS:-50}
SLOW_RUNS=${SLOW_RUNS:-20}
WARMUP=${WARMUP:-3}
SEQ=${SEQ:-200}
WINDOW=${WINDOW:-20}
[ $# -eq 0 ] || die "usage: $0 (settings come from the environment: RUNS, SEQ, ...)"
for v in RUNS SLOW_RUNS SEQ WINDOW; do
    case "${!v}" in ''|*[!0-9]*|0) die "$v must be a positive integer";; esac
done
case "$WARMUP" in ''|*[!0-9]*) die "WARMUP must be a non-negative integer";; esac
[ "$SEQ" -ge "$WINDOW" ] || die "SEQ ($SEQ) must be at least WINDOW ($WINDOW)"

# ---- tools -----------------------------------------------------------------
[ -x "$DSTACK" ] || die "dstack binary not found at $DSTACK (build it: meson setup build && ninja -C build, or set DSTACK)"
command -v git >/dev/null || die "git is needed (apt-get install git)"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || die "python3 is needed for the timing harness"

is_static() { # (ldd exits 1 on a static binary: no pipe under pipefail)
    local out
    [ -x "$1" ] || return 1
    out=$(LC_ALL=C ldd "$1" 2>&1) || true
    case "$out" in *'not a dynamic'*|*'statically linked'*) return 0;; *) return 1;; esac
}
pkgs=()
[ -n "${SKIP_BWRAP:-}" ] || command -v bwrap >/dev/null || pkgs+=(bubblewrap)
if [ -z "${SKIP_DOCKER:-}" ]; then
    command -v dockerd >/dev/null || pkgs+=(docker.io)
    is_static /bin/busybox || pkgs+=(busybox-static)
fi
[ -n "${SKIP_SNAKEMAKE:-}" ] || command -v snakemake >/dev/null || pkgs+=(snakemake)
install_peers ${pkgs[@]+"${pkgs[@]}"} ||
    note "$install_note; those peers will be reported unavailable"

# ---- work dir --------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/dstack-run-bench.XXXXXX") || die "cannot make a work folder"
SHM_HOME=
dockerd_pid=
image=
DOCKER=
ctl_mounted=
cleanup() {
    set +e
    if [ -n "$image" ] && [ -n "$DOCKER" ]; then
        "$DOCKER" rmi -f "$image" >/dev/null 2>&1
    fi
    if [ -n "$dockerd_pid" ]; then
        note "stopping the dockerd this script started (pid $dockerd_pid)"
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$dockerd_pid" 2>/dev/null && kill -9 "$dockerd_pid" 2>/dev/null
        wait "$dockerd_pid" 2>/dev/null
    fi
    [ -z "$SHM_HOME" ] || rm -rf "$SHM_HOME"
    [ -z "$ctl_mounted" ] || "$DSTACK" umount "$CTL_MNT" 2>/dev/null
    if [ -n "${KEEP_WORK:-}" ]; then note "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A private copy of the binary, so that a rebuild during the run changes nothing.
cp "$DSTACK" "$WORK/dstack-bin" || die "cannot copy $DSTACK to $WORK"
# Its helpers are looked for beside it (the docker backend's jobs run dstack-docker).
for helper in dstack-docker dstack-curl; do
    [ ! -x "$(dirname "$DSTACK")/$helper" ] || cp "$(dirname "$DSTACK")/$helper" "$WORK/$helper"
done
dstack_id="$(sha256sum "$WORK/dstack-bin" | cut -c1-12), mtime $(date -u -r "$DSTACK" +%H:%M:%SZ)"
DSTACK=$WORK/dstack-bin
export HOME=$WORK/home GIT_CONFIG_NOSYSTEM=1
mkdir -p "$HOME"

# The timing harness: `time OUT RUNS WARMUP LOG CMD...` runs CMD WARMUP+RUNS
# times, writes the timed runs' milliseconds to OUT (one a line); `ctl OUT
# RUNS WARMUP MNT WORKFLOW` does the same for runs started by writing to a
# mounted tree's ctl, until their status is final; `stats FILE [FIRST
# [LAST]]` prints "n median p90 total" over lines FIRST..LAST.
cat >"$WORK/harness.py" <<'EOF'
import math, os, statistics, subprocess, sys, time

def measure(out, runs, warmup, once):
    """Times once(i) WARMUP+RUNS times; it returns None, or why it failed."""
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter_ns()
        failed = once(i)
        t1 = time.perf_counter_ns()
        if failed:
            sys.stderr.write("run %d: %s\n" % (i + 1, failed))
            return 3
        if i >= warmup:
            times.append((t1 - t0) / 1e6)
    with open(out, "w") as f:
        f.writelines("%.3f\n" % t for t in times)
    return 0

def timeit(out, runs, warmup, log, cmd):
    def once(i):
        with open(log, "wb") as err:
            rc = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err).returncode
        return rc and "%s: exit %d" % (cmd[0], rc)
    return measure(out, runs, warmup, once)

def stats(path, first=1, last=None):
    with open(path) as f:
        xs = [float(l) for l in f if l.strip()]
    xs = xs[first - 1:last]
    s = sorted(xs)
    p90 = s[max(0, math.ceil(0.9 * len(s)) - 1)]
    print("%d %.2f %.2f %.3f" % (len(s), statistics.median(s), p90, sum(s) / 1000))
    return 0

def timectl(out, runs, warmup, mnt, workflow):
    """A run through a mounted tree: the write to ctl, the run name read
    back on the same descriptor, until runs/RUN/status reads done."""
    def once(i):
        fd = os.open(mnt + "/ctl", os.O_RDWR)
        try:
            os.write(fd, (workflow + "\n").encode())
            name = os.read(fd, 4096).decode().strip()
        finally:
            os.close(fd)
        status = mnt + "/runs/" + name + "/status"
        while True:
            with open(status) as f:
                word = f.read().strip()
            if word not in ("submitted", "downloading", "running", "uploading"):
                break
            time.sleep(0.0002)
        return word != "done" and "through %s/ctl: %s" % (mnt, word)
    return measure(out, runs, warmup, once)

if sys.argv[1] == "time":
    sys.exit(timeit(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6:]))
if sys.argv[1] == "ctl":
    sys.exit(timectl(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]))
a = sys.argv[2:]
sys.exit(stats(a[0], *(int(x) for x in a[1:])))
EOF

# ---- measuring -------------------------------------------------------------
# bench KEY RUNS WARMUP CMD... (in the current directory): fills N/MED/P90[KEY],
# or UNAVAIL[KEY] with the failure. Returns non-zero when the tool failed.
declare -A N MED P90 UNAVAIL LABEL VERSION
bench() {
    local key=$1 runs=$2 warmup=$3; shift 3
    local log=$WORK/$key.log rc=0
    note "$(printf '%-13s %d runs (+%d warm-up): %s' "$key" "$runs" "$warmup" "$*")"
    "$PY" "$WORK/harness.py" time "$WORK/$key.times" "$runs" "$warmup" "$log" "$@" \
        2>"$WORK/$key.harness" || rc=$?
    if [ "$rc" -ne 0 ]; then
        local why
        why="$(tail -n 1 "$WORK/$key.harness" 2>/dev/null); $(grep -v '^\s*$' "$log" 2>/dev/null | tail -n 1)"
        UNAVAIL[$key]="failed: ${why:0:160}"
        note "$key: ${UNAVAIL[$key]}"
        return 1
    fi
    read -r "N[$key]" "MED[$key]" "P90[$key]" _ < <("$PY" "$WORK/harness.py" stats "$WORK/$key.times")
    note "$(printf '%-13s median %8.2f ms  p90 %8.2f ms' "$key" "${MED[$key]}" "${P90[$key]}")"
}

# The repository: one workflow, one command, one commit.
REPO=$WORK/repo
mkdir -p "$REPO/.dstack"
gitc=(git -C "$REPO" -c user.name=bench -c user.email=bench@localhost)
"${gitc[@]}" init -q -b main
cat >"$REPO/.dstack/workflows.yaml" <<EOF
workflows:
  - name: t
    provider: bash
    commands:
      - "true"
  - name: td
    provider: bash
    image: dstack-run-bench-$$:latest
    commands:
      - "true"
EOF
"${gitc[@]}" add -A || die "git add failed in the bench repository"
"${gitc[@]}" commit -q -m bench || die "cannot commit the bench repository"
home_fs=$(df -PT "$WORK" | awk 'NR == 2 { print $2 }')
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

note "work $WORK ($home_fs); RUNS=$RUNS SLOW_RUNS=$SLOW_RUNS WARMUP=$WARMUP SEQ=$SEQ WINDOW=$WINDOW"

# 1. The floor: fork/exec of /bin/true through the same harness.
LABEL[floor]="fork/exec /bin/true (floor)"
bench floor "$RUNS" "$WARMUP" /bin/true || true

# 2. dstack run t, DSTACK_HOME on the work folder's disk, a fresh store.
LABEL[dstack]="dstack run t (DSTACK_HOME on $home_fs)"
cd "$REPO"
DSTACK_HOME=$WORK/dstack-home bench dstack "$RUNS" "$WARMUP" "$DSTACK" run t \
    || die "dstack run failed: ${UNAVAIL[dstack]}"

# 3. SEQ runs in a row on a fresh store, every one timed.
seq_home=$WORK/dstack-seq
note "dstack: $SEQ runs in a row on a fresh store"
DSTACK_HOME=$seq_home "$PY" "$WORK/harness.py" time "$WORK/seq.times" "$SEQ" 0 \
    "$WORK/seq.log" "$DSTACK" run t 2>"$WORK/seq.harness" \
    || die "dstack run failed in the sequence: $(tail -n 1 "$WORK/seq.harness"); $(tail -n 1 "$WORK/seq.log")"
read -r _ seq_first _ _ < <("$PY" "$WORK/harness.py" stats "$WORK/seq.times" 1 "$WINDOW")
read -r _ seq_last _ _ < <("$PY" "$WORK/harness.py" stats "$WORK/seq.times" $((SEQ - WINDOW + 1)) "$SEQ")
read -r _ seq_med seq_p90 seq_total < <("$PY" "$WORK/harness.py" stats "$WORK/seq.times")
seq_rows=$(DSTACK_HOME=$seq_home "$DSTACK" ps -a | tail -n +2 | grep -c ' done ' || true)
[ "$seq_rows" -eq "$SEQ" ] || note "warning: ps -a lists $seq_rows done runs after $SEQ runs"
seq_catalog=$(du -cb "$seq_home"/catalog.db* 2>/dev/null | awk 'END { printf "%.0f", $1 / 1024 }')
note "$(printf 'sequence      first %d median %.2f ms, last %d median %.2f ms, total %.2f s' \
    "$WINDOW" "$seq_first" "$WINDOW" "$seq_last" "$seq_total")"

# 4. dstack run t with DSTACK_HOME on tmpfs (the repository stays on disk).
if [ -z "${SKIP_TMPFS:-}" ] && [ "$(df -PT /dev/shm 2>/dev/null | awk 'NR == 2 { print $2 }')" = tmpfs ]; then
    LABEL[dstack_tmpfs]="dstack run t (DSTACK_HOME on tmpfs)"
    SHM_HOME=$(mktemp -d /dev/shm/dstack-run-bench.XXXXXX)
    DSTACK_HOME=$SHM_HOME/home bench dstack_tmpfs "$RUNS" "$WARMUP" "$DSTACK" run t || true
fi

# 5. The same run through the tree: `echo t > ctl` to a daemon that stays
# loaded, until the run's status reads done (no process starts but the job).
LABEL[dstack_ctl]="echo t > /dstack/ctl, until status is done (daemon)"
CTL_MNT=$WORK/tree
mkdir -p "$CTL_MNT"
if [ -n "${SKIP_CTL:-}" ]; then
    UNAVAIL[dstack_ctl]="skipped (SKIP_CTL set)"
elif ! DSTACK_HOME=$WORK/dstack-ctl "$DSTACK" mount "$CTL_MNT" 2>"$WORK/ctl-mount.err"; then
    UNAVAIL[dstack_ctl]="dstack mount failed: $(tail -n 1 "$WORK/ctl-mount.err")"
else
    ctl_mounted=1
    note "$(printf '%-13s %d runs (+%d warm-up): echo t > %s/ctl' dstack_ctl "$RUNS" "$WARMUP" "$CTL_MNT")"
    if "$PY" "$WORK/harness.py" ctl "$WORK/ctl.times" "$RUNS" "$WARMUP" "$CTL_MNT" t \
        2>"$WORK/ctl.harness"; then
        read -r "N[dstack_ctl]" "MED[dstack_ctl]" "P90[dstack_ctl]" _ \
            < <("$PY" "$WORK/harness.py" stats "$WORK/ctl.times")
    else
        UNAVAIL[dstack_ctl]="failed: $(tail -n 1 "$WORK/ctl.harness")"
    fi
    "$DSTACK" umount "$CTL_MNT" 2>/dev/null && ctl_mounted=
fi
cd "$WORK"

# 6. bubblewrap.
LABEL[bwrap]="bwrap --unshare-all --ro-bind / / true"
if [ -n "${SKIP_BWRAP:-}" ]; then
    UNAVAIL[bwrap]="skipped (SKIP_BWRAP set)"
elif ! command -v bwrap >/dev/null; then
    UNAVAIL[bwrap]=$(why_missing bubblewrap)
else
    VERSION[bwrap]=$(bwrap --version 2>/dev/null | awk '{ print $2 }' || true)
    bench bwrap "$RUNS" "$WARMUP" bwrap --unshare-all --ro-bind / / true || true
fi

# 7. docker run --rm IMAGE true, IMAGE imported from a busybox-static rootfs.
docker_setup() {
    DOCKER=/usr/bin/docker   # Debian's client, the daemon's own version
    [ -x "$DOCKER" ] || DOCKER=$(command -v docker) || { DOCKER=; UNAVAIL[docker]=$(why_missing docker.io); return 1; }
    if ! "$DOCKER" info >/dev/null 2>&1; then
        command -v dockerd >/dev/null || { UNAVAIL[docker]=$(why_missing docker.io)" (no dockerd)"; return 1; }
        note "starting dockerd (log: $WORK/dockerd.log)"
        dockerd >"$WORK/dockerd.log" 2>&1 &
        dockerd_pid=$!
        local _
        for _ in $(seq 1 120); do
            "$DOCKER" info >/dev/null 2>&1 && break
            if ! kill -0 "$dockerd_pid" 2>/dev/null; then
                wait "$dockerd_pid" 2>/dev/null || true
                dockerd_pid=
                UNAVAIL[docker]="dockerd did not start: $(tail -n 1 "$WORK/dockerd.log" | cut -c1-160)"
                return 1
            fi
            sleep 0.5
        done
        "$DOCKER" info >/dev/null 2>&1 || { UNAVAIL[docker]="dockerd not answering after 60 s"; return 1; }
    fi
    is_static /bin/busybox || { UNAVAIL[docker]="no static /bin/busybox for the image; $(why_missing busybox-static)"; return 1; }
    mkdir -p "$WORK/rootfs/bin"
    cp /bin/busybox "$WORK/rootfs/bin/busybox"
    ln -s busybox "$WORK/rootfs/bin/true"
    ln -s busybox "$WORK/rootfs/bin/sh"     # dstack's jobs start with sh -c
    tar -C "$WORK/rootfs" -cf "$WORK/rootfs.tar" .
    image=dstack-run-bench-$$:latest
    "$DOCKER" import "$WORK/rootfs.tar" "$image" >/dev/null 2>"$WORK/docker-import.log" \
        || { UNAVAIL[docker]="docker import failed: $(tail -n 1 "$WORK/docker-import.log")"; image=; return 1; }
    VERSION[docker]=$("$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null || echo '?')
}
LABEL[docker]="docker run --rm IMAGE true"
if [ -n "${SKIP_DOCKER:-}" ]; then
    UNAVAIL[docker]="skipped (SKIP_DOCKER set)"
elif docker_setup; then
    bench docker "$SLOW_RUNS" 1 "$DOCKER" run --rm "$image" true || true
fi

# 7b. The same container through dstack's docker backend (issue 5).
LABEL[dstack_docker]="dstack run --backend docker, the same image and command"
if [ -z "$image" ]; then
    UNAVAIL[dstack_docker]="needs the docker row: ${UNAVAIL[docker]:-no image}"
else
    cd "$REPO"
    DSTACK_HOME=$WORK/home-docker-backend bench dstack_docker "$SLOW_RUNS" 1 "$DSTACK" run --backend docker td \
        || true
    cd "$WORK"
fi

# 8. snakemake, one rule running `true`, forced every time.
LABEL[snakemake]="snakemake -c1 --forceall, one rule"
if [ -n "${SKIP_SNAKEMAKE:-}" ]; then
    UNAVAIL[snakemake]="skipped (SKIP_SNAKEMAKE set)"
elif ! command -v snakemake >/dev/null; then
    UNAVAIL[snakemake]=$(why_missing snakemake)
else
    mkdir -p "$WORK/snakemake"
    printf 'rule t:\n    shell: "true"\n' >"$WORK/snakemake/Snakefile"
    VERSION[snakemake]=$(snakemake --version 2>/dev/null || echo '?')
    cd "$WORK/snakemake"
    bench snakemake "$SLOW_RUNS" 1 snakemake -c1 --forceall -q || true
    cd "$WORK"
fi

# ---- report ----------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3gx", a / b; else printf "?" }'; }
verdict() { awk "BEGIN { exit !($1) }" && echo "met" || echo "NOT met"; }
model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
rev=$(git -C "$repo_root" describe --always --dirty 2>/dev/null || echo '?')
echo
echo "$("$DSTACK" --version 2>/dev/null | head -n 1 || true) (source $rev; binary sha256 $dstack_id), $(nproc) cores ($model), $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "work folder on $home_fs; RUNS=$RUNS (docker, snakemake: SLOW_RUNS=$SLOW_RUNS), WARMUP=$WARMUP; load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| tool | runs | median ms | p90 ms | ratio to dstack (median) |"
echo "|---|---|---|---|---|"
for k in floor dstack dstack_tmpfs dstack_ctl bwrap docker dstack_docker snakemake; do
    [ -n "${LABEL[$k]:-}" ] || continue
    name=${LABEL[$k]}
    [ -z "${VERSION[$k]:-}" ] || name="$name (${VERSION[$k]})"
    if [ -n "${MED[$k]:-}" ]; then
        printf '| %s | %s | %s | %s | %s |\n' "$name" "${N[$k]}" "${MED[$k]}" "${P90[$k]}" \
            "$(ratio "${MED[$k]}" "${MED[dstack]}")"
    else
        printf '| %s | – | unavailable: %s | – | – |\n' "$name" "${UNAVAIL[$k]:-not measured}"
    fi
done
echo
echo "| dstack run t, $SEQ in a row (fresh store) | first $WINDOW median ms | last $WINDOW median ms | last / first | all: median ms | all: p90 ms | total s | catalog KiB after |"
echo "|---|---|---|---|---|---|---|---|"
printf '| DSTACK_HOME on %s | %s | %s | %s | %s | %s | %.2f | %s |\n' "$home_fs" "$seq_first" "$seq_last" \
    "$(awk -v a="$seq_last" -v b="$seq_first" 'BEGIN { printf "%.2f", a / b }')" "$seq_med" "$seq_p90" \
    "$seq_total" "$seq_catalog"
echo
echo "Goals (issue 3):"
echo "- dstack run median <= 10 ms end to end: ${MED[dstack]} ms, $(verdict "${MED[dstack]} <= 10")"
if [ -n "${MED[dstack_docker]:-}" ] && [ -n "${MED[docker]:-}" ]; then
    echo "- docker backend per job within 1.2x docker run --rm (issue 5): ${MED[dstack_docker]} vs ${MED[docker]} ms, $(ratio "${MED[dstack_docker]}" "${MED[docker]}"), $(verdict "${MED[dstack_docker]} <= 1.2 * ${MED[docker]}")"
fi
echo "- flat over $SEQ runs (last $WINDOW median within 25% of the first $WINDOW): $seq_first -> $seq_last ms, $(verdict "$seq_last <= 1.25 * $seq_first")"
