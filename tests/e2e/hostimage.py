"""Docker images for the end-to-end tests, built from the host's own files.

The test machines have no internet and no Docker Hub, so no base image can be
pulled.  Instead, python_rootfs() assembles a small root file system from the
host's binaries (busybox, python3 with pip and PyYAML, curl) plus every shared
library they need, and import_image() turns it into an image with
`docker import`.  The image deliberately has no bash.
"""
import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path

BUSYBOX_APPLETS = (
    "sh", "echo", "cat", "mkdir", "sleep", "env", "ls", "pwd", "true", "false",
    "test", "rm", "cp", "wget", "seq", "touch", "dd", "head", "tail", "grep",
    "sed", "id", "hostname",
)
EXECUTABLES = ("/usr/bin/python3", "/usr/bin/pip3", "/usr/bin/curl")
STDLIB = "/usr/lib/python3.11"
# Left out of the standard library copy: tests, GUI and build-time parts, and
# the (unrelated) third-party packages some hosts put in its dist-packages.
STDLIB_SKIP = (
    "test", "idlelib", "tkinter", "ensurepip", "lib2to3/tests",
    "config-3.11-*", "dist-packages", "lib-dynload/_tkinter.*",
    "lib-dynload/_test*",
    # Debian's PEP 668 marker: pip refuses to install without a venv, where
    # the python:3.9 image the seed names lets it.
    "EXTERNALLY-MANAGED",
)
# Only what the tests use from Debian's dist-packages, which can be huge.
DIST_PACKAGES = "/usr/lib/python3/dist-packages"
DIST_PACKAGES_KEEP = ("pip", "pip-*.dist-info", "yaml", "_yaml", "PyYAML-*")
# Regular files; /usr/lib/ssl/cert.pem is where Python's ssl looks for CAs.
DATA_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/usr/lib/ssl/cert.pem")
# "libx.so => /path (0x..)" or "/lib64/ld-linux-x86-64.so.2 (0x..)".
LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+) \(0x[0-9a-f]+\)")


def _copy_host_path(path, dest):
    """Copies host file `path` into dest at the same path, keeping symlinks.

    Directories on the way are created at their real (symlink-free) path; a
    symlink is copied as a link, and its target is copied as well.
    """
    host = os.path.join(os.path.realpath(os.path.dirname(path)),
                        os.path.basename(path))
    target = dest / host.lstrip("/")
    if os.path.lexists(target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.islink(host):
        link = os.readlink(host)
        os.symlink(link, target)
        _copy_host_path(os.path.join(os.path.dirname(host), link), dest)
    else:
        shutil.copy2(host, target)


def _shared_libraries(files):
    """Returns the sorted host paths of all libraries `files` load (per ldd)."""
    out = subprocess.run(["ldd", *files], check=True, capture_output=True,
                         text=True).stdout
    if "not found" in out:
        raise RuntimeError(f"ldd: missing libraries:\n{out}")
    return sorted({m.group(1) for m in LDD_PATH.finditer(out)})


def _skip_stdlib(directory, names):
    """copytree ignore function for STDLIB_SKIP and __pycache__ dirs."""
    rel = os.path.relpath(directory, STDLIB)
    return {n for n in names
            if n == "__pycache__"
            or any(fnmatch.fnmatch(os.path.normpath(os.path.join(rel, n)), p)
                   for p in STDLIB_SKIP)}


def python_rootfs(dest: Path) -> None:
    """Fills dest (an empty directory) with a root file system holding
    busybox (/bin, plus the BUSYBOX_APPLETS and /usr/bin/env as links),
    python3 with its standard library, pip and PyYAML, pip3, curl, the shared
    libraries and dynamic loader they need, the CA bundle, a 1777 /tmp and
    /etc/passwd and /etc/group with root.
    """
    dest = Path(dest)
    # Mirror the merged-/usr links (/lib -> usr/lib, ...) so that the library
    # paths ldd reports resolve; /bin stays a real directory for busybox.
    for top in ("lib", "lib64"):
        if os.path.islink(f"/{top}"):
            os.symlink(os.readlink(f"/{top}"), dest / top)
    (dest / "bin").mkdir()
    shutil.copy2("/bin/busybox", dest / "bin" / "busybox")
    for applet in BUSYBOX_APPLETS:
        os.symlink("busybox", dest / "bin" / applet)

    shutil.copytree(STDLIB, dest / STDLIB.lstrip("/"), symlinks=True,
                    ignore=_skip_stdlib)
    for pattern in DIST_PACKAGES_KEEP:
        for src in Path(DIST_PACKAGES).glob(pattern):
            shutil.copytree(src, dest / str(src).lstrip("/"), symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
    for path in (*EXECUTABLES, *(p for p in DATA_FILES if os.path.exists(p))):
        _copy_host_path(path, dest)
    os.symlink("/bin/busybox", dest / "usr" / "bin" / "env")

    elves = [dest / "usr/bin/python3", dest / "usr/bin/curl",
             *dest.rglob("*.so")]
    for lib in _shared_libraries(elves):
        _copy_host_path(lib, dest)

    (dest / "tmp").mkdir()
    (dest / "tmp").chmod(0o1777)
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    (dest / "root").mkdir(mode=0o700)


def import_image(rootfs: Path, tag: str) -> None:
    """Imports the root file system `rootfs` into docker as image `tag`."""
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-cf", "-", "."],
                           stdout=subprocess.PIPE)
    try:
        subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout,
                       check=True, stdout=subprocess.DEVNULL)
    finally:
        tar.stdout.close()
        if tar.wait() != 0:
            raise subprocess.CalledProcessError(tar.returncode, tar.args)
