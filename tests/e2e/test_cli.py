"""The command line itself: version, help, unknown commands, usage errors."""
import pytest

from conftest import assert_error, assert_usage_error, run

COMMANDS = ["help", "tags", "artifacts", "rm", "gc", "fsck"]


def test_version(home):
    cp = run(["--version"], home=home)
    assert cp.returncode == 0
    assert cp.stdout == "dstack 0.1.0\n"
    assert cp.stderr == ""
    # Asking for the version creates no store.
    assert not home.exists()


def test_help_lists_every_command(home):
    cp = run(["help"], home=home)
    assert cp.returncode == 0, cp.stderr
    assert cp.stderr == ""
    assert "usage: dstack" in cp.stdout
    for name in COMMANDS:
        assert f"\n  {name} " in cp.stdout, name
    assert run(["--help"], home=home).stdout == cp.stdout
    assert run(["-h"], home=home).stdout == cp.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_command_and_dash_h_agree(home, command):
    by_help = run(["help", command], home=home)
    assert by_help.returncode == 0 and by_help.stderr == ""
    assert by_help.stdout.startswith(f"usage: dstack {command}")
    for flag in ("-h", "--help"):
        cp = run([command, flag], home=home)
        assert cp.returncode == 0 and cp.stderr == "", cp.stderr
        assert cp.stdout == by_help.stdout
    assert not home.exists(), "help must not create a store"


def test_help_shows_the_documented_forms(home):
    tags = run(["help", "tags"], home=home).stdout
    for form in ("dstack tags list", "dstack tags add TAG RUN",
                 "dstack tags add TAG -a DIR...", "dstack tags delete TAG"):
        assert form in tags
    arts = run(["help", "artifacts"], home=home).stdout
    assert "dstack artifacts list (RUN|:TAG)" in arts
    assert "dstack artifacts download (RUN|:TAG) [-o DIR]" in arts


def test_unknown_command_is_one_line_exit_2(home):
    cp = run(["frobnicate"], home=home)
    assert cp.returncode == 2
    assert cp.stdout == ""
    assert cp.stderr == "dstack: unknown command 'frobnicate' (see 'dstack help')\n"
    assert not home.exists()


def test_no_arguments_is_a_usage_error(home):
    cp = run([], home=home)
    assert cp.returncode == 2
    assert cp.stdout == ""
    assert "usage: dstack" in cp.stderr


@pytest.mark.parametrize("args", [
    ["help", "nosuchcommand"],
    ["help", "tags", "extra"],
    ["tags", "frob"],
    ["tags", "list", "extra"],
    ["tags", "add"],
    ["tags", "add", "onlytag"],
    ["tags", "add", "t", "-a"],
    ["tags", "add", "t", "-z", "dir"],
    ["tags", "add", "t", "somerun", "extra"],
    ["tags", "delete"],
    ["tags", "delete", "a", "b"],
    ["artifacts"],
    ["artifacts", "frob"],
    ["artifacts", "list"],
    ["artifacts", "list", "a", "b"],
    ["artifacts", "download"],
    ["artifacts", "download", "run", "-z"],
    ["artifacts", "download", "a", "b"],
    ["rm"],
    ["rm", "a", "b"],
    ["gc", "extra"],
    ["fsck", "extra"],
])
def test_usage_errors_exit_2(home, args):
    cp = run(args, home=home)
    assert_usage_error(cp)
    # A usage error touches nothing.
    assert not home.exists(), f"{args} created {home}"


@pytest.mark.parametrize("args", [
    ["artifacts", "list", "no-such-run-1"],
    ["artifacts", "list", ":nosuchtag"],
    ["artifacts", "download", ":nosuchtag"],
    ["rm", "no-such-run-1"],
    ["tags", "delete", "nosuchtag"],
])
def test_errors_are_one_line_exit_1(ds, args, tmp_path):
    cp = ds(*args, cwd=tmp_path)
    name = args[-1].lstrip(":")
    assert_error(cp, name)
