"""fsck finds corruption; reads of corrupted data fail and never return
wrong bytes.

Where a stored object lies (pack file, frame offset and size) is read from
the catalog with Python's sqlite3, so these tests do not depend on the
layout of pack records."""
import os

import pytest

from conftest import (MiB, assert_error, assert_same_tree, file_sha, flip_byte,
                      write_compressible, write_random)


def make_store(ds, tmp_path, kind):
    src = tmp_path / "src"
    src.mkdir()
    if kind == "random":
        write_random(src / "big.bin", 6 * MiB, seed=5)
    else:
        write_compressible(src / "big.bin", 12 * MiB, seed=5)
    (src / "small.txt").write_text("small and fine\n")
    ds.add("t", src)
    ds.fsck_clean()
    return src


def largest_object(objects):
    """The object with the largest frame: a chunk of big.bin."""
    best = max(objects, key=lambda o: o[3])
    assert best[3] > 64 * 1024, best
    return best


def sharing_frame(objects, pack, offset):
    """Hashes of every object stored in the frame at (pack, offset)."""
    return {o[0] for o in objects if o[1] == pack and o[2] == offset}


def assert_no_wrong_bytes(src, out):
    """Every regular file the download left behind is byte-exact."""
    for dirpath, _, files in os.walk(out):
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.islink(p):
                continue
            rel = os.path.relpath(p, out)
            assert file_sha(p) == file_sha(os.path.join(src, rel)), f"wrong bytes in {rel}"


def assert_download_fails_cleanly(ds, src, out):
    cp = ds("artifacts", "download", ":t", "-o", out)
    assert cp.returncode > 0, cp
    assert_error(cp, rc=cp.returncode)
    big = out / "src" / "big.bin"
    assert not big.exists() or file_sha(big) == file_sha(src / "big.bin"), \
        "a corrupted file was written"
    assert_no_wrong_bytes(src, out)
    return cp


def test_fsck_is_silent_on_a_clean_store(ds, tmp_path):
    make_store(ds, tmp_path, "random")
    ds.add("again", tmp_path / "src")
    ds.fsck_clean()


@pytest.mark.parametrize("kind", ["random", "compressible"])
def test_flipped_byte_is_found_and_never_served(ds, tmp_path, kind):
    src = make_store(ds, tmp_path, kind)
    objects = ds.objects()
    digest, pack, offset, stored, _raw = largest_object(objects)
    flip_byte(pack, offset + stored // 2)

    cp = ds("fsck")
    assert_error(cp, "problem")
    assert digest in cp.stdout, f"fsck does not name object {digest}:\n{cp.stdout}"
    assert all(l.strip() for l in cp.stdout.splitlines())
    # And what it costs: the file that holds it, and the run.
    assert f"big.bin: chunk {digest} is damaged" in cp.stdout, cp.stdout
    run = ds.tags()["t"]["RUN"]
    assert f"run {run}: artifact src of job 0 is damaged\n" in cp.stdout, cp.stdout

    assert_download_fails_cleanly(ds, src, tmp_path / "out")
    # Listing needs no content and still works.
    ds.ok("artifacts", "list", ":t")


def test_flip_near_the_middle_of_the_pack_file(ds, tmp_path):
    """The blunt version: a byte in the middle of the largest pack file."""
    src = make_store(ds, tmp_path, "random")
    objects = ds.objects()
    pack = max(ds.pack_files(), key=lambda p: p.stat().st_size)
    middle = pack.stat().st_size // 2
    hit = [o for o in objects if o[1] == pack and o[2] <= middle < o[2] + o[3]]
    if not hit:
        # The middle fell on record metadata: move into the next frame.
        after = sorted((o for o in objects if o[1] == pack and o[2] > middle),
                       key=lambda o: o[2])
        hit = after[:1] or sorted((o for o in objects if o[1] == pack),
                                  key=lambda o: -o[2])[:1]
        middle = hit[0][2] + hit[0][3] // 2
    flip_byte(pack, middle)
    names = sharing_frame(objects, pack, hit[0][2])

    cp = ds("fsck")
    assert_error(cp)
    assert any(h in cp.stdout for h in names), cp.stdout
    # Every object belongs to :t, so its download must stop.
    assert_download_fails_cleanly(ds, src, tmp_path / "out")


def test_corruption_in_a_small_file_bundle(ds, tmp_path):
    """Many small files: whatever way they are stored, a flipped byte in
    their data is found and never served."""
    src = tmp_path / "src"
    (src / "many").mkdir(parents=True)
    for i in range(300):
        (src / "many" / f"{i:04d}.txt").write_text(f"small file {i}\n" * (i % 40 + 1))
    ds.add("t", src)
    ds.fsck_clean()
    objects = ds.objects()
    digest, pack, offset, stored, _raw = max(objects, key=lambda o: o[3])
    names = sharing_frame(objects, pack, offset)
    flip_byte(pack, offset + stored // 2)

    cp = ds("fsck")
    assert_error(cp)
    assert any(h in cp.stdout for h in names), cp.stdout
    out = tmp_path / "out"
    cp = ds("artifacts", "download", ":t", "-o", out)
    assert cp.returncode > 0
    assert_error(cp, rc=cp.returncode)
    assert_no_wrong_bytes(src, out)


def test_missing_pack_is_found_and_download_fails_cleanly(ds, tmp_path):
    src = make_store(ds, tmp_path, "random")
    digest, pack, *_rest = largest_object(ds.objects())
    os.unlink(pack)
    cp = ds("fsck")
    assert_error(cp)
    assert digest in cp.stdout or pack.name in cp.stdout, cp.stdout
    assert_download_fails_cleanly(ds, src, tmp_path / "out")


def test_truncated_pack_is_found(ds, tmp_path):
    src = make_store(ds, tmp_path, "random")
    digest, pack, offset, stored, _raw = largest_object(ds.objects())
    os.truncate(pack, offset + stored // 3)
    cp = ds("fsck")
    assert_error(cp)
    assert digest in cp.stdout or pack.name in cp.stdout, cp.stdout
    assert_download_fails_cleanly(ds, src, tmp_path / "out")


def test_other_data_stays_readable_next_to_corruption(ds, tmp_path):
    src = make_store(ds, tmp_path, "random")
    packs_of_t = set(ds.pack_files())
    other = tmp_path / "other"
    write_random(other / "o.bin", 2 * MiB, seed=77)
    ds.add("other", other)
    assert set(ds.pack_files()) > packs_of_t
    # Corrupt the largest object of "t" (in a pack written before "other").
    digest, pack, offset, stored, _raw = largest_object(
        [o for o in ds.objects() if o[1] in packs_of_t])
    flip_byte(pack, offset + stored // 2)

    ds.download(":other", tmp_path / "out-other")
    assert_same_tree(other, tmp_path / "out-other" / "other")
    assert_download_fails_cleanly(ds, src, tmp_path / "out-t")
    cp = ds("fsck")
    assert_error(cp)
    assert digest in cp.stdout
