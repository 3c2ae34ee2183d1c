"""Folders in with `tags add -a`, back out with `artifacts download`: bytes,
modes, symlinks and odd names survive."""
import os
import random
import re
from pathlib import Path

from conftest import (ISO_UTC, MiB, RUN_NAME, assert_error, assert_same_tree,
                      fault_env, parse_table, snapshot, table_header,
                      write_compressible, write_random)


def make_rich_tree(root):
    """Everything a user's artifact folder may hold."""
    root = Path(root)
    root.mkdir(parents=True)
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "deep.txt").write_text("deep\n")
    (root / "a" / "top.txt").write_text("top\n")
    (root / "empty-dir").mkdir()
    (root / "a" / "b" / "empty-too").mkdir()
    (root / "zero").write_bytes(b"")
    write_random(root / "random.bin", 10 * MiB, seed=1)
    write_compressible(root / "text.log", 10 * MiB, seed=2)
    (root / "one-byte").write_bytes(b"x")

    for name, mode in (("exec.sh", 0o755), ("secret", 0o600), ("readonly.txt", 0o444),
                       ("setgid.sh", 0o2755), ("none", 0o000)):
        (root / name).write_text(f"{name}\n")
        os.chmod(root / name, mode)

    (root / "rodir").mkdir()
    (root / "rodir" / "inside.txt").write_text("inside a read-only folder\n")
    (root / "rodir" / "sub").mkdir()
    (root / "rodir" / "sub" / "more.txt").write_text("more\n")
    os.chmod(root / "rodir" / "sub", 0o555)
    os.chmod(root / "rodir", 0o555)
    (root / "sticky").mkdir()
    os.chmod(root / "sticky", 0o1777)
    (root / "private").mkdir()
    os.chmod(root / "private", 0o700)

    os.symlink("a/b/c/deep.txt", root / "rel-link")
    os.symlink("../top.txt", root / "a" / "b" / "up-link")
    os.symlink("/etc/hostname", root / "abs-link")
    os.symlink("does/not/exist", root / "dangling")
    os.symlink("a", root / "dir-link")
    os.symlink("loop", root / "loop")
    os.symlink("/", root / "root-link")

    odd = ["with space", "two  spaces", "ünïcödé-名前.txt", "-leading-dash",
           "--double", "name\nwith newline", "tab\there", "star*?[x]", "back\\slash",
           ".hidden", "'quote\"", "x" * 255]
    for name in odd:
        (root / name).write_text(f"content of {name!r}\n")
    (root / "dir with space" / "ünï sub").mkdir(parents=True)
    (root / "dir with space" / "ünï sub" / "-f").write_text("nested odd\n")
    # A name that is not UTF-8 at all: bytes are bytes.
    with open(os.path.join(os.fsencode(root), b"latin1-\xe9t\xe9"), "wb") as f:
        f.write(b"latin-1 name\n")
    # Two names for one file.
    os.link(root / "exec.sh", root / "hardlink.sh")
    return root


def test_round_trip_rich_tree(ds, tmp_path):
    src = make_rich_tree(tmp_path / "src")
    before = snapshot(src)
    run_name = ds.add("rich", src)

    out = tmp_path / "out"
    ds.download(":rich", out)
    assert sorted(os.listdir(out)) == ["src"]
    assert_same_tree(src, out / "src")

    # The source is untouched, and the absolute link was not followed.
    assert snapshot(src) == before
    assert os.readlink(out / "src" / "abs-link") == "/etc/hostname"
    assert os.readlink(out / "src" / "root-link") == "/"

    # By run name as well as by :tag.
    out2 = tmp_path / "out2"
    ds.download(run_name, out2)
    assert_same_tree(src, out2 / "src")
    ds.fsck_clean()


def test_download_over_an_existing_copy_restores_it(ds, tmp_path):
    src = make_rich_tree(tmp_path / "src")
    ds.add("t", src)
    out = tmp_path / "out"
    ds.download(":t", out)
    # The user edits the copy: a file changed, one removed, a link retargeted,
    # a file put where a link was.
    os.chmod(out / "src" / "readonly.txt", 0o644)
    (out / "src" / "readonly.txt").write_text("edited\n")
    (out / "src" / "zero").unlink()
    os.unlink(out / "src" / "rel-link")
    os.symlink("elsewhere", out / "src" / "rel-link")
    os.unlink(out / "src" / "dangling")
    (out / "src" / "dangling").write_text("not a link\n")
    ds.download(":t", out)
    assert_same_tree(src, out / "src")


def test_download_defaults_to_current_directory(ds, tmp_path):
    src = tmp_path / "data"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("hello\n")
    ds.add("t", src)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    ds.ok("artifacts", "download", ":t", cwd=cwd)
    assert_same_tree(src, cwd / "data")
    # -o after the run, or before it: both as users type them.
    ds.ok("artifacts", "download", "-o", tmp_path / "o1", ":t")
    assert_same_tree(src, tmp_path / "o1" / "data")


def test_artifacts_list_shows_files_and_links_not_folders(ds, tmp_path):
    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    (src / "d" / "e" / "f.bin").write_bytes(b"x" * 1000)
    (src / "with space.txt").write_text("hi\n")
    (src / "ünï.txt").write_text("")
    (src / "empty").mkdir()
    os.symlink("d/e/f.bin", src / "link")
    ds.add("t", src)
    cp = ds.ok("artifacts", "list", ":t")
    assert table_header(cp.stdout) == ["ARTIFACT", "FILE", "SIZE"]
    rows = parse_table(cp.stdout)
    got = {(r["ARTIFACT"], r["FILE"]): r["SIZE"] for r in rows}
    assert set(got) == {("src", "d/e/f.bin"), ("src", "with space.txt"),
                        ("src", "ünï.txt"), ("src", "link")}
    assert got[("src", "link")] == "-> d/e/f.bin"
    assert got[("src", "d/e/f.bin")].replace(" ", "") in ("1000B", "1000", "1.0KiB", "1000bytes")
    assert got[("src", "ünï.txt")].replace(" ", "") in ("0B", "0")


def test_several_folders_in_one_tag(ds, tmp_path):
    alpha = tmp_path / "x" / "alpha"
    beta = tmp_path / "y" / "beta"
    dash = tmp_path / "-dash"
    for d, n in ((alpha, 1), (beta, 2), (dash, 3)):
        write_random(d / "data.bin", 300_000, seed=n)
        (d / "note").write_text(f"folder {n}\n")
    # A trailing slash, and "./-dash" so the name is not taken for an option.
    cp = ds.ok("tags", "add", "multi", "-a", f"{alpha}/", str(beta), "./-dash", cwd=tmp_path)
    run_name = cp.stdout.strip()
    assert RUN_NAME.match(run_name)

    out = tmp_path / "out"
    ds.download(":multi", out)
    assert sorted(os.listdir(out)) == ["-dash", "alpha", "beta"]
    assert_same_tree(alpha, out / "alpha")
    assert_same_tree(beta, out / "beta")
    assert_same_tree(dash, out / "-dash")

    rows = parse_table(ds.ok("artifacts", "list", ":multi").stdout)
    assert {r["ARTIFACT"] for r in rows} == {"alpha", "beta", "-dash"}

    tags = ds.tags()
    assert tags["multi"]["RUN"] == run_name
    assert tags["multi"]["ARTIFACTS"] == "-dash, alpha, beta"


def test_two_folders_with_one_name_are_refused(ds, tmp_path):
    one = tmp_path / "one" / "data"
    two = tmp_path / "two" / "data"
    for d in (one, two):
        d.mkdir(parents=True)
        (d / "f").write_text(str(d))
    cp = ds("tags", "add", "dup", "-a", one, two)
    assert_error(cp, "data")
    # Nothing was recorded.
    assert "dup" not in ds.tags()
    cp = ds("artifacts", "list", ":dup")
    assert_error(cp, "dup")


def test_tags_list_row(ds, tmp_path):
    src = tmp_path / "models"
    src.mkdir()
    (src / "w").write_bytes(b"w" * 10)
    name = ds.add("v1", src)
    cp = ds.ok("tags", "list")
    assert table_header(cp.stdout) == ["TAG", "RUN", "WORKFLOW", "ARTIFACTS", "SUBMITTED"]
    rows = parse_table(cp.stdout)
    assert len(rows) == 1
    row = rows[0]
    assert row["TAG"] == "v1" and row["RUN"] == name
    assert row["ARTIFACTS"] == "models"
    assert ISO_UTC.match(row["SUBMITTED"]), row
    assert re.match(r"^[a-z]+-[a-z]+-1$", name), "first run is number 1"


def test_empty_folder(ds, tmp_path):
    src = tmp_path / "nothing"
    src.mkdir()
    ds.add("empty", src)
    rows = parse_table(ds.ok("artifacts", "list", ":empty").stdout)
    assert rows == []
    ds.download(":empty", tmp_path / "out")
    assert_same_tree(src, tmp_path / "out" / "nothing")
    ds.fsck_clean()


def test_sizes_around_every_boundary(ds, tmp_path):
    """Sizes next to the powers of two where chunking, bundling and lz4
    blocks change behaviour, in random and repetitive content."""
    src = tmp_path / "sizes"
    src.mkdir()
    sizes = {0, 1, 2, 15, 16, 17}
    for p in range(6, 24):
        sizes |= {2 ** p - 1, 2 ** p, 2 ** p + 1}
    sizes |= {3 * 2 ** 20 + 7, 5 * 2 ** 20 - 3}
    for n in sorted(sizes):
        write_random(src / f"r{n}", n, seed=n)
        (src / f"z{n}").write_bytes(b"\0" * n)
    ds.add("sizes", src)
    ds.download(":sizes", tmp_path / "out")
    assert_same_tree(src, tmp_path / "out" / "sizes")
    ds.fsck_clean()


def test_last_bundle_fills_a_pack(ds, tmp_path):
    """The bundle of small files flushed at the end of a folder takes the
    pack past its target size, so the pack is queued for its fsync then.
    One ingest thread (the fault library says one CPU) makes the pack fall
    there on every run: 32 MiB less 128 KiB of random data, then 240 KiB
    of small files that wait in the bundle until the end."""
    src = tmp_path / "fill"
    src.mkdir()
    write_random(src / "big", 32 * MiB - 128 * 1024, seed=11)
    for i in range(4):
        write_random(src / f"small{i}", 60 * 1024, seed=20 + i)
    ds.ok("tags", "add", "fill", "-a", src, env=fault_env(cpus=1), timeout=60)
    packs = [p.stat().st_size for p in (ds.home / "packs").rglob("*") if p.is_file()]
    assert len(packs) == 1 and 32 * MiB <= packs[0] < 32 * MiB + 256 * 1024, packs
    ds.download(":fill", tmp_path / "out")
    assert_same_tree(src, tmp_path / "out" / "fill")
    ds.fsck_clean()


def test_many_small_files(ds, tmp_path):
    rng = random.Random(5)
    src = tmp_path / "many"
    for i in range(3000):
        d = src / f"d{i % 37:02d}" / f"e{i % 5}"
        d.mkdir(parents=True, exist_ok=True)
        n = rng.choice([0, 1, 10, 100, 1000, 4000, 20000, 70000])
        if i % 3:
            (d / f"f{i}.txt").write_bytes(rng.randbytes(n))
        else:
            (d / f"f{i}.txt").write_bytes((f"line {i}\n" * (n // 8 + 1)).encode()[:n])
    ds.add("many", src)
    rows = parse_table(ds.ok("artifacts", "list", ":many").stdout)
    assert len(rows) == 3000
    ds.download(":many", tmp_path / "out")
    assert_same_tree(src, tmp_path / "out" / "many")
    ds.fsck_clean()


def test_download_never_writes_through_a_symlink_in_the_output(ds, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("stored\n")
    (src / "g.txt").write_text("stored too\n")
    ds.add("t", src)
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "f.txt").write_text("victim\n")
    (victim / "g.txt").write_text("victim too\n")
    before = snapshot(victim)

    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / "src")
    cp = ds("artifacts", "download", ":t", "-o", out)
    assert snapshot(victim) == before, "download wrote through a symlink"
    if cp.returncode == 0:
        assert_same_tree(src, out / "src")
    else:
        assert_error(cp)

    out2 = tmp_path / "out2"
    (out2 / "src").mkdir(parents=True)
    os.symlink(victim / "sub", out2 / "src" / "sub")
    os.symlink(victim / "g.txt", out2 / "src" / "g.txt")
    cp = ds("artifacts", "download", ":t", "-o", out2)
    assert snapshot(victim) == before, "download wrote through a symlink"
    if cp.returncode == 0:
        assert_same_tree(src, out2 / "src")
    else:
        assert_error(cp)
