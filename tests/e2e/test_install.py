"""`meson install` of the build under test, into a scratch DESTDIR.

The build directory is the one holding $DSTACK_BIN (<build>/cli/dstack).
It is installed as built (--no-rebuild: a test does not rebuild the binary
the rest of the suite runs), then the installed files are used: the
binary, the manual page (by name, from the installed man tree) and the
Python module of custom providers (imported with PYTHONPATH naming the
installed site directory and nothing else).
"""
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BIN, REPO

MODULE = REPO / "contrib" / "python" / "dstack"
MANPAGE = REPO / "docs" / "dstack.1"
SECTIONS = ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "FILES",
            "ENVIRONMENT", "EXIT STATUS", "EXAMPLES", "SEE ALSO")
# What DESIGN.md's CLI lists, present in this build's `help` or not yet.
DESIGN_COMMANDS = ("help", "init", "run", "ps", "logs", "stop", "rm",
                   "artifacts", "tags", "mount", "umount", "providers", "gc",
                   "fsck")
JOB_ENV = ("DSTACK_HOME", "RUN_NAME", "JOB_ID", "JOB_HOSTNAME", "PORT_",
           "MASTER_JOB_HOSTNAME", "MASTER_JOB_PORT_", "PYTHONUNBUFFERED",
           "DSTACK_WORKFLOW", "DSTACK_JOBS")


def sh(args, **kw):
    kw.setdefault("timeout", 60)
    return subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, encoding="utf-8",
                          errors="replace", **kw)


def ok(cp):
    assert cp.returncode == 0, (f"command: {cp.args}\nexit: {cp.returncode}\n"
                                f"stdout:\n{cp.stdout[-3000:]}\n"
                                f"stderr:\n{cp.stderr[-3000:]}")
    return cp


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTHON") and k not in ("DESTDIR", "MANPATH")}
    env.update(extra)
    return env


def plain(text):
    """Rendered manual text without overstrikes or colours, ASCII dashes."""
    text = re.sub(r".\x08", "", text)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return text.replace("\u2212", "-").replace("\u2010", "-")


def words(text):
    return " ".join(text.split())


class Install:
    """What `meson install --destdir` put where."""

    def __init__(self, build, dest):
        self.build, self.dest = build, dest
        self.files = {}          # source or build path -> installed path
        self.options = {}

    def at(self, path):
        """The installed file inside DESTDIR for an absolute install path."""
        return self.dest / Path(path).relative_to("/")

    def of(self, source):
        installed = self.files.get(str(source))
        assert installed, (f"{source} is not installed by {self.build} "
                           f"(reconfigure it: ninja -C {self.build})\n"
                           f"installed: {json.dumps(self.files, indent=1)}")
        return installed


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    meson = shutil.which("meson")
    if not meson:
        pytest.skip("meson is not installed")
    build = BIN.parent.parent
    assert BIN.parent.name == "cli" and (build / "build.ninja").is_file(), \
        f"{BIN} is not <build>/cli/dstack of a meson build directory"
    dest = tmp_path_factory.mktemp("destdir")
    inst = Install(build, dest)
    cp = ok(sh([meson, "introspect", "--installed", "--buildoptions", build]))
    intro = json.loads(cp.stdout)
    inst.files = intro["installed"]
    inst.options = {o["name"]: o["value"] for o in intro["buildoptions"]}
    ok(sh([meson, "install", "-C", build, "--no-rebuild", "--quiet",
           "--destdir", dest], env=clean_env(), timeout=120))
    for path in inst.files.values():
        assert inst.at(path).exists(), f"{path} not installed under {dest}"
    return inst


def test_binary(installed):
    binary = installed.at(installed.of(BIN))
    assert binary.name == "dstack"
    assert binary.parent.as_posix().endswith(
        "/" + installed.options["bindir"].strip("/"))
    assert os.access(binary, os.X_OK)
    want = ok(sh([BIN, "--version"])).stdout
    assert re.fullmatch(r"dstack \S+\n", want)
    assert ok(sh([binary, "--version"])).stdout == want
    assert ok(sh([binary, "help"])).stdout == ok(sh([BIN, "help"])).stdout


def test_curl_helper(installed):
    """dstack-curl goes where the curl provider looks for an installed one."""
    helper = installed.at(installed.of(BIN.parent / "dstack-curl"))
    assert helper.parent.as_posix().endswith(
        "/" + installed.options["libexecdir"].strip("/") + "/dstack")
    assert os.access(helper, os.X_OK)
    cp = sh([helper])
    assert cp.returncode == 2 and cp.stderr.startswith("dstack: usage: dstack-curl")


@functools.lru_cache(maxsize=None)
def help_commands():
    """The command names `dstack help` lists."""
    text = ok(sh([BIN, "help"])).stdout
    listing = text.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    names = [line.split()[0] for line in listing.splitlines() if line.strip()]
    assert "run" in names and "help" in names, text
    return tuple(names)


@functools.lru_cache(maxsize=None)
def usage_lines(name):
    """The usage lines of `dstack help NAME`, without "usage: "."""
    text = ok(sh([BIN, "help", name])).stdout
    block = text.split("\n\n", 1)[0]
    assert block.startswith("usage: "), text
    return tuple(line.strip() for line in block[len("usage: "):].splitlines())


def test_manual_page(installed):
    page = installed.at(installed.of(MANPAGE))
    assert page.as_posix().endswith("/man1/dstack.1")
    assert page.read_bytes() == MANPAGE.read_bytes()
    mantree = page.parent.parent

    groff = shutil.which("groff")
    man = shutil.which("man")
    if not groff and not man:
        pytest.skip("neither groff nor man is installed")
    if groff:
        cp = ok(sh([groff, "-man", "-Tutf8", "-ww", "-z", page]))
        assert cp.stdout == "" and cp.stderr == "", cp.stderr
    env = clean_env(MANWIDTH="80", MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8",
                    GROFF_SGR="")
    if man:
        # By name, from the installed tree: the page is where man looks.
        cp = ok(sh([man, "-M", mantree, "1", "dstack"], env=env))
        assert cp.stderr == "", cp.stderr
    else:
        cp = ok(sh([groff, "-man", "-Tutf8", "-P-cbou", page], env=env))
    text = plain(cp.stdout)
    assert re.search(r"^DSTACK\(1\)", text, re.M), text[:500]
    for section in SECTIONS:
        assert re.search(rf"^{section}$", text, re.M), f"no {section} section"
    synopsis = words(text.split("\nSYNOPSIS\n", 1)[1].split("\nDESCRIPTION\n")[0])
    commands = words(text.split("\nCOMMANDS\n", 1)[1].split("\nFILES\n")[0])

    for name in set(help_commands()) | set(DESIGN_COMMANDS):
        assert f"dstack {name}" in synopsis, f"{name} missing from SYNOPSIS"
        assert f"dstack {name}" in commands, f"{name} missing from COMMANDS"
    # Each usage line the binary prints is the manual's, word for word.
    for name in help_commands():
        for usage in usage_lines(name):
            assert words(usage) in synopsis, f"SYNOPSIS lacks {usage!r}"
    environment = text.split("\nENVIRONMENT\n", 1)[1]
    for variable in JOB_ENV:
        assert variable in environment, f"ENVIRONMENT lacks {variable}"
    status = words(text.split("\nEXIT STATUS\n", 1)[1].split("\nEXAMPLES\n")[0])
    assert re.search(r"\b0 Success", status) and "dstack: " in status
    assert re.search(r"\b2 A usage error", status)


PROVIDER = """
import json, os, sys
import dstack
from dstack import Provider, Job, ResourceRequirements

class Echo(Provider):
    def create_jobs(self):
        first = Job(commands=["echo " + self.workflow.data["word"]],
                    resources=ResourceRequirements(cpu=1), artifacts=["out"])
        return [first, Job(commands=["true"], depends_on=[first])]

print(json.dumps({"file": dstack.__file__, "path": sys.path}))
Echo().start()
"""


def test_python_module(installed, tmp_path):
    sources = sorted(p for p in MODULE.rglob("*.py") if "__pycache__" not in p.parts)
    assert sources
    for source in sources:
        target = installed.at(installed.of(source))
        assert target.read_bytes() == source.read_bytes()
        assert target.relative_to(installed.dest).as_posix().endswith(
            "dstack/" + source.relative_to(MODULE).as_posix())
    site = Path(installed.of(MODULE / "__init__.py")).parent.parent
    assert site.name in ("site-packages", "dist-packages"), site

    # A real provider run against the installed copy, and only that copy:
    # PYTHONPATH is the installed site directory, the user site is off.
    (tmp_path / "workflow.json").write_text(json.dumps({
        "data": {"word": "hi"}, "workflow": "w", "run_name": "calm-cat-1",
        "args": [], "tag": None,
        "repo": {"url": "u", "branch": "main", "commit": "0" * 40,
                 "dirty": False}}))
    env = clean_env(PYTHONPATH=str(installed.at(site)), PYTHONNOUSERSITE="1",
                    PYTHONDONTWRITEBYTECODE="1",
                    DSTACK_WORKFLOW=str(tmp_path / "workflow.json"),
                    DSTACK_JOBS=str(tmp_path / "jobs.json"))
    cp = ok(sh([sys.executable, "-c", PROVIDER], env=env, cwd=tmp_path))
    seen = json.loads(cp.stdout.splitlines()[0])
    assert Path(seen["file"]).resolve() == \
        installed.at(site / "dstack" / "__init__.py").resolve()
    assert str(REPO) not in seen["file"]
    jobs = json.loads((tmp_path / "jobs.json").read_text())
    assert [j["commands"] for j in jobs] == [["echo hi"], ["true"]]
    assert jobs[1]["depends_on"] == [0]

    # A real install goes where the system Python imports from by default.
    prefix = installed.options["prefix"]
    system = Path("/usr/bin/python3")
    if (prefix in ("/usr", "/usr/local") and system.exists()
            and not installed.options.get("python.purelibdir")):
        cp = ok(sh([system, "-I", "-c", "import json, sys; print(json.dumps(sys.path))"]))
        assert str(site) in json.loads(cp.stdout), \
            f"{site} is not on {system}'s default sys.path: {cp.stdout}"
