"""Byte flips in the catalog ($DSTACK_HOME/catalog.db): whatever byte a
flip hits, no command is killed or trips a sanitizer, each command either
does its job or fails with one "dstack: ..." line, and an artifact is never
served with wrong bytes, through the CLI or through the tree, where a read
fails with EIO instead.  Damage SQLite's integrity_check sees, fsck reports
as a "catalog: ..." line.

One populated home is built, then copied once a flip: a copy of its
catalog with one byte changed, its packs linked (nothing here writes a
pack).  The bytes flipped are picked, from DSTACK_E2E_SEED, among the file
header and every page's header, cell pointers, record headers (the column
types: a flip there turns a NOT NULL column NULL, or text into a number)
and cell content: a uniform pick would mostly land in the zeros of free
space, where a flip proves nothing.  The seed fixes the offsets; run names
and times differ from one build of the home to the next, so a failure is
reproduced from the damaged home the test keeps and names.

Not checksummed in the catalog, so not checked here: log text and what
listings print (a flip there may change what `logs`, `tags list` or `ps`
print), and which artifacts a run has when an index entry is damaged so
that the run's lookup misses it; the download then lacks that whole
artifact, and fsck must say the catalog is damaged.
"""
import concurrent.futures
import errno
import os
import random
import shutil
import sqlite3
import struct
from pathlib import Path

import pytest

from conftest import (BIN, MiB, Dstack, assert_error, assert_ok, assert_same_tree,
                      describe, file_sha, make_repo, snapshot, write_compressible,
                      write_random)
from test_fs import asan_reports, daemon_pids, is_mounted, mount_env, unmount_all

SEED = int(os.environ.get("DSTACK_E2E_SEED", "1613"))
SANITIZED = "asan" in str(BIN)
# A flip costs seven commands; a sanitized binary is several times slower.
# DSTACK_E2E_FLIPS asks for more, for a longer soak.
FLIPS = int(os.environ.get("DSTACK_E2E_FLIPS", 50 if SANITIZED else 120))
FUSE_FLIPS = 3

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")

WORKFLOWS = """\
    workflows:
      - name: make
        provider: bash
        commands:
          - for i in $(seq 1 40); do echo "step $i of make"; done
          - echo "a warning on stderr" >&2
          - mkdir -p out/deep
          - cp data/blob.bin out/deep/
          - echo made > out/made.txt
        artifacts:
          - out
    """


class Pristine:
    """The home every flip starts from, and what it must give back."""

    def __init__(self, base):
        self.base = base
        self.home = base / "home"
        self.ds = Dstack(self.home)
        self.repo = None
        self.expected = {}      # run name: snapshot of its download
        self.tags = {}          # run name: its tags
        self.workflow_run = None
        self.pages = {}         # page number: the table or index it belongs to
        self.catalog = b""
        self.schema = []


def build_sources(base):
    """Folders for two runs: files of every size class (bundled, one
    chunk, several chunks, empty), modes, a link, nesting; many small
    files; a second artifact."""
    mixed = base / "src" / "mixed"
    write_random(mixed / "big.bin", 3 * MiB + 4321, seed=1)
    write_compressible(mixed / "logs" / "train.log", 2 * MiB, seed=2)
    write_random(mixed / "edge.bin", 64 * 1024 + 1, seed=3)
    (mixed / "small.txt").write_text("small and fine\n")
    (mixed / "empty").touch()
    (mixed / "nested" / "deep").mkdir(parents=True)
    (mixed / "nested" / "deep" / "leaf.txt").write_text("leaf\n")
    (mixed / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (mixed / "run.sh").chmod(0o755)
    (mixed / "private").write_text("mine\n")
    (mixed / "private").chmod(0o600)
    os.symlink("small.txt", mixed / "link")
    many = base / "src" / "many"
    for i in range(150):
        (many / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
        (many / f"d{i % 7}" / f"f{i:03d}.txt").write_text(f"file {i}\n" * (i % 30 + 1))
    extra = base / "src" / "extra"
    write_random(extra / "one.bin", 300 * 1024, seed=4)
    return mixed, many, extra


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    p = Pristine(tmp_path_factory.mktemp("catalog-damage"))
    mixed, many, extra = build_sources(p.base)
    ds = p.ds
    sources = {ds.add("mixed", mixed): [mixed], ds.add("many", many, extra): [many, extra]}
    ds.ok("tags", "add", "alias", next(iter(sources)))
    p.repo = make_repo(p.base / "repo", WORKFLOWS)
    write_random(p.repo / "data" / "blob.bin", 200 * 1024, seed=5)
    assert_ok(ds("run", "-t", "made", "make", cwd=p.repo))
    for tag, row in ds.tags().items():
        p.tags.setdefault(row["RUN"], []).append(tag)
    p.workflow_run = ds.tags()["made"]["RUN"]
    for name in list(sources) + [p.workflow_run]:
        out = p.base / "expected" / name
        ds.download(name, out)
        for src in sources.get(name, []):
            assert_same_tree(src, out / src.name)
        p.expected[name] = snapshot(out)
    blob = p.expected[p.workflow_run][b"out/deep/blob.bin"]
    assert blob[2] == file_sha(p.repo / "data" / "blob.bin")
    assert "step 40 of make" in ds.ok("logs", p.workflow_run).stdout
    ds.fsck_clean()

    # Every commit into the file itself, so a flip there is what SQLite reads.
    catalog = p.home / "catalog.db"
    con = sqlite3.connect(catalog)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        p.pages = dict(con.execute("SELECT pageno, name FROM dbstat"))
    finally:
        con.close()
    wal = p.home / "catalog.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    p.catalog = catalog.read_bytes()
    p.schema = schema(catalog)
    return p


# --------------------------------------------------------------------------
# Where to flip: the SQLite file format (sqlite.org/fileformat2.html)


def varint(data, at):
    """A SQLite varint at data[at:]: (value, its length)."""
    value = 0
    for i in range(8):
        byte = data[at + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, i + 1
    return (value << 8) | data[at + 8], 9


def page_size(data):
    size = struct.unpack_from(">H", data, 16)[0]
    return 65536 if size == 1 else size


def record_types(data, cell, kind):
    """Offsets of the column type bytes of the record in the cell at
    data[cell:], a cell of a b-tree page of that kind."""
    if kind == 5:
        return []                       # interior table cells hold no record
    at = cell + (4 if kind == 2 else 0)
    _, n = varint(data, at)
    at += n
    if kind == 13:
        _, n = varint(data, at)         # the rowid
        at += n
    header, n = varint(data, at)
    return list(range(at + n, at + header))


def page_pools(data, number):
    """Offsets worth flipping in page number: (header and cell pointers,
    record headers, cell content)."""
    size = page_size(data)
    base = (number - 1) * size
    top = base + (100 if number == 1 else 0)
    kind = data[top]
    if kind not in (2, 5, 10, 13):
        # An overflow or freelist page: any byte may be data.
        return list(range(base, base + size)), [], []
    header = 8 if kind in (10, 13) else 12
    cells = struct.unpack_from(">H", data, top + 3)[0]
    content = struct.unpack_from(">H", data, top + 5)[0] or 65536
    structure = list(range(top, top + header + 2 * cells))
    types = []
    for i in range(cells):
        cell = base + struct.unpack_from(">H", data, top + header + 2 * i)[0]
        if base + content <= cell < base + size:
            types += [t for t in record_types(data, cell, kind) if t < base + size]
    body = list(range(base + content, base + size))
    return structure, types, body


def choose_flips(data, count, rng):
    """count (offset, xor) pairs: the file header first, then round after
    round over the pages, each round one more byte of each.  A type byte
    is made 0 (NULL) half the time."""
    pools = [[(offset, rng.randrange(1, 256)) for offset in rng.sample(range(100), 4)]]
    for number in range(1, len(data) // page_size(data) + 1):
        structure, types, body = page_pools(data, number)
        pool = [(o, rng.randrange(1, 256)) for o in rng.sample(structure, min(2, len(structure)))]
        pool += [(o, data[o] if data[o] and rng.random() < 0.5 else rng.randrange(1, 256))
                 for o in rng.sample(types, min(4, len(types)))]
        pool += [(o, rng.randrange(1, 256)) for o in rng.sample(body, min(10, len(body)))]
        rng.shuffle(pool)
        pools.append(pool)
    flips = []
    while len(flips) < count and any(pools):
        for pool in pools:
            if pool and len(flips) < count:
                flips.append(pool.pop())
    return flips


# --------------------------------------------------------------------------
# A damaged copy and what commands do with it


def damaged_copy(pristine, where, offset, xor):
    """A copy of the pristine home whose catalog has byte offset ^ xor."""
    home = where / "home"
    shutil.copytree(pristine.home, home, ignore=shutil.ignore_patterns(
        "packs", "catalog.db", "catalog.db-shm"))
    shutil.copytree(pristine.home / "packs", home / "packs", copy_function=os.link)
    data = bytearray(pristine.catalog)
    data[offset] ^= xor
    (home / "catalog.db").write_bytes(bytes(data))
    return Dstack(home)


def describe_flip(pristine, offset, xor, where):
    page = offset // page_size(pristine.catalog) + 1
    what = pristine.pages.get(page, "free")
    return (f"seed {SEED}: byte {offset} (page {page}, {what}) ^ 0x{xor:02x}, "
            f"damaged home kept at {where}")


def check_outcome(cp):
    """True for success, False for the one-line failure; anything else
    (a signal, a sanitizer report, a second line) fails the test."""
    assert cp.returncode >= 0, f"killed by signal {-cp.returncode}\n" + describe(cp)
    assert not any(m in cp.stderr for m in SANITIZER_MARKS), "sanitizer\n" + describe(cp)
    if cp.returncode == 0:
        lines = [l for l in cp.stderr.splitlines() if not l.startswith("dstack: warning: ")]
        assert lines == [], describe(cp)
        return True
    assert_error(cp, rc=1)
    return False


def check_logs_outcome(cp):
    """As check_outcome, but a job's stderr comes out on stderr: the
    error, if any, is the last line."""
    assert cp.returncode >= 0, f"killed by signal {-cp.returncode}\n" + describe(cp)
    assert not any(m in cp.stderr for m in SANITIZER_MARKS), "sanitizer\n" + describe(cp)
    if cp.returncode:
        assert cp.returncode == 1 and cp.stderr.endswith("\n"), describe(cp)
        assert cp.stderr.splitlines()[-1].startswith("dstack: "), describe(cp)


def sqlite_verdict(catalog):
    """What SQLite's own integrity_check finds wrong: [] for nothing."""
    try:
        con = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
        con.text_factory = lambda b: b.decode("utf-8", "replace")
        try:
            rows = [r[0] for r in con.execute("PRAGMA integrity_check")]
        finally:
            con.close()
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        # An error's message may quote damaged schema text, not UTF-8.
        return [str(e)]
    return [] if rows == ["ok"] else rows


def schema(catalog):
    con = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    con.text_factory = bytes
    try:
        return con.execute("SELECT * FROM sqlite_schema ORDER BY rowid").fetchall()
    finally:
        con.close()


def artifact_of(path):
    return path.split(b"/", 1)[0]


def check_download(want, got, ok, catalog_damaged):
    """A download's files against the stored artifacts.  A failed one
    leaves only exact files and links behind (its folders keep the mode
    they are made with, 0700).  One that succeeded is exact, but for
    whole artifacts missing where the damage hid their rows."""
    wrong = [f"{k!r}: {got[k]}, stored {want.get(k)}" for k in sorted(got)
             if want.get(k) != got[k] and (ok or got[k][0] != "dir")]
    assert not wrong, "wrong files:\n" + "\n".join(wrong[:20])
    if not ok:
        return
    missing = {artifact_of(k) for k in want if k not in got}
    partial = [a for a in missing if any(artifact_of(k) == a for k in got)]
    assert not partial, f"artifacts {partial} came out in part"
    assert not missing or catalog_damaged, \
        f"artifacts {sorted(missing)} missing from a catalog fsck finds whole"


def check_flip(pristine, where, offset, xor, rng):
    ds = damaged_copy(pristine, where, offset, xor)
    broken = sqlite_verdict(ds.home / "catalog.db")

    fsck = ds("fsck")
    fsck_clean = check_outcome(fsck)
    catalog_damaged = any(l.startswith("catalog: ") for l in fsck.stdout.splitlines()) or \
        "catalog.db" in fsck.stderr
    if broken:
        # fsck reports it, or fails naming the catalog where SQLite
        # cannot even run its check (a damaged file header or schema).
        assert catalog_damaged, f"integrity_check says {broken[:3]}\n" + describe(fsck)

    check_outcome(ds("tags", "list"))
    check_outcome(ds("ps", "-a", cwd=where))
    check_logs_outcome(ds("logs", pristine.workflow_run))
    for name, want in pristine.expected.items():
        # By name or by a tag: each lookup goes through its own index.
        spec = rng.choice([name] + [":" + t for t in pristine.tags.get(name, [])])
        out = where / "out" / name
        cp = ds("artifacts", "download", spec, "-o", out)
        ok = check_outcome(cp)
        try:
            check_download(want, snapshot(out) if out.exists() else {}, ok,
                           catalog_damaged)
        except AssertionError as e:
            raise AssertionError(f"download {spec}: {e}\n" + describe(cp)) from None
        # A catalog fsck passes reads whole, but for one that is valid
        # SQL with other names: fsck does not hold the schema's text
        # against the one this dstack makes.
        assert ok or not fsck_clean or schema(ds.home / "catalog.db") != pristine.schema, \
            "fsck passed, a download failed\n" + describe(cp)


def test_catalog_flips_never_serve_wrong_bytes(pristine, tmp_path):
    flips = choose_flips(pristine.catalog, FLIPS, random.Random(SEED))
    print(f"catalog damage: seed {SEED}, {len(flips)} flips in "
          f"{len(pristine.catalog)} bytes")

    def one(i):
        offset, xor = flips[i]
        where = tmp_path / f"flip-{i}"
        where.mkdir()
        try:
            check_flip(pristine, where, offset, xor, random.Random(f"{SEED}-{i}"))
        except AssertionError as e:
            return f"{describe_flip(pristine, offset, xor, where)}:\n{e}"
        shutil.rmtree(where)
        return None

    # Flips are independent and mostly wait for a process: run a few at once.
    with concurrent.futures.ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        problems = [p for p in pool.map(one, range(len(flips))) if p]
    # All of them, not the first: what a class of damage does shows best
    # in every flip of that class.
    assert not problems, f"{len(problems)} of {len(flips)} flips:\n" + \
        "\n\n".join(p[:2000] for p in problems[:12])


# --------------------------------------------------------------------------
# Through the tree


def fuse_candidates(pristine, tmp_path, rng):
    """Flips of tree entries and objects that break some download, found
    through the CLI: damage a read must meet."""
    pools = [p for p in pristine.pages if pristine.pages[p] in ("tree_entries", "objects")]
    tries = 0
    while tries < 60:
        page = rng.choice(pools)
        _, _, body = page_pools(pristine.catalog, page)
        offset, xor = rng.choice(body), rng.randrange(1, 256)
        where = tmp_path / f"probe-{tries}"
        where.mkdir()
        tries += 1
        ds = damaged_copy(pristine, where, offset, xor)
        failed = [name for name in pristine.expected
                  if ds("artifacts", "download", name, "-o", where / "out" / name).returncode]
        shutil.rmtree(where)
        if failed:
            yield offset, xor, failed


def read_tree(root, want):
    """Reads every file under root: (wrong bytes, errnos of listings,
    errnos of reads)."""
    wrong, listing, errors = [], [], []
    for dirpath, _, files in os.walk(root, onerror=lambda e: listing.append(e.errno)):
        for f in files:
            path = Path(dirpath) / f
            rel = os.fsencode(path.relative_to(root))
            if path.is_symlink():
                continue
            try:
                got = file_sha(path)
            except OSError as e:
                errors.append(e.errno)
                continue
            entry = want.get(rel)
            if entry is None or entry[2] != got:
                wrong.append(f"{rel!r}: sha {got}, stored {entry}")
    return wrong, listing, errors


def test_tree_reads_of_a_damaged_catalog_fail_with_eio(pristine, tmp_path):
    rng = random.Random(SEED + 1)
    done = 0
    for offset, xor, failed in fuse_candidates(pristine, tmp_path, rng):
        where = tmp_path / f"flip-{done}"
        where.mkdir()
        what = describe_flip(pristine, offset, xor, where)
        ds = damaged_copy(pristine, where, offset, xor)
        mnt = where / "mnt"
        mnt.mkdir()
        cp = ds("mount", mnt, cwd=pristine.repo, env=mount_env(where), timeout=60)
        try:
            assert check_outcome(cp), what
            for name, want in pristine.expected.items():
                wrong, listing, errors = read_tree(mnt / "runs" / name / "artifacts", want)
                assert not wrong, f"{what}: {name}: wrong bytes\n" + "\n".join(wrong)
                # A lookup reports a run whose artifacts it cannot read as
                # having none (ENOENT); a file it listed fails with EIO.
                assert set(listing) <= {errno.EIO, errno.ENOENT}, f"{what}: {name}: {listing}"
                assert set(errors) <= {errno.EIO}, f"{what}: {name}: {errors}"
                # What the CLI could not read, the tree cannot either.
                assert bool(listing + errors) == (name in failed), \
                    f"{what}: {name}: listing {listing}, reads {errors}"
        finally:
            unmount_all(ds, mnt)
        assert not is_mounted(mnt) and not daemon_pids(mnt), what
        reports = asan_reports(where)
        assert not reports, what + "\n" + "\n".join(p.read_text()[-6000:] for p in reports)
        shutil.rmtree(where)
        done += 1
        if done == FUSE_FLIPS:
            break
    assert done == FUSE_FLIPS, f"only {done} flips broke a download"
