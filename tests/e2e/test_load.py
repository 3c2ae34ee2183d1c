"""The /dstack tree under load (issue "Reliability", Load).

Sixteen readers read artifacts and logs through the mount, comparing
every byte, while writers start runs through ctl and `dstack rm` and
`dstack gc` delete other runs' data beneath them: no reader ever gets a
wrong byte, or an error for a run that is done and not deleted, and the
daemon's memory stays below a bound measured here.  Then a thousand runs
through ctl leak nothing: the daemon's descriptors come back to what
they were after the first fifty runs, its memory barely grows from run
100 to run 1000, and LeakSanitizer finds nothing when it exits.
"""
import collections
import errno
import os
import queue
import random
import re
import subprocess
import threading
import time

import pytest

from conftest import BIN, MiB, assert_ok, describe, git, make_repo, wait_for, write_random
from test_fs import (FINAL, Tree, asan_reports, ctl, daemon_pids, is_mounted, mount_env,
                     unmount_all)

ASAN = "asan" in str(BIN)

SHARED_SIZE = 3 * MiB + 4321        # the same in every run: stored once
SHARED_SEED = 77
UNIQUE_LINES = 100000               # "run SEED N": about 1.5 MB, each run's own
LOG_LINES = 300

WORKFLOWS = """\
    workflows:
      - name: load
        provider: bash
        commands:
          - mkdir -p out
          - cp data/shared.bin out/
          - seq -f "run ${{ run.args }} %%g" 1 %(unique)d > out/unique.txt
          - for i in $(seq 1 %(lines)d); do echo "run ${{ run.args }} line $i"; done
        artifacts:
          - out

      - name: tick
        provider: bash
        commands:
          - echo tick
    """ % {"unique": UNIQUE_LINES, "lines": LOG_LINES}

# Peak RSS (VmHWM) of the daemon serving sixteen readers while two runs
# at a time store their files: measured at 74 to 97 MiB plain and 113 MiB
# under ASan.  The chunk cache holds the chunks read (at most 64 MiB; here
# some 25), the FUSE loop a 1 MiB buffer per thread, and each run being
# stored some 30 MiB of ingest buffers, which glibc keeps for the next.
PEAK_BOUND = (192 if ASAN else 160) * MiB
# RSS growth from run 100 to run 1000: the tree's nodes of the runs looked
# at (they live until unmount) and the SQLite page cache of each store
# handle (up to 2 MB each, 17 of them), which fills as the catalog grows,
# and under ASan its quarantine filling (up to 16 MiB, quarantine_size_mb
# in tests/run-all.sh); measured at 1 MiB plain, 5 to 14 MiB under ASan.
# libgit2's regex leak (20 KiB a config entry a run) was 380 MiB here.
GROWTH_BOUND = (24 if ASAN else 8) * MiB


def mounted(ds, tmp_path, shared_size):
    """A repository (with a data file of shared_size, if any) mounted at
    tmp_path/mnt; unmounted at the end, the daemon gone, no ASan report."""
    repo = make_repo(tmp_path / "repo", WORKFLOWS)
    if shared_size:
        write_random(repo / "data" / "shared.bin", shared_size, seed=SHARED_SEED)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "data")
    # Users' repositories have remotes; each run reads them from the config.
    git(repo, "remote", "add", "origin", "https://example.com/load.git")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        assert_ok(ds("mount", mnt, cwd=repo, env=mount_env(tmp_path), timeout=60))
        assert daemon_pids(mnt), "no daemon serves the tree"
        yield Tree(ds, repo, mnt, 0, tmp_path)
    finally:
        unmount_all(ds, mnt)
        assert not is_mounted(mnt) and not daemon_pids(mnt), "a mount or daemon was left"
        reports = asan_reports(tmp_path)
        assert not reports, "ASan report of the daemon:\n" + "\n".join(
            p.read_text(errors="replace")[-6000:] for p in reports)


@pytest.fixture
def load_tree(ds, tmp_path):
    """The repository holds data/shared.bin, which `load` runs copy out."""
    yield from mounted(ds, tmp_path, SHARED_SIZE)


@pytest.fixture
def tick_tree(ds, tmp_path):
    """Nothing but the workflows: every job starts from a copy of the
    repository, and `tick` runs should cost as little as runs can."""
    yield from mounted(ds, tmp_path, 0)


# --------------------------------------------------------------------------
# Helpers


def proc_status(pid):
    """/proc/PID/status as {key: value}, sizes in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, value = line.split(":", 1)
            value = value.split()
            if len(value) == 2 and value[1] == "kB":
                out[key] = int(value[0]) * 1024
            elif len(value) == 1 and value[0].isdigit():
                out[key] = int(value[0])
    return out


def descriptors(pid, home):
    """What the daemon holds open, by kind: a file of the store by its
    name there (a pack as "packs/"), pipe, socket, /dev/fuse, ..."""
    kinds = collections.Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith(str(home) + "/"):
            target = target[len(str(home)) + 1:]
            target = "packs/" if target.startswith("packs/") else target
        kinds[re.sub(r":\[\d+\]$", "", target)] += 1
    return kinds


def settled(pid, home):
    """(descriptors, thread count) once two looks 0.3 s apart agree: the
    threads of the runs that just ended are gone."""
    last = None
    for _ in range(100):
        now = (descriptors(pid, home), proc_status(pid)["Threads"])
        if now == last:
            return now
        last = now
        time.sleep(0.3)
    return last


def grow_fuse_loop(t, name, readers=48, seconds=1.0):
    """Keeps every thread of the FUSE loop busy for a while: readers
    reading a run's info file over and over."""
    end = time.monotonic() + seconds

    def reader():
        while time.monotonic() < end:
            t.run(name, "info").read_bytes()

    threads = [threading.Thread(target=reader) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)


def unique_bytes(seed):
    return "".join(f"run {seed} {i}\n" for i in range(1, UNIQUE_LINES + 1)).encode()


def log_bytes(seed):
    return "".join(f"run {seed} line {i}\n" for i in range(1, LOG_LINES + 1)).encode()


def run_files(seed, shared):
    """{path under runs/NAME: bytes} of a `load SEED` run."""
    unique = unique_bytes(seed)
    logs = log_bytes(seed)
    files = {}
    for base in ("artifacts", "jobs/0/artifacts"):
        files[f"{base}/out/shared.bin"] = shared
        files[f"{base}/out/unique.txt"] = unique
    files["logs"] = files["jobs/0/logs"] = logs
    return files


def status_of(t, name):
    try:
        return t.run(name, "status").read_text().strip()
    except FileNotFoundError:
        return None


def start_all(t, lines):
    """One write of lines to the root ctl; the runs' names."""
    code, names = ctl(t.path("ctl"), "".join(line + "\n" for line in lines))
    assert code == 0, f"ctl: {errno.errorcode.get(code)} {names}"
    assert len(names) == len(lines), names
    return names


def wait_done(t, names, timeout=300):
    for name in names:
        assert wait_for(lambda: status_of(t, name) in FINAL, timeout=timeout), \
            f"{name} did not end: {status_of(t, name)}"
        assert status_of(t, name) == "done", (name, t.run(name, "logs").read_text()[-2000:])


def read_whole(path, how):
    """The whole file, read as a user would: cat, or open and read (the
    page cache dropped first, so the daemon serves every byte)."""
    if how == "cat":
        cp = subprocess.run(["cat", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=60)
        if cp.returncode != 0:
            raise OSError(errno.EIO, f"cat: {cp.stderr.decode(errors='replace').strip()}")
        return cp.stdout
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 17)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def read_range(path, want, rng):
    """(what one pread at a random place read, what it should have): a
    size and offset of its own, past the end at times."""
    off = rng.randrange(0, len(want) + 100)
    size = rng.choice([1, 4095, 65537, 300000, MiB + 3])
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return os.pread(fd, size, off), want[off:off + size]
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# 1. Sixteen readers while runs are written, removed and collected

READERS = 16
WRITERS = 2
LOAD_SECONDS = 10


def test_sixteen_readers_during_runs_and_gc(load_tree):
    t = load_tree
    [pid] = daemon_pids(t.mnt)
    shared = (t.repo / "data" / "shared.bin").read_bytes()
    # Readers read kept runs from start to end; doomed runs only until
    # `dstack rm` and `gc` take them away, beneath the readers.
    kept_seeds, doomed_seeds = range(1, 7), range(101, 107)
    names = []
    for pair in zip(kept_seeds, doomed_seeds):
        # Two at a time, as the writers below: each run storing its files
        # holds buffers of its own, and the bound is for this load.
        names += start_all(t, [f"load {s}" for s in pair])
        wait_done(t, names[-2:])
    names = names[0::2] + names[1::2]
    seed_of = dict(zip(names, [*kept_seeds, *doomed_seeds]))
    kept, doomed = names[:len(kept_seeds)], names[len(kept_seeds):]
    expected = {name: run_files(seed, shared) for name, seed in seed_of.items()}

    stop = threading.Event()
    removing = set()                 # runs whose `dstack rm` has begun
    problems = []
    reads = [0] * READERS
    started, removed = [], []
    finished = queue.Queue()         # writers' runs that are done, for the remover

    def reader(k):
        rng = random.Random(k)
        while not stop.is_set() and len(problems) < 20:
            name = rng.choice(kept + doomed)
            rel, want = rng.choice(sorted(expected[name].items()))
            path = t.run(name, *rel.split("/"))
            how = "cat" if reads[k] % 8 == 0 else rng.choice(("read", "range"))
            try:
                if how == "range":
                    got, want = read_range(path, want, rng)
                else:
                    got = read_whole(path, how)
            except OSError as e:
                # Only a run being deleted may fail, and only as gone or unreadable.
                if name not in removing or e.errno not in (errno.ENOENT, errno.EIO):
                    problems.append(f"reader {k}: {how} {name}/{rel}: {e!r}")
                continue
            if got != want:
                problems.append(f"reader {k}: {how} {name}/{rel}: wrong bytes "
                                f"({len(got)} read, {len(want)} expected)")
            reads[k] += 1

    def writer(w):
        seed = 1000 * (w + 1)
        while not stop.is_set():
            code, answer = ctl(t.path("ctl"), f"load {seed}\n")
            if code != 0 or len(answer) != 1:
                problems.append(f"writer {w}: ctl answered {errno.errorcode.get(code)} {answer}")
                return
            started.append(answer[0])
            if not wait_for(lambda: status_of(t, answer[0]) in FINAL, timeout=120):
                problems.append(f"writer {w}: {answer[0]} did not end")
                return
            finished.put(answer[0])
            seed += 1

    def rm_and_gc(name):
        removing.add(name)
        for args in (("rm", name), ("gc",)):
            cp = t.ds(*args, cwd=t.repo, timeout=120)
            if cp.returncode != 0:
                problems.append("remover: " + describe(cp))
        removed.append(name)

    def remover():
        # The doomed runs one by one (all of them, however long it takes),
        # then the writers' runs as they end.
        for name in doomed:
            rm_and_gc(name)
        while not stop.is_set():
            try:
                rm_and_gc(finished.get(timeout=0.2))
            except queue.Empty:
                pass

    threads = ([threading.Thread(target=reader, args=(k,)) for k in range(READERS)] +
               [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)] +
               [threading.Thread(target=remover)])
    began = time.monotonic()
    for thread in threads:
        thread.start()
    stop.wait(LOAD_SECONDS)
    stop.set()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    took = time.monotonic() - began
    peak = proc_status(pid)["VmHWM"]
    print(f"\n16 readers: {sum(reads)} reads in {took:.1f} s ({reads}); "
          f"{len(started)} runs started, {len(removed)} removed (rm + gc each); "
          f"daemon peak RSS {peak / MiB:.1f} MiB")

    assert not problems, "\n".join(problems[:20])
    assert all(reads), f"a reader read nothing: {reads}"
    assert peak < PEAK_BOUND, \
        f"daemon peak RSS {peak / MiB:.1f} MiB, bound {PEAK_BOUND / MiB:.0f} MiB"

    # Every run started is done, or was removed once done; what remains
    # reads right, what was removed is gone, and the store is whole.
    wait_done(t, [n for n in started if n not in removed])
    for name in kept:
        for rel, want in expected[name].items():
            assert read_whole(t.run(name, *rel.split("/")), "read") == want, (name, rel)
    assert wait_for(lambda: not set(removed) & set(os.listdir(t.path("runs"))), timeout=5), \
        "removed runs still listed"
    t.ds.fsck_clean()


# --------------------------------------------------------------------------
# 2. A thousand runs leak nothing

TICK_WRITERS = 4
TICK_LINES = 25                     # runs a writer starts with one write


def test_a_thousand_runs_leak_nothing(tick_tree):
    t = tick_tree
    [pid] = daemon_pids(t.mnt)
    names = []
    lock = threading.Lock()
    began = time.monotonic()

    def runs(writers, writes, lines):
        """writers threads at once, each writing `lines` tick lines to ctl
        `writes` times, waiting for its runs to end before the next write."""
        errors = []

        def writer():
            try:
                for _ in range(writes):
                    batch = start_all(t, ["tick"] * lines)
                    wait_done(t, batch)
                    with lock:
                        names.extend(batch)
            except AssertionError as e:
                errors.append(str(e))

        threads = [threading.Thread(target=writer) for _ in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=900)
        assert not errors, errors

    runs(2, 1, TICK_LINES)
    # The FUSE loop starts a thread whenever all of its threads are busy,
    # up to 16, and each keeps a store handle (descriptors of the catalog)
    # from its first request on: 48 readers for a second grow it to all
    # 16, so that what it holds now is what it may hold at run 1000.
    grow_fuse_loop(t, names[0])
    fds_50, threads_50 = settled(pid, t.ds.home)
    runs(2, 1, TICK_LINES)
    settled(pid, t.ds.home)
    rss_100 = proc_status(pid)["VmRSS"]
    runs(TICK_WRITERS, 900 // (TICK_WRITERS * TICK_LINES), TICK_LINES)
    fds_1000, threads_1000 = settled(pid, t.ds.home)
    rss_1000 = proc_status(pid)["VmRSS"]
    took = time.monotonic() - began
    pool = lambda fds: fds["catalog.db"] - fds["catalog.db-wal"]
    print(f"\n1000 runs in {took:.1f} s; descriptors {sum(fds_50.values())} after 50 runs "
          f"({threads_50} threads, SQLite's pool {pool(fds_50)}), {sum(fds_1000.values())} "
          f"after 1000 ({threads_1000} threads, pool {pool(fds_1000)}); "
          f"RSS {rss_100 / MiB:.1f} MiB at run 100, {rss_1000 / MiB:.1f} MiB at run 1000")

    assert len(names) == 1000 and len(set(names)) == 1000
    # Closing any descriptor of a file drops every POSIX lock the process
    # holds on it, so SQLite keeps a closed connection's descriptor of
    # catalog.db while other connections hold locks, and hands it to the
    # next connection it opens: a pool (descriptors of catalog.db beyond
    # one per connection, which has one of the WAL) as large as the most
    # connections ever open at once.  A live run has two (its run thread's
    # and its job's), and at most TICK_WRITERS x TICK_LINES runs are in
    # flight; a descriptor lost per run would be hundreds.
    without_pool = lambda fds: fds - collections.Counter({"catalog.db": pool(fds)})
    assert without_pool(fds_1000) == without_pool(fds_50), \
        f"descriptors after 50 runs ({threads_50} threads): {dict(fds_50)}\n" \
        f"after 1000 ({threads_1000} threads): {dict(fds_1000)}"
    assert pool(fds_1000) <= 2 * TICK_WRITERS * TICK_LINES, dict(fds_1000)
    assert rss_1000 - rss_100 < GROWTH_BOUND, \
        f"RSS grew {(rss_1000 - rss_100) / MiB:.1f} MiB from run 100 to run 1000"

    # The daemon exits at unmount; LeakSanitizer then reports what it lost.
    assert_ok(t.ds("umount", t.mnt, timeout=60))
    assert wait_for(lambda: not daemon_pids(t.mnt), timeout=60), "the daemon did not exit"
    assert not asan_reports(t.tmp), "\n".join(
        p.read_text(errors="replace")[-6000:] for p in asan_reports(t.tmp))
