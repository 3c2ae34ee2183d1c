"""The docker backend against a real dockerd and a real registry: both
started here when they are not running, an image made by `docker import`
of a busybox-static root file system, pushed to the registry and removed
locally, so the first job pulls it.

dstack-docker SPEC runs one job in a container as the runner starts it:
output on stdout and stderr, the container's exit status as its own,
SIGTERM stopping the container, nothing left behind.  `dstack run
--backend docker` (or `backend: docker` in $DSTACK_HOME/config.yaml) runs
each job that names an image through it."""
import json
import os
import threading
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

with warnings.catch_warnings():
    # The registry's htpasswd wants bcrypt; Debian 12's Python 3.11 has it here.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

import hostimage
from conftest import (BIN, SEED_MAIN, SEED_SCHEMA, assert_error, assert_ok, kill_runner,
                      make_repo, parse_table, wait_for)
from test_custom_provider import SEED_PROVIDERS

HELPER = BIN.parent / "dstack-docker"
SOCKET = "/var/run/docker.sock"


def docker(*args, check=True, timeout=120):
    cp = subprocess.run(["docker", *map(str, args)], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check:
        assert cp.returncode == 0, f"docker {' '.join(map(str, args))}: {cp.stderr}"
    return cp


def answers():
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def containers(label):
    return docker("ps", "-aq", "--filter", f"label={label}").stdout.split()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """dockerd (started if none answers) and a registry of our own on a free
    port, holding a busybox image that dockerd does not have locally."""
    assert shutil.which("dockerd") and shutil.which("docker-registry"), \
        "docker.io and docker-registry are needed (contrib/setup.sh installs them)"
    work = tmp_path_factory.mktemp("docker")
    started = None
    if not answers():
        log = open(work / "dockerd.log", "w")
        started = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT)
        assert wait_for(answers, timeout=60), (work / "dockerd.log").read_text()[-2000:]
    port = free_port()
    (work / "registry.yml").write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\n"
        "http:\n  addr: 127.0.0.1:%d\n" % (work / "registry", port))
    reg = subprocess.Popen(["docker-registry", "serve", str(work / "registry.yml")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    image = f"127.0.0.1:{port}/dstack-test-busybox:{random.randrange(10**6)}"
    try:
        assert wait_for(lambda: _registry_up(port), timeout=30), "the registry did not start"
        rootfs = work / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
        for applet in ("sh", "echo", "cat", "mkdir", "sleep", "dd", "env", "pwd", "touch",
                       "httpd", "true", "ls", "wget", "seq", "grep"):
            os.symlink("busybox", rootfs / "bin" / applet)
        subprocess.run(["tar", "-C", rootfs, "-cf", work / "rootfs.tar", "."], check=True)
        docker("import", work / "rootfs.tar", image)
        docker("push", image)
        docker("rmi", image)
        yield image
    finally:
        docker("rmi", "-f", image, check=False)
        reg.terminate()
        reg.wait(timeout=30)
        if started:
            started.terminate()
            started.wait(timeout=60)


def _registry_up(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def run_helper(tmp_path, spec, timeout=120, env=None):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return subprocess.run([str(HELPER), str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def test_pulls_runs_and_returns_the_exit_status(registry, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.txt").write_text("input\n")
    label = f"dstack.test={random.randrange(10**9)}"
    cp = run_helper(tmp_path, {
        "image": registry,
        "command": ["sh", "-c", "echo out $A; cat in.txt; echo to stderr >&2; "
                                "mkdir -p result; echo made > result/x; pwd; exit 3"],
        "env": ["A=1"], "workdir": "/workflow", "binds": [f"{work}:/workflow"],
        "labels": [label],
    })
    assert cp.returncode == 3, cp.stderr
    assert cp.stdout == "out 1\ninput\n/workflow\n"
    assert "to stderr\n" in cp.stderr
    assert f"dstack: docker: pulling {registry}" in cp.stderr, "the image was not pulled"
    assert "Status: Downloaded newer image" in cp.stderr
    assert (work / "result" / "x").read_text() == "made\n"
    assert containers(label) == [], "the container was left behind"
    # Present now: no second pull.
    cp = run_helper(tmp_path, {"image": registry, "command": ["true"]})
    assert cp.returncode == 0 and "pulling" not in cp.stderr, cp.stderr


def test_read_only_binds_and_published_ports(registry, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("served\n")
    port = free_port()
    spec = {"image": registry, "ports": [port], "binds": [f"{www}:/www:ro"],
            "command": ["sh", "-c", "touch /www/new 2>/dev/null && echo wrote || echo read-only; "
                                    f"httpd -f -p {port} -h /www"]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.Popen([str(HELPER), str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        def served():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html",
                                            timeout=2) as r:
                    return r.read() == b"served\n"
            except OSError:
                return False
        assert wait_for(served, timeout=30), "the container's port is not reachable from the host"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert out.startswith("read-only\n"), out + err
    assert not (www / "new").exists()


def test_sigterm_stops_the_container_and_keeps_its_last_words(registry, tmp_path):
    label = f"dstack.test={random.randrange(10**9)}"
    spec = {"image": registry, "labels": [label], "grace": 5,
            "command": ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo started; "
                                    "while true; do sleep 0.1; done"]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.Popen([str(HELPER), str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # "started" comes after the trap is set: a TERM before it would kill sh.
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    assert ready and proc.stdout.readline() == "started\n", "the container did not start"
    assert containers(label)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert out == "got TERM\n", out + err
    assert containers(label) == []


def test_out_of_memory_is_reported(registry, tmp_path):
    cp = run_helper(tmp_path, {
        "image": registry, "memory": 16 * 1024 * 1024,
        "command": ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=128M count=1; echo survived"],
    })
    assert cp.returncode == 137, cp.stdout + cp.stderr
    assert "dstack: docker: the container ran out of memory (its limit is 16777216 bytes)" \
        in cp.stderr


def test_errors_name_the_image_the_socket_and_the_spec(registry, tmp_path):
    missing = registry.rsplit(":", 1)[0] + "-missing:1"
    cp = run_helper(tmp_path, {"image": missing, "command": ["true"]})
    assert cp.returncode == 125
    assert cp.stderr.splitlines()[-1].startswith(f"dstack: image {missing}: "), cp.stderr
    assert "not found" in cp.stderr.splitlines()[-1]

    cp = run_helper(tmp_path, {"image": registry, "command": ["true"]},
                    env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert cp.returncode == 125
    assert cp.stderr == f"dstack: cannot reach dockerd at {tmp_path}/no.sock (is it running?)\n"

    cp = run_helper(tmp_path, {"command": ["true"]})
    assert cp.returncode == 125 and "image: expected an image name" in cp.stderr, cp.stderr
    cp = run_helper(tmp_path, {"image": registry, "command": ["true"], "ports": [0]})
    assert cp.returncode == 125 and "ports[0]: expected a port" in cp.stderr, cp.stderr


WORKFLOWS = """\
    workflows:
      - name: inside
        provider: bash
        image: %(image)s
        commands:
          - echo "in $(pwd) as $JOB_ID"
          - mkdir -p out && echo made > out/x
          - test -e /workflow/data.txt && echo "snapshot there"
          - test -x /bin/bash || echo "no bash, sh ran it"
        artifacts:
          - out
      - name: after
        provider: bash
        image: %(image)s
        deps:
          - workflow: inside
        commands:
          - cat out/x
          - touch out/new 2>/dev/null && echo wrote || echo read-only
      - name: fails
        provider: bash
        image: %(image)s
        commands:
          - echo before
          - exit 4
          - echo never
      - name: forever
        provider: bash
        image: %(image)s
        commands:
          - echo started
          - sleep 1000
      - name: here
        provider: bash
        commands:
          - echo "on the host"
      - name: hungry
        provider: bash
        image: %(image)s
        resources:
          memory: 16MB
        commands:
          - dd if=/dev/zero of=/dev/null bs=128M count=1
          - echo survived
      - name: streams
        provider: bash
        image: %(image)s
        commands:
          - echo one to stdout
          - echo two to stderr >&2
          - echo three to stdout
      - name: missing
        provider: bash
        image: %(image)s-missing
        commands:
          - echo never
      - name: limits
        provider: bash
        image: %(image)s
        working_dir: sub
        resources:
          cpu: 1
          memory: 64MB
          shm_size: 32MB
        commands:
          - echo "in $(pwd)"
          - echo "memory $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
          - echo "cpu $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) per $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"
          - grep ' /dev/shm ' /proc/mounts
    """


def run_rows(ds, repo):
    return {r["RUN"]: r for r in parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)}


def test_run_with_the_docker_backend(registry, ds, tmp_path):
    repo = make_repo(tmp_path / "repo", WORKFLOWS % {"image": registry},
                     files={"data.txt": "data\n"})
    cp = assert_ok(ds("run", "--backend", "docker", "inside", cwd=repo))
    [name] = run_rows(ds, repo)
    assert f"in /workflow as {name}/0\n" in cp.stdout, cp.stdout
    assert "snapshot there\n" in cp.stdout and "no bash, sh ran it\n" in cp.stdout
    assert f"job 0 runs in image '{registry}' through dockerd" in cp.stdout + cp.stderr
    out = ds.download(name, tmp_path / "dl")
    assert (out / "out" / "x").read_text() == "made\n"
    assert containers(f"dstack.run={name}") == []

    # The dep's artifacts are bound read-only into the container.
    cp = assert_ok(ds("run", "--backend", "docker", "after", cwd=repo))
    assert "made\nread-only\n" in cp.stdout, cp.stdout

    cp = ds("run", "--backend", "docker", "fails", cwd=repo)
    assert_error(cp, "failed")
    assert "before\n" in cp.stdout and "never" not in cp.stdout
    assert "job 0 exited with status 4" in cp.stdout + cp.stderr

    # resources.memory is the container's limit; going over it is reported.
    cp = ds("run", "--backend", "docker", "hungry", cwd=repo)
    # sh's "Killed" is the job's stderr, kept apart; then dstack's one line.
    assert cp.returncode == 1 and cp.stderr.startswith("Killed\n"), cp
    assert re.fullmatch(r"dstack: run \S+ failed", cp.stderr.splitlines()[-1]), cp.stderr
    assert "dstack: job 0: the container ran out of memory (its limit is 16777216 bytes)\n" \
        in cp.stdout, cp.stdout
    assert "survived" not in cp.stdout

    # working_dir under /workflow; resources become the container's limits.
    cp = assert_ok(ds("run", "--backend", "docker", "limits", cwd=repo))
    assert "in /workflow/sub\n" in cp.stdout, cp.stdout
    assert f"memory {64 * 1024 * 1024}\n" in cp.stdout, cp.stdout
    assert "cpu 100000 per 100000\n" in cp.stdout, cp.stdout
    assert "size=32768k" in cp.stdout, cp.stdout

    # A job without an image runs on the host.
    cp = assert_ok(ds("run", "--backend", "docker", "here", cwd=repo))
    assert "on the host\n" in cp.stdout

    cp = ds("run", "--backend", "podman", "inside", cwd=repo)
    assert_error(cp, "backend 'podman': expected host, docker or slurm")


def job_reasons(ds, name):
    """`ps RUN`: the REASON of each job, and the run's reason line."""
    run_table, job_table, details = assert_ok(ds("ps", name)).stdout.split("\n\n")
    reason = [l[len("reason: "):] for l in details.splitlines() if l.startswith("reason: ")]
    return [j["REASON"] for j in parse_table(job_table)], reason[0] if reason else None


def test_failures_say_why_in_ps(registry, ds, tmp_path):
    repo = make_repo(tmp_path / "repo", WORKFLOWS % {"image": registry},
                     files={"data.txt": "data\n"})

    def failed(workflow, env=None, says=None):
        cp = ds("run", "--backend", "docker", workflow, cwd=repo, env=env)
        name = list(run_rows(ds, repo))[0]
        # The job's own stderr comes first (sh's "Killed"), then dstack's one line.
        says = says or f"run {name} failed"
        assert cp.returncode == 1 and cp.stderr.endswith(f"dstack: {says}\n"), cp
        assert run_rows(ds, repo)[name]["STATUS"] == "failed"
        return name

    name = failed("fails")
    assert job_reasons(ds, name) == (["job 0 exited with status 4"], "job 0 exited with status 4")
    oom = "job 0: the container ran out of memory (its limit is 16777216 bytes)"
    name = failed("hungry")
    assert job_reasons(ds, name) == ([oom], oom)

    missing = f"{registry}-missing"
    name = failed("missing")
    [job], run = job_reasons(ds, name)
    assert job == run and job.startswith(f"job 0: image {missing}: "), job
    assert "not found" in job and registry.split("/")[0] in job, job

    # dockerd out of reach: the job fails, naming the socket.
    unreachable = f"job 0: cannot reach dockerd at {tmp_path}/no.sock (is it running?)"
    name = failed("inside", env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert job_reasons(ds, name) == ([unreachable], unreachable)

    # A run that did not fail has no reason.
    assert_ok(ds("run", "--backend", "docker", "inside", cwd=repo))
    name = list(run_rows(ds, repo))[0]
    assert job_reasons(ds, name) == (["-"], None)


def test_stderr_stays_apart(registry, ds, tmp_path):
    # dockerd gives the container's streams apart: `dstack run` and
    # `dstack logs` write each to its own, the tree's logs hold both.
    repo = make_repo(tmp_path / "repo", WORKFLOWS % {"image": registry},
                     files={"data.txt": "data\n"})
    cp = assert_ok(ds("run", "--backend", "docker", "streams", cwd=repo))
    assert "one to stdout\nthree to stdout\n" in cp.stdout, cp.stdout
    assert "two to stderr\n" in cp.stderr and "stderr" not in cp.stdout, (cp.stdout, cp.stderr)
    [name] = run_rows(ds, repo)
    cp = assert_ok(ds("logs", name))
    assert "one to stdout\nthree to stdout\n" in cp.stdout and "stderr" not in cp.stdout
    assert cp.stderr == "two to stderr\n", cp.stderr
    # dockerd copies each stream on its own: how they interleave is its doing.
    merged = subprocess.run([str(BIN), "logs", name], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=repo,
                            env=dict(os.environ, DSTACK_HOME=str(ds.home))).stdout
    assert sorted(merged.splitlines()[-3:]) == ["one to stdout", "three to stdout",
                                                "two to stderr"], merged
    # On the host one pipe holds both, as a terminal shows them.
    cp = assert_ok(ds("run", "--backend", "host", "streams", cwd=repo))
    assert "one to stdout\ntwo to stderr\nthree to stdout\n" in cp.stdout, cp.stdout


def test_gpus_are_asked_of_dockerd(registry, tmp_path):
    # The runner hands the GPUs it claimed as DeviceRequests; a dockerd
    # without the NVIDIA runtime refuses them, and the error says so.
    if "nvidia" in docker("info", "--format", "{{json .Runtimes}}").stdout:
        cp = run_helper(tmp_path, {"image": registry, "command": ["ls", "/dev"],
                                   "gpus": ["0"]})
        assert cp.returncode == 0 and "nvidia0" in cp.stdout, cp.stdout + cp.stderr
        return
    cp = run_helper(tmp_path, {"image": registry, "command": ["true"], "gpus": ["0"]})
    assert cp.returncode == 125, cp.stdout + cp.stderr
    line = cp.stderr.splitlines()[-1]
    assert 'could not select device driver "nvidia"' in line, line
    assert line.endswith("(the job asks for GPUs: dockerd hands them to containers through"
                         " the NVIDIA Container Toolkit)"), line
    # With a reason file (the runner's), the line goes there instead.
    reason = tmp_path / "reason"
    cp = run_helper(tmp_path, {"image": registry, "command": ["true"], "gpus": ["0"],
                               "reason": str(reason)})
    assert cp.returncode == 125 and "dstack:" not in cp.stderr, cp.stderr
    # The same words (another container's id).
    assert reason.read_text().split(": ", 1)[1] == line.split(": ", 2)[2]
    # Without GPUs asked, the same container runs.
    cp = run_helper(tmp_path, {"image": registry, "command": ["true"], "gpus": []})
    assert cp.returncode == 0, cp.stderr


def test_config_yaml_names_the_backend(registry, ds, tmp_path):
    repo = make_repo(tmp_path / "repo", WORKFLOWS % {"image": registry},
                     files={"data.txt": "data\n"})
    config = ds.home / "config.yaml"
    ds.home.mkdir(parents=True, exist_ok=True)
    config.write_text("backend: docker\n")
    cp = assert_ok(ds("run", "inside", cwd=repo))
    assert "through dockerd" in cp.stdout + cp.stderr and "in /workflow as" in cp.stdout
    # The flag wins over the file.
    cp = assert_ok(ds("run", "--backend", "host", "inside", cwd=repo))
    assert "through dockerd" not in cp.stdout + cp.stderr
    config.write_text("backend: [docker]\n")
    cp = ds("run", "inside", cwd=repo)
    assert_error(cp, f"{config}:1:10: backend: expected host, docker or slurm")
    assert len(run_rows(ds, repo)) == 2, "a bad config.yaml started a run"


def start_forever(registry, ds, tmp_path):
    """`forever` started detached on the docker backend, its container up:
    (repo, run name, the run's container label)."""
    repo = make_repo(tmp_path / "repo", WORKFLOWS % {"image": registry},
                     files={"data.txt": "data\n"})
    cp = assert_ok(ds("run", "-d", "--backend", "docker", "forever", cwd=repo))
    name = cp.stdout.strip()
    label = f"dstack.run={name}"
    assert wait_for(lambda: containers(label), timeout=60), "no container started"
    return repo, name, label


def test_stop_leaves_no_container(registry, ds, tmp_path):
    repo, name, label = start_forever(registry, ds, tmp_path)
    assert wait_for(lambda: "started" in ds("logs", name).stdout, timeout=30)
    assert_ok(ds("stop", name, cwd=repo))
    assert run_rows(ds, repo)[name]["STATUS"] == "stopped"
    assert wait_for(lambda: containers(label) == [], timeout=30), "the container outlived its run"
    # Abort kills at once: the helper goes with SIGKILL, the run's cleanup
    # takes its container.
    cp = assert_ok(ds("run", "-d", "--backend", "docker", "forever", cwd=repo))
    name = cp.stdout.strip()
    label = f"dstack.run={name}"
    assert wait_for(lambda: "started" in ds("logs", name).stdout, timeout=60)
    started = time.monotonic()
    assert_ok(ds("stop", "-x", name, cwd=repo))
    assert time.monotonic() - started < 8, "abort waited for the grace period"
    assert run_rows(ds, repo)[name]["STATUS"] == "aborted"
    assert containers(label) == [], "the aborted run's container is still there"


def test_backend_through_the_tree(registry, ds, tmp_path):
    # ctl lines take `dstack run`'s options, and `dstack run --backend`
    # hands its backend to the daemon with the run.
    repo = make_repo(tmp_path / "repo", WORKFLOWS % {"image": registry},
                     files={"data.txt": "data\n"})
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert_ok(ds("mount", mnt, cwd=repo, timeout=60))
    try:
        fd = os.open(mnt / "ctl", os.O_RDWR)
        try:
            os.write(fd, b"--backend docker -t in inside\n")
            name = os.read(fd, 4096).decode().strip()
        finally:
            os.close(fd)
        assert wait_for(lambda: (mnt / "runs" / name / "status").read_text() == "done\n",
                        timeout=60), (mnt / "runs" / name / "logs").read_text()
        logs = (mnt / "runs" / name / "logs").read_text()
        assert "through dockerd" in logs and f"in /workflow as {name}/0" in logs, logs
        assert os.readlink(mnt / "tags" / "in") == f"../runs/{name}"
        # The job records the image pinned to the registry's digest.
        info = (mnt / "runs" / name / "jobs" / "0" / "info").read_text()
        assert re.search(r"^image: %s@sha256:[0-9a-f]{64}$" % re.escape(registry), info,
                         re.M), info

        cp = assert_ok(ds("run", "--backend", "docker", "after", cwd=repo))
        assert "made\nread-only\n" in cp.stdout, cp.stdout

        fd = os.open(mnt / "ctl", os.O_RDWR)
        try:
            with pytest.raises(OSError) as e:
                os.write(fd, b"--backend\n")
            assert e.value.errno == 22
        finally:
            os.close(fd)
    finally:
        ds("umount", mnt, timeout=60)
        wait_for(lambda: subprocess.run(["mountpoint", "-q", str(mnt)]).returncode != 0,
                 timeout=30)


def test_a_dead_runner_leaves_no_container(registry, ds, tmp_path):
    repo, name, label = start_forever(registry, ds, tmp_path)
    kill_runner("run -d --backend docker forever")
    # The next command that looks finds the run orphaned and cleans up.
    assert run_rows(ds, repo)[name]["STATUS"] == "failed"
    assert containers(label) == [], "the dead runner's container is still there"
    logs = ds("logs", name).stdout
    assert "is gone; marked failed" in logs and "1 container(s) of the run removed" in logs, logs


def test_a_dead_runner_leaves_no_provider_container(registry, ds, tmp_path):
    providers = ("providers:\n  - name: slow\n    image: %s\n    commands:\n"
                 "      - echo provider up\n      - sleep 1000\n" % registry)
    repo = make_repo(tmp_path / "repo", "workflows:\n  - name: slow\n    provider: slow\n",
                     providers=providers)
    name = assert_ok(ds("run", "-d", "--backend", "docker", "slow", cwd=repo)).stdout.strip()
    label = f"dstack.run={name}"
    assert wait_for(lambda: containers(label), timeout=60), "the provider's container did not start"
    kill_runner("run -d --backend docker slow")
    assert run_rows(ds, repo)[name]["STATUS"] == "failed"
    assert containers(label) == [], "the dead runner's provider container is still there"
    assert "1 container(s) of the run removed" in ds("logs", name).stdout
    assert re.fullmatch(r"its runner \(pid \d+\) is gone", job_reasons(ds, name)[1])


def test_pull_with_the_credentials_of_docker_login(registry, tmp_path):
    # A registry that wants a password: the helper sends what `docker
    # login` stored in DOCKER_CONFIG's config.json; without it the pull
    # is refused, naming the image.
    port = free_port()
    (tmp_path / "htpasswd").write_text(
        "ann:%s\n" % crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH)))
    (tmp_path / "registry.yml").write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\n"
        "http:\n  addr: 127.0.0.1:%d\n"
        "auth:\n  htpasswd:\n    realm: dstack-test\n    path: %s\n"
        % (tmp_path / "data", port, tmp_path / "htpasswd"))
    reg = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "registry.yml")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    private = f"127.0.0.1:{port}/private-busybox:1"
    config = tmp_path / "docker-config"
    config.mkdir()
    env = dict(os.environ, DOCKER_CONFIG=str(config))
    try:
        def up():
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
            except urllib.error.HTTPError as e:
                return e.code == 401
            except OSError:
                return False
            return False
        assert wait_for(up, timeout=30), "the registry with a password did not start"
        login = subprocess.run(["docker", "login", "-u", "ann", "--password-stdin",
                                f"127.0.0.1:{port}"], input="s3cret", env=env,
                               capture_output=True, text=True, timeout=60)
        assert login.returncode == 0, login.stderr
        docker("pull", registry)
        docker("tag", registry, private)
        assert subprocess.run(["docker", "push", private], env=env, capture_output=True,
                              timeout=120).returncode == 0
        docker("rmi", private)

        empty = tmp_path / "no-config"
        empty.mkdir()
        cp = run_helper(tmp_path, {"image": private, "command": ["true"]},
                        env={"DOCKER_CONFIG": str(empty)})
        assert cp.returncode == 125, cp.stderr
        assert cp.stderr.splitlines()[-1].startswith(f"dstack: image {private}: "), cp.stderr

        cp = run_helper(tmp_path, {"image": private, "command": ["echo", "pulled"]},
                        env={"DOCKER_CONFIG": str(config)})
        assert cp.returncode == 0 and cp.stdout == "pulled\n", cp.stderr

        # A credential helper, as `docker login` with a credsStore leaves it:
        # docker-credential-NAME get, the registry on stdin.
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        helper = bin_dir / "docker-credential-dstacktest"
        helper.write_text(
            "#!/bin/sh\n"
            "[ \"$1\" = get ] || exit 2\n"
            "read -r server || [ -n \"$server\" ]\n"
            "echo \"$server\" >> \"$(dirname \"$0\")/asked\"\n"
            f"[ \"$server\" = 127.0.0.1:{port} ] || {{ echo 'credentials not found'; exit 1; }}\n"
            f"echo '{{\"ServerURL\": \"127.0.0.1:{port}\", \"Username\": \"ann\","
            " \"Secret\": \"'\"$SECRET\"'\"}'\n")
        helper.chmod(0o755)
        path = f"{bin_dir}:{os.environ['PATH']}"
        for name, settings in (("store", {"credsStore": "dstacktest"}),
                               ("helpers", {"credHelpers": {f"127.0.0.1:{port}": "dstacktest"},
                                            "auths": {f"127.0.0.1:{port}": {}}})):
            with_helper = tmp_path / f"config-{name}"
            with_helper.mkdir()
            (with_helper / "config.json").write_text(json.dumps(settings))
            docker("rmi", private)
            cp = run_helper(tmp_path, {"image": private, "command": ["echo", "pulled"]},
                            env={"DOCKER_CONFIG": str(with_helper), "PATH": path,
                                 "SECRET": "s3cret"})
            assert cp.returncode == 0 and cp.stdout == "pulled\n", (name, cp.stderr)
        assert (bin_dir / "asked").read_text() == f"127.0.0.1:{port}\n" * 2
        # What the helper hands is what the registry judges.
        docker("rmi", private)
        cp = run_helper(tmp_path, {"image": private, "command": ["true"]},
                        env={"DOCKER_CONFIG": str(tmp_path / "config-store"), "PATH": path,
                             "SECRET": "wrong"})
        assert cp.returncode == 125, cp.stderr
        assert cp.stderr.splitlines()[-1].startswith(f"dstack: image {private}: "), cp.stderr
    finally:
        docker("rmi", "-f", private, check=False)
        reg.terminate()
        reg.wait(timeout=30)


# The master serves until the worker's fetch is logged (the log line comes
# with the response's headers; a second more lets its body go), not for a
# fixed time the worker's container may not start within.
PAIR_PROVIDER = """\
providers:
  - name: pair
    commands:
      - |
        cat > "$DSTACK_JOBS" <<'JSON'
        [{"image": "%(image)s", "ports": 1,
          "commands": ["mkdir -p /tmp/www && echo from-master > /tmp/www/x",
                       "httpd -f -v -p $PORT_0 -h /tmp/www 2> /tmp/served &",
                       "for i in $(seq 1 600); do grep -q response:200 /tmp/served && break; sleep 0.1; done",
                       "sleep 1"]},
         {"image": "%(image)s", "master": 0,
          "commands": ["for i in $(seq 1 100); do wget -qO- http://$MASTER_JOB_HOSTNAME:$MASTER_JOB_PORT_0/x && break; sleep 0.1; done",
                       "echo I am $JOB_HOSTNAME, master $MASTER_JOB_HOSTNAME"]}]
        JSON
"""


def test_workers_reach_their_master_by_name(registry, ds, tmp_path):
    repo = make_repo(tmp_path / "repo", "workflows:\n  - name: pair\n    provider: pair\n",
                     providers=PAIR_PROVIDER % {"image": registry})
    cp = assert_ok(ds("run", "--backend", "docker", "pair", cwd=repo, timeout=180))
    [name] = run_rows(ds, repo)
    assert "from-master\n" in cp.stdout, cp.stdout + cp.stderr
    assert f"I am {name}-1, master {name}-0\n" in cp.stdout, cp.stdout
    # The run's network goes with it.
    nets = docker("network", "ls", "-q", "--filter", f"label=dstack.run={name}").stdout.split()
    assert nets == [], "the run's network was left behind"
    assert containers(f"dstack.run={name}") == []

    # Without dockerd the network cannot be made: the run fails before its
    # jobs start, naming the socket.
    unreachable = f"cannot reach dockerd at {tmp_path}/no.sock (is it running?)"
    cp = ds("run", "--backend", "docker", "pair", cwd=repo,
            env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert_error(cp, unreachable)
    name = list(run_rows(ds, repo))[0]
    assert job_reasons(ds, name)[1] == unreachable


@pytest.fixture(scope="module")
def python_image(registry, tmp_path_factory):
    """The seed's provider image, python:3.9, made from the host's python3,
    pip, PyYAML and curl (no Docker Hub here) unless dockerd has one."""
    tag = "python:3.9"
    if docker("image", "inspect", tag, check=False).returncode == 0:
        yield tag
        return
    rootfs = tmp_path_factory.mktemp("python-rootfs")
    hostimage.python_rootfs(rootfs)
    hostimage.import_image(rootfs, tag)
    shutil.rmtree(rootfs)
    try:
        yield tag
    finally:
        docker("rmi", "-f", tag, check=False)


WHERE_PROVIDER = """\
- name: where
  image: python:3.9
  commands:
  - test -f /.dockerenv && echo "provider in a container as $(id -u)"
  - python3 -c "import dstack, os; print('module read-only', not os.access(os.path.dirname(dstack.__file__), os.W_OK))"
  - |-
    echo '[{"image": "python:3.9", "commands": ["echo job in $(hostname)"]}]' > "$DSTACK_JOBS"
"""


def test_custom_provider_runs_in_its_image(python_image, ds, tmp_path):
    # The seed's curl example, unchanged but for its URL: its provider runs
    # in python:3.9 with the dstack module bound in, its job in python:3.9
    # fetches from a web server on the host's docker bridge.
    site = tmp_path / "site"
    site.mkdir()
    (site / "input.txt").write_text("First Citizen:\nBefore we proceed any further.\n")
    gateway = docker("network", "inspect", "bridge", "--format",
                     "{{(index .IPAM.Config 0).Gateway}}").stdout.strip()
    server = ThreadingHTTPServer((gateway, 0),
                                 partial(SimpleHTTPRequestHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://{gateway}:{server.server_address[1]}"
        workflows = ("workflows:\n  - name: tinyshakespeare\n    provider: curl\n"
                     f"    url: {url}/input.txt\n    output: data/input.txt\n"
                     "    artifacts:\n      - data\n"
                     "  - name: where\n    provider: where\n")
        files = {"providers/curl/main.py": SEED_MAIN, "providers/curl/schema.yaml": SEED_SCHEMA,
                 "providers/curl/requirements.txt": ""}
        repo = make_repo(tmp_path / "repo", workflows, SEED_PROVIDERS + WHERE_PROVIDER, files)
        cp = assert_ok(ds("run", "--backend", "docker", "tinyshakespeare", cwd=repo,
                          timeout=300))
        assert "provider 'curl' runs in image 'python:3.9' through dockerd" in cp.stdout, cp.stdout
        [name] = run_rows(ds, repo)
        out = ds.download(name, tmp_path / "dl")
        assert (out / "data" / "input.txt").read_bytes() == (site / "input.txt").read_bytes()
    finally:
        server.shutdown()
        server.server_close()

    cp = assert_ok(ds("run", "--backend", "docker", "where", cwd=repo, timeout=300))
    assert "provider in a container as 0" in cp.stdout, cp.stdout + cp.stderr
    assert "module read-only True\n" in cp.stdout, cp.stdout + cp.stderr
    name = list(run_rows(ds, repo))[0]
    assert f"job in {name}-0\n" in cp.stdout, cp.stdout
    assert containers(f"dstack.run={name}") == []

    # A provider image that is nowhere fails the run, naming it.
    missing = repo / ".dstack" / "providers.yaml"
    missing.write_text(missing.read_text().replace("image: python:3.9\n  commands:\n  - test -f",
                                                   "image: no-such-image:1\n  commands:\n"
                                                   "  - test -f"))
    cp = ds("run", "--backend", "docker", "where", cwd=repo, timeout=300)
    assert cp.returncode == 1, cp
    name = list(run_rows(ds, repo))[0]
    _, reason = job_reasons(ds, name)
    assert reason.startswith("provider 'where': image no-such-image:1: "), reason


def test_the_job_cache_knows_the_image_by_its_id(registry, ds, tmp_path):
    """The cache's key holds the id dockerd gives the image: the same tag
    made another image runs the job again."""
    repo = make_repo(tmp_path / "repo", f"""\
        workflows:
          - name: cached
            provider: bash
            image: {registry}
            cache: true
            commands:
              - cat /version 2>/dev/null || echo no version
              - mkdir -p out && echo made > out/x
            artifacts: [out]
        """)
    docker("rmi", "-f", registry, check=False)
    try:
        # The key needs the image's id: it is pulled first, in the job's log.
        cp = assert_ok(ds("run", "--backend", "docker", "cached", cwd=repo, timeout=180))
        assert cp.stdout.index(f"dstack: docker: pulling {registry}") < \
            cp.stdout.index("runs (input key"), cp.stdout
        assert "no version" in cp.stdout
        cp = assert_ok(ds("run", "--backend", "docker", "cached", cwd=repo))
        assert "is cached from" in cp.stdout
        # The same name, another image: the job runs in it.
        name = f"dstack-cache-{random.randrange(10**9)}"
        docker("run", "--name", name, registry, "sh", "-c", "echo v2 > /version")
        docker("commit", name, registry)
        docker("rm", name)
        cp = assert_ok(ds("run", "--backend", "docker", "cached", cwd=repo))
        assert "runs (input key" in cp.stdout and "v2" in cp.stdout
        # On the host backend the image is not what runs: "host" is in the key.
        cp = assert_ok(ds("run", "--backend", "host", "cached", cwd=repo))
        assert "runs (input key" in cp.stdout
        assert "is cached from" in assert_ok(ds("run", "--backend", "host", "cached",
                                                 cwd=repo)).stdout
    finally:
        # Later tests pull the registry's image afresh.
        docker("rmi", "-f", registry, check=False)
