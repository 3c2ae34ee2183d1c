"""Bad homes, read-only media, full disks, broken catalogs, bad folders and
special files: one clear line, a non-zero exit, nothing stored is lost."""
import os
import socket

import pytest

from conftest import (MiB, Dstack, assert_error, assert_same_tree, remount,
                      snapshot, tmpfs, write_random)


@pytest.fixture
def small(tmp_path):
    src = tmp_path / "small"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.txt").write_text("alpha\n")
    write_random(src / "r.bin", 100_000, seed=11)
    os.symlink("d/a.txt", src / "link")
    return src


# --------------------------------------------------------------------------
# $DSTACK_HOME


@pytest.mark.parametrize("args", [
    ["tags", "list"],
    ["tags", "add", "t", "-a", "SRC"],
    ["artifacts", "list", ":t"],
    ["artifacts", "download", ":t", "-o", "OUT"],
    ["fsck"],
    ["gc"],
    ["rm", "calm-owl-1"],
])
def test_home_whose_parent_is_missing(tmp_path, small, args):
    home = tmp_path / "no" / "such" / "home"
    args = [str(small) if a == "SRC" else str(tmp_path / "out") if a == "OUT" else a
            for a in args]
    cp = Dstack(home)(*args)
    assert_error(cp, str(home))
    assert not (tmp_path / "no").exists()
    assert not (tmp_path / "out" / "small").exists()


def test_home_that_is_a_file(tmp_path, small):
    home = tmp_path / "home-file"
    home.write_text("not a folder\n")
    ds = Dstack(home)
    assert_error(ds("tags", "add", "t", "-a", small), str(home))
    assert_error(ds("tags", "list"), str(home))
    assert home.read_text() == "not a folder\n"


def test_read_only_home(tmp_path, small):
    mnt = tmp_path / "ro"
    with tmpfs(mnt, "64m"):
        ds = Dstack(mnt / "home")
        run1 = ds.add("t", small)
        remount(mnt, "ro")

        other = tmp_path / "other"
        other.mkdir()
        (other / "f").write_text("f\n")
        assert_error(ds("tags", "add", "t2", "-a", other), "read-only")
        assert_error(ds("tags", "add", "t3", run1), "read-only")
        assert_error(ds("tags", "delete", "t"), "read-only")
        assert_error(ds("gc"), "read-only")

        # Reading still works.
        tags = ds.tags()
        assert list(tags) == ["t"] and tags["t"]["RUN"] == run1
        ds.ok("artifacts", "list", ":t")
        out = tmp_path / "out"
        ds.download(":t", out)
        assert_same_tree(small, out / "small")
        ds.fsck_clean()


def test_full_disk(tmp_path, small):
    big = tmp_path / "big"
    write_random(big / "random.bin", 20 * MiB)
    mnt = tmp_path / "full"
    with tmpfs(mnt, "8m"):
        ds = Dstack(mnt / "home")
        run1 = ds.add("small", small)

        cp = ds("tags", "add", "big", "-a", big)
        assert_error(cp, "space")
        assert ds.tmp_entries() == [], "temp files left behind"

        tags = ds.tags()
        assert list(tags) == ["small"] and tags["small"]["RUN"] == run1
        out = tmp_path / "out"
        ds.download(":small", out)
        assert_same_tree(small, out / "small")
        ds.fsck_clean()
        assert ds.tmp_entries() == []

        # The store is not wedged: small things still go in.
        more = tmp_path / "more"
        more.mkdir()
        (more / "m.txt").write_text("more\n")
        ds.add("more", more)
        ds.download(":more", tmp_path / "out2")
        assert_same_tree(more, tmp_path / "out2" / "more")
        ds.fsck_clean()


def test_download_onto_a_full_disk(ds, tmp_path):
    src = tmp_path / "src"
    write_random(src / "big.bin", 12 * MiB, seed=12)
    ds.add("t", src)
    mnt = tmp_path / "dest"
    with tmpfs(mnt, "4m"):
        cp = ds("artifacts", "download", ":t", "-o", mnt)
        assert_error(cp, "space")
        # No partial file pretending to be the artifact.
        assert not (mnt / "src" / "big.bin").exists() or \
            (mnt / "src" / "big.bin").stat().st_size == 12 * MiB
    ds.fsck_clean()


# --------------------------------------------------------------------------
# A broken catalog


def no_crash(cp):
    assert cp.returncode > 0, f"exit {cp.returncode}: {cp.stderr}"
    assert "Traceback" not in cp.stderr
    assert "Sanitizer" not in cp.stderr


@pytest.mark.parametrize("damage", ["truncate", "garbage", "zero-header"])
def test_damaged_catalog(ds, tmp_path, small, damage):
    ds.add("t", small)
    write_random(tmp_path / "more" / "m.bin", 3 * MiB, seed=13)
    ds.add("t2", tmp_path / "more")
    db = ds.home / "catalog.db"
    size = db.stat().st_size
    if damage == "truncate":
        os.truncate(db, size // 2)
    elif damage == "garbage":
        db.write_bytes(os.urandom(size))
    else:
        with open(db, "r+b") as f:
            f.write(b"\0" * 100)
    damaged = db.read_bytes()

    out = tmp_path / "out"
    for args in (["tags", "list"], ["artifacts", "list", ":t"],
                 ["artifacts", "download", ":t", "-o", out], ["fsck"], ["gc"],
                 ["tags", "add", "t3", "-a", small], ["tags", "delete", "t"],
                 ["rm", "calm-owl-1"]):
        cp = ds(*args)
        no_crash(cp)
        assert_error(cp, "catalog.db", rc=cp.returncode, allow_warnings=True)
    # Nothing was written over the evidence, nothing half-downloaded.
    assert db.read_bytes() == damaged
    assert not (out / "small").exists() or snapshot(out / "small") == {}


# --------------------------------------------------------------------------
# Bad folders


def test_folder_that_is_missing(ds, tmp_path):
    missing = tmp_path / "nope"
    assert_error(ds("tags", "add", "t", "-a", missing), str(missing))
    assert "t" not in ds.tags()


def test_folder_that_is_a_file(ds, tmp_path, small):
    f = tmp_path / "file.txt"
    f.write_text("x\n")
    assert_error(ds("tags", "add", "t", "-a", small, f), str(f))
    assert ds.tags() == {}


def test_folder_that_is_a_dangling_symlink(ds, tmp_path):
    link = tmp_path / "dangling"
    os.symlink(tmp_path / "gone", link)
    assert_error(ds("tags", "add", "t", "-a", link), str(link))


def test_fifo_and_socket_are_skipped_with_a_warning(ds, tmp_path, small):
    os.mkfifo(small / "pipe")
    sock_path = small / "sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(sock_path))
        cp = ds("tags", "add", "t", "-a", small)
    finally:
        s.close()
    assert cp.returncode == 0, cp.stderr
    warnings = [l for l in cp.stderr.splitlines() if l]
    assert len(warnings) == 2, cp.stderr
    assert all(l.startswith("dstack: warning: ") for l in warnings)
    assert any("pipe" in l for l in warnings) and any("sock" in l for l in warnings)
    out = tmp_path / "out"
    ds.download(":t", out)
    # Everything but the special files, exactly.
    assert_same_tree(small, out / "small")
    assert not os.path.lexists(out / "small" / "pipe")
    assert not os.path.lexists(out / "small" / "sock")
    ds.fsck_clean()


def test_special_files_do_not_block(ds, tmp_path):
    """A FIFO nobody writes must be skipped, never opened (which would hang)."""
    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    os.mkfifo(src / "deep" / "er" / "fifo")
    (src / "deep" / "er" / "real.txt").write_text("real\n")
    cp = ds("tags", "add", "t", "-a", src, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert cp.stderr.count("dstack: warning: ") == 1 and "fifo" in cp.stderr
    ds.download(":t", tmp_path / "out")
    assert (tmp_path / "out" / "src" / "deep" / "er" / "real.txt").read_text() == "real\n"


def test_device_nodes_are_skipped(ds, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep.txt").write_text("keep\n")
    try:
        os.mknod(src / "null", 0o666 | 0o020000, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod not permitted")
    cp = ds("tags", "add", "t", "-a", src)
    assert cp.returncode == 0, cp.stderr
    assert "null" in cp.stderr and cp.stderr.startswith("dstack: warning: ")
    ds.download(":t", tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out" / "src")) == ["keep.txt"]


def test_download_into_a_file_fails_cleanly(ds, tmp_path, small):
    ds.add("t", small)
    f = tmp_path / "afile"
    f.write_text("x\n")
    assert_error(ds("artifacts", "download", ":t", "-o", f), str(f))
    assert f.read_text() == "x\n"
