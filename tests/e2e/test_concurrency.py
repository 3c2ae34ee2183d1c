"""Several writers at once: one writer at a time in the catalog, all of them
succeed, and everything stored comes back byte-exact."""
import shutil
import subprocess
import threading

from conftest import (MiB, RUN_NAME, assert_error, assert_same_tree,
                      write_compressible, write_random)


def make(root, seed, size):
    write_random(root / "r.bin", size, seed=seed)
    write_compressible(root / "log.txt", size // 4, seed=seed)
    for i in range(20):
        (root / "many" / f"{i}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "many" / f"{i}.txt").write_text(f"{seed}:{i}\n")
    return root


def test_two_adds_at_once(ds, tmp_path):
    one = make(tmp_path / "one", 1, 30 * MiB)
    two = make(tmp_path / "two", 2, 30 * MiB)
    ds.ok("tags", "list")  # the store exists before the race
    procs = [ds.popen("tags", "add", "one", "-a", one),
             ds.popen("tags", "add", "two", "-a", two)]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert RUN_NAME.match(out.strip()), out
    assert results[0][0] != results[1][0]
    tags = ds.tags()
    assert sorted(tags) == ["one", "two"]
    for tag, src in (("one", one), ("two", two)):
        ds.download(f":{tag}", tmp_path / f"out-{tag}")
        assert_same_tree(src, tmp_path / f"out-{tag}" / src.name)
    ds.fsck_clean()
    assert ds.tmp_entries() == []


def test_two_adds_on_a_fresh_home(ds, tmp_path):
    """Both processes create and migrate the catalog at once."""
    one = make(tmp_path / "one", 3, 2 * MiB)
    two = make(tmp_path / "two", 4, 2 * MiB)
    procs = [ds.popen("tags", "add", "one", "-a", one),
             ds.popen("tags", "add", "two", "-a", two)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    for tag, src in (("one", one), ("two", two)):
        ds.download(f":{tag}", tmp_path / f"out-{tag}")
        assert_same_tree(src, tmp_path / f"out-{tag}" / src.name)
    ds.fsck_clean()


def test_same_data_from_two_writers_at_once(ds, tmp_path):
    """Two writers storing the same chunks race to record them."""
    one = make(tmp_path / "x" / "data", 5, 20 * MiB)
    two = tmp_path / "y" / "data"
    shutil.copytree(one, two)
    ds.ok("tags", "list")
    procs = [ds.popen("tags", "add", "one", "-a", one),
             ds.popen("tags", "add", "two", "-a", two)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    for tag in ("one", "two"):
        ds.download(f":{tag}", tmp_path / f"out-{tag}")
        assert_same_tree(one, tmp_path / f"out-{tag}" / "data")
    ds.fsck_clean()


def test_one_tag_two_writers_exactly_one_wins(ds, tmp_path):
    one = make(tmp_path / "one", 6, 4 * MiB)
    two = make(tmp_path / "two", 7, 4 * MiB)
    ds.ok("tags", "list")
    procs = [ds.popen("tags", "add", "same", "-a", one),
             ds.popen("tags", "add", "same", "-a", two)]
    results = [(p, *p.communicate(timeout=120)) for p in procs]
    winners = [r for r in results if r[0].returncode == 0]
    losers = [r for r in results if r[0].returncode != 0]
    assert len(winners) == 1 and len(losers) == 1, [(r[0].returncode, r[2]) for r in results]
    proc, out, err = losers[0]
    assert_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
                 "same", "exists")
    assert out == ""
    won = one if winners[0][0] is procs[0] else two
    ds.download(":same", tmp_path / "out")
    assert_same_tree(won, tmp_path / "out" / won.name)
    ds.fsck_clean()


def test_readers_during_a_write(ds, tmp_path):
    base = make(tmp_path / "base", 8, 4 * MiB)
    ds.add("base", base)
    big = make(tmp_path / "big", 9, 40 * MiB)
    proc = ds.popen("tags", "add", "big", "-a", big)
    n = 0
    while proc.poll() is None or n < 2:
        out = tmp_path / f"r{n}"
        ds.download(":base", out)
        assert_same_tree(base, out / "base")
        ds.ok("tags", "list")
        shutil.rmtree(out)
        n += 1
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    ds.download(":big", tmp_path / "big-out")
    assert_same_tree(big, tmp_path / "big-out" / "big")


def test_ingests_while_other_commands_keep_starting(ds, tmp_path):
    """Every command that opens the store cleans temp files left by dead
    writers; it must never take those of a live one, however the two
    interleave."""
    ds.ok("tags", "list")
    stop = threading.Event()
    failures = []

    def opener():
        while not stop.is_set():
            cp = ds("tags", "list")
            if cp.returncode != 0:
                failures.append(f"tags list: {cp.stderr.strip()}")

    threads = [threading.Thread(target=opener) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for k in range(25):
            src = tmp_path / f"d{k}"
            write_random(src / "a.bin", 600_000, seed=k)
            write_random(src / "b.bin", 600_000, seed=k + 100)
            cp = ds("tags", "add", f"t{k}", "-a", src)
            if cp.returncode != 0:
                failures.append(f"tags add t{k}: {cp.stderr.strip()}")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures, "\n".join(failures[:10])
    for k in range(0, 25, 6):
        ds.download(f":t{k}", tmp_path / f"out{k}")
        assert_same_tree(tmp_path / f"d{k}", tmp_path / f"out{k}" / f"d{k}")
    ds.fsck_clean()
