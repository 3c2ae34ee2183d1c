"""gc removes what no run or tag reaches, keeps everything else byte-exact,
and is safe while others read and write."""
import os
import re
import shutil
import threading
import time

from conftest import (MiB, assert_same_tree, snapshot, assert_same_snapshot,
                      write_compressible, write_random)

GC_LINE = re.compile(r"^removed .* freed .+$")


def gc(ds):
    cp = ds.ok("gc")
    lines = cp.stdout.splitlines()
    assert len(lines) == 1 and GC_LINE.match(lines[0]), cp.stdout
    assert cp.stderr == ""
    return lines[0]


def make_pair(root, seed, shared=3 * MiB):
    """Folders A and B sharing one large file; each with its own data."""
    a = root / f"a{seed}"
    b = root / f"b{seed}"
    write_random(a / "shared.bin", shared, seed=seed)
    write_random(a / "only-a.bin", 2 * MiB, seed=seed + 1000)
    write_compressible(a / "log.txt", 256 * 1024, seed=seed)
    b.mkdir(parents=True)
    shutil.copy(a / "shared.bin", b / "shared.bin")
    write_random(b / "only-b.bin", 1 * MiB, seed=seed + 2000)
    (b / "note.txt").write_text(f"b{seed}\n")
    return a, b


def test_gc_on_a_fresh_or_clean_store_removes_nothing(ds, tmp_path):
    gc(ds)
    src = tmp_path / "src"
    write_random(src / "x", MiB, seed=1)
    ds.add("t", src)
    before = ds.pack_bytes()
    line = gc(ds)
    assert line.startswith("removed 0 objects"), line
    assert ds.pack_bytes() == before
    ds.download(":t", tmp_path / "out")
    assert_same_tree(src, tmp_path / "out" / "src")


def test_rm_frees_nothing_gc_frees_it_and_shared_data_survives(ds, tmp_path):
    a, b = make_pair(tmp_path, 1)
    run_a = ds.add("a", a)
    ds.add("b", b)
    full = ds.pack_bytes()

    ds.ok("tags", "delete", "a")
    ds.ok("rm", run_a)
    assert ds.pack_bytes() == full, "rm alone must not free storage"
    ds.fsck_clean()

    gc(ds)
    after = ds.pack_bytes()
    # only-a.bin (2 MiB, incompressible) and the log are gone.
    assert after < full - int(1.9 * MiB), (full, after)
    # shared.bin and only-b.bin stay.
    assert after > 4 * MiB
    ds.fsck_clean()

    out = tmp_path / "out"
    ds.download(":b", out)
    assert_same_tree(b, out / "b1")

    # A second gc finds nothing more.
    assert gc(ds).startswith("removed 0 objects")
    assert ds.pack_bytes() == after
    ds.fsck_clean()


def test_gc_removes_data_of_a_deleted_tag_only_once_the_run_is_gone(ds, tmp_path):
    src = tmp_path / "src"
    write_random(src / "x.bin", 2 * MiB, seed=3)
    run1 = ds.add("t", src)
    full = ds.pack_bytes()
    ds.ok("tags", "delete", "t")
    # The run still exists (untagged): its data is reachable.
    gc(ds)
    assert ds.pack_bytes() == full
    ds.download(run1, tmp_path / "out")
    assert_same_tree(src, tmp_path / "out" / "src")
    ds.ok("rm", run1)
    gc(ds)
    assert ds.pack_bytes() < 64 * 1024
    ds.fsck_clean()
    # The store works on after everything went.
    ds.add("t2", src)
    ds.download(":t2", tmp_path / "out2")
    assert_same_tree(src, tmp_path / "out2" / "src")
    ds.fsck_clean()


def test_data_stored_again_after_gc_is_intact(ds, tmp_path):
    """gc also forgets the stat cache: re-adding the same folder after its
    data was collected must store the bytes again, not name dead chunks."""
    src = tmp_path / "src"
    write_random(src / "x.bin", 2 * MiB, seed=4)
    os.utime(src / "x.bin", (time.time() - 3600,) * 2)
    time.sleep(2.5)
    run1 = ds.add("t", src)
    ds.ok("tags", "delete", "t")
    ds.ok("rm", run1)
    gc(ds)
    ds.add("t", src)
    ds.fsck_clean()
    ds.download(":t", tmp_path / "out")
    assert_same_tree(src, tmp_path / "out" / "src")


def test_gc_while_readers_download(ds, tmp_path):
    pairs = [make_pair(tmp_path / "data", seed, 8 * MiB) for seed in range(1, 7)]
    runs_a = []
    for i, (a, b) in enumerate(pairs):
        runs_a.append(ds.add(f"a{i}", a))
        ds.add(f"b{i}", b)
    want = [snapshot(b) for _, b in pairs]
    full = ds.pack_bytes()

    stop = threading.Event()
    failures = []
    counts = [0, 0]

    def reader(k):
        n = 0
        while not stop.is_set() or n < 2:
            i = (n + k) % len(pairs)
            out = tmp_path / f"r{k}-{n}"
            cp = ds("artifacts", "download", f":b{i}", "-o", out)
            if cp.returncode != 0:
                failures.append(f"reader {k} #{n}: {cp.returncode} {cp.stderr.strip()}")
            else:
                try:
                    assert_same_snapshot(want[i], snapshot(out / f"b{i + 1}"))
                except AssertionError as e:
                    failures.append(f"reader {k} #{n}: {e}")
            shutil.rmtree(out, ignore_errors=True)
            n += 1
            counts[k] = n

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    try:
        for i, run_a in enumerate(runs_a):
            ds.ok("tags", "delete", f"a{i}")
            ds.ok("rm", run_a)
            gc(ds)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert not failures, "\n".join(failures[:10])
    assert all(c >= 2 for c in counts), counts
    assert ds.pack_bytes() < full - len(pairs) * 2 * MiB
    ds.fsck_clean()


def test_gc_while_an_ingest_runs(ds, tmp_path):
    """gc during `tags add` must not take chunks the ingest relies on."""
    base = tmp_path / "base"
    write_random(base / "common.bin", 4 * MiB, seed=8)
    run0 = ds.add("base", base)
    # The new folder shares common.bin with a run about to become garbage.
    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(base / "common.bin", new / "common.bin")
    write_random(new / "big.bin", 40 * MiB, seed=9)
    ds.ok("tags", "delete", "base")
    ds.ok("rm", run0)

    proc = ds.popen("tags", "add", "new", "-a", new)
    for _ in range(3):
        gc(ds)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    gc(ds)
    ds.fsck_clean()
    ds.download(":new", tmp_path / "out")
    assert_same_tree(new, tmp_path / "out" / "new")


def test_gc_keeps_live_small_files_sharing_storage_with_dead_ones(ds, tmp_path):
    """Small files stored together (one ingest) where only some stay live:
    gc must keep every byte of the live ones."""
    both = tmp_path / "both"
    keep = tmp_path / "keep"
    for i in range(400):
        data = f"file {i}\n".encode() * (i + 1)
        (both / "x").mkdir(parents=True, exist_ok=True)
        (both / "x" / f"{i}.txt").write_bytes(data)
        if i % 2 == 0:
            (keep / "x").mkdir(parents=True, exist_ok=True)
            (keep / "x" / f"{i}.txt").write_bytes(data)
    run_both = ds.add("both", both)
    ds.add("keep", keep)
    ds.ok("tags", "delete", "both")
    ds.ok("rm", run_both)
    gc(ds)
    ds.fsck_clean()
    ds.download(":keep", tmp_path / "out")
    assert_same_tree(keep, tmp_path / "out" / "keep")
    # And again after a second gc and a new ingest of the dead half.
    gc(ds)
    ds.add("both2", both)
    ds.download(":both2", tmp_path / "out2")
    assert_same_tree(both, tmp_path / "out2" / "both")
    ds.fsck_clean()
