"""The slurm backend (issue "Scale out on Slurm") against the real
munged, slurmctld, slurmd and slurmrestd that tests/slurm/start.sh starts:
each job a Slurm job running `dstack job-exec` on the node, submitted
through the sbatch commands and through slurmrestd, depends_on as afterok,
master and workers, a job pending on resources, failures, stop while
pending and while running, and the logs and artifacts in the tree after.
"""
import os
import re
import sqlite3
import subprocess

import pytest

from conftest import (BIN, REPO, assert_error, assert_ok, kill_runner, make_repo, parse_table,
                      wait_for)
from test_fs import mount_env, unmount_all
from test_docker import containers, registry  # noqa: F401  (registry: a fixture)
from test_jobs import JSON_PROVIDER, jobs_workflow, workflows_yaml

START = REPO / "tests" / "slurm" / "start.sh"


@pytest.fixture(scope="session")
def slurm_node():
    """The Slurm node's name, the services started once for the session."""
    cp = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=600)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    name = subprocess.run(["sinfo", "-h", "-o", "%n"], capture_output=True, text=True,
                          check=True).stdout.split()[0]
    return name


def slurm_config(ds, tmp_path, how, extra=""):
    """config.yaml for the slurm backend: sbatch's commands, or slurmrestd."""
    lines = ["backend: slurm", "slurm:", "  partition: debug"]
    if how == "rest":
        token = subprocess.run(["scontrol", "token", "username=root", "lifespan=3600"],
                               capture_output=True, text=True, check=True).stdout
        token_file = tmp_path / "slurm.jwt"
        token_file.write_text(token.strip().split("=", 1)[1] + "\n")
        lines += ["  url: http://127.0.0.1:6820", f"  token_file: {token_file}",
                  "  user: root"]
    ds.home.mkdir(parents=True, exist_ok=True)
    (ds.home / "config.yaml").write_text("\n".join(lines) + "\n" + extra)


def slurm_jobs(ds, name):
    """Slurm's jobs of a run of this store: {job number: (id, state)}.  A
    job's working directory is its folder in the store; names alone would
    mix in other tests' runs (every store names its runs afresh)."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%j|%T|%Z"],
                         capture_output=True, text=True, check=True).stdout
    jobs = {}
    for line in out.splitlines():
        job_id, job_name, state, workdir = line.split("|", 3)
        match = re.fullmatch(rf"dstack-{re.escape(name)}-(\d+)", job_name)
        if match and workdir == f"{os.path.realpath(ds.home)}/work/{name}-{match.group(1)}":
            jobs[int(match.group(1))] = (int(job_id), state)
    return jobs


def job_rows(ds, name):
    out = assert_ok(ds("ps", name)).stdout
    return parse_table(out[out.index("JOB"):].split("\n\n")[0])


def run_detached(ds, repo, *args):
    name = assert_ok(ds("run", "-d", *args, cwd=repo)).stdout.strip().splitlines()[-1]
    return name


def start_forever(ds, tmp_path):
    """(repository, run name) of a one-job run that says "up" and sleeps."""
    repo = make_repo(tmp_path / "repo", """\
        workflows:
          - name: forever
            provider: bash
            commands:
              - echo up
              - sleep 1000
        """)
    return repo, run_detached(ds, repo, "forever")


def run_status(ds, repo):
    return parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)[0]["STATUS"]


class CpusHeld:
    """A Slurm job of someone else's holding every CPU of the node."""

    def __enter__(self):
        cpus = int(subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True,
                                  check=True).stdout.split()[0])
        self.id = subprocess.run(["sbatch", "--parsable", "-p", "debug",
                                  f"--cpus-per-task={cpus}", "-o", "/dev/null",
                                  "--wrap", "sleep 120"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        assert wait_for(lambda: subprocess.run(["squeue", "-h", "-j", self.id, "-o", "%T"],
                                               capture_output=True, text=True).stdout.strip()
                        == "RUNNING", timeout=30)
        return self

    def release(self):
        subprocess.run(["scancel", self.id])

    def __exit__(self, *exc):
        self.release()


@pytest.fixture(params=["commands", "rest"])
def how(request):
    return request.param


def test_two_jobs_with_depends_on_run_as_slurm_jobs(ds, tmp_path, slurm_node, how):
    slurm_config(ds, tmp_path, how)
    jobs = [{"commands": ["mkdir -p out", "echo first on $JOB_HOSTNAME | tee out/first.txt"],
             "artifacts": ["out"]},
            {"commands": ["echo second after first", "test ! -e out/first.txt",
                          "mkdir -p res", "head -c 3000000 /dev/urandom > res/blob",
                          "sha256sum res/blob > res/blob.sha"],
             "artifacts": ["res"], "depends_on": [0]}]
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("pair", jobs)),
                     JSON_PROVIDER)
    cp = assert_ok(ds("run", "pair", cwd=repo, timeout=180))
    assert f"first on {slurm_node}" in cp.stdout
    assert "second after first" in cp.stdout
    assert re.search(r"job 0 is Slurm job \d+", cp.stdout), cp.stdout
    name = parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)[0]["RUN"]
    # Slurm ran them, the second after the first.
    slurm = slurm_jobs(ds, name)
    assert set(slurm) == {0, 1} and all(s == "COMPLETED" for _, s in slurm.values()), slurm
    out = tmp_path / "out"
    assert_ok(ds("artifacts", "download", name, "-o", out))
    assert (out / "out" / "first.txt").read_text() == f"first on {slurm_node}\n"
    sha = (out / "res" / "blob.sha").read_text().split()[0]
    assert subprocess.run(["sha256sum", out / "res" / "blob"], capture_output=True,
                          text=True).stdout.split()[0] == sha
    ds.fsck_clean()
    # Nothing of the jobs is left in the store's work folder.
    assert not list((ds.home / "work").glob(f"{name}-*"))


def test_artifacts_and_logs_in_the_tree_after_a_slurm_run(ds, tmp_path, slurm_node):
    slurm_config(ds, tmp_path, "commands")
    repo = make_repo(tmp_path / "repo", """\
        workflows:
          - name: train
            provider: bash
            commands:
              - mkdir -p model
              - echo weights > model/w.txt
              - echo trained on $JOB_HOSTNAME
            artifacts:
              - model
          - name: evaluate
            provider: bash
            deps:
              - workflow: train
            commands:
              - cat model/w.txt
              - touch model/new 2>/dev/null && echo wrote || echo read-only
        """)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert_ok(ds("mount", mnt, cwd=repo, env=mount_env(tmp_path), timeout=60))
    try:
        cp = assert_ok(ds("run", "train", cwd=repo, timeout=120))
        name = parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)[0]["RUN"]
        assert (mnt / "runs" / name / "artifacts" / "model" / "w.txt").read_text() == "weights\n"
        logs = (mnt / "runs" / name / "logs").read_text()
        assert f"trained on {slurm_node}" in logs
        assert (mnt / "runs" / name / "status").read_text().strip() == "done"
        assert f"trained on {slurm_node}" in cp.stdout
        # A later job gets the artifacts read-only, from the packs, on its node.
        cp = assert_ok(ds("run", "evaluate", cwd=repo, timeout=120))
        assert "weights\nread-only\n" in cp.stdout, cp.stdout
    finally:
        unmount_all(ds, mnt)


def test_workers_get_their_masters_node(ds, tmp_path, slurm_node):
    slurm_config(ds, tmp_path, "commands")
    jobs = [{"commands": ["echo master on $JOB_HOSTNAME", "sleep 2"]},
            {"commands": ["echo worker sees master at $MASTER_JOB_HOSTNAME"], "master": 0}]
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("mw", jobs)),
                     JSON_PROVIDER)
    cp = assert_ok(ds("run", "mw", cwd=repo, timeout=120))
    assert f"master on {slurm_node}" in cp.stdout
    assert f"worker sees master at {slurm_node}" in cp.stdout


def test_a_failing_job_fails_the_run_with_its_status(ds, tmp_path, slurm_node, how):
    slurm_config(ds, tmp_path, how)
    jobs = [{"commands": ["echo about to fail", "exit 3"]},
            {"commands": ["echo never"], "depends_on": [0]}]
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("bad", jobs)),
                     JSON_PROVIDER)
    cp = ds("run", "bad", cwd=repo, timeout=120)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    name = parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)[0]["RUN"]
    info = assert_ok(ds("ps", name)).stdout
    assert "job 0: exited with status 3" in info, info
    rows = job_rows(ds, name)
    assert rows[0]["STATUS"] == "failed" and rows[1]["STATUS"] == "failed", rows
    assert "never" not in assert_ok(ds("logs", name)).stdout
    slurm = slurm_jobs(ds, name)
    assert slurm[0][1] == "FAILED", slurm
    # Slurm cancelled the dependent job: its dependency can never be met.
    assert slurm[1][1] == "CANCELLED", slurm


def test_a_job_pending_on_resources_says_why_then_runs(ds, tmp_path, slurm_node):
    slurm_config(ds, tmp_path, "commands")
    with CpusHeld() as held:
        repo = make_repo(tmp_path / "repo", """\
            workflows:
              - name: wants
                provider: bash
                commands:
                  - echo got the cpu
                resources:
                  cpu: 1
                  memory: 100MB
            """)
        name = run_detached(ds, repo, "wants")
        assert wait_for(lambda: slurm_jobs(ds, name), timeout=30)
        [(job_id, _)] = slurm_jobs(ds, name).values()
        # resources became the Slurm job's: --cpus-per-task and --mem.
        asked = subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True,
                               text=True, check=True).stdout
        assert "MinMemoryNode=100M" in asked and "MinCPUsNode=1" in asked, asked
        assert wait_for(lambda: "Resources" in assert_ok(ds("ps", name)).stdout, timeout=30), \
            assert_ok(ds("ps", name)).stdout
        info = assert_ok(ds("ps", name)).stdout
        assert re.search(r"pending in Slurm \(job \d+\): Resources", info), info
        assert job_rows(ds, name)[0]["STATUS"] == "submitted"
        held.release()
        assert wait_for(lambda: parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)[0]
                        ["STATUS"] == "done", timeout=60)
        assert "got the cpu" in assert_ok(ds("logs", name)).stdout
        assert "Resources" not in job_rows(ds, name)[0].get("REASON", "")


def test_a_job_no_node_can_hold_is_refused_at_submission(ds, tmp_path, slurm_node):
    slurm_config(ds, tmp_path, "commands")
    repo = make_repo(tmp_path / "repo", """\
        workflows:
          - name: huge
            provider: bash
            commands:
              - echo never
            resources:
              cpu: 4096
        """)
    cp = ds("run", "huge", cwd=repo, timeout=60)
    assert cp.returncode == 1
    assert "slurm" in cp.stderr.lower() or "slurm" in cp.stdout.lower(), cp.stdout + cp.stderr


@pytest.mark.parametrize("when", ["pending", "running"])
def test_stop_cancels_the_slurm_jobs(ds, tmp_path, slurm_node, how, when):
    slurm_config(ds, tmp_path, how)
    jobs = [{"commands": ["echo started", "sleep 120"]},
            {"commands": ["echo never"], "depends_on": [0]}]
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("long", jobs)),
                     JSON_PROVIDER)
    with CpusHeld() as held:
        if when == "running":
            held.release()
        name = run_detached(ds, repo, "long")
        if when == "running":
            assert wait_for(lambda: "started" in assert_ok(ds("logs", name)).stdout, timeout=60)
            # The node works without the catalog: job-exec never opens it.
            [exec_pid] = subprocess.run(["pgrep", "-f", f"job-exec .*/work/{name}-0"],
                                        capture_output=True, text=True).stdout.split()
            held_open = [os.readlink(f"/proc/{exec_pid}/fd/{fd}")
                         for fd in os.listdir(f"/proc/{exec_pid}/fd")]
            assert not [f for f in held_open if "catalog" in f], held_open
        else:
            assert wait_for(lambda: len(slurm_jobs(ds, name)) == 2, timeout=60)
            assert all(s == "PENDING" for _, s in slurm_jobs(ds, name).values()), \
                slurm_jobs(ds, name)
            assert wait_for(lambda: "Dependency" in job_rows(ds, name)[1]["REASON"], timeout=30)
        assert_ok(ds("stop", name, timeout=90))
    rows = parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)
    assert rows[0]["STATUS"] == "stopped", rows
    assert wait_for(lambda: all(s == "CANCELLED" for _, s in slurm_jobs(ds, name).values()),
                    timeout=30), slurm_jobs(ds, name)
    assert "never" not in assert_ok(ds("logs", name)).stdout


def test_bad_slurm_settings_are_one_line_naming_the_key(ds, tmp_path):
    ds.home.mkdir(parents=True, exist_ok=True)
    (ds.home / "config.yaml").write_text("backend: slurm\nslurm:\n  partitio: debug\n")
    repo = make_repo(tmp_path / "repo", """\
        workflows:
          - name: w
            provider: bash
            commands: [echo hi]
        """)
    assert_error(ds("run", "w", cwd=repo), "config.yaml:3:3", "slurm: unknown key")
    (ds.home / "config.yaml").write_text("backend: slurm\nslurm:\n  url: http://127.0.0.1:1\n")
    cp = ds("run", "w", cwd=repo, timeout=60)
    assert cp.returncode == 1
    assert "slurm" in (cp.stdout + cp.stderr), cp.stdout + cp.stderr



def test_a_job_with_an_image_runs_in_it_through_the_nodes_dockerd(registry, ds, tmp_path,
                                                                  slurm_node):
    slurm_config(ds, tmp_path, "commands")
    repo = make_repo(tmp_path / "repo", f"""\
        workflows:
          - name: inside
            provider: bash
            image: {registry}
            commands:
              - echo "in $(pwd) as $JOB_ID on $JOB_HOSTNAME"
              - test -x /bin/bash || echo "no bash, sh ran it"
              - mkdir -p out && echo made > out/x
            artifacts:
              - out
          - name: after
            provider: bash
            image: {registry}
            deps:
              - workflow: inside
            commands:
              - cat out/x
              - touch out/new 2>/dev/null && echo wrote || echo read-only
        """, files={"data.txt": "data\n"})
    cp = assert_ok(ds("run", "inside", cwd=repo, timeout=180))
    name = parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)[0]["RUN"]
    assert f"in /workflow as {name}/0 on {slurm_node}\n" in cp.stdout, cp.stdout
    assert "no bash, sh ran it" in cp.stdout
    assert "through this node's dockerd" in cp.stdout
    # The image as the registry pinned it, recorded with the job (jobs/0/info).
    with sqlite3.connect(ds.home / "catalog.db") as db:
        [(image,)] = db.execute("SELECT image FROM jobs").fetchall()
    assert re.fullmatch(re.escape(registry) + r"@sha256:[0-9a-f]{64}", image), image
    assert (ds.download(name, tmp_path / "dl") / "out" / "x").read_text() == "made\n"
    assert containers(f"dstack.run={name}") == []
    cp = assert_ok(ds("run", "after", cwd=repo, timeout=180))
    assert "made\nread-only\n" in cp.stdout, cp.stdout


def test_a_dead_runners_slurm_jobs_are_cancelled(ds, tmp_path, slurm_node):
    slurm_config(ds, tmp_path, "commands")
    repo, name = start_forever(ds, tmp_path)
    assert wait_for(lambda: "up" in assert_ok(ds("logs", name)).stdout, timeout=60)
    [(job_id, state)] = slurm_jobs(ds, name).values()
    assert state == "RUNNING"
    kill_runner("run -d forever")
    # The next command that looks finds the run orphaned and cancels its job.
    assert run_status(ds, repo) == "failed"
    assert wait_for(lambda: slurm_jobs(ds, name)[0][1] == "CANCELLED", timeout=30), \
        slurm_jobs(ds, name)
    assert f"Slurm job {job_id} cancelled" in assert_ok(ds("logs", name)).stdout
    assert not list((ds.home / "work").glob(f"{name}-*"))



def test_jobs_storing_at_once_on_the_nodes(ds, tmp_path, slurm_node):
    slurm_config(ds, tmp_path, "commands")
    # Four jobs write packs of their own side by side; a shared file is
    # stored once in the catalog whatever the nodes wrote.
    jobs = [{"commands": ["mkdir -p out",
                          f"head -c 2000000 /dev/urandom > out/own-{k}",
                          "seq 1 300000 > out/shared.txt"],
             "artifacts": ["out"]} for k in range(4)]
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("four", jobs)),
                     JSON_PROVIDER)
    assert_ok(ds("run", "four", cwd=repo, timeout=180))
    name = parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)[0]["RUN"]
    out = ds.download(name, tmp_path / "dl")
    assert sorted(p.name for p in (out / "out").iterdir()) == \
        ["own-0", "own-1", "own-2", "own-3", "shared.txt"]
    assert all((out / "out" / f"own-{k}").stat().st_size == 2000000 for k in range(4))
    ds.fsck_clean()
    before = ds.pack_bytes()
    assert_ok(ds("gc"))
    # What four nodes stored of shared.txt, three times too many, goes.
    assert ds.pack_bytes() < before
    ds.fsck_clean()
    assert ds.download(name, tmp_path / "dl2") and \
        (tmp_path / "dl2" / "out" / "shared.txt").read_text() == \
        "".join(f"{i}\n" for i in range(1, 300001))


def test_a_gpu_no_node_has_is_refused_with_slurms_word(ds, tmp_path, slurm_node):
    slurm_config(ds, tmp_path, "commands")
    repo = make_repo(tmp_path / "repo", """\
        workflows:
          - name: gpu
            provider: bash
            commands: [nvidia-smi]
            resources:
              gpu:
                count: 1
                name: a100
        """)
    # sbatch --gres=gpu:a100:1: the one line is Slurm's own.
    assert_error(ds("run", "gpu", cwd=repo, timeout=60),
                 "slurm: sbatch: Batch job submission failed: Requested node configuration"
                 " is not available")
    name = parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)[0]["RUN"]
    assert "Requested node configuration" in job_rows(ds, name)[0]["REASON"]


def test_a_node_failure_is_reported_as_such(ds, tmp_path, slurm_node):
    # Without requeue, Slurm ends the job when its node fails (with it,
    # the job goes back to the queue, which the log says).
    slurm_config(ds, tmp_path, "commands")
    config = ds.home / "config.yaml"
    config.write_text(config.read_text() + "  options: [--no-requeue]\n")
    repo, name = start_forever(ds, tmp_path)
    try:
        assert wait_for(lambda: "up" in assert_ok(ds("logs", name)).stdout, timeout=60)
        subprocess.run(["scontrol", "update", f"nodename={slurm_node}", "state=down",
                        "reason=dstack test"], check=True)
        assert wait_for(lambda: run_status(ds, repo) == "failed", timeout=60)
    finally:
        subprocess.run(["scontrol", "update", f"nodename={slurm_node}", "state=resume"])
        assert wait_for(lambda: "idle" in subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout, timeout=60)
    info = assert_ok(ds("ps", name)).stdout
    assert re.search(r"job 0: its node failed \(Slurm job \d+, NODE_FAIL\)", info), info


def test_a_preempted_job_is_reported_as_such(ds, tmp_path, slurm_node):
    slurm_config(ds, tmp_path, "commands")
    repo, name = start_forever(ds, tmp_path)
    assert wait_for(lambda: "up" in assert_ok(ds("logs", name)).stdout, timeout=60)
    cpus = int(subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True,
                              check=True).stdout.split()[0])
    # A job of the higher tier needs every CPU: Slurm cancels the dstack job.
    urgent = subprocess.run(["sbatch", "--parsable", "-p", "urgent", f"--cpus-per-task={cpus}",
                             "-o", "/dev/null", "--wrap", "sleep 1"],
                            capture_output=True, text=True, check=True).stdout.strip()
    try:
        assert wait_for(lambda: run_status(ds, repo) == "failed", timeout=60)
    finally:
        subprocess.run(["scancel", urgent])
    info = assert_ok(ds("ps", name)).stdout
    assert re.search(r"job 0: Slurm preempted it \(Slurm job \d+, PREEMPTED\)", info), info


@pytest.mark.skipif("asan" in str(BIN), reason="a minute and a half of waiting for Slurm;"
                    " the sanitized build meets the same code in the preemption test")
def test_a_time_limit_is_reported_as_such(ds, tmp_path, slurm_node):
    # Slurm's shortest limit is a minute, and it looks every half minute:
    # this test takes a minute and a half.
    slurm_config(ds, tmp_path, "commands")
    config = ds.home / "config.yaml"
    config.write_text(config.read_text() + "  options: [--time=1]\n")
    repo, name = start_forever(ds, tmp_path)
    assert wait_for(lambda: run_status(ds, repo) == "failed", timeout=180)
    info = assert_ok(ds("ps", name)).stdout
    assert re.search(r"job 0: it reached its time limit in Slurm \(Slurm job \d+, TIMEOUT\)",
                     info), info
    assert "up" in assert_ok(ds("logs", name)).stdout


def test_a_cached_job_is_not_submitted_and_an_unpinned_image_is_not_cached(
        registry, ds, tmp_path, slurm_node):
    slurm_config(ds, tmp_path, "commands")
    repo = make_repo(tmp_path / "repo", f"""\
        workflows:
          - name: plain
            provider: bash
            cache: true
            commands: [mkdir -p out, echo made > out/x]
            artifacts: [out]
          - name: imaged
            provider: bash
            cache: true
            image: {registry}
            commands: [echo in the image]
        """)
    assert "runs (input key" in assert_ok(ds("run", "plain", cwd=repo, timeout=180)).stdout
    cp = assert_ok(ds("run", "plain", cwd=repo))
    assert "is cached from" in cp.stdout
    served = parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)[0]["RUN"]
    assert slurm_jobs(ds, served) == {}, "a served job went to Slurm"
    assert (ds.download(served, tmp_path / "dl") / "out" / "x").read_text() == "made\n"
    cp = assert_ok(ds("run", "imaged", cwd=repo, timeout=180))
    assert (f"job 0 is not cached: on Slurm only an image pinned by digest"
            f" (IMAGE@sha256:...) is known exactly, not '{registry}'") in cp.stdout
