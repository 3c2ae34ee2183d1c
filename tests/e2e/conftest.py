"""Shared helpers for the end-to-end tests of the `dstack` binary.

Every test drives the real executable as a user would (subprocesses, real
files, real mounts) with its own $DSTACK_HOME.  The binary is $DSTACK_BIN,
else <repo>/build/cli/dstack.
"""
import contextlib
import ctypes
import hashlib
import os
import random
import re
import shutil
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("DSTACK_BIN") or REPO / "build" / "cli" / "dstack")
if not BIN.is_absolute():
    BIN = (REPO / BIN).resolve()

MiB = 1024 * 1024
RUN_NAME = re.compile(r"^[a-z]+-[a-z]+-[0-9]+$")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


# --------------------------------------------------------------------------
# Running the binary


_RUSAGE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


# tests/fault/fault.c, built beside the binary: see its header.
FAULT_LIB = BIN.parent.parent / "tests" / "libdstack-fault.so"


def fault_env(**settings):
    """The environment that preloads the fault library with settings
    (kill_at=N, count=FILE, eio=TEXT)."""
    env = {"LD_PRELOAD": str(FAULT_LIB)}
    for key, value in settings.items():
        env[f"DSTACK_FAULT_{key.upper()}"] = str(value)
    # The library stands in front of the sanitizer's runtime, on purpose.
    env["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
    return env


def run(args, home=None, cwd=None, env=None, timeout=120, input=None,
        wrap=(), extra=()):
    """Runs dstack with args; returns a CompletedProcess with text output.

    Output is decoded as UTF-8 with surrogateescape, so it can be turned
    back into the exact bytes with .encode("utf-8", "surrogateescape").
    """
    full_env = dict(os.environ)
    full_env.pop("DSTACK_HOME", None)
    if home is not None:
        full_env["DSTACK_HOME"] = str(home)
    if env:
        full_env.update(env)
    args = list(args) + list(extra)
    return subprocess.run(
        list(wrap) + [str(BIN)] +
        [os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args],
        cwd=cwd, env=full_env, input=input, timeout=timeout,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        encoding="utf-8", errors="surrogateescape")


def describe(cp):
    return (f"command: {cp.args}\nexit: {cp.returncode}\n"
            f"stdout:\n{cp.stdout[-3000:]}\nstderr:\n{cp.stderr[-3000:]}")


def assert_ok(cp):
    assert cp.returncode == 0, describe(cp)
    return cp


def error_lines(cp, allow_warnings=False):
    lines = cp.stderr.splitlines()
    if allow_warnings:
        lines = [l for l in lines if not l.startswith("dstack: warning: ")]
    return lines


def assert_error(cp, *needles, rc=1, allow_warnings=False):
    """A failure as the contract has it: exit rc, exactly one stderr line
    starting "dstack: ", containing every needle; never a signal."""
    assert cp.returncode >= 0, f"killed by signal {-cp.returncode}\n" + describe(cp)
    assert cp.returncode == rc, describe(cp)
    lines = error_lines(cp, allow_warnings)
    assert len(lines) == 1, "expected exactly one error line\n" + describe(cp)
    line = lines[0]
    assert line.startswith("dstack: "), describe(cp)
    assert not line.startswith("dstack: warning: "), describe(cp)
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in error\n" + describe(cp)
    return line


def assert_usage_error(cp, *needles):
    """Usage errors: exit 2, one stderr line "dstack: ...", nothing on stdout."""
    assert cp.returncode == 2, describe(cp)
    lines = cp.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dstack: "), describe(cp)
    assert cp.stdout == "", describe(cp)
    for needle in needles:
        assert needle.lower() in lines[0].lower(), describe(cp)
    return lines[0]


class Dstack:
    """dstack bound to one $DSTACK_HOME."""

    def __init__(self, home):
        self.home = Path(home)
        self.procs = []

    def __call__(self, *args, **kw):
        return run(args, home=self.home, **kw)

    def ok(self, *args, **kw):
        return assert_ok(self(*args, **kw))

    def fail(self, *args, needles=(), rc=1, allow_warnings=False, **kw):
        cp = self(*args, **kw)
        assert_error(cp, *needles, rc=rc, allow_warnings=allow_warnings)
        return cp

    def popen(self, *args, env=None, **kw):
        env = dict(os.environ, **(env or {}))
        env["DSTACK_HOME"] = str(self.home)
        proc = subprocess.Popen([str(BIN)] + [str(a) for a in args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                encoding="utf-8", errors="surrogateescape", **kw)
        self.procs.append(proc)
        return proc

    def run_rusage(self, *args):
        """Runs dstack; returns (CompletedProcess, peak RSS in bytes).

        A small Python in between forks and waits for dstack: a peak
        measured straight from this process would start at this process's
        own (Linux carries the high-water mark across fork and exec).
        """
        report = self.home.parent / f".rusage-{os.getpid()}-{len(self.procs)}"
        cp = run([], home=self.home, wrap=[sys.executable, "-c", _RUSAGE, str(report)],
                 extra=args)
        peak = int(report.read_text()) * 1024
        report.unlink()
        return cp, peak

    def reap(self):
        """Kills what popen started and the test left running."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.communicate(timeout=30)
            except (subprocess.TimeoutExpired, ValueError):
                pass
        self.procs.clear()

    def add(self, tag, *dirs):
        """tags add TAG -a DIRS...; returns the new run's name."""
        cp = self.ok("tags", "add", tag, "-a", *dirs)
        name = cp.stdout.strip()
        assert RUN_NAME.match(name), describe(cp)
        return name

    def download(self, spec, out):
        self.ok("artifacts", "download", spec, "-o", out)
        return Path(out)

    def fsck_clean(self):
        cp = self("fsck")
        assert cp.returncode == 0 and cp.stdout == "" and cp.stderr == "", describe(cp)

    def tags(self):
        """tags list as {tag: row}."""
        return {row["TAG"]: row for row in parse_table(self.ok("tags", "list").stdout)}

    @property
    def packs(self):
        return self.home / "packs"

    def pack_bytes(self):
        return tree_bytes(self.packs)

    def pack_files(self):
        return sorted(p for p in self.packs.rglob("*") if p.is_file())

    def tmp_entries(self):
        tmp = self.home / "tmp"
        return sorted(os.listdir(tmp)) if tmp.exists() else []

    def objects(self):
        """Stored objects as the catalog places them (read with Python's
        sqlite3 while the store is idle): [(hash hex, pack path, frame
        offset, frame size, raw size)].  Objects bundled into one frame
        share its offset."""
        con = sqlite3.connect(f"file:{self.home / 'catalog.db'}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT o.hash, p.name, o.offset, o.stored, o.raw"
                               " FROM objects o JOIN packs p ON p.id = o.pack").fetchall()
        finally:
            con.close()
        return [(h.hex(), self.packs / name[:2] / name, off, stored, raw)
                for h, name, off, stored, raw in rows]

    def catalog_packs(self):
        """Pack names the catalog knows (read with Python's sqlite3, store idle)."""
        con = sqlite3.connect(f"file:{self.home / 'catalog.db'}?mode=ro", uri=True)
        try:
            return {r[0] for r in con.execute("SELECT name FROM packs")}
        finally:
            con.close()


@pytest.fixture(scope="session", autouse=True)
def dstack_binary():
    if not BIN.is_file() or not os.access(BIN, os.X_OK):
        pytest.exit(f"dstack binary not found at {BIN}; build it or set DSTACK_BIN", 2)
    return BIN


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(autouse=True)
def drop_files_of_passed_tests(request, tmp_path):
    """These tests write hundreds of MiB: keep a test's files only when it
    failed (or DSTACK_E2E_KEEP is set), for a look at what went wrong."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.passed and not os.environ.get("DSTACK_E2E_KEEP"):
        shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture
def home(tmp_path):
    return tmp_path / "dstack-home"


@pytest.fixture
def ds(home):
    d = Dstack(home)
    yield d
    d.reap()


# --------------------------------------------------------------------------
# Tables


def parse_table(text):
    """Parses an aligned table (header row, columns two spaces apart).

    Columns are cut at the byte offsets of the header words, as the tool
    pads by bytes, so cells may hold spaces and multi-byte characters.
    """
    raw = text.encode("utf-8", "surrogateescape").split(b"\n")
    raw = [l for l in raw if l != b""]
    assert raw, "empty table"
    header = raw[0]
    starts = [m.start() for m in re.finditer(rb"\S+", header)]
    names = [m.group().decode() for m in re.finditer(rb"\S+", header)]
    rows = []
    for line in raw[1:]:
        cells = []
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else len(line)
            cell = line[start:end]
            if i + 1 < len(starts):
                assert cell.endswith(b"  "), f"misaligned row {line!r} in:\n{text}"
                cell = cell[:-2].rstrip(b" ")
            cells.append(cell.decode("utf-8", "surrogateescape"))
        rows.append(dict(zip(names, cells)))
    return rows


def table_header(text):
    first = text.splitlines()[0]
    return first.split()


# --------------------------------------------------------------------------
# Files and trees


def write_random(path, size, seed=None):
    """Incompressible bytes; deterministic when seed is given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        if seed is None:
            left = size
            while left:
                n = min(left, 8 * MiB)
                f.write(os.urandom(n))
                left -= n
        else:
            f.write(random.Random(seed).randbytes(size))
    return path


def write_compressible(path, size, seed=0):
    """Log-like text that lz4 shrinks a lot."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "loss", "epoch", "step", "ok"]
    out = bytearray()
    i = 0
    while len(out) < size:
        out += f"{i:08d} {rng.choice(words)} value={rng.randint(0, 999)}\n".encode()
        i += 1
    with open(path, "wb") as f:
        f.write(bytes(out[:size]))
    return path


def file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(4 * MiB)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def snapshot(root):
    """{relative path (bytes): (kind, mode, content)} for everything under root.

    kind is file/dir/link; mode the permission bits (S_IMODE, so setuid,
    setgid and sticky count); content the SHA-256 of a file, a link's
    target, None for folders.  The root's own mode is left out: an
    artifact folder's top is created by download.
    """
    root = os.fsencode(root)
    result = {}

    def walk(rel):
        full = os.path.join(root, rel) if rel else root
        for name in sorted(os.listdir(full)):
            r = os.path.join(rel, name) if rel else name
            p = os.path.join(root, r)
            st = os.lstat(p)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                result[r] = ("link", None, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                result[r] = ("dir", mode, None)
                walk(r)
            elif stat.S_ISREG(st.st_mode):
                result[r] = ("file", mode, file_sha(p))
            else:
                result[r] = ("special", mode, None)

    assert os.path.isdir(root) and not os.path.islink(root), root
    walk(b"")
    return result


def assert_same_tree(expected_root, actual_root, skip_special=True):
    """Byte-for-byte, mode-for-mode, link-for-link equality of two trees."""
    want = snapshot(expected_root)
    if skip_special:
        want = {k: v for k, v in want.items() if v[0] != "special"}
    got = snapshot(actual_root)
    assert_same_snapshot(want, got, f"{expected_root} vs {actual_root}")


def assert_same_snapshot(want, got, what=""):
    if want == got:
        return
    problems = []
    for k in sorted(set(want) | set(got)):
        if k not in got:
            problems.append(f"missing: {k!r} {want[k]}")
        elif k not in want:
            problems.append(f"unexpected: {k!r} {got[k]}")
        elif want[k] != got[k]:
            problems.append(f"differs: {k!r} want {_show(want[k])} got {_show(got[k])}")
    raise AssertionError(f"trees differ ({what}):\n" + "\n".join(problems[:40]))


def _show(entry):
    kind, mode, content = entry
    return f"({kind}, {'-' if mode is None else oct(mode)}, {content!r})"


def tree_bytes(root):
    """Apparent size of all regular files under root."""
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.lstat(p).st_size
    return total


def set_tree_mtime(root, when):
    """Sets the mtime (and atime) of every file under root to `when` (s)."""
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.utime(p, (when, when))


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


# --------------------------------------------------------------------------
# Mounts


def _can_mount():
    return os.geteuid() == 0


@contextlib.contextmanager
def tmpfs(path, size):
    """A tmpfs of `size` mounted at path for the duration; always unmounted."""
    if not _can_mount():
        pytest.skip("mounting a tmpfs needs root")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755",
                         "tmpfs", str(path)], capture_output=True, text=True)
    if cp.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {cp.stderr.strip()}")
    try:
        yield path
    finally:
        r = subprocess.run(["umount", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path, opts):
    subprocess.run(["mount", "-o", f"remount,{opts}", str(path)], check=True,
                   capture_output=True)


# --------------------------------------------------------------------------
# inotify: which files a command opened (to see the stat cache at work)

IN_ACCESS = 0x001
IN_OPEN = 0x020
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000


class OpenWatch:
    """Records the names of files opened inside one folder (not recursive)."""

    def __init__(self, folder):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            pytest.skip("inotify unavailable")
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(folder), IN_OPEN | IN_ACCESS)
        if wd < 0:
            os.close(self.fd)
            pytest.skip("inotify_add_watch failed")

    def drain(self):
        names = set()
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            off = 0
            while off + 16 <= len(buf):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", buf, off)
                name = buf[off + 16:off + 16 + length].rstrip(b"\0")
                off += 16 + length
                if name and not mask & IN_ISDIR:
                    names.add(os.fsdecode(name))
        return names

    def close(self):
        os.close(self.fd)


def wait_ctime_settled(root, settle=2.5):
    """Sleeps until every file's ctime is `settle` seconds old.

    The stat cache does not trust files changed in the last seconds (their
    mtime/ctime cannot yet tell a later write apart), as git's index.
    """
    newest = 0.0
    for dirpath, _, files in os.walk(root):
        for f in files:
            newest = max(newest, os.lstat(os.path.join(dirpath, f)).st_ctime)
    delay = newest + settle - time.time()
    if delay > 0:
        time.sleep(delay)


# --------------------------------------------------------------------------
# Repositories and the seed's provider example


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def git_init(root):
    """An empty git repository at root (made), with an identity to commit as."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "t")
    return root


def make_repo(root, workflows, providers=None, files=None):
    """A committed repository: .dstack/workflows.yaml (and providers.yaml)
    from dedented text, plus files {relative path: dedented text}."""
    git_init(root)
    files = dict(files or {})
    files[".dstack/workflows.yaml"] = workflows
    if providers:
        files[".dstack/providers.yaml"] = providers
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(text))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def process_alive(pid):
    """pid is a process that has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def kill_runner(command):
    """SIGKILL to the processes running `dstack COMMAND`: a runner dies.
    Returns once they have exited, as a crash leaves them: a process that
    was sent SIGKILL may still be alive for the next command to see."""
    pids = [int(p) for p in subprocess.run(["pgrep", "-f", command], stdout=subprocess.PIPE,
                                           text=True).stdout.split()]
    assert pids, "no runner process"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not any(process_alive(p) for p in pids), timeout=10), pids


def no_process(marker):
    """No process has marker in its command line."""
    return subprocess.run(["pgrep", "-f", marker], stdout=subprocess.PIPE).stdout == b""


def wait_for(predicate, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


# The seed's example (custom-providers.txt), verbatim apart from indentation.
SEED_MAIN = '''\
from typing import List

from dstack import Provider, Job


class CurlProvider(Provider):
    def __init__(self):
        super().__init__(schema="providers/curl/schema.yaml")
        self.url = self.workflow.data["url"]
        self.output = self.workflow.data["output"]
        self.artifacts = self.workflow.data["artifacts"]

    def create_jobs(self) -> List[Job]:
        return [Job(
            image="python:3.9",
            commands=[
                f"curl {self.url} -o {self.output}"
            ],
            artifacts=self.artifacts
        )]


if __name__ == '__main__':
    provider = CurlProvider()
    provider.start()
'''

SEED_SCHEMA = '''\
type: object
additionalProperties: false
properties:
  url:
    type: string
  output:
    type: string
  artifacts:
    type: array
    items:
      type: string
required:
  - url
  - output
'''
