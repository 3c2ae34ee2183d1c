#!/usr/bin/env bash
# Job result cache benchmark (issue 9): a pipeline prepare -> train ->
# evaluate as three dstack workflows (`provider: bash`, `cache: true`, each
# step's output an artifact; train's deps: prepare; evaluate's deps: train,
# and prepare for the data, as deps do not carry over), against the same
# three steps as snakemake rules, in the same script run.
#
# The steps are python3 (steps/pipeline.py in the generated repository):
# prepare writes DATA_MB MiB of seeded random numbers to data/, train reads
# data/ and fits a line by SGD, a fixed number of iterations (calibrated at
# the start to about TRAIN_SECONDS here), into model/, evaluate reads model/
# and data/ and writes metrics/. A step missing its inputs fails, and so does
# its `dstack run`: the script stops then.
#
# Usage: tests/bench/cache.sh
# Environment:
#   DSTACK        the binary (default: build/cli/dstack in this repository;
#                 the script runs a private copy of it)
#   REPS=3        timed repetitions of each re-run row (the median is shown)
#   DATA_MB=20    size of prepare's output
#   TRAIN_SECONDS=2  about how long train computes
#   NO_CACHE_FLAG=--no-cache  the `dstack run` option of row 3 (empty: row 3
#                 is a plain re-run, for a dstack without the option)
#   TMPDIR        where the work folder goes (default /var/tmp: the git
#                 repository, the private DSTACK_HOME, snakemake's copy)
#   NO_INSTALL=1  do not apt-get install snakemake when it is missing
#   KEEP_WORK=1   keep the work folder (logs, times, store) at the end
#
# Rows, each a whole pipeline (`dstack run prepare && dstack run train &&
# dstack run evaluate`, or `snakemake --cores 1`):
#   1. dstack, first run, nothing cached (a fresh DSTACK_HOME)
#   2. dstack, re-run with nothing changed (`dstack run X`; cache: true)
#   3. dstack, re-run with the cache forced off (`dstack run $NO_CACHE_FLAG X`)
#   4. snakemake, first run, then re-runs with nothing changed (it skips by
#      timestamps), in its own copy of the folder
# A python3 harness times each (perf_counter around the commands run in turn
# by subprocess.run, stdout to /dev/null, stderr to a log); the re-run rows
# REPS times. At the end evaluate's metrics from dstack (artifacts download)
# must equal snakemake's, byte for byte.
set -euo pipefail

die() { echo "cache.sh: error: $*" >&2; exit 1; }
note() { echo "cache.sh: $*" >&2; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$script_dir/lib.sh"
repo_root=$(cd "$script_dir/../.." && pwd)
DSTACK=${DSTACK:-$repo_root/build/cli/dstack}
REPS=${REPS:-3}
DATA_MB=${DATA_MB:-20}
TRAIN_SECONDS=${TRAIN_SECONDS:-2}
NO_CACHE_FLAG=${NO_CACHE_FLAG---no-cache}
[ $# -eq 0 ] || die "usage: $0 (settings come from the environment: REPS, DATA_MB, ...)"
for v in REPS DATA_MB; do
    case "${!v}" in ''|*[!0-9]*|0) die "$v must be a positive integer";; esac
done
case "$TRAIN_SECONDS" in ''|.|*[!0-9.]*|*.*.*) die "TRAIN_SECONDS must be a number";; esac

[ -x "$DSTACK" ] || die "dstack binary not found at $DSTACK (build it: meson setup build && ninja -C build, or set DSTACK)"
command -v git >/dev/null || die "git is needed (apt-get install git)"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || die "python3 is needed"
SNAKEMAKE=/usr/bin/snakemake
[ -x "$SNAKEMAKE" ] || install_peers snakemake || true
[ -x "$SNAKEMAKE" ] || die "$SNAKEMAKE is needed: $(why_missing snakemake)"

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/dstack-cache-bench.XXXXXX") || die "cannot make a work folder"
cleanup() { if [ -n "${KEEP_WORK:-}" ]; then note "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM
cp "$DSTACK" "$WORK/dstack-bin" || die "cannot copy $DSTACK to $WORK"
dstack_id="$(sha256sum "$WORK/dstack-bin" | cut -c1-12), mtime $(date -u -r "$DSTACK" +%H:%M:%SZ)"
DSTACK=$WORK/dstack-bin
export HOME=$WORK/home GIT_CONFIG_NOSYSTEM=1 DSTACK_HOME=$WORK/dstack-home
mkdir -p "$HOME"

# harness.py OUT RUNS LOG CMD... [;; CMD...]: the commands in turn, RUNS
# times, stopping at a failure; OUT gets the times (ms), stdout "n median min max".
cat >"$WORK/harness.py" <<'EOF'
import statistics, subprocess, sys, time
out, runs, log, cmds = sys.argv[1], int(sys.argv[2]), sys.argv[3], [[]]
for w in sys.argv[4:]:
    if w == ";;": cmds.append([])
    else: cmds[-1].append(w)
times = []
with open(log, "ab") as err:
    for i in range(runs):
        t0 = time.perf_counter_ns()
        for cmd in cmds:
            rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err).returncode
            if rc:
                sys.exit("run %d: %s: exit %d" % (i + 1, " ".join(cmd), rc))
        times.append((time.perf_counter_ns() - t0) / 1e6)
open(out, "w").writelines("%.3f\n" % t for t in times)
print("%d %.1f %.1f %.1f" % (len(times), statistics.median(times), min(times), max(times)))
EOF

# The pipeline's code, the same for dstack and snakemake.
REPO=$WORK/repo SNK=$WORK/snake
mkdir -p "$REPO/.dstack" "$REPO/steps" "$SNK"
cat >"$REPO/steps/pipeline.py" <<'EOF'
import array, json, os, random, sys, time
def load(name):
    a = array.array("d")
    with open(name, "rb") as f: a.frombytes(f.read())
    return a
def sgd(x, y, iters, a=0.0, b=0.0, lr=0.05):
    for i in range(iters):
        j = i % len(x)
        e = a * x[j] + b - y[j]
        a, b = a - lr * e * x[j], b - lr * e
    return a, b
def save(folder, d):
    os.makedirs(folder, exist_ok=True)
    json.dump(d, open(folder + "/" + folder + ".json", "w"))
step, args = sys.argv[1], sys.argv[2:]
if step == "prepare":      # prepare MB: x uniform, y = 3x + 1 + noise
    n, rng = int(args[0]) * 1048576 // 16, random.Random(7)
    x = array.array("d", (rng.random() for _ in range(n)))
    y = array.array("d", (3 * v + 1 + rng.gauss(0, 0.1) for v in x))
    os.makedirs("data", exist_ok=True)
    x.tofile(open("data/x.f64", "wb")); y.tofile(open("data/y.f64", "wb"))
elif step == "calibrate":  # calibrate SECONDS: the iterations of train that take that long
    x = array.array("d", (i / 1000 for i in range(100000)))
    t0, iters = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.5:
        sgd(x, x, 100000); iters += 100000
    print(max(1, int(iters / (time.perf_counter() - t0) * float(args[0]))))
elif step == "train":      # train ITERS
    x, y = load("data/x.f64"), load("data/y.f64")
    a, b = sgd(x, y, int(args[0]))
    save("model", {"a": a, "b": b, "points": len(x)})
    print("train: %d points read, a=%.6f b=%.6f" % (len(x), a, b))
elif step == "evaluate":
    m, x, y = json.load(open("model/model.json")), load("data/x.f64"), load("data/y.f64")
    mse = sum((m["a"] * u + m["b"] - v) ** 2 for u, v in zip(x, y)) / len(x)
    save("metrics", dict(m, mse=mse))
    print("evaluate: mse=%.6g" % mse)
EOF
ITERS=$("$PY" "$REPO/steps/pipeline.py" calibrate "$TRAIN_SECONDS") || die "calibration failed"
step() { echo "$PY steps/pipeline.py $*"; }
cat >"$REPO/.dstack/workflows.yaml" <<EOF
workflows:
  - {name: prepare, provider: bash, cache: true, commands: [$(step prepare "$DATA_MB")], artifacts: [data]}
  - {name: train, provider: bash, cache: true, deps: [{workflow: prepare}],
     commands: [$(step train "$ITERS")], artifacts: [model]}
  - {name: evaluate, provider: bash, cache: true, deps: [{workflow: train}, {workflow: prepare}],
     commands: [$(step evaluate)], artifacts: [metrics]}
EOF
gitc=(git -C "$REPO" -c user.name=bench -c user.email=bench@localhost)
"${gitc[@]}" init -q -b main
{ "${gitc[@]}" add -A && "${gitc[@]}" commit -q -m bench; } || die "cannot commit the bench repository"
cp -r "$REPO/steps" "$SNK/"
cat >"$SNK/Snakefile" <<EOF
rule all:
    input: "metrics"
rule prepare:
    output: directory("data")
    shell: "$(step prepare "$DATA_MB")"
rule train:
    input: "data"
    output: directory("model")
    shell: "$(step train "$ITERS")"
rule evaluate:
    input: "model", "data"
    output: directory("metrics")
    shell: "$(step evaluate)"
EOF

# bench KEY LABEL RUNS DIR CMD... [;; CMD...]: fills N/MED/MIN/MAX[KEY]; a failure stops the script.
declare -A N MED MIN MAX LABEL
bench() {
    local key=$1 runs=$3 dir=$4; LABEL[$key]=$2; shift 4
    note "$(printf '%-8s %d run(s): %s' "$key" "$runs" "${*//$WORK\//}")"
    (cd "$dir" && "$PY" "$WORK/harness.py" "$WORK/$key.times" "$runs" "$WORK/$key.log" "$@") \
        >"$WORK/$key.stats" 2>"$WORK/$key.harness" ||
        die "$key: $(tail -n 1 "$WORK/$key.harness"); $(grep -v '^\s*$' "$WORK/$key.log" | tail -n 1 | cut -c1-200)"
    read -r "N[$key]" "MED[$key]" "MIN[$key]" "MAX[$key]" <"$WORK/$key.stats"
    note "$(printf '%-8s median %9.1f ms' "$key" "${MED[$key]}")"
}
pipeline=("$DSTACK" run prepare ";;" "$DSTACK" run train ";;" "$DSTACK" run evaluate)
forced=("$DSTACK" run ${NO_CACHE_FLAG:+"$NO_CACHE_FLAG"} prepare ";;" "$DSTACK" run ${NO_CACHE_FLAG:+"$NO_CACHE_FLAG"} train ";;"
        "$DSTACK" run ${NO_CACHE_FLAG:+"$NO_CACHE_FLAG"} evaluate)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
fs_type=$(df -PT "$WORK" | awk 'NR == 2 { print $2 }')
note "work $WORK ($fs_type); REPS=$REPS DATA_MB=$DATA_MB TRAIN_SECONDS=$TRAIN_SECONDS (train: $ITERS iterations)"

bench cold "dstack, first run (nothing cached)" 1 "$REPO" "${pipeline[@]}"
bench cached "dstack, re-run, nothing changed (cache: true)" "$REPS" "$REPO" "${pipeline[@]}"
forced_label="dstack, re-run, cache forced off (\`run $NO_CACHE_FLAG X\`)"
[ -n "$NO_CACHE_FLAG" ] || forced_label="dstack, re-run (NO_CACHE_FLAG empty: a plain \`run X\`)"
bench forced "$forced_label" "$REPS" "$REPO" "${forced[@]}"
bench s_cold "snakemake --cores 1, first run" 1 "$SNK" "$SNAKEMAKE" --cores 1
bench s_rerun "snakemake --cores 1, re-run, nothing changed" "$REPS" "$SNK" "$SNAKEMAKE" --cores 1

# Checks: the runs are done, and dstack's metrics are snakemake's.
cd "$REPO"
done_runs=$("$DSTACK" ps -a | awk 'NR > 1 && $3 == "done"' | wc -l)
[ "$done_runs" -eq $((3 * (1 + 2 * REPS))) ] || note "note: $done_runs runs done, $((3 * (1 + 2 * REPS))) started"
last_eval=$("$DSTACK" ps -a | awk 'NR > 1 && $2 == "evaluate" && $3 == "done" { print $1; exit }')
"$DSTACK" artifacts download "$last_eval" -o "$WORK/got" >/dev/null || die "dstack artifacts download $last_eval failed"
cmp -s "$WORK/got/metrics/metrics.json" "$SNK/metrics/metrics.json" ||
    die "evaluate's metrics differ: dstack $(cat "$WORK/got/metrics/metrics.json" 2>/dev/null), snakemake $(cat "$SNK/metrics/metrics.json")"
cd "$WORK"

# ---- report ------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.3gx", a / b; else printf "–" }'; }
model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
rev=$(git -C "$repo_root" describe --always --dirty 2>/dev/null || echo '?')
echo
echo "$("$DSTACK" --version 2>/dev/null | head -n 1 || true) (source $rev; binary sha256 $dstack_id), snakemake $("$SNAKEMAKE" --version 2>/dev/null), python $("$PY" -c 'import platform; print(platform.python_version())'), $(nproc) cores ($model), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "work folder on $fs_type; load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "pipeline: prepare ($DATA_MB MiB) -> train ($ITERS iterations, TRAIN_SECONDS=$TRAIN_SECONDS) -> evaluate; metrics the same from dstack and snakemake"
echo
echo "| pipeline | runs | median ms | min ms | max ms |"
echo "|---|---|---|---|---|"
for k in cold cached forced s_cold s_rerun; do
    printf '| %s | %s | %s | %s | %s |\n' "${LABEL[$k]}" "${N[$k]}" "${MED[$k]}" "${MIN[$k]}" "${MAX[$k]}"
done
echo
echo "Ratios (medians):"
echo "- cached re-run / forced re-run: $(ratio "${MED[cached]}" "${MED[forced]}")"
echo "- cached re-run / snakemake re-run: $(ratio "${MED[cached]}" "${MED[s_rerun]}")"
echo "- cold dstack / cold snakemake: $(ratio "${MED[cold]}" "${MED[s_cold]}")"
warn=$(cat "$WORK"/{cold,cached,forced}.log | grep -i 'warning' | sort | uniq -c | head -n 5 || true)
[ -z "$warn" ] || printf '\ndstack warnings (count, line):\n%s\n' "$warn"
