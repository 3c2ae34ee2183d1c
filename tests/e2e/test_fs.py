"""The /dstack tree (`dstack mount`) as a user meets it: ls, cat, tail -f,
`echo ... > ctl`, cp, tar, diff and plain system calls on a real FUSE
mount of a fresh repository's runs, one mount per test, always unmounted.

The contract is the "/dstack tree" section of DESIGN.md: its layout, the
root and run `ctl` files (lines split like shell words, several lines in
one write, read-back on the same descriptor, the errno of the first bad
line), read-only artifacts (EROFS), tags as symlinks, and `mount`/`umount`.
"""
import errno
import os
import queue
import random
import re
import select
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import (BIN, ISO_UTC, REPO, MiB, RUN_NAME, assert_error, assert_ok, describe,
                      git, make_repo, no_process, parse_table, process_alive, snapshot,
                      wait_for, write_random)

FINAL = {"done", "failed", "stopped", "aborted"}
INFO_KEYS = ["workflow", "provider", "args", "tag", "submitted", "started", "finished",
             "repo", "commit", "exit", "reason", "cached"]
BIG_SIZE = 5 * MiB + 12345          # not a multiple of any chunk size
SLOW_LINES = 15                     # slow: a line every 0.2 s, then "last line"

WORKFLOWS = """\
    workflows:
      - name: make
        provider: bash
        commands:
          - echo making artifacts
          - mkdir -p out/nested/deep
          - cp data/big.bin data/small.txt data/run.sh out/
          - echo deep > out/nested/deep/leaf.txt
          - touch out/empty
          - ln -s small.txt out/link
          - ln -s nested/deep/leaf.txt out/deeplink
          - echo made
        artifacts:
          - out

      - name: slow
        provider: bash
        commands:
          - for i in $(seq 1 %(lines)d); do echo "line $i"; sleep 0.2; done
          - echo "last line"

      - name: gated
        provider: bash
        commands:
          - until [ -e /tmp/dstack-gate.%(token)d ]; do sleep 0.05; done
          - echo "last line"

      - name: forever
        provider: bash
        commands:
          - echo started
          - sleep 1000.%(token)d

      - name: fails
        provider: bash
        commands:
          - echo before
          - exit 3

      - name: after
        provider: bash
        deps:
          - workflow: make
        commands:
          - cat out/small.txt
          - awk -v d="$PWD/out" '$5 == d { for (i = 7; $i != "-"; i++); print "type " $(i + 1) }' /proc/self/mountinfo
          - touch out/new 2>/dev/null && echo wrote || echo read-only

      - name: badprov
        provider: no-such-provider
        commands:
          - "true"

      - name: live
        provider: bash
        commands:
          - mkdir -p ckpt/sub
          - ln -s train.log ckpt/latest
          - echo "epoch 1" > ckpt/train.log
          - until [ -e /tmp/dstack-live-go.%(token)d ]; do sleep 0.05; done
          - echo "epoch 2" >> ckpt/train.log
          - echo two > ckpt/sub/epoch2.txt
          - rm /tmp/dstack-live-go.%(token)d
          - until [ -e /tmp/dstack-live-go.%(token)d ]; do sleep 0.05; done
          - mkdir -p plain && echo p > plain/p.txt
        artifacts:
          - path: ./ckpt
            mount: true
          - plain

      - name: print-args
        provider: bash
        commands:
          - printf '<%%s>\\n' ${{ run.args }}
    """


# --------------------------------------------------------------------------
# Mounts and daemons


def mounted_paths():
    """Mount points listed in /proc/mounts (octal escapes undone)."""
    out = []
    with open("/proc/mounts") as f:
        for line in f:
            point = line.split()[1]
            out.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point))
    return out


def is_mounted(path):
    return str(path) in mounted_paths()


def daemon_pids(mnt):
    """Live `dstack mount ... MNT` processes (what `pgrep -f "mount ... MNT"`
    finds, without the `umount MNT` commands)."""
    want = os.fsencode(str(mnt))
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")[:-1]
        except OSError:
            continue
        if (len(argv) >= 3 and argv[0].endswith(b"dstack") and argv[1] == b"mount"
                and argv[-1] == want and process_alive(int(entry))):
            pids.append(int(entry))
    return pids


def pids_with(marker):
    cp = subprocess.run(["pgrep", "-f", marker], stdout=subprocess.PIPE, text=True)
    return [int(p) for p in cp.stdout.split()]


def mount_env(tmp_path):
    """Under ASan the daemon's stderr is /dev/null: its reports go to files."""
    env = {}
    if os.environ.get("ASAN_OPTIONS"):
        env["ASAN_OPTIONS"] = (os.environ["ASAN_OPTIONS"] +
                               f":log_path={tmp_path / 'asan-daemon'}")
    return env


def asan_reports(tmp_path):
    return sorted(tmp_path.glob("asan-daemon*"))


def force_unmount(mnt, marker=None):
    """Last resort: lazy unmount, kill the daemon (and the jobs it left)."""
    if is_mounted(mnt):
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    for pid in daemon_pids(mnt):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if marker:
        for pid in pids_with(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def unmount_all(ds, *paths):
    """A test's own mounts: umount, wait for the daemon, then force."""
    for p in paths:
        if is_mounted(p):
            ds("umount", p, timeout=30)
            wait_for(lambda: not daemon_pids(p), timeout=20)
        force_unmount(p)


class Tree:
    """A mounted tree: repo, mountpoint, the ds bound to its $DSTACK_HOME."""

    def __init__(self, ds, repo, mnt, token, tmp_path):
        self.ds, self.repo, self.mnt, self.token, self.tmp = ds, repo, mnt, token, tmp_path
        self.marker = f"sleep 1000.{token}"

    def __iter__(self):
        return iter((self.repo, self.mnt))

    def path(self, *parts):
        return self.mnt.joinpath(*parts)

    def run(self, name, *parts):
        return self.mnt.joinpath("runs", name, *parts)


@pytest.fixture
def tree(ds, tmp_path):
    """A fresh repository (big.bin, small files, a 0755 script) mounted at
    tmp_path/mnt with its own $DSTACK_HOME; unmounted at the end whatever
    happened, the daemon gone, no mount and no job left behind."""
    token = random.randrange(10**6, 10**7)
    repo = make_repo(tmp_path / "repo", WORKFLOWS % {"lines": SLOW_LINES, "token": token},
                     files={"data/small.txt": "hello small\n",
                            "data/run.sh": "#!/bin/sh\necho hi\n"})
    write_random(repo / "data" / "big.bin", BIG_SIZE, seed=1234)
    (repo / "data" / "run.sh").chmod(0o755)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "data")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    t = Tree(ds, repo, mnt, token, tmp_path)
    cp = ds("mount", mnt, cwd=repo, env=mount_env(tmp_path), timeout=60)
    try:
        assert_ok(cp)
        assert cp.stdout == "", describe(cp)
        assert is_mounted(mnt), "dstack mount returned 0 but nothing is mounted\n" + describe(cp)
        assert daemon_pids(mnt), "no daemon serves the tree"
        yield t
    finally:
        problems = []
        if is_mounted(mnt):
            um = ds("umount", mnt, timeout=60)
            if um.returncode != 0:
                problems.append("umount failed in teardown\n" + describe(um))
        if not wait_for(lambda: not daemon_pids(mnt), timeout=40):
            problems.append(f"the daemon did not exit after umount: {daemon_pids(mnt)}")
        if is_mounted(mnt) or daemon_pids(mnt):
            problems.append("a mount or daemon was left behind")
        if not wait_for(lambda: no_process(t.marker), timeout=10):
            problems.append(f"job processes left: {pids_with(t.marker)}")
        force_unmount(mnt, t.marker)
        assert not is_mounted(mnt), f"{mnt} still mounted"
        reports = asan_reports(tmp_path)
        if reports:
            problems.append("ASan report of the daemon:\n" +
                            "\n".join(p.read_text(errors="replace")[-6000:] for p in reports))
        assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------
# Helpers


def sh(script, timeout=60, cwd=None):
    return subprocess.run(["bash", "-c", script], cwd=cwd, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_all(fd):
    out = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return out
        out += chunk


def ctl(path, data):
    """One write to a ctl file on a fresh O_RDWR descriptor, then its
    read-back: (errno or 0, answer lines)."""
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            n = os.write(fd, data)
            assert n == len(data), f"short write {n} of {len(data)}"
            code = 0
        except OSError as e:
            code = e.errno
        answer = read_all(fd).decode()
    finally:
        os.close(fd)
    assert answer == "" or answer.endswith("\n"), repr(answer)
    return code, answer.splitlines()


def start(t, line):
    """Starts a run through the root ctl; returns its name."""
    code, answer = ctl(t.path("ctl"), line + "\n")
    assert code == 0, f"ctl write {line!r} failed: {errno.errorcode.get(code)} {answer}"
    assert len(answer) == 1 and RUN_NAME.match(answer[0]), answer
    return answer[0]


def status(t, name, job=None):
    parts = ("jobs", str(job), "status") if job is not None else ("status",)
    return t.run(name, *parts).read_text()


def wait_status(t, name, want=FINAL, timeout=30):
    seen = []

    def check():
        s = status(t, name).strip()
        if not seen or seen[-1] != s:
            seen.append(s)
        return s in want

    assert wait_for(check, timeout=timeout), f"{name}: statuses seen {seen}, wanted {want}"
    return seen[-1]


def info(t, name):
    text = t.run(name, "info").read_text()
    lines = text.splitlines()
    assert text.endswith("\n")
    pairs = [l.split(": ", 1) if ": " in l else [l.rstrip(":"), ""] for l in lines]
    assert all(l.startswith(k + ":") for l, (k, _) in zip(lines, pairs)), text
    return dict(pairs), [k for k, _ in pairs]


def runs_listed(t):
    return sorted(os.listdir(t.path("runs")))


def ps_all(t):
    return parse_table(t.ds.ok("ps", "-a", cwd=t.repo).stdout)


def expect_errno(code, fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    assert e.value.errno == code, \
        f"{fn.__name__}{args}: {errno.errorcode.get(e.value.errno)}, wanted {errno.errorcode[code]}"


def make_run(t):
    name = start(t, "make")
    assert wait_status(t, name) == "done", t.run(name, "logs").read_text()
    return name


def masked(snap):
    """A snapshot with the write bits taken away, as the tree shows modes."""
    return {k: (kind, None if mode is None else mode & ~0o222, c)
            for k, (kind, mode, c) in snap.items()}


# --------------------------------------------------------------------------
# 1. Every level of the tree


def test_listing_every_level(tree):
    t = tree
    assert sorted(os.listdir(t.mnt)) == ["ctl", "runs", "tags", "workflows"]
    assert sorted(os.listdir(t.path("workflows"))) == sorted(
        ["make", "slow", "gated", "forever", "fails", "after", "live", "badprov",
         "print-args"])
    # No done run yet: no latest.
    assert os.listdir(t.path("workflows", "make")) == ["spec.yaml"]
    assert runs_listed(t) == []
    assert os.listdir(t.path("tags")) == []

    name = make_run(t)
    assert sorted(os.listdir(t.path("workflows", "make"))) == ["latest", "spec.yaml"]
    assert os.listdir(t.path("workflows", "slow")) == ["spec.yaml"]
    latest = t.path("workflows", "make", "latest")
    assert os.path.islink(latest) and os.readlink(latest) == f"../../runs/{name}"
    assert os.path.realpath(latest) == str(t.run(name))
    assert runs_listed(t) == [name]
    assert sorted(os.listdir(t.run(name))) == sorted(
        ["status", "info", "ctl", "logs", "artifacts", "jobs"])
    assert os.listdir(t.run(name, "jobs")) == ["0"]
    assert {"status", "info", "logs", "artifacts"} <= set(os.listdir(t.run(name, "jobs", "0")))
    assert os.listdir(t.run(name, "artifacts")) == ["out"]
    assert sorted(os.listdir(t.run(name, "artifacts", "out"))) == sorted(
        ["big.bin", "small.txt", "run.sh", "nested", "empty", "link", "deeplink"])
    assert os.listdir(t.run(name, "artifacts", "out", "nested")) == ["deep"]
    assert os.listdir(t.run(name, "jobs", "0", "artifacts", "out", "nested", "deep")) == \
        ["leaf.txt"]

    # Kinds of things, as stat sees them.
    for p in ["", "workflows", "workflows/make", "runs", f"runs/{name}",
              f"runs/{name}/jobs", f"runs/{name}/jobs/0", f"runs/{name}/artifacts", "tags"]:
        assert stat.S_ISDIR(os.stat(t.path(p)).st_mode), p
    for p in ["ctl", "workflows/make/spec.yaml", f"runs/{name}/status", f"runs/{name}/info",
              f"runs/{name}/logs", f"runs/{name}/ctl", f"runs/{name}/jobs/0/logs"]:
        assert stat.S_ISREG(os.lstat(t.path(p)).st_mode), p

    # ls at every level, as a user would type it.
    for p in ["", "workflows", "workflows/make", "runs", f"runs/{name}", f"runs/{name}/jobs",
              f"runs/{name}/jobs/0", f"runs/{name}/artifacts/out", "tags"]:
        cp = sh(f"ls -la {shlex.quote(str(t.path(p)))}")
        assert cp.returncode == 0 and cp.stderr == "", (p, cp.stderr)
    cp = sh(f"ls -R {t.mnt}")
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr

    # A tag shows in tags/.
    t.ds.ok("tags", "add", "first", name)
    assert os.listdir(t.path("tags")) == ["first"]

    # latest follows the newest done run; a failed run does not count.
    second = make_run(t)
    failed = start(t, "fails")
    assert wait_status(t, failed) == "failed"
    assert os.readlink(latest) == f"../../runs/{second}"
    assert sorted(runs_listed(t)) == sorted([name, second, failed])
    assert os.listdir(t.path("workflows", "fails")) == ["spec.yaml"]


def test_job_folder_holds_its_spec_yaml(tree):
    """DESIGN: runs/RUN/jobs/N/{spec.yaml,status,info,logs,artifacts/...}."""
    t = tree
    name = make_run(t)
    job = t.run(name, "jobs", "0")
    assert sorted(os.listdir(job)) == sorted(["spec.yaml", "status", "info", "logs",
                                              "artifacts"])
    spec = yaml.safe_load((job / "spec.yaml").read_text())
    assert isinstance(spec, dict) and "commands" in spec, spec


# --------------------------------------------------------------------------
# 2. cat of status, info, logs, spec.yaml


def test_a_hundred_runs_started_at_once_through_ctl(tree):
    # Issue 7's load: several writers at once, 25 lines each; every run
    # gets a name of its own, runs to its end, and none is lost.
    t = tree
    names, errors = [], []

    def writer(w):
        code, answer = ctl(t.path("ctl"), "".join(f"print-args {w} {i}\n" for i in range(25)))
        if code:
            errors.append((w, code, answer))
        names.extend(answer)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert len(names) == 100 and len(set(names)) == 100, names
    assert all(RUN_NAME.match(name) for name in names), names
    for name in names:
        wait_status(t, name, timeout=300)
    statuses = {name: status(t, name).strip() for name in names}
    assert set(statuses.values()) == {"done"}, statuses
    listed = {r["RUN"] for r in ps_all(t)}
    assert set(names) <= listed
    assert_ok(t.ds("fsck", cwd=t.repo, timeout=120))


def test_secrets_in_env_are_masked_in_specs(tree):
    # Anyone who may read the tree reads spec.yaml; the jobs still get the values.
    t = tree
    (t.repo / ".dstack" / "workflows").mkdir()
    (t.repo / ".dstack" / "workflows" / "secrets.yaml").write_text(textwrap.dedent("""\
        workflows:
          - name: secrets
            provider: bash
            env:
              API_TOKEN: tok-123
              AWS_SECRET_ACCESS_KEY: aws-456
              db_password: pw-789
              GREETING: hello
              MONKEY: banana
            commands:
              - echo "$API_TOKEN $db_password $GREETING"
          - name: provided
            provider: with-env
        """))
    # A provider's jobs carry env of their own, shown in jobs/N/spec.yaml.
    (t.repo / ".dstack" / "providers.yaml").write_text(textwrap.dedent("""\
        providers:
          - name: with-env
            commands:
              - >-
                echo '[{"commands": ["echo $HF_TOKEN"],
                "env": {"HF_TOKEN": "hf-1", "SEED": "42"}}]' > "$DSTACK_JOBS"
        """))
    text = t.path("workflows", "secrets", "spec.yaml").read_text()
    assert yaml.safe_load(text)["env"] == {
        "API_TOKEN": "***", "AWS_SECRET_ACCESS_KEY": "***", "db_password": "***",
        "GREETING": "hello", "MONKEY": "banana"}, text
    name = start(t, "secrets")
    assert wait_status(t, name) == "done"
    assert "tok-123 pw-789 hello\n" in t.run(name, "logs").read_text()
    for path in (t.path("workflows", "secrets", "spec.yaml"),
                 t.run(name, "jobs", "0", "spec.yaml"), t.run(name, "info")):
        text = path.read_text()
        assert "tok-123" not in text and "aws-456" not in text and "pw-789" not in text
    name = start(t, "provided")
    assert wait_status(t, name) == "done", t.run(name, "logs").read_text()
    job = yaml.safe_load(t.run(name, "jobs", "0", "spec.yaml").read_text())
    assert sorted(job["env"]) == ["HF_TOKEN=***", "SEED=42"], job
    assert "hf-1\n" in t.run(name, "logs").read_text()


def test_cat_status_info_logs_and_spec(tree):
    t = tree
    name = make_run(t)
    cat = lambda *parts: assert_ok(subprocess.run(
        ["cat", str(t.path(*parts))], capture_output=True, text=True)).stdout

    assert cat("runs", name, "status") == "done\n"
    assert cat("runs", name, "jobs", "0", "status") == "done\n"

    text = cat("runs", name, "info")
    values, keys = info(t, name)
    assert keys == INFO_KEYS, text
    assert values["workflow"] == "make" and values["provider"] == "bash"
    assert values["args"] == "" and values["tag"] == ""
    for k in ("submitted", "started", "finished"):
        assert ISO_UTC.match(values[k]), text
    assert values["submitted"] <= values["started"] <= values["finished"], text
    assert values["repo"] in (str(t.repo), os.path.realpath(t.repo)), text
    head = subprocess.run(["git", "-C", str(t.repo), "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    assert values["commit"] == head, text
    assert values["exit"] == "0", text

    logs = cat("runs", name, "logs")
    assert "making artifacts\n" in logs and "made\n" in logs
    assert logs == t.ds.ok("logs", name).stdout
    assert cat("runs", name, "jobs", "0", "logs") == logs

    spec = yaml.safe_load(cat("workflows", "make", "spec.yaml"))
    assert spec["name"] == "make" and spec["provider"] == "bash"
    assert "echo made" in spec["commands"] and spec["artifacts"] == ["out"]
    assert yaml.safe_load(cat("workflows", "after", "spec.yaml"))["deps"] == [{"workflow": "make"}]

    # A failed run: its status, its exit code, its output.
    failed = start(t, "fails")
    assert wait_status(t, failed) == "failed"
    assert cat("runs", failed, "status") == "failed\n"
    values, _ = info(t, failed)
    assert values["exit"] == "3" and values["workflow"] == "fails"
    assert values["reason"] == "job 0 exited with status 3", values
    assert "before\n" in cat("runs", failed, "logs")

    # Args and tag show in info; args as one shell-quoted line.
    tagged = start(t, "-t v1 print-args a 'b c'")
    assert wait_status(t, tagged) == "done"
    values, _ = info(t, tagged)
    assert shlex.split(values["args"]) == ["a", "b c"], values["args"]
    assert values["tag"] == "v1"

    # A rerun through ctl: the same workflow, args and commit.
    again = start(t, f"--rerun {tagged}")
    assert wait_status(t, again) == "done"
    assert cat("runs", again, "logs") == cat("runs", tagged, "logs")
    assert info(t, again)[0]["args"] == values["args"]
    assert info(t, again)[0]["commit"] == values["commit"]
    code, answer = ctl(t.path("ctl"), f"--rerun {tagged} print-args\n")
    assert code == errno.EINVAL and answer == [
        "error: expected [-t TAG] [--backend NAME] [--cache|--no-cache]"
        " (WORKFLOW [ARGS...] | --rerun RUN)"], answer

    # A live run: started, not finished, no exit yet; stopped: still no exit.
    live = start(t, "forever")
    wait_status(t, live, {"running"})
    values, keys = info(t, live)
    assert keys == INFO_KEYS
    assert ISO_UTC.match(values["started"]) and values["finished"] == "" and values["exit"] == ""
    t.ds.ok("stop", live)
    assert cat("runs", live, "status") == "stopped\n"
    values, _ = info(t, live)
    assert ISO_UTC.match(values["finished"]) and values["exit"] == ""

    # Uncommitted files: the commit says (dirty).
    (t.repo / "untracked.txt").write_text("new\n")
    dirty = make_run(t)
    assert info(t, dirty)[0]["commit"] == head + " (dirty)"


# --------------------------------------------------------------------------
# 3. Starting runs through ctl


def test_echo_to_ctl_starts_a_run(tree):
    t = tree
    cp = sh(f"echo make > {t.path('ctl')}")
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr
    [name] = runs_listed(t)
    assert RUN_NAME.match(name)
    rows = {r["RUN"]: r for r in ps_all(t)}
    assert name in rows and rows[name]["WORKFLOW"] == "make", rows
    assert wait_status(t, name) == "done"


def test_several_lines_in_one_write_start_runs_in_order(tree):
    t = tree
    fd = os.open(t.path("ctl"), os.O_RDWR)
    try:
        data = b"fails\nprint-args one two\nmake\n"
        assert os.write(fd, data) == len(data)
        names = read_all(fd).decode().splitlines()
    finally:
        os.close(fd)
    assert len(names) == 3 and all(RUN_NAME.match(n) for n in names), names
    assert len(set(names)) == 3
    assert sorted(runs_listed(t)) == sorted(names)
    for n, wf in zip(names, ["fails", "print-args", "make"]):
        wait_status(t, n)
        assert info(t, n)[0]["workflow"] == wf
    submitted = [info(t, n)[0]["submitted"] for n in names]
    assert submitted == sorted(submitted), submitted


def test_ctl_read_back_on_the_same_descriptor(tree):
    t = tree
    ctl_path = shlex.quote(str(t.path("ctl")))
    cp = sh(f"exec 3<>{ctl_path}; echo make >&3; cat <&3; echo ---; cat <&3; echo ---")
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert len(lines) == 3 and RUN_NAME.match(lines[0]) and lines[1:] == ["---", "---"], lines
    assert runs_listed(t) == [lines[0]]

    # End of file, and end of file again.
    fd = os.open(t.path("ctl"), os.O_RDWR)
    try:
        os.write(fd, b"fails\n")
        first = os.read(fd, 4096).decode()
        assert os.read(fd, 4096) == b"" and os.read(fd, 4096) == b""
        [n1] = first.splitlines()
        assert RUN_NAME.match(n1)
        # A fresh descriptor reads nothing, even while another holds an answer.
        fresh = os.open(t.path("ctl"), os.O_RDWR)
        try:
            assert os.read(fresh, 4096) == b""
        finally:
            os.close(fresh)
        with open(t.path("ctl"), "rb") as f:
            assert f.read() == b""
        # A new write replaces the answer: read or not.
        os.write(fd, b"print-args x\n")
        [n2] = read_all(fd).decode().splitlines()
        os.write(fd, b"fails\n")
        os.write(fd, b"make\n")
        [n4] = read_all(fd).decode().splitlines()
        assert len({n1, n2, n4}) == 3
        # A partly read answer, then a new write: the new answer from its start.
        os.write(fd, b"fails\nfails\n")
        assert len(os.read(fd, 3)) == 3
        os.write(fd, b"print-args y\n")
        [n7] = read_all(fd).decode().splitlines()
        assert RUN_NAME.match(n7)
        assert info(t, n7)[0]["workflow"] == "print-args"
    finally:
        os.close(fd)
    for n in runs_listed(t):
        wait_status(t, n)
    assert len(runs_listed(t)) == 8


def test_ctl_tag_option_tags_the_run_once_it_ends(tree):
    t = tree
    cp = sh(f"echo '-t slowtag slow' > {t.path('ctl')}")
    assert cp.returncode == 0, cp.stderr
    [name] = runs_listed(t)
    wait_status(t, name, {"running"})
    assert not os.path.lexists(t.path("tags", "slowtag")), "tagged before the run ended"
    assert wait_status(t, name) == "done"
    assert wait_for(lambda: os.path.lexists(t.path("tags", "slowtag")), timeout=5)
    assert os.readlink(t.path("tags", "slowtag")) == f"../runs/{name}"
    assert t.ds.tags()["slowtag"]["RUN"] == name
    assert info(t, name)[0]["tag"] == "slowtag"


def test_ctl_args_are_split_like_shell_words(tree):
    t = tree
    cp = sh(f"""echo "print-args -l 'Hello, world!'" > {t.path('ctl')}""")
    assert cp.returncode == 0, cp.stderr
    [name] = runs_listed(t)
    assert wait_status(t, name) == "done"
    logs = t.run(name, "logs").read_text()
    assert [l for l in logs.splitlines() if l.startswith("<")] == ["<-l>", "<Hello, world!>"], logs
    # Double quotes and backslashes, too.
    name2 = start(t, r'print-args "a  b" c\ d "e\"f" ' + "''")
    assert wait_status(t, name2) == "done"
    logs = t.run(name2, "logs").read_text()
    assert [l for l in logs.splitlines() if l.startswith("<")] == \
        ["<a  b>", "<c d>", '<e"f>', "<>"], logs


# --------------------------------------------------------------------------
# 4. Every error code


def test_ctl_errors_and_their_errno(tree):
    t = tree
    root_ctl = t.path("ctl")

    code, answer = ctl(root_ctl, "nosuch\n")
    assert code == errno.ENOENT, errno.errorcode.get(code)
    assert len(answer) == 1 and answer[0].startswith("error: ") and "nosuch" in answer[0], answer
    cp = sh(f"echo nosuch > {root_ctl}")
    assert cp.returncode != 0 and "No such file or directory" in cp.stderr, cp.stderr

    code, answer = ctl(root_ctl, "print-args 'unterminated\n")
    assert code == errno.EINVAL, errno.errorcode.get(code)
    assert len(answer) == 1 and answer[0].startswith("error: "), answer

    code, answer = ctl(root_ctl, "badprov\n")
    assert code == errno.EINVAL, errno.errorcode.get(code)
    assert len(answer) == 1 and answer[0].startswith("error: "), answer

    # A dep with no done run to resolve: cannot start.
    code, answer = ctl(root_ctl, "after\n")
    assert code == errno.EINVAL, errno.errorcode.get(code)
    assert len(answer) == 1 and answer[0].startswith("error: "), answer
    assert runs_listed(t) == [], "a run was made by a failed line"

    # The second line is bad: the first took effect, nothing after it.
    code, answer = ctl(root_ctl, "make\nnosuch\nfails\n")
    assert code == errno.ENOENT, errno.errorcode.get(code)
    assert len(answer) == 2 and RUN_NAME.match(answer[0]), answer
    assert answer[1].startswith("error: ") and "nosuch" in answer[1], answer
    made = answer[0]
    assert runs_listed(t) == [made]
    code, answer = ctl(root_ctl, "fails\nprint-args 'oops\nfails\n")
    assert code == errno.EINVAL, errno.errorcode.get(code)
    assert len(answer) == 2 and RUN_NAME.match(answer[0]) and answer[1].startswith("error: ")
    for n in runs_listed(t):
        wait_status(t, n)
    time.sleep(0.5)
    assert sorted(r["WORKFLOW"] for r in ps_all(t)) == ["fails", "make"]

    # Now make has a done run: after starts.
    assert wait_status(t, made) == "done"
    after = start(t, "after")
    assert wait_status(t, after) == "done", t.run(after, "logs").read_text()
    assert "hello small" in t.run(after, "logs").read_text(), t.run(after, "logs").read_text()

    # A run's ctl: an unknown command is malformed.
    code, answer = ctl(t.run(made, "ctl"), "frobnicate\n")
    assert code == errno.EINVAL, errno.errorcode.get(code)
    assert len(answer) == 1 and answer[0].startswith("error: "), answer


def test_unknown_runs_and_tags_are_enoent(tree):
    t = tree
    name = make_run(t)
    expect_errno(errno.ENOENT, os.listdir, t.path("runs", "no-such-run-1"))
    expect_errno(errno.ENOENT, os.stat, t.path("runs", "no-such-run-1"))
    expect_errno(errno.ENOENT, os.open, t.path("runs", "no-such-run-1", "ctl"), os.O_WRONLY)
    expect_errno(errno.ENOENT, os.stat, t.run(name, "jobs", "1"))
    expect_errno(errno.ENOENT, os.stat, t.run(name, "artifacts", "out", "nope"))
    expect_errno(errno.ENOENT, os.stat, t.path("workflows", "nosuch"))
    expect_errno(errno.ENOENT, os.readlink, t.path("tags", "nosuch"))
    expect_errno(errno.ENOENT, os.unlink, t.path("tags", "nosuch"))
    # A tag onto a run that does not exist.
    expect_errno(errno.ENOENT, os.symlink, "../runs/no-such-run-9", t.path("tags", "ghost"))
    cp = sh(f"rm {t.path('tags', 'nosuch')}")
    assert cp.returncode != 0 and "No such file or directory" in cp.stderr, cp.stderr
    assert os.listdir(t.path("tags")) == []


def test_artifacts_refuse_every_change_with_erofs(tree):
    t = tree
    name = make_run(t)
    for base in (t.run(name, "artifacts"), t.run(name, "jobs", "0", "artifacts")):
        out = base / "out"
        small = out / "small.txt"
        expect_errno(errno.EROFS, os.open, small, os.O_WRONLY)
        expect_errno(errno.EROFS, os.open, small, os.O_RDWR)
        expect_errno(errno.EROFS, os.open, small, os.O_WRONLY | os.O_TRUNC)
        expect_errno(errno.EROFS, os.open, small, os.O_WRONLY | os.O_APPEND)
        expect_errno(errno.EROFS, os.truncate, small, 0)
        expect_errno(errno.EROFS, os.open, out / "new.txt", os.O_WRONLY | os.O_CREAT, 0o644)
        expect_errno(errno.EROFS, os.open, base / "new.txt", os.O_WRONLY | os.O_CREAT, 0o644)
        expect_errno(errno.EROFS, os.unlink, small)
        expect_errno(errno.EROFS, os.unlink, out / "link")
        expect_errno(errno.EROFS, os.mkdir, out / "newdir")
        expect_errno(errno.EROFS, os.mkdir, out / "nested" / "deep" / "newdir")
        expect_errno(errno.EROFS, os.rmdir, out / "nested" / "deep")
        expect_errno(errno.EROFS, os.rename, small, out / "moved.txt")
        expect_errno(errno.EROFS, os.symlink, "small.txt", out / "newlink")
        expect_errno(errno.EROFS, os.chmod, small, 0o666)
        cp = sh(f"echo x > {small}")
        assert cp.returncode != 0 and "Read-only file system" in cp.stderr, cp.stderr
        cp = sh(f"echo x >> {small}; touch {out}/t; rm -f {small}; mkdir {out}/d")
        assert cp.stderr.count("Read-only file system") == 4, cp.stderr
    assert (t.run(name, "artifacts", "out", "small.txt")).read_text() == "hello small\n"


def test_status_info_logs_refuse_writes(tree):
    t = tree
    name = make_run(t)
    allowed = {errno.EACCES, errno.EROFS}
    for p in [t.run(name, "status"), t.run(name, "info"), t.run(name, "logs"),
              t.run(name, "jobs", "0", "status"), t.run(name, "jobs", "0", "logs"),
              t.path("workflows", "make", "spec.yaml")]:
        for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
            with pytest.raises(OSError) as e:
                os.close(os.open(p, flags))
            assert e.value.errno in allowed, (p, flags, errno.errorcode.get(e.value.errno))
        cp = sh(f"echo x > {p}")
        assert cp.returncode != 0, p
    # Nothing new is made outside tags/.
    for p in [t.path("newfile"), t.path("runs", "newfile"), t.run(name, "newfile")]:
        with pytest.raises(OSError) as e:
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o644))
        assert e.value.errno in allowed, (p, errno.errorcode.get(e.value.errno))
    assert t.run(name, "status").read_text() == "done\n"


def test_tag_onto_an_existing_tag_is_eexist(tree):
    t = tree
    name = make_run(t)
    other = make_run(t)
    tags = t.path("tags")
    cp = sh(f"cd {tags} && ln -s ../runs/{name} keep")
    assert cp.returncode == 0, cp.stderr
    # -T (--no-target-directory): else ln, seeing that keep leads to a
    # folder, would make the link inside it, as it does on any file system.
    cp = sh(f"cd {tags} && ln -sT ../runs/{other} keep")
    assert cp.returncode != 0 and "File exists" in cp.stderr, cp.stderr
    expect_errno(errno.EEXIST, os.symlink, f"../runs/{other}", tags / "keep")
    # A run's ctl `tag NAME` onto an existing tag, too.
    code, answer = ctl(t.run(other, "ctl"), "tag keep\n")
    assert code == errno.EEXIST, errno.errorcode.get(code)
    assert len(answer) == 1 and answer[0].startswith("error: "), answer
    assert os.readlink(tags / "keep") == f"../runs/{name}"


# --------------------------------------------------------------------------
# 5. Tags as symlinks


def test_tags_are_added_by_ln_s_and_deleted_by_rm(tree):
    t = tree
    name = make_run(t)
    cp = sh(f"ln -s ../runs/{name} {t.path('tags', 'best')}")
    assert cp.returncode == 0, cp.stderr
    assert os.listdir(t.path("tags")) == ["best"]
    assert os.readlink(t.path("tags", "best")) == f"../runs/{name}"
    assert os.path.realpath(t.path("tags", "best")) == str(t.run(name))
    assert (t.path("tags", "best", "status")).read_text() == "done\n"
    assert (t.path("tags", "best", "artifacts", "out", "small.txt")).read_text() == "hello small\n"
    row = t.ds.tags()["best"]
    assert row["RUN"] == name and row["WORKFLOW"] == "make"
    assert info(t, name)[0]["tag"] == "best"
    cp = sh(f"ls -l {t.path('tags')}")
    assert cp.returncode == 0 and f"best -> ../runs/{name}" in cp.stdout, cp.stdout

    cp = sh(f"rm {t.path('tags', 'best')}")
    assert cp.returncode == 0, cp.stderr
    assert os.listdir(t.path("tags")) == []
    assert "best" not in t.ds.tags()
    assert runs_listed(t) == [name], "deleting the tag removed the run"
    # A tag made by the CLI shows up, and rm of it deletes it.
    t.ds.ok("tags", "add", "cli-tag", name)
    assert os.readlink(t.path("tags", "cli-tag")) == f"../runs/{name}"
    os.unlink(t.path("tags", "cli-tag"))
    assert t.ds.tags() == {}


# --------------------------------------------------------------------------
# 6. A run's ctl


def test_run_ctl_stop_abort_tag_rm(tree):
    t = tree
    live = start(t, "forever")
    wait_status(t, live, {"running"})
    assert pids_with(t.marker), "the job's process is not there"
    cp = sh(f"echo stop > {t.run(live, 'ctl')}", timeout=30)
    assert cp.returncode == 0, cp.stderr
    # stop returns once the run has ended.
    assert status(t, live) == "stopped\n"
    assert wait_for(lambda: no_process(t.marker), timeout=5)

    # Read-back on the same descriptor: ok.
    cp = sh(f"exec 3<>{t.run(live, 'ctl')}; echo 'tag keep' >&3; cat <&3")
    assert cp.returncode == 0 and cp.stdout == "ok\n", (cp.stdout, cp.stderr)
    assert os.readlink(t.path("tags", "keep")) == f"../runs/{live}"
    assert t.ds.tags()["keep"]["RUN"] == live

    aborted = start(t, "forever")
    wait_status(t, aborted, {"running"})
    code, answer = ctl(t.run(aborted, "ctl"), "abort\n")
    assert (code, answer) == (0, ["ok"])
    assert wait_status(t, aborted, timeout=5) == "aborted"

    # rm refuses a tagged run, naming the tag.
    code, answer = ctl(t.run(live, "ctl"), "rm\n")
    assert code != 0 and len(answer) == 1 and answer[0].startswith("error: ")
    assert "keep" in answer[0], answer
    assert live in runs_listed(t)

    # rm refuses a live run.
    busy = start(t, "forever")
    wait_status(t, busy, {"running"})
    code, answer = ctl(t.run(busy, "ctl"), "rm\n")
    assert code != 0 and len(answer) == 1 and answer[0].startswith("error: "), answer
    assert status(t, busy) == "running\n"
    code, answer = ctl(t.run(busy, "ctl"), "stop\n")
    assert (code, answer) == (0, ["ok"])
    assert status(t, busy) == "stopped\n"

    # rm of an ended untagged run removes it; the answer stays readable.
    code, answer = ctl(t.run(aborted, "ctl"), "rm\n")
    assert (code, answer) == (0, ["ok"])
    assert wait_for(lambda: aborted not in runs_listed(t), timeout=3)
    assert wait_for(lambda: not os.path.exists(t.run(aborted)), timeout=3)
    assert aborted not in [r["RUN"] for r in ps_all(t)]
    assert sorted(runs_listed(t)) == sorted([live, busy])


# --------------------------------------------------------------------------
# 7. Artifacts


def test_artifacts_are_the_files_byte_for_byte(tree):
    t = tree
    name = make_run(t)
    arts = t.run(name, "artifacts")
    out = arts / "out"
    dl = t.ds.download(name, t.tmp / "dl")

    # The tree equals the download, modes without their write bits.
    got = snapshot(arts)
    assert got == masked(snapshot(dl)), (got, snapshot(dl))
    assert snapshot(t.run(name, "jobs", "0", "artifacts")) == got

    # And the originals: bytes, modes, links, the nested folder.
    big = (t.repo / "data" / "big.bin").read_bytes()
    assert (out / "big.bin").read_bytes() == big
    assert os.stat(out / "big.bin").st_size == BIG_SIZE
    assert (out / "small.txt").read_bytes() == b"hello small\n"
    assert (out / "run.sh").read_bytes() == (t.repo / "data" / "run.sh").read_bytes()
    assert stat.S_IMODE(os.stat(out / "run.sh").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(out / "small.txt").st_mode) == 0o444
    for p in (out / "big.bin", out / "small.txt", out / "empty"):
        assert os.stat(p).st_mode & 0o222 == 0, p
    assert os.stat(out / "empty").st_size == 0 and (out / "empty").read_bytes() == b""
    assert os.path.islink(out / "link") and os.readlink(out / "link") == "small.txt"
    assert (out / "link").read_text() == "hello small\n"
    assert os.readlink(out / "deeplink") == "nested/deep/leaf.txt"
    assert (out / "deeplink").read_text() == "deep\n"
    assert stat.S_ISDIR(os.lstat(out / "nested" / "deep").st_mode)
    assert (out / "nested" / "deep" / "leaf.txt").read_text() == "deep\n"

    # 200 reads at random offsets and sizes, some across the end.
    rng = random.Random(99)
    sizes = [1, 2, 7, 511, 4096, 4097, 65535, 65536, 65537, 131072 + 3, MiB - 1, MiB + 1]
    fd = os.open(out / "big.bin", os.O_RDONLY)
    try:
        for i in range(200):
            if i % 4 == 0:
                off = rng.choice([0, 65536, MiB, 4 * MiB]) + rng.choice([-1, 0, 1]) \
                    if i % 8 else BIG_SIZE - rng.randrange(0, 5000)
                off = max(off, 0)
            else:
                off = rng.randrange(0, BIG_SIZE + 100)
            n = rng.choice(sizes) if i % 2 else rng.randrange(1, 300000)
            if i % 16 == 0:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            assert os.pread(fd, n, off) == big[off:off + n], (off, n)
    finally:
        os.close(fd)


def test_user_tools_work_on_an_artifacts_folder(tree):
    t = tree
    name = make_run(t)
    arts = t.run(name, "artifacts")
    dl = t.ds.download(name, t.tmp / "dl")
    tmp = t.tmp

    cp = sh(f"diff -r {arts}/out {dl}/out")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    cp = sh(f"diff -r --no-dereference {arts}/out {dl}/out")
    assert cp.returncode == 0, cp.stdout + cp.stderr

    cp = sh(f"cp -a {arts}/out {tmp}/copy")
    assert cp.returncode == 0, cp.stderr
    assert snapshot(tmp / "copy") == snapshot(arts / "out")
    cp = sh(f"diff -r {tmp}/copy {dl}/out")
    assert cp.returncode == 0, cp.stdout + cp.stderr

    (tmp / "untar").mkdir()
    cp = sh(f"tar -C {arts} -cf {tmp}/a.tar out && tar -C {tmp}/untar -xf {tmp}/a.tar")
    assert cp.returncode == 0, cp.stderr
    assert snapshot(tmp / "untar" / "out") == snapshot(arts / "out")
    cp = sh(f"diff -r {tmp}/untar/out {dl}/out")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    cp = sh(f"tar -C {arts} -cf - out | tar -tvf -")
    assert cp.returncode == 0 and "out/nested/deep/leaf.txt" in cp.stdout, cp.stderr
    assert "out/link -> small.txt" in cp.stdout, cp.stdout

    cp = sh(f"cd {arts} && find . -printf '%p %y\\n' | sort")
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr
    want = sh(f"cd {dl} && find . -printf '%p %y\\n' | sort").stdout
    assert cp.stdout == want

    cp = sh(f"rsync -a {arts}/out/ {tmp}/rsynced/")
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr
    assert snapshot(tmp / "rsynced") == snapshot(arts / "out")
    assert sh(f"diff -r {tmp}/rsynced {dl}/out").returncode == 0
    # A second rsync finds nothing to copy: sizes and mtimes hold still.
    cp = sh(f"rsync -a --itemize-changes {arts}/out/ {tmp}/rsynced/")
    assert cp.returncode == 0 and cp.stdout == "", cp.stdout + cp.stderr

    cp = sh(f"du -s {arts}")
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr
    assert int(cp.stdout.split()[0]) >= BIG_SIZE // 1024, cp.stdout
    cp = sh(f"du -sb {arts}/out/big.bin")
    assert cp.returncode == 0 and int(cp.stdout.split()[0]) == BIG_SIZE, cp.stdout
    cp = sh(f"sha256sum {arts}/out/big.bin {t.repo}/data/big.bin")
    a, b = [l.split()[0] for l in cp.stdout.splitlines()]
    assert a == b


# --------------------------------------------------------------------------
# 8. Concurrent readers while a run writes


def test_concurrent_artifact_reads_while_a_run_logs(tree):
    t = tree
    name = make_run(t)
    out = t.run(name, "artifacts", "out")
    big = (t.repo / "data" / "big.bin").read_bytes()
    live = start(t, "slow")
    stop = threading.Event()
    errors = []
    counts = [0] * 8

    def reader(k):
        rng = random.Random(k)
        try:
            fd = os.open(out / "big.bin", os.O_RDONLY)
            try:
                i = 0
                while (not stop.is_set() or i < 30) and i < 100000:
                    off = rng.randrange(0, BIG_SIZE)
                    n = rng.choice([1, 4096, 65536 + 17, 300000, MiB])
                    got = os.pread(fd, n, off)
                    if got != big[off:off + n]:
                        errors.append(f"thread {k}: wrong bytes at {off}+{n}")
                        return
                    if i % 10 == 0:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    if i % 25 == 0:
                        assert sorted(os.listdir(out / "nested" / "deep")) == ["leaf.txt"]
                        assert (out / "small.txt").read_bytes() == b"hello small\n"
                    i += 1
                counts[k] = i
            finally:
                os.close(fd)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"thread {k}: {e!r}")

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    sizes = []
    prev = ""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            text = t.run(live, "logs").read_text()
            assert text.startswith(prev), "logs went back"
            if not sizes or sizes[-1] != len(text):
                sizes.append(len(text))
            prev = text
            if "last line\n" in text and status(t, live).strip() in FINAL:
                break
            time.sleep(0.1)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=60)
    assert not any(th.is_alive() for th in threads), "a reader hangs"
    assert not errors, errors
    assert all(c >= 30 for c in counts), counts
    assert len(sizes) >= 3, f"logs did not grow while read: {sizes}"
    assert "last line\n" in prev
    assert wait_status(t, live) == "done"


# --------------------------------------------------------------------------
# 9. tail -f


def test_tail_f_follows_a_live_run_to_its_last_line(tree):
    t = tree
    name = start(t, "slow")
    tail = subprocess.Popen(["tail", "-n", "+1", "-f", str(t.run(name, "logs"))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()

    def pump():
        for line in tail.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    got = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            got.append(line)
            if len(got) == 1:
                # tail follows a live run: its first line came while it ran.
                live_at_first_line = status(t, name).strip()
            if line == "last line\n":
                break
    finally:
        tail.kill()
        _, err = tail.communicate(timeout=10)
    text = "".join(got)
    assert "last line\n" in text, f"tail -f stopped at {got[-3:]}; stderr: {err}"
    assert live_at_first_line not in FINAL, "the run had ended before tail saw a line"
    numbered = [l for l in got if l.startswith("line ")]
    assert numbered == [f"line {i}\n" for i in range(1, SLOW_LINES + 1)], numbered
    assert wait_status(t, name) == "done"
    assert t.run(name, "logs").read_text().startswith(text)


def test_mounted_artifacts_are_visible_live_then_stored(tree):
    # DESIGN.md: `{path: P, mount: true}` shows the folder live in the tree
    # while the job runs; it is stored at the end as usual.
    t = tree
    go = f"/tmp/dstack-live-go.{t.token}"
    try:
        name = start(t, "live")
        for base in (t.run(name, "artifacts"), t.run(name, "jobs", "0", "artifacts")):
            log = base / "ckpt" / "train.log"
            assert wait_for(lambda: log.exists() and log.read_text() == "epoch 1\n",
                            timeout=20), f"{log} never showed live"
            assert status(t, name).strip() == "running"
            # A folder without mount: true only comes when it is stored.
            assert sorted(os.listdir(base)) == ["ckpt"]
            assert sorted(os.listdir(base / "ckpt")) == ["latest", "sub", "train.log"]
            assert os.readlink(base / "ckpt" / "latest") == "train.log"
            assert os.listdir(base / "ckpt" / "sub") == []
            st = os.stat(log)
            assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o222 == 0 and st.st_size == 8
            assert abs(st.st_mtime - time.time()) < 60, "a live file shows its own mtime"
            expect_errno(errno.EROFS, os.open, log, os.O_WRONLY | os.O_APPEND)
            expect_errno(errno.EROFS, os.open, base / "ckpt" / "new", os.O_WRONLY | os.O_CREAT)
            expect_errno(errno.EROFS, os.unlink, log)
            expect_errno(errno.EROFS, os.mkdir, base / "ckpt" / "sub" / "d")
        spec = yaml.safe_load(t.run(name, "jobs", "0", "spec.yaml").read_text())
        assert spec["artifacts"] == [{"path": "ckpt", "mount": True}, "plain"], spec
        # A descriptor opened before the job writes more reads what it wrote.
        log = t.run(name, "artifacts", "ckpt", "train.log")
        with open(log, "rb") as held:
            assert held.read() == b"epoch 1\n"
            open(go, "w").close()
            assert wait_for(lambda: not os.path.exists(go), timeout=20)
            assert held.read() == b"epoch 2\n", "a live file read stale bytes"
        assert log.read_text() == "epoch 1\nepoch 2\n"
        assert t.run(name, "artifacts", "ckpt", "sub", "epoch2.txt").read_text() == "two\n"
        assert status(t, name).strip() == "running"
        open(go, "w").close()
        assert wait_status(t, name) == "done", t.run(name, "logs").read_text()
    finally:
        if os.path.exists(go):
            os.unlink(go)
    # Stored: the same files, now from the store, with the plain folder.
    for base in (t.run(name, "artifacts"), t.run(name, "jobs", "0", "artifacts")):
        assert sorted(os.listdir(base)) == ["ckpt", "plain"]
        assert (base / "ckpt" / "train.log").read_text() == "epoch 1\nepoch 2\n"
        assert os.readlink(base / "ckpt" / "latest") == "train.log"
        assert (base / "plain" / "p.txt").read_text() == "p\n"
    listed = assert_ok(t.ds("artifacts", "list", name, cwd=t.repo)).stdout
    assert "ckpt/sub/epoch2.txt" in listed or "epoch2.txt" in listed, listed


def test_a_live_file_is_never_read_through_a_swapped_folder(tree):
    # Issue 7: the job owns the folders of a live artifact and may swap one
    # for a symlink between the tree's listing and a read; the daemon (root
    # here) must not then serve what the link leads to.
    t = tree
    go = f"/tmp/dstack-live-go.{t.token}"
    secret = Path("/etc/passwd").read_bytes()
    try:
        name = start(t, "live")
        base = t.run(name, "artifacts", "ckpt")
        assert wait_for(lambda: (base / "train.log").exists(), timeout=20)
        host = t.ds.home / "work" / f"{name}-0" / "ckpt"
        (host / "sub" / "passwd").write_text("mine\n")
        folder = os.open(base / "sub", os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(10):
                def shows_mine():
                    try:
                        fd = os.open("passwd", os.O_RDONLY, dir_fd=folder)
                    except FileNotFoundError:
                        return False
                    try:
                        return os.read(fd, 4096) == b"mine\n"
                    finally:
                        os.close(fd)
                assert wait_for(shows_mine, timeout=10)
                # Within the listing's lifetime (the tree keeps a live
                # run's listing for 100 ms), the folder becomes a link.
                os.rename(host / "sub", host / "sub.real")
                os.symlink("/etc", host / "sub")
                try:
                    fd = os.open("passwd", os.O_RDONLY, dir_fd=folder)
                    try:
                        got = os.read(fd, len(secret) + 1)
                    finally:
                        os.close(fd)
                except OSError as e:
                    assert e.errno in (errno.EIO, errno.ENOENT, errno.EISDIR), e
                else:
                    assert got != secret, "the tree served /etc/passwd through the job's link"
                os.unlink(host / "sub")
                os.rename(host / "sub.real", host / "sub")
        finally:
            os.close(folder)
            if (host / "sub").is_symlink():
                os.unlink(host / "sub")
                os.rename(host / "sub.real", host / "sub")
        os.unlink(host / "sub" / "passwd")
    finally:
        # The job waits for go twice; let it end whatever happened.
        open(go, "w").close()
        wait_for(lambda: not os.path.exists(go), timeout=20)
        open(go, "w").close()
    assert wait_status(t, name) == "done", t.run(name, "logs").read_text()
    os.unlink(go)


# --------------------------------------------------------------------------
# 10. The CLI and the tree see the same runs


def test_cli_runs_show_in_the_tree_and_ctl_runs_in_ps(tree):
    t = tree
    t.ds.ok("run", "make", cwd=t.repo)
    [row] = ps_all(t)
    name = row["RUN"]
    assert wait_for(lambda: name in runs_listed(t), timeout=2.5), runs_listed(t)
    assert status(t, name) == "done\n"
    assert (t.run(name, "artifacts", "out", "small.txt")).read_text() == "hello small\n"

    # A live run started by the CLI shows while it runs.
    cp = t.ds.ok("run", "-d", "forever", cwd=t.repo)
    live = [r["RUN"] for r in ps_all(t) if r["WORKFLOW"] == "forever"]
    assert len(live) == 1, cp.stdout
    live = live[0]
    assert wait_for(lambda: live in runs_listed(t), timeout=2.5)
    wait_status(t, live, {"running"})
    t.ds.ok("stop", live)
    assert status(t, live) == "stopped\n"

    # A run started through ctl shows in ps -a.
    via_ctl = start(t, "fails")
    rows = {r["RUN"]: r for r in ps_all(t)}
    assert via_ctl in rows and rows[via_ctl]["WORKFLOW"] == "fails"
    wait_status(t, via_ctl)
    rows = {r["RUN"]: r for r in ps_all(t)}
    assert rows[via_ctl]["STATUS"] == "failed"
    assert "before" in t.ds.ok("logs", via_ctl).stdout


def test_cli_run_is_handed_to_the_daemon_and_outlives_the_cli(tree):
    t = tree
    cli = t.ds.popen("run", "slow", cwd=t.repo)
    assert wait_for(lambda: any(r["STATUS"] == "running" for r in ps_all(t)))
    [live] = [r["RUN"] for r in ps_all(t)]
    cli.kill()
    cli.communicate(timeout=30)
    # The daemon runs it: killing the CLI does not stop it.
    wait_status(t, live)
    assert status(t, live) == "done\n"
    assert "last line" in t.ds.ok("logs", live).stdout
    # `run --rerun` is handed over the same way.
    cp = t.ds.ok("run", "--rerun", live, cwd=t.repo)
    assert "last line" in cp.stdout, cp.stdout
    again = [r["RUN"] for r in ps_all(t) if r["RUN"] != live]
    assert len(again) == 1 and status(t, again[0]) == "done\n"


def test_args_with_newlines_reach_the_daemon_word_for_word(tree):
    # A ctl line is one line: the CLI writes a newline in an argument as
    # bash's $'\n', which the daemon (and a script writing ctl) reads back.
    t = tree
    args = ["two\nlines", "tab\tand 'quote'", "\x01ctl"]
    cp = t.ds.ok("run", "print-args", *args, cwd=t.repo)
    assert cp.stdout == "".join(f"<{a}>\n" for a in args), cp.stdout
    [row] = ps_all(t)
    assert row["STATUS"] == "done"
    name = start(t, r"print-args $'a\nb' $'\x41\101' 'c'")
    assert wait_status(t, name) == "done"
    assert t.run(name, "logs").read_text() == "<a\nb>\n<AA>\n<c>\n"


def test_deps_are_bound_from_the_tree_and_written_out_without_it(tree):
    t = tree
    t.ds.ok("run", "make", cwd=t.repo)
    through_tree = t.ds.ok("run", "after", cwd=t.repo).stdout.splitlines()
    assert through_tree[0] == "hello small"
    assert through_tree[1] == "type fuse.dstack", through_tree
    assert through_tree[2] == "read-only"
    assert_ok(t.ds("umount", t.mnt, timeout=30))
    assert wait_for(lambda: not daemon_pids(t.mnt))
    # No daemon: the runner writes the artifacts out of the store.
    plain = t.ds.ok("run", "after", cwd=t.repo).stdout.splitlines()
    assert plain[0] == "hello small"
    assert plain[1] != "type fuse.dstack", plain
    assert plain[2] == "read-only"


# --------------------------------------------------------------------------
# 11-12. Unmounting


def test_umount_with_open_files(tree):
    t = tree
    name = make_run(t)
    pids = daemon_pids(t.mnt)
    assert len(pids) == 1, pids
    art = os.open(t.run(name, "artifacts", "out", "big.bin"), os.O_RDONLY)
    logs = os.open(t.run(name, "logs"), os.O_RDONLY)
    cwd_holder = subprocess.Popen(["sleep", "60"], cwd=t.run(name, "artifacts", "out"))
    try:
        assert os.pread(art, 10, 0)
        cp = t.ds("umount", t.mnt, timeout=30)
        assert_ok(cp)
        assert cp.stdout == "" and cp.stderr == "", describe(cp)
        assert not is_mounted(t.mnt), "the tree is still there after umount"
        assert os.listdir(t.mnt) == [], "the mountpoint still shows the tree"
    finally:
        for fd in (art, logs):
            try:
                os.close(fd)
            except OSError:
                pass
        cwd_holder.kill()
        cwd_holder.wait()
    assert wait_for(lambda: not any(process_alive(p) for p in pids), timeout=20), \
        "the daemon did not exit once the open files were closed"
    # A new mount may start at once and shows the same runs.
    assert_ok(t.ds("mount", t.mnt, cwd=t.repo, env=mount_env(t.tmp)))
    assert is_mounted(t.mnt)
    assert runs_listed(t) == [name]


def test_umount_finishes_the_runs_the_daemon_started(tree):
    # DESIGN.md: umount takes the tree away at once; live runs are never
    # killed by it: the daemon takes no new runs, finishes them, then exits.
    t = tree
    pids = daemon_pids(t.mnt)
    gate = Path(f"/tmp/dstack-gate.{t.token}")
    try:
        live = start(t, "gated")
        wait_status(t, live, {"running"})
        cp = t.ds("umount", t.mnt, timeout=30)
        assert_ok(cp)
        assert not is_mounted(t.mnt)
        assert any(process_alive(p) for p in pids), "the daemon left before its run ended"
        gate.touch()
        assert wait_for(lambda: not any(process_alive(p) for p in pids), timeout=30), \
            "the daemon did not exit once its run ended"
    finally:
        gate.unlink(missing_ok=True)
    rows = {r["RUN"]: r for r in ps_all(t)}
    assert rows[live]["STATUS"] == "done", rows[live]
    assert "last line" in assert_ok(t.ds("logs", live)).stdout


def test_sigterm_unmounts_and_finishes_live_runs(tree):
    # As `dstack umount`: the tree goes at once, the live run is finished.
    t = tree
    [pid] = daemon_pids(t.mnt)
    gate = Path(f"/tmp/dstack-gate.{t.token}")
    try:
        live = start(t, "gated")
        wait_status(t, live, {"running"})
        os.kill(pid, signal.SIGTERM)
        assert wait_for(lambda: not is_mounted(t.mnt), timeout=10), \
            "SIGTERM left the tree mounted"
        assert process_alive(pid), "the daemon left before its run ended"
        gate.touch()
        assert wait_for(lambda: not process_alive(pid), timeout=30), "the daemon did not exit"
    finally:
        gate.unlink(missing_ok=True)
    rows = {r["RUN"]: r for r in ps_all(t)}
    assert rows[live]["STATUS"] == "done", rows[live]
    assert "last line" in assert_ok(t.ds("logs", live)).stdout


def test_statfs_and_df(tree):
    t = tree
    name = make_run(t)
    for where in (t.mnt, t.run(name, "artifacts", "out")):
        vfs = os.statvfs(where)
        assert vfs.f_namemax == 255
        assert vfs.f_bsize > 0 and vfs.f_frsize > 0
        assert 0 < vfs.f_bavail <= vfs.f_bfree <= vfs.f_blocks, vfs
    cp = sh(f"df -P {t.mnt}")
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr
    assert cp.stdout.splitlines()[1].split()[-1] == str(t.mnt), cp.stdout


def test_select_and_poll_never_block_reads(tree):
    # No poll operation: the kernel counts every file ready, so select and
    # poll return at once and the read that follows has the data.
    t = tree
    live = start(t, "forever")
    wait_status(t, live, {"running"})
    assert wait_for(lambda: "started" in t.run(live, "logs").read_text(), timeout=20)
    for path in (t.run(live, "logs"), t.run(live, "status")):
        fd = os.open(path, os.O_RDONLY)
        try:
            ready, _, _ = select.select([fd], [], [], 5)
            assert ready == [fd], f"select on {path} did not return ready"
            p = select.poll()
            p.register(fd, select.POLLIN)
            assert p.poll(5000) == [(fd, select.POLLIN)], path
            assert os.read(fd, 4096)
        finally:
            os.close(fd)
    fd = os.open(t.path("ctl"), os.O_RDWR)
    try:
        os.write(fd, b"make\n")
        ready, _, _ = select.select([fd], [], [], 5)
        assert ready == [fd]
        assert RUN_NAME.match(os.read(fd, 4096).decode().strip())
    finally:
        os.close(fd)
    assert_ok(t.ds("stop", live, cwd=t.repo))


def as_nobody(*argv):
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=30)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_only_the_mounting_user_unless_allow_other(ds, tmp_path):
    # Mount points another user can reach: pytest's folders are 0700.
    repo = make_repo(tmp_path / "repo", WORKFLOWS % {"lines": 1, "token": 1},
                     files={"data/small.txt": "hello small\n", "data/run.sh": "echo hi\n"})
    write_random(repo / "data" / "big.bin", 1000, seed=1)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "data")
    top = Path(tempfile.mkdtemp(prefix="dstack-test-"))
    top.chmod(0o755)
    private, shared = top / "private", top / "shared"
    private.mkdir()
    shared.mkdir()
    try:
        assert_ok(ds("mount", private, cwd=repo, env=mount_env(tmp_path), timeout=60))
        cp = as_nobody("ls", private)
        assert cp.returncode != 0 and "Permission denied" in cp.stderr, cp.stderr
        cp = as_nobody("cat", private / "ctl")
        assert cp.returncode != 0 and "Permission denied" in cp.stderr, cp.stderr
        assert_ok(ds("umount", private, timeout=60))
        assert wait_for(lambda: not daemon_pids(private), timeout=20)

        assert_ok(ds("mount", "-o", "allow_other", shared, cwd=repo, env=mount_env(tmp_path),
                     timeout=60))
        code, answer = ctl(shared / "ctl", "make\n")
        assert code == 0, answer
        [name] = answer
        assert wait_for(lambda: (shared / "runs" / name / "status").read_text() == "done\n",
                        timeout=30)
        cp = as_nobody("ls", shared / "runs")
        assert cp.returncode == 0 and cp.stdout.split() == [name], cp.stdout + cp.stderr
        cp = as_nobody("cat", shared / "runs" / name / "artifacts" / "out" / "small.txt")
        assert cp.returncode == 0 and cp.stdout == "hello small\n", cp.stderr
        # default_permissions: the modes hold; ctl is the owner's to write.
        cp = as_nobody("sh", "-c", f"echo make > {shared}/ctl")
        assert cp.returncode != 0 and "Permission denied" in cp.stderr, cp.stderr
        assert os.listdir(shared / "runs") == [name], "another user started a run"
    finally:
        unmount_all(ds, private, shared)
        if not is_mounted(private) and not is_mounted(shared):
            shutil.rmtree(top)
    assert not asan_reports(tmp_path), [r.read_text()[-4000:] for r in asan_reports(tmp_path)]


UNIT = REPO / "contrib" / "systemd" / "dstack-mount.service"


def unit_settings(text):
    """The [Service] section's settings of a unit file, as a dict."""
    settings, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[key] = value
    return settings


def test_systemd_unit_mounts_the_tree_and_stops_on_its_kill_signal(ds, tmp_path):
    # No systemd runs here: the unit is checked by systemd-analyze, and its
    # ExecStart is run as systemd would, with the EnvironmentFile's settings,
    # at a temporary mount point instead of /dstack.
    if shutil.which("systemd-analyze"):
        cp = sh(f"systemd-analyze verify --man=no {UNIT}")
        assert cp.returncode == 0, cp.stdout + cp.stderr
    settings = unit_settings(UNIT.read_text())
    assert settings["Type"] == "simple" and settings["KillSignal"] == "SIGTERM"
    assert settings["EnvironmentFile"] == "/etc/default/dstack-mount"
    argv = shlex.split(settings["ExecStart"])
    assert argv[:2] == ["/bin/sh", "-c"] and argv[2].endswith(" /dstack"), argv
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    argv[2] = argv[2][:-len("/dstack")] + shlex.quote(str(mnt))
    repo = make_repo(tmp_path / "repo", WORKFLOWS % {"lines": 1, "token": 1})
    env = dict(os.environ, PATH=f"{BIN.parent}:/usr/bin:/bin", DSTACK_REPO=str(repo),
               DSTACK_HOME=str(ds.home), **mount_env(tmp_path))
    daemon = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        assert wait_for(lambda: is_mounted(mnt), timeout=30), "the unit's command mounted nothing"
        assert daemon_pids(mnt) == [daemon.pid], "the unit's process is not the daemon itself"
        assert sorted(os.listdir(mnt / "workflows"))[:2] == ["after", "badprov"]
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, err
        assert not is_mounted(mnt)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
        unmount_all(ds, mnt)
    assert not asan_reports(tmp_path)


# --------------------------------------------------------------------------
# 13. mount's own errors


def test_mount_errors(ds, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    repo = make_repo(tmp_path / "repo", WORKFLOWS % {"lines": 1, "token": 1})
    try:
        cp = ds("mount", mnt, cwd=plain, timeout=30)
        assert_error(cp, "not in a git repository")
        assert cp.stdout == ""
        assert not is_mounted(mnt) and not daemon_pids(mnt)

        # Nothing is mounted there.
        cp = ds("umount", mnt, timeout=30)
        assert_error(cp, str(mnt))

        cp = ds("mount", afile, cwd=repo, timeout=30)
        assert not is_mounted(afile), "mounted over a regular file\n" + describe(cp)
        assert_error(cp)
        assert not daemon_pids(afile)
    finally:
        unmount_all(ds, mnt, afile)
        assert not is_mounted(mnt) and not is_mounted(afile)
