#!/usr/bin/env bash
# Slurm backend benchmark (issue 8): what running each job as a Slurm job
# costs, against Slurm's own tools on the same cluster, side by side in one
# run.  Needs root and a running Slurm (tests/slurm/start.sh starts the
# one-node cluster the tests use; this script calls it unless SKIP_START).
#
# Usage: tests/bench/slurm.sh
# Environment:
#   DSTACK       the binary (default: build/cli/dstack in this repository;
#                the script runs a private copy of it and of dstack-slurm,
#                which Slurm's batch scripts exec: one node, so one path)
#   PARTITION=debug   the partition sbatch, srun and dstack use
#   REST_URL=http://127.0.0.1:6820   slurmrestd (its JWT from
#                `scontrol token username=root`); SKIP_REST=1 leaves it out
#   REPS=7       timed runs per one-job row (after WARMUP untimed ones)
#   WARMUP=1
#   MULTI_REPS=3 timed runs of the 10-job and the 5-job-chain rows
#   ART_MB=200   the artifact's size (random bytes, so lz4 stores it raw)
#   ART_REPS=2   timed runs per artifact row
#   CAT_JOBS=100 jobs in the host backend's many-jobs run (catalog rate)
#   SEQ=30       `dstack run t` back to back on the host backend
#   POLL_MS=100  how often the sbatch rows ask squeue whether their jobs ended
#   SKIP_START=1 do not run tests/slurm/start.sh
#   KEEP_WORK=1  keep the work folder
#   TMPDIR       where the work folder goes (default /tmp)
#
# Rows (every time is submit-to-finish wall time, by a python3 harness:
# perf_counter around subprocess.run, or around submit + poll):
#   per job   `srun true`; `sbatch --wait --wrap true`; sbatch + squeue
#             every POLL_MS until the job's state is final; `dstack run t`
#             (one job, `true`) on the host backend, on the slurm backend
#             through sbatch/squeue, and through slurmrestd
#   per poll  one `dstack-slurm state` call (the runner makes one per job in
#             flight every second): commands (squeue) and REST
#   runs      10 independent `true` jobs (a JSON provider makes them), and a
#             chain of 5 with depends_on, on the slurm backend; the same
#             submitted with sbatch (the chain with --dependency=afterok)
#             and waited for by polling squeue every POLL_MS
#   artifact  a job writing ART_MB MiB of /dev/urandom into an artifact
#             folder, on the host and the slurm backend: time and how much
#             the store grew; the floor is the same `head -c` alone
#   catalog   one run of CAT_JOBS `true` jobs and SEQ one-job runs in a row
#             on the host backend (the runner writes every record; the rate
#             is a floor for the catalog's), the catalog's fsyncs per job
#             (strace -f -y on the runner, fsync/fdatasync on catalog.db*),
#             and the median fdatasync of a 4 KiB append on the store's
#             file system: syncs per job x that = the ceiling set by the disk
# Medians (and p90, nearest rank) in milliseconds; "client CPU" is the
# median user + sys time of the processes the harness waited for (srun,
# sbatch and squeue; or the dstack runner and its dstack-slurm calls), not
# of the Slurm job itself.  Jobs of others that hold CPUs of the partition
# slow the rows of several jobs: the report says how many CPUs they held
# at the start and at the end.  Every Slurm job this
# script makes runs with its work folder under the script's own folder;
# at the end, any of them still queued is cancelled by id.
set -euo pipefail

die() { echo "slurm.sh: error: $*" >&2; exit 1; }
note() { echo "slurm.sh: $*" >&2; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$script_dir/lib.sh"
repo_root=$(cd "$script_dir/../.." && pwd)
DSTACK=${DSTACK:-$repo_root/build/cli/dstack}
PARTITION=${PARTITION:-debug}
REST_URL=${REST_URL:-http://127.0.0.1:6820}
REPS=${REPS:-7}
WARMUP=${WARMUP:-1}
MULTI_REPS=${MULTI_REPS:-3}
ART_MB=${ART_MB:-200}
ART_REPS=${ART_REPS:-2}
CAT_JOBS=${CAT_JOBS:-100}
SEQ=${SEQ:-30}
POLL_MS=${POLL_MS:-100}
[ $# -eq 0 ] || die "usage: $0 (settings come from the environment: REPS, MULTI_REPS, ...)"
for v in REPS MULTI_REPS ART_MB ART_REPS CAT_JOBS SEQ POLL_MS; do
    case "${!v}" in ''|*[!0-9]*|0) die "$v must be a positive integer";; esac
done
case "$WARMUP" in ''|*[!0-9]*) die "WARMUP must be a non-negative integer";; esac

# ---- tools -----------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "run me as root (Slurm's jobs run as the submitter; the cluster script needs root)"
[ -x "$DSTACK" ] || die "dstack binary not found at $DSTACK (build it, or set DSTACK)"
helper=$(dirname "$DSTACK")/dstack-slurm
[ -x "$helper" ] || die "dstack-slurm not found beside $DSTACK"
command -v git >/dev/null || die "git is needed"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || die "python3 is needed for the timing harness"
if [ -z "${SKIP_START:-}" ]; then
    bash "$repo_root/tests/slurm/start.sh" >&2 || die "tests/slurm/start.sh failed"
fi
for t in srun sbatch squeue scancel scontrol; do
    command -v "$t" >/dev/null || die "$t is needed (Debian package slurm-client)"
done
scontrol ping 2>/dev/null | grep -q "is UP" || die "slurmctld does not answer (tests/slurm/start.sh)"
have_strace=1
command -v strace >/dev/null || have_strace=

# ---- work dir --------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dstack-slurm-bench.XXXXXX") || die "cannot make a work folder"
WORK=$(cd "$WORK" && pwd)
cleanup() {
    set +e
    # Every Slurm job of ours ran in a folder under $WORK: cancel what is left.
    local ids
    ids=$(squeue -h -o '%i %Z' 2>/dev/null | awk -v w="$WORK/" 'index($2 "/", w) == 1 { print $1 }')
    if [ -n "$ids" ]; then
        note "cancelling leftover Slurm jobs: $(echo $ids)"
        # shellcheck disable=SC2086
        scancel $ids
    fi
    if [ -n "${KEEP_WORK:-}" ]; then note "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Private copies: the batch scripts exec this dstack, beside it dstack-slurm.
mkdir -p "$WORK/bin"
cp "$DSTACK" "$WORK/bin/dstack" && cp "$helper" "$WORK/bin/dstack-slurm" ||
    die "cannot copy the binaries to $WORK/bin"
dstack_id="$(sha256sum "$WORK/bin/dstack" | cut -c1-12), mtime $(date -u -r "$DSTACK" +%H:%M:%SZ)"
DSTACK=$WORK/bin/dstack
export HOME=$WORK/home GIT_CONFIG_NOSYSTEM=1
mkdir -p "$HOME" "$WORK/sbatch"

# ---- the harness -----------------------------------------------------------
# time OUT RUNS WARMUP LOG CMD...    CMD timed WARMUP+RUNS times
# sbatch OUT RUNS WARMUP LOG KIND    KIND one | par10 | chain5: submitted
#                                    with sbatch, polled with squeue until
#                                    every job's state is final (COMPLETED
#                                    or it fails)
# stats FILE                         "n median p90 total_s"
# fsync DIR N                        median ms of a 4 KiB append + fdatasync
cat >"$WORK/harness.py" <<'EOF'
import math, os, resource, statistics, subprocess, sys, time

LIVE = {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "REQUEUED",
        "RESIZING", "SIGNALING", "STAGE_OUT", "REQUEUE_HOLD", "REQUEUE_FED", "STOPPED"}

def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime

def measure(out, runs, warmup, once):
    """Wall ms into OUT, and the CPU ms of the processes it waited for
    (user + sys: the client's side, not the Slurm job's) into OUT.cpu."""
    times, cpus = [], []
    for i in range(warmup + runs):
        c0 = child_cpu()
        t0 = time.perf_counter_ns()
        failed = once(i)
        t1 = time.perf_counter_ns()
        c1 = child_cpu()
        if failed:
            sys.stderr.write("run %d: %s\n" % (i + 1, failed))
            return 3
        if i >= warmup:
            times.append((t1 - t0) / 1e6)
            cpus.append((c1 - c0) * 1e3)
    with open(out, "w") as f:
        f.writelines("%.3f\n" % t for t in times)
    with open(out + ".cpu", "w") as f:
        f.writelines("%.3f\n" % t for t in cpus)
    return 0

def timeit(out, runs, warmup, log, cmd):
    def once(i):
        with open(log, "ab") as err:
            rc = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err).returncode
        return rc and "%s: exit %d" % (cmd[0], rc)
    return measure(out, runs, warmup, once)

def sbatch_poll(out, runs, warmup, log, kind):
    part, chdir, poll = os.environ["PARTITION"], os.environ["SB_DIR"], int(os.environ["POLL_MS"])
    def submit(dep=None):
        cmd = ["sbatch", "--parsable", "-p", part, "-J", "bench-sbatch", "-D", chdir,
               "-o", "/dev/null"]
        if dep:
            cmd.append("--dependency=afterok:%s" % dep)
        cp = subprocess.run(cmd + ["--wrap", "true"], capture_output=True, text=True)
        if cp.returncode:
            raise RuntimeError("sbatch: " + cp.stderr.strip())
        return cp.stdout.strip().split(";")[0]
    def once(i):
        try:
            if kind == "one":
                ids = [submit()]
            elif kind == "par10":
                ids = [submit() for _ in range(10)]
            else:
                ids = []
                for _ in range(5):
                    ids.append(submit(ids[-1] if ids else None))
        except RuntimeError as e:
            return str(e)
        while True:
            cp = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(ids),
                                 "-o", "%i|%T"], capture_output=True, text=True)
            states = dict(l.split("|") for l in cp.stdout.split())
            if len(states) == len(ids) and not LIVE & set(states.values()):
                break
            time.sleep(poll / 1000)
        bad = [s for s in states.values() if s != "COMPLETED"]
        return bad and "jobs ended %s" % ",".join(bad)
    return measure(out, runs, warmup, once)

def stats(path):
    with open(path) as f:
        xs = sorted(float(l) for l in f if l.strip())
    p90 = xs[max(0, math.ceil(0.9 * len(xs)) - 1)]
    print("%d %.2f %.2f %.3f" % (len(xs), statistics.median(xs), p90, sum(xs) / 1000))
    return 0

def fsync_ms(folder, n):
    path = os.path.join(folder, "fsync.probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    xs, block = [], b"x" * 4096
    for _ in range(n):
        t0 = time.perf_counter_ns()
        os.write(fd, block)
        os.fdatasync(fd)
        xs.append((time.perf_counter_ns() - t0) / 1e6)
    os.close(fd)
    os.unlink(path)
    print("%.3f" % statistics.median(xs))
    return 0

a = sys.argv
if a[1] == "time":
    sys.exit(timeit(a[2], int(a[3]), int(a[4]), a[5], a[6:]))
if a[1] == "sbatch":
    sys.exit(sbatch_poll(a[2], int(a[3]), int(a[4]), a[5], a[6]))
if a[1] == "fsync":
    sys.exit(fsync_ms(a[2], int(a[3])))
sys.exit(stats(a[2]))
EOF
export PARTITION POLL_MS SB_DIR=$WORK/sbatch

declare -A N MED P90 CPU UNAVAIL LABEL
# bench KEY RUNS WARMUP MODE ARGS...: MODE time (ARGS a command) or sbatch (ARGS a kind)
bench() {
    local key=$1 runs=$2 warmup=$3 mode=$4; shift 4
    local log=$WORK/$key.log rc=0
    note "$(printf '%-15s %d runs (+%d warm-up): %s' "$key" "$runs" "$warmup" "$*")"
    "$PY" "$WORK/harness.py" "$mode" "$WORK/$key.times" "$runs" "$warmup" "$log" "$@" \
        2>"$WORK/$key.harness" || rc=$?
    if [ "$rc" -ne 0 ]; then
        UNAVAIL[$key]="failed: $(tail -n 1 "$WORK/$key.harness" 2>/dev/null); $(grep -v '^\s*$' "$log" 2>/dev/null | tail -n 1 | cut -c1-160)"
        note "$key: ${UNAVAIL[$key]}"
        return 1
    fi
    read -r "N[$key]" "MED[$key]" "P90[$key]" _ < <("$PY" "$WORK/harness.py" stats "$WORK/$key.times")
    read -r _ "CPU[$key]" _ _ < <("$PY" "$WORK/harness.py" stats "$WORK/$key.times.cpu")
    note "$(printf '%-15s median %9.2f ms  p90 %9.2f ms  client CPU %8.1f ms' "$key" "${MED[$key]}" "${P90[$key]}" "${CPU[$key]}")"
}

# ---- the repository and the stores -----------------------------------------
REPO=$WORK/repo
mkdir -p "$REPO/.dstack"
gitc=(git -C "$REPO" -c user.name=bench -c user.email=bench@localhost)
"${gitc[@]}" init -q -b main
"$PY" - "$REPO/.dstack/workflows.yaml" "$ART_MB" "$CAT_JOBS" <<'EOF'
import json, sys
path, mb, many = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
true = {"commands": ["true"]}
wf = [
    {"name": "t", "provider": "bash", "commands": ["true"]},
    {"name": "par10", "provider": "jobs", "jobs": json.dumps([true] * 10)},
    {"name": "chain5", "provider": "jobs", "jobs": json.dumps(
        [true] + [{"commands": ["true"], "depends_on": [i]} for i in range(4)])},
    {"name": "many", "provider": "jobs", "jobs": json.dumps([true] * many)},
    {"name": "big", "provider": "bash", "artifacts": ["out"],
     "commands": ["mkdir -p out", "head -c %dM /dev/urandom > out/blob" % mb]},
]
open(path, "w").write(json.dumps({"workflows": wf}, indent=1) + "\n")
EOF
cat >"$REPO/.dstack/providers.yaml" <<'EOF'
providers:
  - name: jobs
    commands:
      - python3 -c "import json, os; d = json.load(open(os.environ['DSTACK_WORKFLOW'])); open(os.environ['DSTACK_JOBS'], 'w').write(d['data']['jobs'])"
EOF
"${gitc[@]}" add -A && "${gitc[@]}" commit -q -m bench || die "cannot commit the bench repository"

H_HOST=$WORK/home-host H_CMD=$WORK/home-slurm H_REST=$WORK/home-rest
mkdir -p "$H_HOST" "$H_CMD" "$H_REST"
printf 'backend: slurm\nslurm:\n  partition: %s\n' "$PARTITION" >"$H_CMD/config.yaml"
rest_ok=
if [ -n "${SKIP_REST:-}" ]; then
    UNAVAIL[rest]="skipped (SKIP_REST set)"
elif ! token=$(scontrol token username=root lifespan=3600 2>"$WORK/token.err"); then
    UNAVAIL[rest]="scontrol token failed: $(tail -n 1 "$WORK/token.err")"
else
    printf '%s\n' "${token#SLURM_JWT=}" >"$WORK/slurm.jwt"
    chmod 600 "$WORK/slurm.jwt"
    printf 'backend: slurm\nslurm:\n  partition: %s\n  url: %s\n  token_file: %s\n  user: root\n' \
        "$PARTITION" "$REST_URL" "$WORK/slurm.jwt" >"$H_REST/config.yaml"
    rest_ok=1
fi
dsrun() { # dsrun HOME ARGS...: dstack run in the repository with that store
    (cd "$REPO" && DSTACK_HOME=$1 "$DSTACK" run "${@:2}")
}
export -f dsrun
export DSTACK REPO
store_bytes() { { du -sb "$1/packs" 2>/dev/null || echo 0; } | awk 'NR == 1 { print $1 }'; }
fs_type=$(df -PT "$WORK" | awk 'NR == 2 { print $2 }')
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
others_cpus() { squeue -h -t running -p "$PARTITION" -o '%C' 2>/dev/null | awk '{ n += $1 } END { print n + 0 }'; }
others_start=$(others_cpus)
note "work $WORK ($fs_type); REPS=$REPS WARMUP=$WARMUP MULTI_REPS=$MULTI_REPS ART_MB=$ART_MB"

# ---- 1. per job -------------------------------------------------------------
LABEL[srun]="srun true"
bench srun "$REPS" "$WARMUP" time srun -p "$PARTITION" -J bench-srun -D "$WORK/sbatch" true || true
LABEL[sbwait]="sbatch --wait --wrap true"
bench sbwait "$REPS" "$WARMUP" time sbatch -p "$PARTITION" -J bench-sbatch -D "$WORK/sbatch" \
    -o /dev/null --wait --wrap true || true
LABEL[sbpoll]="sbatch, then squeue every $POLL_MS ms until final"
bench sbpoll "$REPS" "$WARMUP" sbatch one || true
LABEL[host]="dstack run t, host backend"
bench host "$REPS" "$WARMUP" time bash -c 'dsrun "$0" t' "$H_HOST" || true
LABEL[cmd]="dstack run t, slurm backend (sbatch, squeue)"
bench cmd "$REPS" "$WARMUP" time bash -c 'dsrun "$0" t' "$H_CMD" ||
    die "dstack on the slurm backend failed: ${UNAVAIL[cmd]}"
LABEL[rest]="dstack run t, slurm backend (slurmrestd)"
if [ -n "$rest_ok" ]; then
    bench rest "$REPS" "$WARMUP" time bash -c 'dsrun "$0" t' "$H_REST" || true
fi

# One state query, as the runner makes once a second per job in flight.
one_id=$(sbatch --parsable -p "$PARTITION" -J bench-sbatch -D "$WORK/sbatch" -o /dev/null --wrap true)
one_id=${one_id%%;*}
printf '{"partition":"%s"}\n' "$PARTITION" >"$WORK/settings-cmd.json"
LABEL[qcmd]="one dstack-slurm state call (squeue)"
bench qcmd 20 2 time "$WORK/bin/dstack-slurm" state "$WORK/settings-cmd.json" "$one_id" || true
LABEL[qrest]="one dstack-slurm state call (REST)"
if [ -n "$rest_ok" ]; then
    printf '{"partition":"%s","url":"%s","token_file":"%s","user":"root"}\n' \
        "$PARTITION" "$REST_URL" "$WORK/slurm.jwt" >"$WORK/settings-rest.json"
    bench qrest 20 2 time "$WORK/bin/dstack-slurm" state "$WORK/settings-rest.json" "$one_id" || true
else
    UNAVAIL[qrest]=${UNAVAIL[rest]}
fi

# ---- 2. runs of several jobs -------------------------------------------------
LABEL[p10d]="dstack run par10: 10 independent jobs, slurm backend"
bench p10d "$MULTI_REPS" 0 time bash -c 'dsrun "$0" par10' "$H_CMD" || true
LABEL[p10s]="sbatch x10, squeue every $POLL_MS ms until all final"
bench p10s "$MULTI_REPS" 0 sbatch par10 || true
LABEL[c5d]="dstack run chain5: 5 jobs, each depends_on the last, slurm backend"
bench c5d "$MULTI_REPS" 0 time bash -c 'dsrun "$0" chain5' "$H_CMD" || true
LABEL[c5s]="sbatch x5 --dependency=afterok:PREV, squeue every $POLL_MS ms"
bench c5s "$MULTI_REPS" 0 sbatch chain5 || true
LABEL[p10h]="dstack run par10, host backend"
bench p10h "$MULTI_REPS" 0 time bash -c 'dsrun "$0" par10' "$H_HOST" || true

# ---- 3. an artifact of ART_MB MiB ------------------------------------------
LABEL[afloor]="head -c ${ART_MB}M /dev/urandom > FILE (floor)"
bench afloor "$ART_REPS" 0 time bash -c 'head -c "$0"M /dev/urandom > "$1"; rm -f "$1"' \
    "$ART_MB" "$WORK/floor.blob" || true
declare -A GROW
for k in ahost aslurm; do
    if [ $k = ahost ]; then h=$WORK/home-art-host; else h=$WORK/home-art-slurm; fi
    mkdir -p "$h"
    [ $k = ahost ] || cp "$H_CMD/config.yaml" "$h/config.yaml"
    before=$(store_bytes "$h")
    LABEL[$k]="dstack run big (${ART_MB} MiB artifact), $([ $k = ahost ] && echo host || echo slurm) backend"
    if bench $k "$ART_REPS" 0 time bash -c 'dsrun "$0" big' "$h"; then
        after=$(store_bytes "$h")
        GROW[$k]=$(awk -v a="$after" -v b="$before" -v n="$ART_REPS" \
            'BEGIN { printf "%.1f", (a - b) / n / 1048576 }')
    fi
done

# ---- 4. the catalog -----------------------------------------------------------
LABEL[many]="dstack run many: $CAT_JOBS \`true\` jobs in one run, host backend"
bench many 1 0 time bash -c 'dsrun "$0" many' "$WORK/home-many" || true
LABEL[seq]="dstack run t, $SEQ in a row, host backend"
bench seq "$SEQ" 0 time bash -c 'dsrun "$0" t' "$WORK/home-seq" || true
fsync_med=$("$PY" "$WORK/harness.py" fsync "$WORK" 200)
declare -A SYNCS
count_syncs() { # count_syncs KEY HOME WORKFLOW: the catalog's fsyncs in one run
    local out=$WORK/strace-$1.txt
    (cd "$REPO" && DSTACK_HOME=$2 strace -f -y -qq -e trace=fsync,fdatasync -o "$out" \
        "$DSTACK" run "$3" >/dev/null 2>&1) || { SYNCS[$1]="?"; return 0; }
    SYNCS[$1]=$(grep -c 'catalog\.db' "$out" || true)
}
if [ -n "$have_strace" ]; then
    count_syncs host1 "$H_HOST" t
    count_syncs cmd1 "$H_CMD" t
    count_syncs host10 "$H_HOST" par10
    count_syncs cmd10 "$H_CMD" par10
fi

# ---- report ------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.3gx", a / b; else printf "–" }'; }
row() { # row KEY BASE
    local k=$1 base=$2
    if [ -n "${MED[$k]:-}" ]; then
        printf '| %s | %s | %s | %s | %s | %s |\n' "${LABEL[$k]}" "${N[$k]}" "${MED[$k]}" "${P90[$k]}" \
            "$(ratio "${MED[$k]}" "${MED[$base]:-}")" "${CPU[$k]}"
    else
        printf '| %s | – | unavailable: %s | – | – | – |\n' "${LABEL[$k]}" "${UNAVAIL[$k]:-not measured}"
    fi
}
model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
rev=$(git -C "$repo_root" describe --always --dirty 2>/dev/null || echo '?')
slurm_v=$(sinfo -V 2>/dev/null || echo 'slurm ?')
echo
echo "$("$DSTACK" --version 2>/dev/null | head -n 1 || true) (source $rev; binary sha256 $dstack_id), $slurm_v, $(nproc) cores ($model), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "partition $PARTITION: $(sinfo -h -p "$PARTITION" -o '%D node(s), %c CPUs each' 2>/dev/null); work folder on $fs_type; load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg); CPUs held by other jobs at start $others_start, at end $(others_cpus)"
echo
echo "Per job (\`true\`), REPS=$REPS, WARMUP=$WARMUP:"
echo
echo "| tool | runs | median ms | p90 ms | ratio to sbatch --wait | client CPU ms |"
echo "|---|---|---|---|---|---|"
for k in srun sbwait sbpoll host cmd rest; do row $k sbwait; done
echo
echo "| one state query (the runner: one a second per job in flight) | runs | median ms | p90 ms | ratio to squeue's | client CPU ms |"
echo "|---|---|---|---|---|---|"
for k in qcmd qrest; do row $k qcmd; done
echo
echo "Runs of several jobs, MULTI_REPS=$MULTI_REPS:"
echo
echo "| run | runs | median ms | p90 ms | ratio to sbatch | client CPU ms |"
echo "|---|---|---|---|---|---|"
row p10d p10s; row p10s p10s; row c5d c5s; row c5s c5s; row p10h p10s
echo
echo "Artifact of $ART_MB MiB (random), ART_REPS=$ART_REPS:"
echo
echo "| run | runs | median ms | p90 ms | ratio to the host backend | store growth MiB per run | client CPU ms |"
echo "|---|---|---|---|---|---|---|"
for k in afloor ahost aslurm; do
    if [ -n "${MED[$k]:-}" ]; then
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$k]}" "${N[$k]}" "${MED[$k]}" "${P90[$k]}" \
            "$(ratio "${MED[$k]}" "${MED[ahost]:-}")" "${GROW[$k]:-–}" "${CPU[$k]}"
    else
        printf '| %s | – | unavailable: %s | – | – | – | – |\n' "${LABEL[$k]}" "${UNAVAIL[$k]:-not measured}"
    fi
done
echo
echo "The catalog (only the runner writes it):"
echo
echo "| measure | value |"
echo "|---|---|"
if [ -n "${MED[many]:-}" ]; then
    printf '| %s | %.0f ms, %.1f jobs/s |\n' "${LABEL[many]}" "${MED[many]}" \
        "$(awk -v n="$CAT_JOBS" -v t="${MED[many]}" 'BEGIN { print n / t * 1000 }')"
fi
if [ -n "${MED[seq]:-}" ]; then
    read -r _ _ _ seq_total < <("$PY" "$WORK/harness.py" stats "$WORK/seq.times")
    printf '| %s | median %s ms, %.1f runs/s |\n' "${LABEL[seq]}" "${MED[seq]}" \
        "$(awk -v n="$SEQ" -v t="$seq_total" 'BEGIN { print n / t }')"
fi
printf '| fdatasync of a 4 KiB append on %s (median of 200) | %s ms |\n' "$fs_type" "$fsync_med"
if [ -n "$have_strace" ]; then
    printf '| catalog fsyncs, one-job run: host backend / slurm backend | %s / %s |\n' \
        "${SYNCS[host1]}" "${SYNCS[cmd1]}"
    printf '| catalog fsyncs, 10-job run: host backend / slurm backend | %s / %s |\n' \
        "${SYNCS[host10]}" "${SYNCS[cmd10]}"
    case "${SYNCS[cmd10]}${SYNCS[cmd1]}" in *'?'*) ;; *)
        per=$(awk -v a="${SYNCS[cmd10]}" -v b="${SYNCS[cmd1]}" 'BEGIN { printf "%.2f", (a - b) / 9 }')
        printf '| catalog fsyncs per extra job (slurm, (10-job - 1-job) / 9) | %s |\n' "$per"
        printf '| ceiling from the disk: 1 / (fsyncs per job x fdatasync) | %s jobs/s |\n' \
            "$(awk -v p="$per" -v f="$fsync_med" 'BEGIN { if (p > 0 && f > 0) printf "%.0f", 1000 / (p * f); else printf "?" }')"
    esac
else
    echo "| catalog fsyncs | unavailable: no strace |"
fi
echo
echo "Ratios:"
echo "- dstack (slurm, sbatch) / sbatch --wait, one job: $(ratio "${MED[cmd]:-}" "${MED[sbwait]:-}")"
echo "- dstack (slurm, REST) / sbatch --wait, one job: $(ratio "${MED[rest]:-}" "${MED[sbwait]:-}")"
echo "- dstack (slurm, sbatch) / sbatch + squeue poll, one job: $(ratio "${MED[cmd]:-}" "${MED[sbpoll]:-}")"
echo "- dstack (slurm, sbatch) / srun, one job: $(ratio "${MED[cmd]:-}" "${MED[srun]:-}")"
echo "- 10 jobs: dstack / sbatch: $(ratio "${MED[p10d]:-}" "${MED[p10s]:-}"); chain of 5: dstack / sbatch: $(ratio "${MED[c5d]:-}" "${MED[c5s]:-}")"
echo "- $ART_MB MiB artifact: slurm / host backend: $(ratio "${MED[aslurm]:-}" "${MED[ahost]:-}")"
