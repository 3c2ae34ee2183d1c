"""SIGKILL in the middle of `tags add`: what was stored stays intact, the
store stays consistent, temp files are cleaned, and the next ingest works."""
import os
import random
import shutil
import signal
import time

import pytest

from conftest import (MiB, assert_same_snapshot, assert_same_tree, snapshot,
                      write_random)

BIG_FILES = 4
BIG_FILE_SIZE = 50 * MiB


@pytest.fixture(scope="session")
def big_tree(tmp_path_factory):
    """About 200 MiB of incompressible data, made once per session."""
    root = tmp_path_factory.mktemp("big") / "big"
    for i in range(BIG_FILES):
        write_random(root / f"part{i}.bin", BIG_FILE_SIZE)
    (root / "meta").mkdir()
    (root / "meta" / "info.txt").write_text("a large artifact\n")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def perturb(root, rng):
    """Makes every chunk of every large file new (a few bytes every 128 KiB),
    so the next ingest has 200 MiB to store, not to dedup."""
    stamp = rng.randbytes(16)
    for i in range(BIG_FILES):
        fd = os.open(root / f"part{i}.bin", os.O_WRONLY)
        try:
            for off in range(0, BIG_FILE_SIZE, 128 * 1024):
                os.pwrite(fd, stamp, off + 1000)
        finally:
            os.close(fd)


def test_sigkill_during_ingest(ds, tmp_path, big_tree):
    seed = int(os.environ.get("DSTACK_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"DSTACK_CRASH_SEED={seed}")

    base = tmp_path / "base"
    write_random(base / "b.bin", 3 * MiB, seed=21)
    (base / "t.txt").write_text("base\n")
    os.symlink("t.txt", base / "link")
    ds.add("base", base)

    # One uncut ingest tells how long a whole one takes here, so the kills
    # can land anywhere from start-up to the final commit.
    perturb(big_tree, rng)
    start = time.monotonic()
    ds.add("whole", big_tree)
    whole = min(max(time.monotonic() - start, 0.5), 3.0)
    whole_snapshot = snapshot(big_tree)
    delays = [0.05] + sorted(rng.uniform(0.1, 1.15 * whole) for _ in range(4))
    survived = []
    snapshots = {}
    for attempt, delay in enumerate(delays):
        perturb(big_tree, rng)
        snapshots[f"crash{attempt}"] = snapshot(big_tree)
        proc = ds.popen("tags", "add", f"crash{attempt}", "-a", big_tree)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        print(f"attempt {attempt}: delay {delay:.2f}s exit {proc.returncode}"
              f" temp files {len(ds.tmp_entries())}")
        if proc.returncode == 0:
            survived.append(f"crash{attempt}")
        else:
            assert proc.returncode == -signal.SIGKILL, (proc.returncode, err)

        where = f"attempt {attempt} (killed after {delay:.2f}s, seed {seed})"
        out_dir = tmp_path / f"out{attempt}"
        cp = ds("artifacts", "download", ":base", "-o", out_dir)
        assert cp.returncode == 0, f"{where}: {cp.stderr}"
        assert_same_tree(base, out_dir / "base")

        cp = ds("fsck")
        assert cp.returncode == 0 and cp.stdout == "", f"{where}:\n{cp.stdout}{cp.stderr}"

        tags = ds.tags()
        assert ds.tmp_entries() == [], f"{where}: temp files left: {ds.tmp_entries()}"
        assert "base" in tags
        # A kill after the commit (the process was still exiting) keeps
        # the tag: then the tagged data must be whole, as it was stored.
        for name in tags:
            if name.startswith("crash") and name not in survived:
                got = tmp_path / f"got-{name}"
                ds.download(f":{name}", got)
                assert_same_snapshot(snapshots[name], snapshot(got / "big"), name)
                shutil.rmtree(got)
                survived.append(name)

    # Killed ingests leave packs no catalog row names: gc removes them.
    ds.ok("gc")
    assert set(p.name for p in ds.pack_files()) == ds.catalog_packs()
    ds.fsck_clean()

    perturb(big_tree, rng)
    ds.add("final", big_tree)
    out_dir = tmp_path / "final"
    ds.download(":final", out_dir)
    assert_same_tree(big_tree, out_dir / "big")
    shutil.rmtree(out_dir)
    # The large ingest that finished before the kills is intact too.
    ds.download(":whole", out_dir)
    assert_same_snapshot(whole_snapshot, snapshot(out_dir / "big"), ":whole")
    ds.fsck_clean()
    assert ds.tmp_entries() == []
    # Leave no gigabyte behind in the kept temp folders.
    shutil.rmtree(out_dir)
    shutil.rmtree(ds.home)


def test_memory_stays_bounded(ds, tmp_path, big_tree):
    """Ingest and download stream: peak RSS well under 100 MiB for 200 MiB."""
    perturb(big_tree, random.Random())
    cp, rss = ds.run_rusage("tags", "add", "big", "-a", big_tree)
    assert cp.returncode == 0, cp.stderr
    assert rss < 100 * MiB, f"ingest peak RSS {rss / MiB:.1f} MiB"
    out = tmp_path / "out"
    cp, rss = ds.run_rusage("artifacts", "download", ":big", "-o", out)
    assert cp.returncode == 0, cp.stderr
    assert rss < 100 * MiB, f"download peak RSS {rss / MiB:.1f} MiB"
    assert_same_tree(big_tree, out / "big")
    shutil.rmtree(out)
    shutil.rmtree(ds.home)
