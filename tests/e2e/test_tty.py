"""`dstack run` on a terminal, as a user at one meets it: the job's output
follows, and Ctrl-C asks whether to stop the run; "y" stops it, anything
else lets go of it and the run goes on to its end on its own.

The CLI runs on the slave side of a pseudo-terminal that is its
controlling terminal, so that writing ^C to the master raises SIGINT
through the line discipline, as a user's key press does.
"""
import fcntl
import os
import select
import signal
import subprocess
import termios
import textwrap
import time

import pytest

from conftest import BIN, assert_ok, git, git_init, no_process, parse_table, wait_for


def _take_terminal():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """dstack with a pseudo-terminal for stdin, stdout and stderr."""

    def __init__(self, ds, cwd, *args, env=None):
        master, slave = os.openpty()
        env = dict(os.environ, DSTACK_HOME=str(ds.home), **(env or {}))
        self.master = master
        self.text = b""
        self.proc = subprocess.Popen([str(BIN), *args], cwd=cwd, env=env,
                                     stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, preexec_fn=_take_terminal)
        os.close(slave)

    def _read(self, timeout):
        """Reads what the terminal shows; False once nobody holds its slave side."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:
            data = b""
        self.text += data
        return data != b""

    @property
    def shown(self):
        return self.text.replace(b"\r\n", b"\n").decode("utf-8", "replace")

    def expect(self, needle, timeout=30):
        end = time.monotonic() + timeout
        while needle not in self.shown:
            assert time.monotonic() < end, f"{needle!r} never shown:\n{self.shown}"
            assert self._read(0.1), f"closed before {needle!r}:\n{self.shown}"

    def type(self, data):
        os.write(self.master, data)

    def finish(self, timeout=30):
        """Waits for dstack to exit; returns its status."""
        end = time.monotonic() + timeout
        while self._read(0.1):
            assert time.monotonic() < end, f"still open:\n{self.shown}"
        return self.proc.wait(timeout=max(end - time.monotonic(), 1))

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


@pytest.fixture
def tty_repo(tmp_path):
    root = git_init(tmp_path / "repo")
    (root / ".dstack").mkdir()
    (root / ".dstack" / "workflows.yaml").write_text(textwrap.dedent(f"""\
        workflows:
          - name: hello
            provider: bash
            commands:
              - echo "hello from $RUN_NAME"

          - name: sleepy
            provider: bash
            commands:
              - echo started
              - sleep 1000$TTY_MARK &
              - wait
            env:
              - TTY_MARK

          - name: until-go
            provider: bash
            commands:
              - echo started
              - while [ ! -e {tmp_path}/go ]; do sleep 0.1; done
              - echo finished
        """))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


@pytest.fixture
def terminal(ds):
    opened = []

    def start(cwd, *args, mark=""):
        t = Terminal(ds, cwd, *args, env={"TTY_MARK": mark})
        opened.append(t)
        return t

    yield start
    for t in opened:
        t.close()


def runs(ds, cwd):
    return parse_table(assert_ok(ds("ps", "-a", cwd=cwd)).stdout)




def test_a_run_on_a_terminal_shows_its_output(ds, tty_repo, terminal):
    t = terminal(tty_repo, "run", "hello")
    assert t.finish() == 0, t.shown
    [run] = runs(ds, tty_repo)
    assert run["STATUS"] == "done"
    assert f"hello from {run['RUN']}\n" in t.shown
    assert "dstack:" not in t.shown


def test_ctrl_c_then_yes_stops_the_run(ds, tty_repo, terminal):
    t = terminal(tty_repo, "run", "sleepy", mark="5151")
    t.expect("started\n")
    t.type(b"\x03")
    [run] = runs(ds, tty_repo)
    name = run["RUN"]
    t.expect(f"Stop the run {name}? [y/N] ")
    t.type(b"y\n")
    assert t.finish() == 1, t.shown
    assert f"dstack: run {name} stopped\n" in t.shown
    [run] = runs(ds, tty_repo)
    assert run["STATUS"] == "stopped"
    assert no_process("sleep 10005151"), "the job's processes outlived the stop"


def test_a_second_ctrl_c_at_the_question_stops_the_run(ds, tty_repo, terminal):
    t = terminal(tty_repo, "run", "sleepy", mark="5252")
    t.expect("started\n")
    t.type(b"\x03")
    t.expect("? [y/N] ")
    t.type(b"\x03")
    assert t.finish() == 1, t.shown
    [run] = runs(ds, tty_repo)
    assert run["STATUS"] == "stopped"
    assert f"dstack: run {run['RUN']} stopped\n" in t.shown
    assert no_process("sleep 10005252")


def test_sigterm_on_a_terminal_stops_the_run(ds, tty_repo, terminal):
    t = terminal(tty_repo, "run", "sleepy", mark="5353")
    t.expect("started\n")
    t.proc.send_signal(signal.SIGTERM)
    assert t.finish() == 1, t.shown
    [run] = runs(ds, tty_repo)
    assert run["STATUS"] == "stopped"
    assert no_process("sleep 10005353")


def test_ctrl_c_then_no_lets_the_run_go_on(ds, tty_repo, terminal, tmp_path):
    t = terminal(tty_repo, "run", "until-go")
    t.expect("started\n")
    t.type(b"\x03")
    [run] = runs(ds, tty_repo)
    name = run["RUN"]
    t.expect(f"Stop the run {name}? [y/N] ")
    t.type(b"n\n")
    # It exits at once, and nothing of it holds the terminal any more.
    assert t.finish(timeout=10) == 0, t.shown
    assert f"run {name} goes on; `dstack logs -f {name}` follows it\n" in t.shown
    # The terminal going away leaves it alone too.
    t.close()
    [run] = runs(ds, tty_repo)
    assert run["STATUS"] == "running"
    (tmp_path / "go").touch()
    assert wait_for(lambda: runs(ds, tty_repo)[0]["STATUS"] == "done"), runs(ds, tty_repo)
    logs = assert_ok(ds("logs", name)).stdout
    assert logs == "started\nfinished\n"


def test_a_run_that_cannot_start_says_why_on_a_terminal(ds, tty_repo, terminal):
    t = terminal(tty_repo, "run", "no-such-workflow")
    assert t.finish() == 1, t.shown
    lines = t.shown.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dstack: no workflow 'no-such-workflow'"), t.shown
