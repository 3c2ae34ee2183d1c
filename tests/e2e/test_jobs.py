"""Jobs side by side: several jobs of one run at once, master and workers,
the host's resources shared among jobs of every runner of a store (waiting
and refusal), cgroup limits, GPUs handed out through CUDA_VISIBLE_DEVICES,
and nothing left running after a runner dies."""
import json
import os
import signal
import textwrap
import time

import pytest

from conftest import assert_error, assert_ok, make_repo, no_process, parse_table, wait_for

NPROC = os.cpu_count()



# A provider in shell: it writes the jobs given in the workflow's `jobs`
# parameter (JSON text) as they are.
JSON_PROVIDER = """\
    providers:
      - name: jobs
        commands:
          - python3 -c "import json, os; d = json.load(open(os.environ['DSTACK_WORKFLOW'])); open(os.environ['DSTACK_JOBS'], 'w').write(d['data']['jobs'])"
    """


def jobs_workflow(name, jobs):
    return {"name": name, "provider": "jobs", "jobs": json.dumps(jobs)}


def workflows_yaml(*items):
    return json.dumps({"workflows": list(items)})


def runs(ds, cwd, *flags):
    return parse_table(assert_ok(ds("ps", *flags, cwd=cwd)).stdout)


def logs(ds, name):
    return assert_ok(ds("logs", name)).stdout




def test_jobs_of_a_run_run_side_by_side(ds, tmp_path):
    # Each job waits for the other's mark: they end only if both run at once.
    meet = tmp_path / "meet"
    meet.mkdir()
    jobs = [{"commands": [f"touch {meet}/{me}",
                          f"for i in $(seq 200); do [ -e {meet}/{other} ] && break; sleep 0.05; done",
                          f"[ -e {meet}/{other} ] && echo {me} met {other}"]}
            for me, other in (("a", "b"), ("b", "a"))]
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("pair", jobs)),
                     JSON_PROVIDER)
    cp = assert_ok(ds("run", "pair", cwd=repo))
    assert "a met b" in cp.stdout and "b met a" in cp.stdout


def test_workers_reach_their_master_by_its_address_and_ports(ds, tmp_path):
    server = textwrap.dedent("""\
        import os, socket
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(os.environ["PORT_0"])))
        s.listen(2)
        for _ in range(2):
            c, _ = s.accept()
            c.sendall(b"hello from the master\\n")
            c.close()
        """)
    client = textwrap.dedent("""\
        import os, socket, time
        addr = (os.environ["MASTER_JOB_HOSTNAME"], int(os.environ["MASTER_JOB_PORT_0"]))
        for _ in range(100):
            try:
                c = socket.create_connection(addr)
                break
            except OSError:
                time.sleep(0.1)
        print(os.environ["JOB_ID"].split("/")[1], c.recv(100).decode().strip())
        """)
    jobs = [{"commands": ["python3 server.py"], "ports": 1},
            {"commands": ["python3 client.py"], "master": 0},
            {"commands": ["python3 client.py"], "master": 0}]
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("dist", jobs)),
                     JSON_PROVIDER, {"server.py": server, "client.py": client})
    cp = assert_ok(ds("run", "dist", cwd=repo))
    assert "1 hello from the master" in cp.stdout
    assert "2 hello from the master" in cp.stdout


def test_lines_written_in_pieces_reach_the_caller_whole(ds, tmp_path):
    # Job 0 writes its line in two pieces with job 1's whole line between
    # them, more than a tick apart: the caller must not see job 1's line cut
    # into job 0's.
    meet = tmp_path / "meet"
    meet.mkdir()
    jobs = [{"commands": [f"printf 'first half, '; date +%s.%N > {meet}/half",
                          f"for i in $(seq 200); do [ -e {meet}/other ] && break; sleep 0.05; done",
                          f"date +%s.%N > {meet}/second; echo second half"]},
            {"commands": [f"for i in $(seq 200); do [ -e {meet}/half ] && break; sleep 0.05; done",
                          f"sleep 0.3; echo a whole line; touch {meet}/other"]}]
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("pieces", jobs)),
                     JSON_PROVIDER)
    cp = assert_ok(ds("run", "pieces", cwd=repo))
    assert "a whole line" in cp.stdout.splitlines()
    # A piece left unfinished for a second goes out alone (a prompt): only
    # a machine too slow to finish the line within that may part it.
    gap = float((meet / "second").read_text()) - float((meet / "half").read_text())
    if gap < 0.8:
        assert "first half, second half" in cp.stdout.splitlines(), (gap, cp.stdout)


def test_a_line_left_unfinished_still_reaches_the_caller(ds, tmp_path):
    # A prompt with no newline shows while the job waits for an answer.
    answer = tmp_path / "answer"
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("ask", [
        {"commands": ["printf 'ready? '",
                      f"for i in $(seq 600); do [ -e {answer} ] && break; sleep 0.05; done",
                      f"cat {answer}"]}])), JSON_PROVIDER)
    proc = ds.popen("run", "ask", cwd=repo)
    seen = b""
    while not seen.endswith(b"ready? "):
        piece = proc.stdout.buffer.read1(100)
        assert piece, seen
        seen += piece
    answer.write_text("yes\n")
    out = proc.stdout.buffer.read()
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert (seen + out).decode().splitlines()[-1] == "ready? yes"


def test_a_worker_whose_master_never_starts_fails(ds, tmp_path):
    jobs = [{"commands": ["exit 4"]}, {"commands": ["echo master ran"], "depends_on": [0]},
            {"commands": ["echo worker ran"], "master": 1}]
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("broken", jobs)),
                     JSON_PROVIDER)
    ds("run", "broken", cwd=repo)
    [run] = runs(ds, repo)
    assert run["STATUS"] == "failed"
    text = logs(ds, run["RUN"])
    assert "master ran" not in text and "worker ran" not in text


def test_a_master_cycle_fails_the_run_naming_it(ds, tmp_path):
    jobs = [{"commands": ["true"], "master": 1}, {"commands": ["true"], "depends_on": [0]}]
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("cycle", jobs)),
                     JSON_PROVIDER)
    assert_error(ds("run", "cycle", cwd=repo), "failed")
    [run] = runs(ds, repo)
    assert "cycle" in logs(ds, run["RUN"])


def all_cpus(name, mark, log, gate=None):
    """A workflow asking for every CPU of the host that records its span;
    it holds them a second, or until the test makes the file gate."""
    hold = f"while [ ! -e {gate} ]; do sleep 0.05; done" if gate else "sleep 1"
    return {"name": name, "provider": "bash", "resources": {"cpu": NPROC},
            "commands": [f"echo start {mark} $(date +%s.%N) >> {log}",
                         hold,
                         f"echo end {mark} $(date +%s.%N) >> {log}"]}


def spans(log):
    """{mark: (start, end)} from a log of 'start|end MARK TIME' lines."""
    times = {}
    for line in log.read_text().splitlines():
        what, mark, when = line.split()
        times.setdefault(mark, {})[what] = float(when)
    return {mark: (t["start"], t["end"]) for mark, t in times.items()}


def test_jobs_of_two_runners_share_the_hosts_cpus(ds, tmp_path):
    log, gate = tmp_path / "spans.log", tmp_path / "gate"
    repo = make_repo(tmp_path / "repo", workflows_yaml(all_cpus("one", "one", log, gate),
                                                        all_cpus("two", "two", log)))
    first = ds.popen("run", "one", cwd=repo)
    assert wait_for(lambda: log.exists())
    second = ds.popen("run", "two", cwd=repo)

    def two_waits():
        two = [r for r in runs(ds, repo, "-a") if r["WORKFLOW"] == "two"]
        return two and "waits for resources" in logs(ds, two[0]["RUN"])
    assert wait_for(two_waits, timeout=30)
    gate.touch()
    out1, err1 = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    got = spans(log)
    assert got["one"][1] <= got["two"][0], "the second job ran while the first held every CPU"


def test_a_dead_runners_claim_is_given_back(ds, tmp_path):
    log = tmp_path / "spans.log"
    held = {"name": "hold", "provider": "bash", "resources": {"cpu": NPROC},
            "commands": ["sleep 600$HOLD_MARK"]}
    repo = make_repo(tmp_path / "repo", workflows_yaml(held, all_cpus("next", "next", log)))
    holder = ds.popen("run", "hold", cwd=repo, start_new_session=True)
    try:
        assert wait_for(lambda: not no_process("sleep 600$HOLD_MARK") or
                        not no_process("sleep 600"))
        waiter = ds.popen("run", "next", cwd=repo)
        time.sleep(1)
        assert waiter.poll() is None, "the job started while every CPU was held"
        holder.send_signal(signal.SIGKILL)
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
    finally:
        holder.kill()
    # The dead runner's job was killed and its run marked failed.
    assert wait_for(lambda: no_process("sleep 600"))
    hold = [r for r in runs(ds, repo, "-a") if r["WORKFLOW"] == "hold"][0]
    assert hold["STATUS"] == "failed"
    assert "is gone" in logs(ds, hold["RUN"])


@pytest.mark.parametrize("resources, needle", [
    ({"cpu": 100000}, "100000 CPUs asked, this host has"),
    ({"memory": "100TB"}, "of memory asked, this host has"),
    ({"gpu": 1}, "1 GPUs asked, this host has none"),
])
def test_asking_more_than_the_host_has_fails_at_once(ds, tmp_path, monkeypatch, resources, needle):
    # No nvidia-smi: a PATH without it, whatever this machine has.
    repo = make_repo(tmp_path / "repo", workflows_yaml(
        {"name": "big", "provider": "bash", "resources": resources, "commands": ["echo ran"]}))
    cp = ds("run", "big", cwd=repo, env={"PATH": "/usr/bin:/bin"})
    assert_error(cp, "workflow 'big'", needle)
    assert runs(ds, repo, "-a") == []


def test_a_provider_job_asking_too_much_fails_the_run(ds, tmp_path):
    jobs = [{"commands": ["echo ran"], "resources": {"cpu": 1000}}]
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("big", jobs)),
                     JSON_PROVIDER)
    assert_error(ds("run", "big", cwd=repo), "failed")
    [run] = runs(ds, repo)
    text = logs(ds, run["RUN"])
    assert "1000 CPUs asked" in text and "ran" not in text.replace("asked", "")


def own_cgroup_file(controller, name):
    """A shell line printing a file of the job's own v1 cgroup."""
    return (f"cat /sys/fs/cgroup/{controller}$(grep ':{controller}:' /proc/self/cgroup"
            f" | cut -d: -f3)/{name}")


cgroup_v1 = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.isdir("/sys/fs/cgroup/memory"),
    reason="needs root and the v1 memory hierarchy (PLATFORM.md: the test machines have it)")


@cgroup_v1
def test_cpu_and_memory_limits_are_enforced_with_cgroups(ds, tmp_path):
    repo = make_repo(tmp_path / "repo", workflows_yaml(
        {"name": "limited", "provider": "bash", "resources": {"cpu": 1, "memory": "64MB"},
         "commands": [own_cgroup_file("memory", "memory.limit_in_bytes"),
                      own_cgroup_file("cpu", "cpu.cfs_quota_us")]},
        {"name": "greedy", "provider": "bash", "resources": {"memory": "64MB"},
         "commands": ["python3 -c 'x = bytearray(512 * 1024 * 1024); print(len(x))'"]}))
    cp = assert_ok(ds("run", "limited", cwd=repo))
    assert cp.stdout.split() == [str(64 * 1024 * 1024), "100000"]
    cp = ds("run", "greedy", cwd=repo)
    assert_error(cp, "failed")
    assert "out of memory" in cp.stdout
    assert not any(name.startswith("limited") or name.startswith("greedy")
                   for name in os.listdir("/sys/fs/cgroup/memory/dstack"))


@cgroup_v1
def test_a_job_cannot_escape_its_cgroup_by_leaving_its_process_group(ds, tmp_path):
    repo = make_repo(tmp_path / "repo", workflows_yaml(
        {"name": "escape", "provider": "bash", "resources": {"memory": "256MB"},
         "commands": ["setsid sleep 700$ESCAPE_MARK > /dev/null 2>&1 < /dev/null &",
                      "sleep 0.2"]}))
    assert_ok(ds("run", "escape", cwd=repo, env={"ESCAPE_MARK": "77"}))
    assert wait_for(lambda: no_process("sleep 70077"), timeout=5)


@pytest.fixture
def gpus(tmp_path):
    """A stand-in nvidia-smi (this machine has no GPU): two GPUs, as the real
    tool prints them for the query the runner makes."""
    bin_dir = tmp_path / "gpu-bin"
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text(textwrap.dedent("""\
        #!/bin/sh
        case "$*" in
        *--query-gpu=name,memory.total*--format=csv,noheader,nounits*)
            echo "NVIDIA A100-SXM4-40GB, 40960"
            echo "Tesla T4, 15360";;
        *) exit 9;;
        esac
        """))
    tool.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


def gpu_workflow(name, gpu):
    flow = {"name": name, "provider": "bash",
            "commands": ['echo "[$CUDA_VISIBLE_DEVICES]"']}
    if gpu is not None:
        flow["resources"] = {"gpu": gpu}
    return flow


def test_gpus_are_handed_out_through_cuda_visible_devices(ds, tmp_path, gpus):
    repo = make_repo(tmp_path / "repo", workflows_yaml(
        gpu_workflow("none", None), gpu_workflow("one", 1), gpu_workflow("both", 2),
        gpu_workflow("t4", {"name": "T4"}), gpu_workflow("big", {"memory": "32GB"}),
        gpu_workflow("three", 3), gpu_workflow("h100", {"name": "H100"})))
    out = {name: ds("run", name, cwd=repo, env=gpus) for name in
           ("none", "one", "both", "t4", "big", "three", "h100")}
    assert assert_ok(out["none"]).stdout == "[]\n"
    assert assert_ok(out["one"]).stdout == "[0]\n"
    assert assert_ok(out["both"]).stdout == "[0,1]\n"
    assert assert_ok(out["t4"]).stdout == "[1]\n"
    assert assert_ok(out["big"]).stdout == "[0]\n"
    assert_error(out["three"], "3 GPUs asked, this host has 2 such")
    assert_error(out["h100"], "named H100", "has 0 such")


def test_a_gpu_held_by_one_job_is_not_given_to_another(ds, tmp_path, gpus):
    jobs = [{"commands": ['echo "a[$CUDA_VISIBLE_DEVICES]"', "sleep 1"],
             "resources": {"gpu": 1}},
            {"commands": ['echo "b[$CUDA_VISIBLE_DEVICES]"', "sleep 1"],
             "resources": {"gpu": 1}},
            {"commands": ['echo "c[$CUDA_VISIBLE_DEVICES]"'],
             "resources": {"gpu": {"count": 1, "name": "A100"}}}]
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("share", jobs)),
                     JSON_PROVIDER)
    cp = assert_ok(ds("run", "share", cwd=repo, env=gpus))
    lines = sorted(line for line in cp.stdout.splitlines() if "[" in line)
    assert lines[:2] in (["a[0]", "b[1]"], ["a[1]", "b[0]"])
    assert lines[2] == "c[0]"
    [run] = runs(ds, repo)
    assert "waits for resources" in logs(ds, run["RUN"])


def test_host_backend_records_the_image_and_says_what_it_ignores(ds, tmp_path):
    jobs = [{"image": "python:3.9", "commands": ["echo ran"],
             "resources": {"shm_size": "1GB"}}]
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("img", jobs)),
                     JSON_PROVIDER)
    assert_ok(ds("run", "img", cwd=repo))
    [run] = runs(ds, repo)
    text = logs(ds, run["RUN"])
    assert "image 'python:3.9' is recorded" in text
    assert "shm_size has no effect" in text


def test_two_terminals_running_two_workflows_do_not_wait_for_each_other(ds, tmp_path):
    # Each run waits for the other's mark: both end only if they run at once.
    meet = tmp_path / "meet"
    meet.mkdir()

    def meeting(me, other):
        return {"name": me, "provider": "bash", "artifacts": ["out"],
                "commands": [f"touch {meet}/{me}",
                             f"for i in $(seq 300); do [ -e {meet}/{other} ] && break;"
                             " sleep 0.05; done",
                             f"[ -e {meet}/{other} ] && echo {me} met {other} > out/met"]}

    repo = make_repo(tmp_path / "repo", workflows_yaml(meeting("left", "right"),
                                                        meeting("right", "left")))
    left = ds.popen("run", "left", cwd=repo)
    right = ds.popen("run", "right", cwd=repo)
    for proc in (left, right):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert {r["STATUS"] for r in runs(ds, repo, "-a")} == {"done"}


def test_stop_reaches_a_job_that_never_stops_talking(ds, tmp_path):
    # Output every 10 ms: the job's loop never waits a whole tick for it.
    repo = make_repo(tmp_path / "repo", workflows_yaml(
        {"name": "chatty", "provider": "bash",
         "commands": ["while true; do echo chat51; sleep 0.01; done"]}))
    runner = ds.popen("run", "chatty", cwd=repo)
    assert wait_for(lambda: any(r["STATUS"] == "running" for r in runs(ds, repo)))
    [run] = runs(ds, repo)
    assert_ok(ds("stop", run["RUN"]))
    runner.communicate(timeout=30)
    [run] = runs(ds, repo)
    assert run["STATUS"] == "stopped"
    assert no_process("chat51")
