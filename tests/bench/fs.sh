#!/usr/bin/env bash
# Read benchmark of the /dstack FUSE tree (issue 4): a run's artifacts read
# through `dstack mount`, against the native folder, squashfuse on an lz4
# squashfs image of the same data, and `restic mount` of a restic snapshot of
# it, side by side in one run.
#
# Usage: tests/bench/fs.sh [DATASET_DIR]
#   DATASET_DIR  default /var/tmp/bench/data; generated with
#                $SHARED_DIR/bench/gen-dataset.sh when missing or empty
# Environment:
#   DSTACK        the binary (default: build/cli/dstack in this repository;
#                 the script runs a private copy of it)
#   SHARED_DIR    the shared folder (default: ../shared next to the repository)
#   TMPDIR        where the work folder goes (default /var/tmp; it needs about
#                 twice the dataset free: squashfs image, restic repository,
#                 dstack store)
#   REPEAT=3      timed warm passes per test and target; the fastest is shown
#   COLD_REPEAT=1 timed cold passes (each after a remount and a cache drop);
#                 the fastest is shown
#   RANDOM_READS=2000  random 4 KiB reads per pass (RANDOM_SEED=1)
#   SKIP_COLD=1   no cold passes (the warm ones then follow an untimed pass)
#   SKIP_DSTACK=1, SKIP_SQUASHFUSE=1, SKIP_RESTIC=1   leave that target out
#   DSTACK_MOUNT_DAEMON=1  mount with `dstack mount DIR` (it daemonizes and
#                 returns once mounted) instead of `dstack mount -f DIR &`
#   PEER_READ_AHEAD_KB=N  after mounting squashfuse and restic, set their
#                 read_ahead_kb (/sys/class/bdi/MAJ:MIN) to N; FUSE mounts get
#                 128 KiB, which keeps one 128 KiB read in flight. dstack's
#                 mount is measured as it comes (its daemon may set its own).
#   MOUNT_TIMEOUT=120  seconds a FUSE mount may take to show the data
#   TIMEOUT=600   seconds one timed pass may take
#   NO_INSTALL=1  do not apt-get install missing peers (squashfuse,
#                 squashfs-tools, restic, fuse3); they are then unavailable
#   KEEP_WORK=1   keep the work folder (logs, image, repositories); the mounts
#                 are undone whatever happens
#
# Tests, each on every target (native folder, dstack, squashfuse, restic):
#   seq    the files of 100 MiB or more (the dataset's 4 x 200 MiB
#          checkpoints) read one after the other with 1 MiB reads: GB/s
#   find   `find . | wc -l` at the data's root: seconds (the count is checked
#          against the native one)
#   ls     `ls -lR . >/dev/null`: seconds
#   small  every file under 64 KiB (the 20,000 small files) opened, read to
#          the end (64 KiB reads) and closed, in path order: seconds, MB/s
#   rand   RANDOM_READS preads of 4 KiB at random 4 KiB-aligned offsets in
#          the 200 MiB file (the largest file if none is exactly 200 MiB):
#          microseconds per read (the bytes read are checked against native)
# each cold (once per COLD_REPEAT) then warm (REPEAT times). Timing is a
# python3 helper (perf_counter around the loop; around the command for find
# and ls, run with LC_ALL=C).
#
# Cold means: FUSE targets are unmounted and mounted again (a fresh daemon,
# so its own caches are gone; the time to mount is not counted), then
# `sync; echo 3 > /proc/sys/vm/drop_caches` (the kernel's page, dentry and
# inode caches, which hold the native files, the squashfs image, the restic
# repository and the dstack store alike). restic keeps its on-disk cache
# (index and tree packs, in the work folder) as a user would. Warm means the
# same mount right after the cold pass (or after an untimed pass).
#
# The daemons' open descriptors are sampled every 20 ms (/proc/PID/fd):
# the maximum during the small-files passes and over the whole run, and
# their peak RSS (VmHWM) before each unmount.
set -euo pipefail
export LC_ALL=C

die() { echo "fs.sh: error: $*" >&2; exit 1; }
note() { echo "fs.sh: $*" >&2; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$script_dir/lib.sh"
repo_root=$(cd "$script_dir/../.." && pwd)
DATA=${1:-/var/tmp/bench/data}
DSTACK=${DSTACK:-$repo_root/build/cli/dstack}
SHARED_DIR=${SHARED_DIR:-$repo_root/../shared}
REPEAT=${REPEAT:-3}
COLD_REPEAT=${COLD_REPEAT:-1}
RANDOM_READS=${RANDOM_READS:-2000}
RANDOM_SEED=${RANDOM_SEED:-1}
MOUNT_TIMEOUT=${MOUNT_TIMEOUT:-120}
TIMEOUT=${TIMEOUT:-600}
PEER_READ_AHEAD_KB=${PEER_READ_AHEAD_KB:-}
[ $# -le 1 ] || die "usage: $0 [DATASET_DIR] (settings come from the environment: REPEAT, SKIP_COLD, ...)"
for v in REPEAT COLD_REPEAT RANDOM_READS MOUNT_TIMEOUT TIMEOUT; do
    case "${!v}" in ''|*[!0-9]*|0) die "$v must be a positive integer";; esac
done
case "$RANDOM_SEED" in ''|*[!0-9]*) die "RANDOM_SEED must be a non-negative integer";; esac
case "$PEER_READ_AHEAD_KB" in *[!0-9]*) die "PEER_READ_AHEAD_KB must be a number of KiB";; esac

# ---- tools -----------------------------------------------------------------
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || die "python3 is needed for the timing helper"
command -v git >/dev/null || die "git is needed (apt-get install git)"
command -v timeout >/dev/null || die "timeout (coreutils) is needed"
pkgs=()
if [ -z "${SKIP_SQUASHFUSE:-}" ]; then
    command -v squashfuse >/dev/null || pkgs+=(squashfuse)
    command -v mksquashfs >/dev/null || pkgs+=(squashfs-tools)
fi
[ -n "${SKIP_RESTIC:-}" ] || command -v restic >/dev/null || pkgs+=(restic)
command -v fusermount3 >/dev/null || pkgs+=(fuse3)
install_peers ${pkgs[@]+"${pkgs[@]}"} ||
    note "$install_note; those peers will be reported unavailable"

# Dropping the kernel's caches needs root; without it there are no cold passes.
can_drop=1
{ sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null || can_drop=
cold_note=
if [ -n "${SKIP_COLD:-}" ]; then
    cold_note="skipped (SKIP_COLD set)"
elif [ -z "$can_drop" ]; then
    cold_note="unavailable: cannot write /proc/sys/vm/drop_caches (run as root)"
fi
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# ---- dataset ---------------------------------------------------------------
dataset_ensure
ART=$(basename "$DATA")   # the artifact's path in the dstack run

# ---- work dir --------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/dstack-fs-bench.XXXXXX") || die "cannot make a work folder"
WORK=$(cd "$WORK" && pwd)
case "$WORK" in *[!A-Za-z0-9._/+-]*)
    rmdir "$WORK"; die "the work folder's path $WORK has odd characters (set TMPDIR)";; esac
case "$WORK/" in "$DATA/"*) rmdir "$WORK"; die "the work folder must not be inside the dataset";; esac

declare -A UNAVAIL LABEL VERSION MNT ROOT PID SAMPLER READY NMOUNT RSSMAX SETUP MLOG RA
declare -A SEC BYTES COUNT DIGEST ERR
TARGETS=(native dstack squashfuse restic)
FUSE_TARGETS=(dstack squashfuse restic)
mounts=0
umount_notes=

is_mounted() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }

cleanup() {
    set +e
    local t left=
    if declare -F umount_target >/dev/null; then
        for t in "${FUSE_TARGETS[@]}"; do umount_target "$t"; done
    fi
    for t in "${FUSE_TARGETS[@]}"; do
        if [ -n "${MNT[$t]:-}" ] && is_mounted "${MNT[$t]}"; then left="$left ${MNT[$t]}"; fi
    done
    if [ -n "$left" ]; then
        note "still mounted:$left; left $WORK in place"
    elif [ -n "${KEEP_WORK:-}" ]; then
        note "kept $WORK"
    else
        rm -rf --one-file-system "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

HELPER=$WORK/fsbench.py
cat >"$HELPER" <<'EOF'
import hashlib, os, random, subprocess, sys, time

def out(*a):
    print(" ".join(str(x) for x in a))

def read_list(path):
    with open(path, "rb") as f:
        return [l.rstrip(b"\n") for l in f if l.strip()]

def files(root, listfile, bufsize):
    """Read every listed file to its end: seconds bytes files errors."""
    paths = read_list(listfile)
    os.chdir(root)
    buf = bytearray(bufsize)
    n = errs = 0
    first = None
    t0 = time.perf_counter()
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
            try:
                while True:
                    k = os.readv(fd, [buf])
                    if not k:
                        break
                    n += k
            finally:
                os.close(fd)
        except OSError as e:
            errs += 1
            if first is None:
                first = "%s: %s" % (p.decode(errors="replace"), e.strerror)
    dt = time.perf_counter() - t0
    if first:
        sys.stderr.write("%d errors, the first: %s\n" % (errs, first))
    out("%.6f" % dt, n, len(paths), errs)

def rand(root, rel, n, seed):
    """n preads of 4 KiB at random aligned offsets: seconds bytes n errors digest."""
    os.chdir(root)
    fd = os.open(rel, os.O_RDONLY)
    pages = os.fstat(fd).st_size // 4096
    r = random.Random(seed)
    offs = [r.randrange(pages) * 4096 for _ in range(n)]
    buf = bytearray(4096 * n)
    mv = memoryview(buf)
    slots = [[mv[i * 4096:(i + 1) * 4096]] for i in range(n)]
    total = errs = 0
    first = None
    t0 = time.perf_counter()
    for off, slot in zip(offs, slots):
        try:
            k = os.preadv(fd, slot, off)
            total += k
            if k != 4096:
                errs += 1
        except OSError as e:
            errs += 1
            if first is None:
                first = "pread at %d: %s" % (off, e.strerror)
    dt = time.perf_counter() - t0
    os.close(fd)
    if first:
        sys.stderr.write("%d errors, the first: %s\n" % (errs, first))
    out("%.6f" % dt, total, n, errs, hashlib.sha256(buf).hexdigest()[:16])

def cmd(root, shell):
    """Run a shell command at root: seconds 0 last-output-line exit-status."""
    os.chdir(root)
    env = dict(os.environ, LC_ALL="C")
    t0 = time.perf_counter()
    p = subprocess.run(["bash", "-o", "pipefail", "-c", shell], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t0
    lines = p.stdout.decode(errors="replace").split()
    if p.returncode:
        sys.stderr.write(p.stderr.decode(errors="replace")[-600:])
    out("%.6f" % dt, 0, lines[-1] if lines else "-", p.returncode)

def classify(root, outdir):
    """Lists of large (>= 100 MiB) and small (< 64 KiB) files, the random-read file."""
    MiB = 1 << 20
    fl = []
    for d, dns, fns in os.walk(root):
        dns.sort()
        for f in sorted(fns):
            p = os.path.join(d, f)
            st = os.lstat(p)
            if (st.st_mode & 0o170000) == 0o100000:
                rel = os.path.relpath(p, root)
                if "\n" in rel:
                    sys.exit("file name with a newline: %r" % rel)
                fl.append((rel, st.st_size))
    if not fl:
        sys.exit("no files in %s" % root)
    large = [x for x in fl if x[1] >= 100 * MiB] or [max(fl, key=lambda x: x[1])]
    small = [x for x in fl if x[1] < 64 * 1024]
    exact = [x for x in fl if x[1] == 200 * MiB]
    rnd = exact[0] if exact else max(fl, key=lambda x: x[1])
    for name, sel in (("large", large), ("small", small)):
        with open(os.path.join(outdir, name + ".list"), "w") as f:
            f.writelines(x[0] + "\n" for x in sel)
    with open(os.path.join(outdir, "rand.path"), "w") as f:
        f.write(rnd[0])
    out(len(fl), sum(x[1] for x in fl), len(large), sum(x[1] for x in large),
        len(small), sum(x[1] for x in small), rnd[1], 1 if exact else 0)

def fds(pid, path):
    """Keep the largest count of /proc/PID/fd in path until PID is gone."""
    mx = 0
    try:
        with open(path) as f:
            mx = int(f.read().strip() or 0)
    except (OSError, ValueError):
        pass
    d = "/proc/%s/fd" % pid
    first = True
    while True:
        try:
            n = len(os.listdir(d))
        except OSError:
            break
        if n > mx or first:
            mx = max(mx, n)
            first = False
            with open(path + ".tmp", "w") as f:
                f.write("%d\n" % mx)
            os.replace(path + ".tmp", path)
        time.sleep(0.02)

def fusepid(mnt):
    """The process holding /dev/fuse open whose arguments name mnt."""
    want = {mnt.encode(), mnt.rstrip("/").encode() + b"/"}
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                args = set(f.read().split(b"\0"))
            if not (args & want):
                continue
            for fd in os.listdir("/proc/%s/fd" % p):
                if os.readlink("/proc/%s/fd/%s" % (p, fd)) == "/dev/fuse":
                    print(p)
                    return 0
        except OSError:
            continue
    return 1

a = sys.argv[1:]
if a[0] == "seq":
    files(a[1], a[2], 1 << 20)
elif a[0] == "small":
    files(a[1], a[2], 64 << 10)
elif a[0] == "rand":
    rand(a[1], a[2], int(a[3]), int(a[4]))
elif a[0] == "cmd":
    cmd(a[1], a[2])
elif a[0] == "classify":
    classify(a[1], a[2])
elif a[0] == "fds":
    fds(a[1], a[2])
elif a[0] == "fusepid":
    sys.exit(fusepid(a[1]))
else:
    sys.exit("unknown helper command %s" % a[0])
EOF

read -r data_files data_bytes large_n large_bytes small_n small_bytes rand_size rand_exact \
    < <("$PY" "$HELPER" classify "$DATA" "$WORK") || die "cannot list the dataset $DATA"
RAND_REL=$(cat "$WORK/rand.path")
[ "$small_n" -gt 0 ] || die "the dataset has no files under 64 KiB"
rand_note="$RAND_REL ($((rand_size / 1048576)) MiB)"
[ "$rand_exact" = 1 ] || rand_note="$rand_note: no 200 MiB file in the dataset, so the largest one"
avail=$(df -PB1 "$WORK" | awk 'NR == 2 { print $4 }')
need=$(( data_bytes * 2 ))
[ "$avail" -ge "$need" ] || die "need about $((need / 1000000)) MB free in $WORK, have $((avail / 1000000)) MB"
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
note "dataset $DATA: $data_files files, $(mb "$data_bytes") MB; large: $large_n files, $(mb "$large_bytes") MB; small: $small_n files, $(mb "$small_bytes") MB; random reads in $rand_note"
note "work $WORK"

# Tool state stays inside WORK.
export HOME=$WORK/home GIT_CONFIG_NOSYSTEM=1
export DSTACK_HOME=$WORK/dstack-home
export RESTIC_REPOSITORY=$WORK/restic RESTIC_PASSWORD_FILE=$WORK/restic-password
export RESTIC_CACHE_DIR=$WORK/restic-cache
mkdir -p "$HOME"
echo bench >"$RESTIC_PASSWORD_FILE"

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# ---- targets ---------------------------------------------------------------
LABEL[native]="native folder"
ROOT[native]=$DATA

# dstack: the dataset stored as the artifact of a run tagged `data`, mounted
# from a fresh git repository (one commit).
LABEL[dstack]="dstack mount"
dstack_id=
if [ -n "${SKIP_DSTACK:-}" ]; then
    UNAVAIL[dstack]="skipped (SKIP_DSTACK set)"
elif [ ! -x "$DSTACK" ]; then
    UNAVAIL[dstack]="unavailable: no dstack binary at $DSTACK (build it: meson setup build && ninja -C build)"
else
    # A private copy, so that a rebuild during the run changes nothing.
    cp "$DSTACK" "$WORK/dstack-bin" || die "cannot copy $DSTACK to $WORK"
    dstack_id="$(sha256sum "$WORK/dstack-bin" | cut -c1-12), mtime $(date -u -r "$DSTACK" +%H:%M:%SZ)"
    DSTACK=$WORK/dstack-bin
    if ! "$DSTACK" help mount >/dev/null 2>&1; then
        UNAVAIL[dstack]="unavailable: dstack mount not built yet"
    else
        note "dstack: storing the dataset as a run tagged data"
        t0=$EPOCHREALTIME
        if run_name=$("$DSTACK" tags add data -a "$DATA" 2>"$WORK/dstack-ingest.log"); then
            SETUP[dstack]="tags add $(elapsed "$t0" "$EPOCHREALTIME") s (run $(echo "$run_name" | tail -n 1)), store $(du -sb "$DSTACK_HOME" | awk '{ printf "%.0f", $1 / 1e6 }') MB"
            REPO=$WORK/repo
            mkdir -p "$REPO"
            gitc=(git -C "$REPO" -c user.name=bench -c user.email=bench@localhost)
            echo "fs bench" >"$REPO/README"
            { "${gitc[@]}" init -q && "${gitc[@]}" add README && "${gitc[@]}" commit -q -m bench; } \
                >"$WORK/repo-init.log" 2>&1 || die "cannot make the git repository: $(tail -n 1 "$WORK/repo-init.log")"
        else
            UNAVAIL[dstack]="failed: dstack tags add: $(tail -n 1 "$WORK/dstack-ingest.log")"
        fi
    fi
fi

LABEL[squashfuse]="squashfuse (lz4 image)"
if [ -n "${SKIP_SQUASHFUSE:-}" ]; then
    UNAVAIL[squashfuse]="skipped (SKIP_SQUASHFUSE set)"
elif ! command -v squashfuse >/dev/null; then
    UNAVAIL[squashfuse]=$(why_missing squashfuse)
elif ! command -v mksquashfs >/dev/null; then
    UNAVAIL[squashfuse]=$(why_missing squashfs-tools)
else
    VERSION[squashfuse]=$(dpkg-query -W -f '${Version}' squashfuse 2>/dev/null || echo '?')
    note "squashfuse: mksquashfs -comp lz4"
    t0=$EPOCHREALTIME
    if mksquashfs "$DATA" "$WORK/data.sqfs" -comp lz4 -noappend -no-progress >"$WORK/mksquashfs.log" 2>&1; then
        SETUP[squashfuse]="mksquashfs $(elapsed "$t0" "$EPOCHREALTIME") s, image $(du -sb "$WORK/data.sqfs" | awk '{ printf "%.0f", $1 / 1e6 }') MB"
    else
        UNAVAIL[squashfuse]="failed: mksquashfs: $(tail -n 1 "$WORK/mksquashfs.log")"
    fi
fi

LABEL[restic]="restic mount"
if [ -n "${SKIP_RESTIC:-}" ]; then
    UNAVAIL[restic]="skipped (SKIP_RESTIC set)"
elif ! command -v restic >/dev/null; then
    UNAVAIL[restic]=$(why_missing restic)
else
    VERSION[restic]=$(restic version 2>/dev/null | awk '{ print $2 }' || echo '?')
    note "restic: init and backup"
    if ! restic init -q >"$WORK/restic-init.log" 2>&1; then
        UNAVAIL[restic]="failed: restic init: $(tail -n 1 "$WORK/restic-init.log")"
    else
        # Backing up "." from inside the folder puts its contents at the
        # snapshot's root: mount/snapshots/latest/large/...
        t0=$EPOCHREALTIME
        if (cd "$DATA" && restic backup -q --host bench .) >"$WORK/restic-backup.log" 2>&1; then
            SETUP[restic]="backup $(elapsed "$t0" "$EPOCHREALTIME") s, repository $(du -sb "$RESTIC_REPOSITORY" | awk '{ printf "%.0f", $1 / 1e6 }') MB"
        else
            UNAVAIL[restic]="failed: restic backup: $(tail -n 1 "$WORK/restic-backup.log")"
        fi
    fi
fi

# ---- mounting --------------------------------------------------------------
# start_sampler PID FILE: sample PID's descriptor count into FILE (a maximum);
# prints the sampler's pid.
start_sampler() { "$PY" "$HELPER" fds "$1" "$2" </dev/null >/dev/null 2>&1 & echo $!; }
stop_sampler() { [ -z "$1" ] || { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; } || true; }

# mount_target T: a fresh daemon for T; sets ROOT/PID/SAMPLER[T]. On failure
# sets MOUNT_ERR, leaves nothing mounted and returns 1.
mount_target() {
    local t=$1
    local mnt=$WORK/mnt-$t pid='' log t0 rc deadline
    mounts=$((mounts + 1))
    log=$WORK/$t-mount.$mounts.log
    MNT[$t]=$mnt MLOG[$t]=$log
    mkdir -p "$mnt"
    t0=$EPOCHREALTIME
    case $t in
    squashfuse)
        squashfuse -f "$WORK/data.sqfs" "$mnt" </dev/null >"$log" 2>&1 &
        pid=$!
        ROOT[$t]=$mnt;;
    restic)
        restic mount "$mnt" </dev/null >"$log" 2>&1 &
        pid=$!
        ROOT[$t]=$mnt/snapshots/latest;;
    dstack)
        ROOT[$t]=$mnt/tags/data/artifacts/$ART
        if [ -n "${DSTACK_MOUNT_DAEMON:-}" ]; then
            rc=0
            (cd "$REPO" && exec timeout "$MOUNT_TIMEOUT" "$DSTACK" mount "$mnt") </dev/null >"$log" 2>&1 || rc=$?
            if [ "$rc" -ne 0 ]; then
                MOUNT_ERR="dstack mount exited $rc: $(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-200)"
                umount_target "$t"
                return 1
            fi
            pid=$("$PY" "$HELPER" fusepid "$mnt") || pid=
        else
            (cd "$REPO" && exec "$DSTACK" mount -f "$mnt") </dev/null >"$log" 2>&1 &
            pid=$!
        fi;;
    esac
    PID[$t]=$pid
    deadline=$((SECONDS + MOUNT_TIMEOUT))
    while :; do
        if is_mounted "$mnt" && timeout 10 stat -L -- "${ROOT[$t]}/$RAND_REL" >/dev/null 2>&1; then
            break
        fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            rc=0; wait "$pid" 2>/dev/null || rc=$?
            MOUNT_ERR="the $t mount process exited ($rc) before ${ROOT[$t]#"$WORK"/}/$RAND_REL appeared: $(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-200)"
            PID[$t]=
            umount_target "$t"
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            MOUNT_ERR="${ROOT[$t]#"$WORK"/}/$RAND_REL did not appear within $MOUNT_TIMEOUT s: $(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-200)"
            umount_target "$t"
            return 1
        fi
        sleep 0.05
    done
    READY[$t]="${READY[$t]:+${READY[$t]} }$(elapsed "$t0" "$EPOCHREALTIME")"
    NMOUNT[$t]=$(( ${NMOUNT[$t]:-0} + 1 ))
    # The mount's readahead window (what the daemon left; peers: maybe raised).
    local dev bdi
    dev=$(awk -v m="$mnt" '$5 == m { d = $3 } END { print d }' /proc/self/mountinfo)
    bdi=/sys/class/bdi/$dev/read_ahead_kb
    RA[$t]=$(cat "$bdi" 2>/dev/null || echo '?')
    if [ -n "$PEER_READ_AHEAD_KB" ] && [ "$t" != dstack ]; then
        if echo "$PEER_READ_AHEAD_KB" >"$bdi" 2>/dev/null; then
            RA[$t]="${RA[$t]}, set to $PEER_READ_AHEAD_KB"
        else
            RA[$t]="${RA[$t]} (could not set $PEER_READ_AHEAD_KB)"
        fi
    fi
    if [ -z "$pid" ]; then
        pid=$("$PY" "$HELPER" fusepid "$mnt") || pid=
        PID[$t]=$pid
        [ -n "$pid" ] || note "$t: no process holding /dev/fuse names $mnt; its descriptors go uncounted"
    fi
    [ -z "$pid" ] || SAMPLER[$t]=$(start_sampler "$pid" "$WORK/fds.$t")
}

# umount_target T: unmount T and end its daemon (dstack: `dstack umount`
# first; then fusermount3 -u, umount, umount -l; the daemon TERM, then KILL).
umount_target() {
    local t=$1
    local mnt=${MNT[$t]:-} pid=${PID[$t]:-} hwm _
    [ -n "$mnt" ] || return 0
    stop_sampler "${SAMPLER[$t]:-}"
    SAMPLER[$t]=
    if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
        hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        if [ -n "$hwm" ] && [ "$hwm" -gt "${RSSMAX[$t]:-0}" ]; then RSSMAX[$t]=$hwm; fi
    fi
    if is_mounted "$mnt"; then
        if [ "$t" = dstack ]; then
            timeout 30 "$DSTACK" umount "$mnt" >>"$WORK/dstack-umount.log" 2>&1 || true
            if is_mounted "$mnt"; then
                case "$umount_notes" in *"dstack umount"*) ;; *)
                    umount_notes="${umount_notes}dstack umount left $mnt mounted ($(tail -n 1 "$WORK/dstack-umount.log" 2>/dev/null)); fusermount3 -u did it. ";;
                esac
            fi
        fi
        is_mounted "$mnt" && { timeout 30 fusermount3 -u "$mnt" >/dev/null 2>&1 || true; }
        is_mounted "$mnt" && { timeout 30 umount "$mnt" >/dev/null 2>&1 || true; }
        is_mounted "$mnt" && { umount -l "$mnt" >/dev/null 2>&1 || true; }
    fi
    if [ -n "$pid" ]; then
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            note "$t: daemon $pid still there 10 s after the unmount; TERM"
            case "$umount_notes" in *"$t daemon"*) ;; *)
                umount_notes="${umount_notes}the $t daemon was still running 10 s after its unmount (ended with TERM). ";;
            esac
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null || true
    fi
    PID[$t]=
}

# ensure_mounted T / restart_target T: return 1 (and make T unavailable for
# the rest of the run) when the mount fails.
ensure_mounted() {
    local t=$1
    [ "$t" != native ] || return 0
    if [ -n "${PID[$t]:-}" ] && kill -0 "${PID[$t]}" 2>/dev/null && is_mounted "${MNT[$t]}"; then
        return 0
    fi
    restart_target "$t"
}
restart_target() {
    local t=$1
    [ "$t" != native ] || return 0
    umount_target "$t"
    if ! mount_target "$t"; then
        UNAVAIL[$t]="failed: mount: $MOUNT_ERR"
        note "$t: ${UNAVAIL[$t]}"
        return 1
    fi
}

# ---- measuring -------------------------------------------------------------
# pass T KEY KIND [timed]: one pass of KIND on T. Timed passes fold into
# SEC/BYTES/COUNT/DIGEST[KEY,T] (the fastest) or ERR[KEY,T].
pass() {
    local t=$1 key=$2 kind=$3 timed=${4:-} out rc=0 s b c e d='' fsamp='' why
    local args=()
    case $kind in
    seq)   args=(seq "${ROOT[$t]}" "$WORK/large.list");;
    small) args=(small "${ROOT[$t]}" "$WORK/small.list");;
    rand)  args=(rand "${ROOT[$t]}" "$RAND_REL" "$RANDOM_READS" "$RANDOM_SEED");;
    find)  args=(cmd "${ROOT[$t]}" 'find . | wc -l');;
    ls)    args=(cmd "${ROOT[$t]}" 'ls -lR . >/dev/null');;
    esac
    if [ "$kind" = small ] && [ -n "${PID[$t]:-}" ]; then
        fsamp=$(start_sampler "${PID[$t]}" "$WORK/fds-small.$t")
    fi
    out=$(timeout "$TIMEOUT" "$PY" "$HELPER" "${args[@]}" 2>"$WORK/pass.err") || rc=$?
    stop_sampler "$fsamp"
    read -r s b c e d <<<"$out" || true
    why=
    if [ "$rc" -eq 124 ]; then
        why="timed out after $TIMEOUT s"
    elif [ "$rc" -ne 0 ] || [ -z "${s:-}" ]; then
        why="exit $rc: $(grep -v '^\s*$' "$WORK/pass.err" | tail -n 1 | cut -c1-200)"
    elif [ "${e:-}" != 0 ]; then
        why="$(grep -v '^\s*$' "$WORK/pass.err" | tail -n 1 | cut -c1-200)"
        case $kind in find|ls) why="exit $e: $why";; esac
    fi
    if [ -n "${PID[$t]:-}" ] && ! kill -0 "${PID[$t]}" 2>/dev/null; then
        why="${why:+$why; }the daemon exited: $(grep -v '^\s*$' "${MLOG[$t]}" 2>/dev/null | tail -n 1 | cut -c1-160)"
    fi
    if [ -n "$why" ]; then
        note "$(printf '%-11s %-11s failed: %s' "$t" "$key" "$why")"
        [ -z "$timed" ] || [ -n "${SEC[$key,$t]:-}" ] || ERR[$key,$t]="failed: $why"
        return 1
    fi
    [ -n "$timed" ] || return 0
    note "$(printf '%-11s %-11s %9.3f s  %s bytes  %s' "$t" "$key" "$s" "$b" "$c")"
    if [ -z "${SEC[$key,$t]:-}" ] || awk -v a="$s" -v b="${SEC[$key,$t]}" 'BEGIN { exit !(a < b) }'; then
        SEC[$key,$t]=$s BYTES[$key,$t]=$b COUNT[$key,$t]=$c DIGEST[$key,$t]=$d
        unset "ERR[$key,$t]"
    fi
}

# run_test NAME KIND: for every target, COLD_REPEAT cold passes (each after a
# remount and a cache drop), then REPEAT warm ones.
run_test() {
    local name=$1 kind=$2 t i
    for t in "${TARGETS[@]}"; do
        [ -z "${UNAVAIL[$t]:-}" ] || continue
        if [ -z "$cold_note" ]; then
            for (( i = 1; i <= COLD_REPEAT; i++ )); do
                restart_target "$t" || continue 2
                drop_caches
                pass "$t" "${name}_cold" "$kind" timed || true
            done
        else
            ensure_mounted "$t" || continue
            pass "$t" "${name}_warm" "$kind" || true   # untimed warm-up
        fi
        for (( i = 1; i <= REPEAT; i++ )); do
            ensure_mounted "$t" || continue 2
            pass "$t" "${name}_warm" "$kind" timed || true
        done
    done
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
note "REPEAT=$REPEAT COLD_REPEAT=$COLD_REPEAT RANDOM_READS=$RANDOM_READS${cold_note:+; cold passes $cold_note}"
for t in "${TARGETS[@]}"; do [ -z "${UNAVAIL[$t]:-}" ] || note "$t: ${UNAVAIL[$t]}"; done
run_test seq seq
run_test find find
run_test ls ls
run_test small small
run_test rand rand
for t in "${FUSE_TARGETS[@]}"; do umount_target "$t"; done

# ---- report ----------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else printf "?" }'; }
verdict() { awk "BEGIN { exit !($1) }" && echo "met" || echo "NOT met"; }
# fig KEY T: the row's figure (GB/s for seq, µs per read for rand, else s).
fig() {
    local k=$1 t=$2
    [ -n "${SEC[$k,$t]:-}" ] || return 1
    case $k in
    seq_*)  awk -v b="${BYTES[$k,$t]}" -v s="${SEC[$k,$t]}" 'BEGIN { printf "%.3f", b / 1e9 / s }';;
    rand_*) awk -v n="${COUNT[$k,$t]}" -v s="${SEC[$k,$t]}" 'BEGIN { printf "%.2f", s / n * 1e6 }';;
    *)      echo "${SEC[$k,$t]}";;
    esac
}
# cell KEY T: what the table shows for T in row KEY.
cell() {
    local k=$1 t=$2 f extra=
    if ! f=$(fig "$k" "$t"); then
        if [ -n "${ERR[$k,$t]:-}" ]; then echo "${ERR[$k,$t]}"
        elif [ -n "${UNAVAIL[$t]:-}" ]; then
            case "${UNAVAIL[$t]}" in unavailable*|skipped*) echo "${UNAVAIL[$t]%%:*}";; *) echo "failed";; esac
        elif [ -n "$cold_note" ] && [ "${k%_cold}" != "$k" ]; then echo "–"
        else echo "not measured"; fi
        return
    fi
    case $k in
    seq_*)   printf '%.2f' "$f";;
    rand_*)  printf '%.1f (%.0f/s)' "$f" "$(awk -v u="$f" 'BEGIN { print 1e6 / u }')";;
    small_*) printf '%.3f (%.0f MB/s)' "$f" "$(awk -v b="${BYTES[$k,$t]}" -v s="$f" 'BEGIN { print b / 1e6 / s }')";;
    *)       printf '%.3f' "$f";;
    esac
    # Checks against the native folder: the same bytes, the same count.
    if [ "$t" != native ] && [ -n "${SEC[$k,native]:-}" ]; then
        case $k in
        find_*) [ "${COUNT[$k,$t]}" = "${COUNT[$k,native]}" ] || extra=" (counts ${COUNT[$k,$t]}, native ${COUNT[$k,native]})";;
        rand_*) [ "${DIGEST[$k,$t]}" = "${DIGEST[$k,native]}" ] || extra=" (DIFFERENT BYTES from native)";;
        seq_*|small_*) [ "${BYTES[$k,$t]}" = "${BYTES[$k,native]}" ] || extra=" (read ${BYTES[$k,$t]} bytes, native ${BYTES[$k,native]})";;
        esac
    fi
    echo "$extra"
}
# speed rows: the ratio is of speeds (t's GB/s over native's); time rows: of times.
row_ratio() { # KEY T
    local a b
    if a=$(fig "$1" "$2") && b=$(fig "$1" native); then ratio "$a" "$b"; else echo "–"; fi
}

declare -A ROWNAME UNIT GOALTXT GOALEXPR
KEYS=(seq_cold seq_warm find_cold find_warm ls_cold ls_warm small_cold small_warm rand_cold rand_warm)
ROWNAME[seq_cold]="large files, sequential, cold"; UNIT[seq_cold]="GB/s"
ROWNAME[seq_warm]="large files, sequential, warm"; UNIT[seq_warm]="GB/s"
ROWNAME[find_cold]="find . \| wc -l, cold"; UNIT[find_cold]="s"
ROWNAME[find_warm]="find . \| wc -l, warm"; UNIT[find_warm]="s"
ROWNAME[ls_cold]="ls -lR, cold"; UNIT[ls_cold]="s"
ROWNAME[ls_warm]="ls -lR, warm"; UNIT[ls_warm]="s"
ROWNAME[small_cold]="$small_n small files, cold"; UNIT[small_cold]="s"
ROWNAME[small_warm]="$small_n small files, warm"; UNIT[small_warm]="s"
ROWNAME[rand_cold]="random 4 KiB reads, cold"; UNIT[rand_cold]="µs/read"
ROWNAME[rand_warm]="random 4 KiB reads, warm"; UNIT[rand_warm]="µs/read"
# Goals (issue 4), as ratios of the row's figures dstack / native.
GOALTXT[seq_warm]=">= 0.9x native";  GOALEXPR[seq_warm]="r >= 0.9"
GOALTXT[seq_cold]=">= 1x native";    GOALEXPR[seq_cold]="r >= 1"
GOALTXT[ls_warm]="<= 1.2x native";   GOALEXPR[ls_warm]="r <= 1.2"
GOALTXT[ls_cold]="<= 1.2x native";   GOALEXPR[ls_cold]="r <= 1.2"
GOALTXT[small_warm]="<= 2x native time (>= half the speed)"; GOALEXPR[small_warm]="r <= 2"
goal_cell() { # KEY
    local k=$1 a b r
    [ -n "${GOALTXT[$k]:-}" ] || { echo "–"; return; }
    if a=$(fig "$k" dstack) && b=$(fig "$k" native); then
        r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", a / b }')
        echo "${GOALTXT[$k]}: $(verdict "${GOALEXPR[$k]/r/$r}")"
    else
        echo "${GOALTXT[$k]}: –"
    fi
}

model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
rev=$(git -C "$repo_root" describe --always --dirty 2>/dev/null || echo '?')
dver=$("$DSTACK" --version 2>/dev/null | head -n 1 || true)
echo
echo "${dver:-dstack} (source $rev${dstack_id:+; binary sha256 $dstack_id}), $(nproc) cores ($model), $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg); REPEAT=$REPEAT COLD_REPEAT=$COLD_REPEAT RANDOM_READS=$RANDOM_READS"
echo "dataset: $DATA, $data_files files, $(mb "$data_bytes") MB; large files: $large_n, $(mb "$large_bytes") MB; small files: $small_n, $(mb "$small_bytes") MB; random reads in $rand_note"
if [ -n "$cold_note" ]; then
    echo "cold passes: $cold_note"
else
    echo "cold: FUSE targets unmounted and mounted again (fresh daemon), then sync; echo 3 > /proc/sys/vm/drop_caches (restic keeps its on-disk cache)"
fi
echo
printf '| test | unit | native | dstack | squashfuse%s | restic%s | dstack/native | goal (issue 4) |\n' \
    "${VERSION[squashfuse]:+ ${VERSION[squashfuse]}}" "${VERSION[restic]:+ ${VERSION[restic]}}"
echo "|---|---|---|---|---|---|---|---|"
for k in "${KEYS[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${ROWNAME[$k]}" "${UNIT[$k]}" \
        "$(cell "$k" native)" "$(cell "$k" dstack)" "$(cell "$k" squashfuse)" "$(cell "$k" restic)" \
        "$(row_ratio "$k" dstack)" "$(goal_cell "$k")"
done
echo
echo "Ratios are of the row's figures: speeds for GB/s, times for s and µs/read. Best of"
echo "$REPEAT warm and $COLD_REPEAT cold passes. Small files: seconds to read them all (MB/s)."
echo
echo "| target | setup | mounts | ready after (s) | read_ahead_kb | daemon fds: max in small files | max overall | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|"
for t in "${FUSE_TARGETS[@]}"; do
    if [ -z "${NMOUNT[$t]:-}" ]; then
        printf '| %s | %s | – | – | – | – | – | – |\n' "${LABEL[$t]}" "${UNAVAIL[$t]:-${SETUP[$t]:-–}}"
        continue
    fi
    rd=$(echo "${READY[$t]}" | tr ' ' '\n' | sort -n | awk '{ a[NR] = $1 } END { printf "%s (median of %d; first %s)", a[int((NR + 1) / 2)], NR, "'"${READY[$t]%% *}"'" }')
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" "${SETUP[$t]:-–}" "${NMOUNT[$t]}" "$rd" "${RA[$t]}" \
        "$(cat "$WORK/fds-small.$t" 2>/dev/null || echo '?')" "$(cat "$WORK/fds.$t" 2>/dev/null || echo '?')" \
        "$(awk -v k="${RSSMAX[$t]:-0}" 'BEGIN { printf "%.0f", k / 1024 }')"
done
[ -z "$umount_notes" ] || { echo; echo "note: $umount_notes"; }

echo
echo "Goals (issue 4), dstack / native (squashfuse, restic for comparison):"
goal_line() { # TEXT KEY EXPR
    local txt=$1 k=$2 a b r p peers=
    for p in squashfuse restic; do
        peers="${peers:+$peers, }$p $(row_ratio "$k" "$p")"
    done
    if a=$(fig "$k" dstack) && b=$(fig "$k" native); then
        r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", a / b }')
        echo "- $txt: $(ratio "$a" "$b"), $(verdict "${3/r/$r}") ($peers)"
    else
        local why=${UNAVAIL[dstack]:-${ERR[$k,dstack]:-not measured}}
        [ -n "${SEC[$k,native]:-}" ] || why="${ERR[$k,native]:-${cold_note:-native not measured}}"
        echo "- $txt: $why ($peers)"
    fi
}
goal_line "warm sequential read >= 0.9x native" seq_warm "r >= 0.9"
goal_line "cold sequential read >= native" seq_cold "r >= 1"
goal_line "ls -lR warm within 1.2x native (time)" ls_warm "r <= 1.2"
goal_line "ls -lR cold within 1.2x native (time)" ls_cold "r <= 1.2"
goal_line "small files warm at least half native speed (time <= 2x)" small_warm "r <= 2"
if [ -n "${NMOUNT[dstack]:-}" ]; then
    fsm=$(cat "$WORK/fds-small.dstack" 2>/dev/null || echo '')
    if [ -n "$fsm" ]; then
        echo "- no descriptor per inode (open files of the daemon during the small-files passes < 1,000; hard limit 20,000): max $fsm, $(verdict "$fsm < 1000")"
    else
        echo "- no descriptor per inode: not sampled (no daemon pid)"
    fi
else
    echo "- no descriptor per inode: ${UNAVAIL[dstack]:-not measured}"
fi
