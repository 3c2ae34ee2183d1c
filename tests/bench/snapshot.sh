#!/usr/bin/env bash
# Snapshot benchmark (issue 6): the time to take a run's snapshot of a git
# repository of FILES files with a handful changed (5 tracked files modified,
# 2 untracked files added), against `git stash create` + `git archive` of the
# same repository, in the same script run.
#
# dstack's snapshot is timed as `dstack run -d noop`, which returns once the
# run exists: git status, and the files stored (a first, untimed run stored
# them all, so later ones find them unchanged through the store's stat
# cache); the detached run is then waited for, untimed. git's is `git stash
# create` + `git archive` into a file. Also, whole: `dstack run noop`, which
# also writes the snapshot into the job's folder and runs `true`, against
# `git stash create` + `git archive | tar -x` into an empty folder; and for
# reference `dstack run noop` in a repository of one file (dstack's fixed
# cost per run) and `git status --porcelain` alone.
#
# Usage: tests/bench/snapshot.sh
# Environment:
#   DSTACK       the binary (default: build/cli/dstack in this repository;
#                the script runs a private copy of it)
#   RUNS=10      timed runs per tool; the tools take turns, one run each
#   WARMUP=2     untimed turns before the timed ones
#   FILES=10000  files in the repository (folders of 100, about 1 KiB each)
#   TMPDIR       where the work folder goes (default /var/tmp; the
#                repositories and the private DSTACK_HOME live there)
#   KEEP_WORK=1  keep the work folder (repositories, store, times) at the end
#
# Every invocation is timed by a small python3 harness (perf_counter around
# subprocess.run, stdin/stdout to /dev/null, stderr to a log); the archive's
# target folder is emptied before every turn, untimed. A failing command
# stops the script. Medians and p90 (nearest rank) in milliseconds.
set -euo pipefail

die() { echo "snapshot.sh: error: $*" >&2; exit 1; }
note() { echo "snapshot.sh: $*" >&2; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
DSTACK=${DSTACK:-$repo_root/build/cli/dstack}
RUNS=${RUNS:-10}
WARMUP=${WARMUP:-2}
FILES=${FILES:-10000}
[ $# -eq 0 ] || die "usage: $0 (settings come from the environment: RUNS, FILES, ...)"
for v in RUNS FILES; do
    case "${!v}" in ''|*[!0-9]*|0) die "$v must be a positive integer";; esac
done
case "$WARMUP" in ''|*[!0-9]*) die "WARMUP must be a non-negative integer";; esac
[ "$FILES" -ge 5 ] || die "FILES must be at least 5 (five of them are modified)"

# ---- tools -----------------------------------------------------------------
[ -x "$DSTACK" ] || die "dstack binary not found at $DSTACK (build it: meson setup build && ninja -C build, or set DSTACK)"
command -v git >/dev/null || die "git is needed (apt-get install git)"
command -v tar >/dev/null || die "tar is needed (apt-get install tar)"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || die "python3 is needed for the timing harness"

# ---- work dir --------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/dstack-snapshot-bench.XXXXXX") || die "cannot make a work folder"
cleanup() {
    if [ -n "${KEEP_WORK:-}" ]; then note "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A private copy of the binary, so that a rebuild during the run changes nothing.
cp "$DSTACK" "$WORK/dstack-bin" || die "cannot copy $DSTACK to $WORK"
dstack_id=$(sha256sum "$WORK/dstack-bin" | cut -c1-12)
DSTACK=$WORK/dstack-bin
export HOME=$WORK/home GIT_CONFIG_NOSYSTEM=1 DSTACK_HOME=$WORK/dstack-home
mkdir -p "$HOME"

# The harness: `time OUT RUNS WARMUP FRESH LOG -- KEY DIR CMD... -- KEY DIR
# CMD...` runs the tools in turns, one run each (CMD in its DIR), FRESH emptied
# before each turn; WARMUP+RUNS turns; writes "KEY n median p90" lines to OUT.
# A KEY starting with "~" runs untimed and is not reported.
cat >"$WORK/harness.py" <<'EOF'
import math, os, shutil, statistics, subprocess, sys, time

def main(out, runs, warmup, fresh, log, spec):
    tools = []
    for arg in spec:
        if arg == "--":
            tools.append([])
        else:
            tools[-1].append(arg)
    tools = [(t[0], t[1], t[2:]) for t in tools]
    times = {key: [] for key, _, _ in tools}
    for i in range(warmup + runs):
        shutil.rmtree(fresh, ignore_errors=True)
        os.mkdir(fresh)
        for key, cwd, cmd in tools:
            with open(log, "wb") as err:
                t0 = time.perf_counter_ns()
                rc = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err).returncode
                t1 = time.perf_counter_ns()
            if rc:
                sys.stderr.write("%s, turn %d: %s exited %d\n" % (key, i + 1, cmd[0], rc))
                return 3
            if i >= warmup and not key.startswith("~"):
                times[key].append((t1 - t0) / 1e6)
    with open(out, "w") as f:
        for key, xs in times.items():
            if key.startswith("~"):
                continue
            s = sorted(xs)
            p90 = s[max(0, math.ceil(0.9 * len(s)) - 1)]
            f.write("%s %d %.2f %.2f\n" % (key, len(s), statistics.median(s), p90))
    return 0

sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
              sys.argv[5], sys.argv[6:]))
EOF

# ---- repositories ----------------------------------------------------------
# make_repo DIR: a git repository with .dstack/workflows.yaml (workflow noop)
# and whatever DIR already holds, committed.
make_repo() {
    mkdir -p "$1/.dstack"
    printf 'workflows:\n  - name: noop\n    provider: bash\n    commands: ["true"]\n' \
        >"$1/.dstack/workflows.yaml"
    local gitc=(git -C "$1" -c user.name=bench -c user.email=bench@localhost)
    "${gitc[@]}" init -q -b main
    "${gitc[@]}" add -A || die "git add failed in $1"
    "${gitc[@]}" commit -q -m bench || die "cannot commit $1"
}

REPO=$WORK/repo TINY=$WORK/tiny FRESH=$WORK/fresh
note "making a repository of $FILES files in $REPO"
# Deterministic content, different in every file: 16 lines of 64 bytes.
"$PY" - "$REPO" "$FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%03d.txt" % (i % 100)), "w") as f:
        f.writelines("%-63s\n" % ("file %06d line %02d" % (i, j)) for j in range(16))
EOF
# As in a checkout in use, no file is as new as git's index (git re-reads
# "racily clean" files on every status).
find "$REPO" -type f -exec touch -d '1 hour ago' {} +
make_repo "$REPO"
make_repo "$TINY"
# The handful changed: 5 tracked files modified, 2 untracked files added.
for (( k = 0; k < 5; k++ )); do
    i=$(( k * FILES / 5 ))
    printf 'changed %d\n' "$k" >>"$REPO/$(printf 'd%03d/f%03d.txt' $((i / 100)) $((i % 100)))"
done
printf 'untracked 1\n' >"$REPO/d000/untracked1.txt"
printf 'untracked 2\n' >"$REPO/untracked2.txt"
changed=$(git -C "$REPO" status --porcelain | wc -l)
[ "$changed" -eq 7 ] || die "git status lists $changed changes in $REPO, expected 7"

note "warm-up: one untimed dstack run in each repository (the first stores every file)"
(cd "$REPO" && "$DSTACK" run noop >"$WORK/first-run.log" 2>&1) ||
    die "dstack run failed in $REPO: $(tail -n 1 "$WORK/first-run.log")"
(cd "$TINY" && "$DSTACK" run noop >"$WORK/first-run.log" 2>&1) ||
    die "dstack run failed in $TINY: $(tail -n 1 "$WORK/first-run.log")"

# ---- measuring -------------------------------------------------------------
home_fs=$(df -PT "$WORK" | awk 'NR == 2 { print $2 }')
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
note "work $WORK ($home_fs); RUNS=$RUNS WARMUP=$WARMUP FILES=$FILES; load average $load_start"
# shellcheck disable=SC2016  # expanded by the inner shell
"$PY" "$WORK/harness.py" "$WORK/results" "$RUNS" "$WARMUP" "$FRESH" "$WORK/tool.log" \
    -- submit "$REPO" "$DSTACK" run -d noop \
    -- "~wait" "$REPO" bash -c '"$1" logs -f "$("$1" ps | awk "NR == 2 { print \$1 }")"' _ \
        "$DSTACK" \
    -- store "$REPO" bash -c 'c=$(git stash create) && git archive -o "$1/snap.tar" "${c:-HEAD}"' \
        _ "$FRESH" \
    -- dstack "$REPO" "$DSTACK" run noop \
    -- archive "$REPO" bash -o pipefail -c \
        'c=$(git stash create) && git archive "${c:-HEAD}" | tar -x -C "$1"' _ "$FRESH" \
    -- tiny "$TINY" "$DSTACK" run noop \
    -- status "$REPO" git status --porcelain \
    || die "a timed command failed; its last output line: $(tail -n 1 "$WORK/tool.log")"
archived=$(find "$FRESH" -type f -not -name snap.tar | wc -l)

declare -A N MED P90
while read -r key n med p90; do N[$key]=$n MED[$key]=$med P90[$key]=$p90; done <"$WORK/results"

# ---- report ----------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3gx", a / b; else printf "?" }'; }
verdict() { awk "BEGIN { exit !($1) }" && echo "met" || echo "NOT met"; }
echo
echo "$("$DSTACK" --version 2>/dev/null | head -n 1 || true) (binary sha256 $dstack_id), $(git --version), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "work folder on $home_fs; FILES=$FILES (5 modified, 2 untracked), RUNS=$RUNS, WARMUP=$WARMUP; load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| tool | runs | median ms | p90 ms | ratio to dstack (median) |"
echo "|---|---|---|---|---|"
row() { printf '| %s | %s | %s | %s | %s |\n' "$1" "${N[$2]}" "${MED[$2]}" "${P90[$2]}" "$(ratio "${MED[$2]}" "${MED[$3]}")"; }
row "dstack run -d noop: the snapshot taken and stored" submit submit
row "git stash create + git archive -o FILE" store submit
echo "| whole | | | | ratio to dstack run |"
row "dstack run noop (snapshot, written into the job's folder, \`true\` run)" dstack dstack
row "git stash create + git archive \| tar -x (tracked files only)" archive dstack
row "dstack run noop, 1-file repository (fixed cost per run)" tiny dstack
row "git status --porcelain" status dstack
echo
echo "git stash create ignores untracked files: the archive held $archived files; dstack's snapshot also holds the 2 untracked ones."
echo "dstack run minus the 1-file run: $(awk -v a="${MED[dstack]}" -v b="${MED[tiny]}" 'BEGIN { printf "%.2f", a - b }') ms."
echo
echo "Goal (issue 6): snapshot at least as fast as git stash create + git archive: ${MED[submit]} vs ${MED[store]} ms, $(verdict "${MED[submit]} <= ${MED[store]}")"
echo "Whole, written out: dstack run ${MED[dstack]} vs git archive | tar -x ${MED[archive]} ms, $(verdict "${MED[dstack]} <= ${MED[archive]}")"
