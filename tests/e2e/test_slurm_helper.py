"""dstack-slurm, the runner's way to a Slurm cluster, against the real
munged, slurmctld, slurmd and slurmrestd of tests/slurm/start.sh (started
here once a session; it is a no-op when they run).  Each test goes both
ways: Slurm's commands (no "url" in the settings) and slurmrestd's
openapi/v0.0.38 with a JWT.

submit prints the job's id; state prints one JSON line an id (Slurm's
state word and reason, the node, the exit code and signal); cancel
cancels.  A job's whole environment is the request's; a request Slurm
refuses fails with Slurm's own words on one line."""
import json
import os
import subprocess
import time

import pytest

from conftest import BIN, REPO, assert_error, assert_ok

HELPER = BIN.parent / "dstack-slurm"
START = REPO / "tests" / "slurm" / "start.sh"
REST_URL = "http://127.0.0.1:6820"
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
         "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


@pytest.fixture(scope="session")
def slurm():
    """The node's name and CPUs, the services started once a session."""
    if not HELPER.is_file():
        pytest.exit(f"dstack-slurm not found at {HELPER}; build it", 2)
    cp = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=600)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.strip().splitlines()[-1].startswith("slurm: ready"), cp.stdout
    node, cpus = subprocess.run(["sinfo", "-h", "-o", "%n %c"], capture_output=True, text=True,
                                check=True).stdout.split()[:2]
    return {"node": node, "cpus": int(cpus)}


@pytest.fixture(scope="session")
def token_file(tmp_path_factory):
    cp = subprocess.run(["scontrol", "token", "username=root", "lifespan=3600"],
                        capture_output=True, text=True, check=True)
    path = tmp_path_factory.mktemp("slurm-token") / "jwt"
    path.write_text(cp.stdout.strip().split("=", 1)[1] + "\n")
    return path


class Helper:
    """dstack-slurm with one settings file; cancels what it submitted."""

    def __init__(self, folder, settings, env=None):
        self.folder = folder
        self.settings = folder / "settings.json"
        self.settings.write_text(json.dumps(settings))
        self.env = env
        self.ids = []
        self.count = 0

    def __call__(self, *args, env=None):
        full = dict(os.environ)
        full.pop("SLURM_JWT", None)
        full.update(self.env or {})
        full.update(env or {})
        return subprocess.run([str(HELPER), *map(str, args)], capture_output=True, text=True,
                              env=full, timeout=60)

    def request(self, script, **fields):
        self.count += 1
        request = {"name": f"dstack-test-{self.count}",
                   "script": "#!/bin/sh\n" + script + "\n",
                   "workdir": str(self.folder),
                   "output": str(self.folder / f"job-{self.count}.out"),
                   "env": ["PATH=/usr/bin:/bin"]}
        request.update(fields)
        path = self.folder / f"request-{self.count}.json"
        path.write_text(json.dumps(request))
        return path

    def submit(self, script, **fields):
        cp = assert_ok(self("submit", self.settings, self.request(script, **fields)))
        assert cp.stdout.endswith("\n") and cp.stdout.strip().isdigit(), cp.stdout
        self.ids.append(int(cp.stdout))
        return int(cp.stdout)

    def state(self, *ids):
        cp = assert_ok(self("state", self.settings, *ids))
        lines = [json.loads(line) for line in cp.stdout.splitlines()]
        assert [s["id"] for s in lines] == list(ids), cp.stdout
        for s in lines:
            assert set(s) == {"id", "state", "reason", "node", "exit_code", "signal"}, s
        return lines if len(ids) > 1 else lines[0]

    def wait(self, id, until, timeout=20):
        """The states seen until until(state) holds; the last one holds."""
        seen = []
        end = time.monotonic() + timeout
        while True:
            state = self.state(id)
            if not seen or seen[-1]["state"] != state["state"]:
                seen.append(state)
            if until(state):
                return seen
            assert time.monotonic() < end, f"job {id} stuck: {seen}"
            time.sleep(0.2)

    def cleanup(self):
        if self.ids:
            self("cancel", self.settings, *self.ids)


@pytest.fixture(params=["commands", "rest"])
def helper(request, slurm, token_file, tmp_path):
    settings = {"partition": "debug"}
    if request.param == "rest":
        settings.update(url=REST_URL, token_file=str(token_file))
    h = Helper(tmp_path, settings)
    h.how = request.param
    yield h
    h.cleanup()


def test_a_job_runs_to_completed_with_its_environment_and_output(helper, slurm):
    marker = helper.folder / "marker"
    id = helper.submit(f"echo to-stdout; echo to-stderr >&2; env > {helper.folder}/env; "
                       f"pwd > {marker}",
                       env=["PATH=/usr/bin:/bin", "QUOTED=it's \"$HOME\" `x`",
                            "MULTI=line one\nline two", "EMPTY="],
                       cpus=1, memory_mb=64)
    # A job this short may be over by the first ask (the helper is slow under ASan).
    first = helper.state(id)
    assert first["state"] in ("PENDING", "RUNNING", "COMPLETING", "COMPLETED"), first
    seen = helper.wait(id, lambda s: s["state"] in ENDED)
    assert {s["state"] for s in seen} <= {"PENDING", "RUNNING", "COMPLETING", "COMPLETED"}, seen
    assert seen[-1] == {"id": id, "state": "COMPLETED", "reason": "", "node": slurm["node"],
                        "exit_code": 0, "signal": 0}
    assert marker.read_text() == f"{helper.folder}\n"
    assert (helper.folder / "job-1.out").read_text() == "to-stdout\nto-stderr\n"
    env = (helper.folder / "env").read_text()
    assert "QUOTED=it's \"$HOME\" `x`\n" in env
    assert "MULTI=line one\nline two\n" in env
    assert "EMPTY=\n" in env
    # The request's environment is the whole of it: nothing of the
    # submitter's (HOME, USER) or its login environment.
    names = {line.split("=", 1)[0] for line in env.splitlines() if "=" in line}
    assert not {"HOME", "USER", "LOGNAME", "SHELL"} & names, env
    assert "SLURM_JOB_ID" in names


def test_a_failing_job_is_failed_with_its_exit_code(helper, slurm):
    id = helper.submit("exit 3")
    last = helper.wait(id, lambda s: s["state"] in ENDED)[-1]
    assert last == {"id": id, "state": "FAILED", "reason": "NonZeroExitCode",
                    "node": slurm["node"], "exit_code": 3, "signal": 0}


def gated(helper, then):
    """A job script that waits for the test to open its gate, then does
    then: what the test asks of Slurm meanwhile does not race its end."""
    gate = helper.folder / "gate"
    return gate, f"while [ ! -e {gate} ]; do sleep 0.1; done; {then}"


def test_after_ok_on_a_failing_job_cancels_the_dependent(helper):
    gate, script = gated(helper, "exit 1")
    first = helper.submit(script)
    second = helper.submit("echo never", after_ok=[first])
    state = helper.state(second)
    assert (state["state"], state["reason"]) == ("PENDING", "Dependency"), state
    gate.touch()
    last = helper.wait(second, lambda s: s["state"] in ENDED)[-1]
    assert (last["state"], last["reason"]) == ("CANCELLED", "DependencyNeverSatisfied"), last
    assert helper.state(first)["state"] == "FAILED"
    assert not (helper.folder / "job-2.out").exists()


def test_after_ok_on_a_running_job_waits_then_runs(helper):
    gate, script = gated(helper, "true")
    first = helper.submit(script)
    second = helper.submit("true", after_ok=[first])
    helper.wait(first, lambda s: s["state"] == "RUNNING")
    state = helper.state(second)
    assert (state["state"], state["reason"]) == ("PENDING", "Dependency"), state
    gate.touch()
    assert helper.wait(second, lambda s: s["state"] in ENDED)[-1]["state"] == "COMPLETED"


def test_a_job_asking_for_cpus_held_by_another_pends_on_resources(helper, slurm):
    holder = helper.submit("sleep 30", cpus=1)
    helper.wait(holder, lambda s: s["state"] == "RUNNING")
    waiting = helper.submit("true", cpus=slurm["cpus"])
    state = helper.wait(waiting, lambda s: s["reason"] in ("Resources", "Priority"), timeout=30)[-1]
    assert state["state"] == "PENDING" and state["node"] == "", state
    assert_ok(helper("cancel", helper.settings, holder))
    assert helper.wait(waiting, lambda s: s["state"] in ENDED)[-1]["state"] == "COMPLETED"


def test_a_running_job_cancelled_is_cancelled(helper, slurm):
    id = helper.submit(f"touch {helper.folder}/started; sleep 60")
    helper.wait(id, lambda s: s["state"] == "RUNNING")
    assert_ok(helper("cancel", helper.settings, id))
    last = helper.wait(id, lambda s: s["state"] in ENDED)[-1]
    assert last["state"] == "CANCELLED" and last["node"] == slurm["node"], last
    # Cancelling it again, or an id Slurm never had, is no error.
    cp = assert_ok(helper("cancel", helper.settings, id, 99999999))
    assert cp.stdout == "" and cp.stderr == ""


def test_a_pending_job_cancelled_never_runs(helper):
    first = helper.submit("sleep 30")
    second = helper.submit("echo never", after_ok=[first])
    assert_ok(helper("cancel", helper.settings, second, first))
    assert helper.wait(second, lambda s: s["state"] in ENDED)[-1]["state"] == "CANCELLED"
    assert not (helper.folder / "job-2.out").exists()


def test_more_cpus_than_any_node_has_is_refused_with_slurms_words(helper, slurm):
    cp = helper("submit", helper.settings, helper.request("true", cpus=slurm["cpus"] + 64))
    line = assert_error(cp, "dstack: slurm: ", "More processors requested than permitted")
    assert cp.stdout == ""
    if helper.how == "rest":
        assert f"{REST_URL}/slurm/v0.0.38/job/submit" in line and "HTTP 500" in line, line
    else:
        assert "sbatch" in line, line
    cp = helper("submit", helper.settings, helper.request("true", gpus=1, gpu_name="a100"))
    assert_error(cp, "dstack: slurm: ", "Requested node configuration is not available")


def test_an_id_slurm_does_not_know_is_unknown(helper):
    assert helper.state(99999998, 99999999) == [
        {"id": i, "state": "UNKNOWN", "reason": "", "node": "", "exit_code": 0, "signal": 0}
        for i in (99999998, 99999999)]


def test_an_unknown_partition_is_refused(helper):
    settings = json.loads(helper.settings.read_text())
    settings["partition"] = "no-such-partition"
    helper.settings.write_text(json.dumps(settings))
    cp = helper("submit", helper.settings, helper.request("true"))
    assert_error(cp, "dstack: slurm: ", "Invalid partition name specified")


def test_rest_without_a_token_says_so(slurm, tmp_path):
    h = Helper(tmp_path, {"url": REST_URL})
    for args in (("submit", h.settings, h.request("true")), ("state", h.settings, 1),
                 ("cancel", h.settings, 1)):
        assert_error(h(*args), "dstack: slurm: ", "needs a JWT", "token_file", "SLURM_JWT")
    # $SLURM_JWT is the other way to give it.
    token = subprocess.run(["scontrol", "token", "username=root", "lifespan=60"],
                           capture_output=True, text=True, check=True).stdout.strip()
    cp = h("state", h.settings, 99999999, env={"SLURM_JWT": token.split("=", 1)[1]})
    assert json.loads(assert_ok(cp).stdout)["state"] == "UNKNOWN"


def test_rest_with_a_bad_token_or_no_server_fails_naming_it(slurm, tmp_path):
    (tmp_path / "bad").write_text("not-a-jwt\n")
    h = Helper(tmp_path, {"url": REST_URL, "token_file": str(tmp_path / "bad")})
    assert_error(h("submit", h.settings, h.request("true")), "dstack: slurm: ",
                 f"POST {REST_URL}/slurm/v0.0.38/job/submit: HTTP 500", "token")
    (tmp_path / "empty").write_text("\n")
    h = Helper(tmp_path, {"url": REST_URL, "token_file": str(tmp_path / "empty")})
    assert_error(h("state", h.settings, 1), "dstack: slurm: ", "token_file is empty")
    h = Helper(tmp_path, {"url": REST_URL, "token_file": str(tmp_path / "missing")})
    assert_error(h("state", h.settings, 1), "dstack: slurm: ", str(tmp_path / "missing"))
    h = Helper(tmp_path, {"url": "http://127.0.0.1:1", "token_file": str(tmp_path / "bad")})
    assert_error(h("state", h.settings, 1), "dstack: slurm: ",
                 "cannot reach slurmrestd at http://127.0.0.1:1")


def test_rest_refuses_options_it_cannot_map(slurm, token_file, tmp_path):
    h = Helper(tmp_path, {"url": REST_URL, "token_file": str(token_file),
                          "options": ["--time=1:30", "--nodelist=" + slurm["node"]]})
    cp = h("submit", h.settings, h.request("true"))
    assert_error(cp, "dstack: slurm: ", "option --nodelist=", "cannot go through slurmrestd")
    # What it maps reaches Slurm: --time=1:30 is a 2-minute limit.
    h = Helper(tmp_path, {"url": REST_URL, "token_file": str(token_file),
                          "options": ["--time=1:30", "--comment=from dstack"]})
    id = h.submit("true")
    try:
        show = subprocess.run(["scontrol", "show", "job", str(id)], capture_output=True,
                              text=True, check=True).stdout
        assert "TimeLimit=00:02:00" in show and "Comment=from dstack" in show, show
    finally:
        h.cleanup()


def test_commands_pass_options_to_sbatch(slurm, tmp_path):
    h = Helper(tmp_path, {"options": ["--time=3", "--nodelist=" + slurm["node"]]})
    id = h.submit("true")
    try:
        show = subprocess.run(["scontrol", "show", "job", str(id)], capture_output=True,
                              text=True, check=True).stdout
        assert "TimeLimit=00:03:00" in show and f"ReqNodeList={slurm['node']}" in show, show
    finally:
        h.cleanup()
    h = Helper(tmp_path, {"options": ["--no-such-option"]})
    assert_error(h("submit", h.settings, h.request("true")), "dstack: slurm: sbatch",
                 "no-such-option")


def test_usage_and_bad_input(tmp_path):
    h = Helper(tmp_path, {})
    for args in ((), ("submit",), ("state", h.settings), ("frob", h.settings, 1),
                 ("submit", h.settings, "a", "b")):
        cp = h(*args)
        assert cp.returncode == 2 and cp.stderr.startswith("dstack: slurm: usage: "), cp
    cp = h("state", h.settings, "12x")
    assert cp.returncode == 2 and cp.stderr == "dstack: slurm: '12x' is not a job id\n"
    (tmp_path / "bad.json").write_text("{")
    assert_error(h("state", tmp_path / "bad.json", 1), "dstack: slurm: ", "bad.json")
    request = tmp_path / "request.json"
    for body, needle in (({"name": "x"}, "script: required"),
                         ({"name": "x", "script": "echo"}, "must start with #!"),
                         ({"name": "x", "script": "#!/bin/sh", "env": ["NOEQUALS"]},
                          "env[0]: expected NAME=VALUE"),
                         ({"name": "x", "script": "#!/bin/sh", "cpus": -1},
                          "cpus: expected a count"),
                         ({"name": "x", "script": "#!/bin/sh", "after_ok": ["1"]},
                          "after_ok[0]: expected a job id")):
        request.write_text(json.dumps(body))
        assert_error(h("submit", h.settings, request), "dstack: slurm: ", needle)
