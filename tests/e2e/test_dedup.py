"""Identical content is stored once; a change re-stores only what changed;
an unchanged folder is re-ingested from the stat cache without being read,
and the cache never hides a change."""
import os
import shutil
import time

from conftest import (MiB, OpenWatch, assert_same_tree, set_tree_mtime,
                      wait_ctime_settled, write_compressible, write_random)


def make_folder(root, seed):
    write_random(root / "weights.bin", 8 * MiB, seed=seed)
    write_compressible(root / "log.txt", 2 * MiB, seed=seed)
    for i in range(50):
        (root / "small" / f"{i:03d}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "small" / f"{i:03d}.txt").write_text(f"small file {i} of {seed}\n" * (i + 1))
    return root


def test_same_folder_twice_adds_almost_nothing(ds, tmp_path):
    src = make_folder(tmp_path / "src", 1)
    ds.add("first", src)
    after_first = ds.pack_bytes()
    assert after_first > 8 * MiB, "the random file must be stored"
    ds.add("second", src)
    after_second = ds.pack_bytes()
    assert after_second - after_first < 64 * 1024, (after_first, after_second)
    for tag in ("first", "second"):
        out = tmp_path / f"out-{tag}"
        ds.download(f":{tag}", out)
        assert_same_tree(src, out / "src")
    ds.fsck_clean()


def test_same_content_in_other_folders_is_stored_once(ds, tmp_path):
    a = make_folder(tmp_path / "a", 7)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    # Same bytes under other names and places too.
    (b / "renamed").mkdir()
    shutil.copy(a / "weights.bin", b / "renamed" / "copy-of-weights")

    ds.add("a", a)
    one_copy = ds.pack_bytes()
    ds.add("b", b)
    assert ds.pack_bytes() - one_copy < 64 * 1024

    # Within one ingest too: a fresh store given both folders at once.
    other = type(ds)(tmp_path / "other-home")
    c = tmp_path / "c" / "weights"
    c.mkdir(parents=True)
    shutil.copy(a / "weights.bin", c / "one")
    shutil.copy(a / "weights.bin", c / "two")
    shutil.copy(a / "weights.bin", c / "three")
    other.add("c", c)
    assert other.pack_bytes() < 8 * MiB * 1.1, other.pack_bytes()

    for tag, src in (("a", a), ("b", b)):
        out = tmp_path / f"out-{tag}"
        ds.download(f":{tag}", out)
        assert_same_tree(src, out / src.name)
    other.download(":c", tmp_path / "out-c")
    assert_same_tree(c, tmp_path / "out-c" / "weights")


def test_small_change_in_a_large_file_restores_little(ds, tmp_path):
    src = tmp_path / "ckpt"
    big = write_random(src / "model.bin", 20 * MiB, seed=42)
    ds.add("v1", src)
    before = ds.pack_bytes()
    assert before >= 20 * MiB

    # Overwrite 100 bytes in the middle, keeping the size.
    with open(big, "r+b") as f:
        f.seek(10 * MiB + 12345)
        f.write(os.urandom(100))
    ds.add("v2", src)
    added = ds.pack_bytes() - before
    assert added < 0.25 * 20 * MiB, f"{added} bytes added for a 100-byte change"

    # Insert bytes near the start: content-defined chunking keeps the rest.
    data = big.read_bytes()
    big.write_bytes(data[:3 * MiB] + b"inserted!" * 7 + data[3 * MiB:])
    before = ds.pack_bytes()
    ds.add("v3", src)
    added = ds.pack_bytes() - before
    assert added < 0.25 * 20 * MiB, f"{added} bytes added for a 63-byte insertion"

    out = tmp_path / "out"
    ds.download(":v3", out)
    assert_same_tree(src, out / "ckpt")
    ds.fsck_clean()


def test_unchanged_reingest_uses_the_stat_cache_and_sees_changes(ds, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    names = [f"f{i}.bin" for i in range(6)]
    for i, name in enumerate(names):
        write_random(src / name, 200_000 + i, seed=100 + i)
    write_random(src / "big.bin", 3 * MiB, seed=99)
    names.append("big.bin")
    old = time.time() - 3600
    set_tree_mtime(src, old)
    wait_ctime_settled(src)

    watch = OpenWatch(src)
    try:
        watch.drain()
        ds.add("t1", src)
        opened = watch.drain()
        assert opened >= set(names), f"first ingest must read every file: {opened}"

        ds.add("t2", src)
        opened = watch.drain()
        assert opened == set(), f"unchanged files were read again: {sorted(opened)}"

        # Change two files without changing their sizes.  f2 even gets its
        # exact old mtime back; f4 another old time.
        st2 = os.stat(src / "f2.bin")
        old_f2 = (src / "f2.bin").read_bytes()
        new_f2 = bytes(b ^ 0xFF for b in old_f2[:1000]) + old_f2[1000:]
        (src / "f2.bin").write_bytes(new_f2)
        os.utime(src / "f2.bin", ns=(st2.st_atime_ns, st2.st_mtime_ns))
        assert os.stat(src / "f2.bin").st_mtime_ns == st2.st_mtime_ns
        new_f4 = os.urandom(os.path.getsize(src / "f4.bin"))
        (src / "f4.bin").write_bytes(new_f4)
        os.utime(src / "f4.bin", (old - 7200, old - 7200))
        watch.drain()

        ds.add("t3", src)
        opened = watch.drain()
        assert {"f2.bin", "f4.bin"} <= opened, opened
        assert opened <= {"f2.bin", "f4.bin"}, f"unchanged files were read: {sorted(opened)}"
    finally:
        watch.close()

    out = tmp_path / "out3"
    ds.download(":t3", out)
    assert (out / "data" / "f2.bin").read_bytes() == new_f2
    assert (out / "data" / "f4.bin").read_bytes() == new_f4
    assert_same_tree(src, out / "data")

    out1 = tmp_path / "out1"
    ds.download(":t1", out1)
    assert (out1 / "data" / "f2.bin").read_bytes() == old_f2
    ds.fsck_clean()


def test_recently_changed_files_are_not_trusted_to_the_cache(ds, tmp_path):
    """A file written just now, then changed within the same second at the
    same size, must still be seen as changed."""
    src = tmp_path / "fresh"
    src.mkdir()
    f = src / "f.txt"
    f.write_bytes(b"A" * 4096)
    st = os.stat(f)
    ds.add("t1", src)
    f.write_bytes(b"B" * 4096)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    ds.add("t2", src)
    out = tmp_path / "out"
    ds.download(":t2", out)
    assert (out / "fresh" / "f.txt").read_bytes() == b"B" * 4096


def test_data_is_stored_lz4_compressed(ds, tmp_path):
    """Compressible data takes much less room; random data barely more."""
    text = tmp_path / "text"
    write_compressible(text / "log.txt", 10 * MiB, seed=3)
    ds.add("text", text)
    assert ds.pack_bytes() < 5 * MiB, ds.pack_bytes()

    other = type(ds)(tmp_path / "home2")
    rnd = tmp_path / "rnd"
    write_random(rnd / "r.bin", 10 * MiB, seed=4)
    other.add("rnd", rnd)
    assert other.pack_bytes() < 10 * MiB * 1.01 + 64 * 1024, other.pack_bytes()
