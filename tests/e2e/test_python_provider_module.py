"""The Python module custom providers import (contrib/python/dstack), alone.

Each provider runs as the runner starts it: a subprocess in a repository-
shaped directory, with DSTACK_WORKFLOW naming the workflow's JSON file and
DSTACK_JOBS the file it writes.  The seed's curl provider is used as the
seed documents it.  Run with Debian's /usr/bin/python3 (stdlib + PyYAML).
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTRIB = REPO / "contrib" / "python"

sys.path.insert(0, str(CONTRIB))
import dstack  # noqa: E402
from dstack import _schema  # noqa: E402
from conftest import SEED_MAIN, SEED_SCHEMA  # noqa: E402

URL = "https://github.com/karpathy/char-rnn/blob/master/data/tinyshakespeare/input.txt"
SEED_DATA = {"url": URL, "output": "data/input.txt", "artifacts": ["data"]}
SCHEMA_PATH = "providers/curl/schema.yaml"


def workflow_doc(data, **extra):
    doc = {
        "data": data,
        "workflow": "tinyshakespeare",
        "run_name": "witty-otter-1",
        "args": [],
        "tag": None,
        "repo": {"url": "https://example.com/r.git", "branch": "main",
                 "commit": "0" * 40, "dirty": False},
    }
    doc.update(extra)
    return doc


def provider_env(tmp, **extra):
    env = dict(os.environ)
    for name in ("DSTACK_WORKFLOW", "DSTACK_JOBS", "PYTHONUSERBASE", "PYTHONHOME",
                 "PYTHONSTARTUP"):
        env.pop(name, None)
    # the module as the runner will reach it: the providers' folder first
    env["PYTHONPATH"] = "%s:%s" % (tmp / "providers", CONTRIB)
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def write_repo(tmp, main=SEED_MAIN, schema=SEED_SCHEMA, name="curl"):
    folder = tmp / "providers" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(main)
    if schema is not None:
        (folder / "schema.yaml").write_text(schema)
    return folder / "main.py"


def run_provider(tmp, data, main=SEED_MAIN, schema=SEED_SCHEMA, name="curl",
                 workflow=None, argv=None, env=None):
    """Runs a provider as the runner does; returns (process, jobs or None)."""
    script = write_repo(tmp, main, schema, name)
    wf = tmp / "workflow.json"
    jobs = tmp / "jobs.json"
    wf.write_text(json.dumps(workflow if workflow is not None else workflow_doc(data)))
    if jobs.exists():
        jobs.unlink()
    full_env = provider_env(tmp, DSTACK_WORKFLOW=str(wf), DSTACK_JOBS=str(jobs))
    full_env.update(env or {})
    cmd = argv or [sys.executable, str(script.relative_to(tmp))]
    proc = subprocess.run(cmd, cwd=tmp, env=full_env, capture_output=True,
                          text=True, timeout=60)
    result = json.loads(jobs.read_text()) if jobs.exists() else None
    return proc, result


def assert_one_line_error(proc, expected):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr == expected + "\n"


def provider_source(body):
    """A provider whose create_jobs() is body (indented by the caller's text)."""
    return ("from dstack import *\n\n\n"
            "class P(Provider):\n"
            "    def create_jobs(self):\n"
            + textwrap.indent(textwrap.dedent(body), "        ")
            + "\n\nif __name__ == '__main__':\n    P().start()\n")


# --------------------------------------------------------------------------
# The seed's curl provider


def test_seed_curl_provider_writes_its_job(tmp_path):
    proc, jobs = run_provider(tmp_path, SEED_DATA)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert jobs == [{
        "image": "python:3.9",
        "commands": ["curl %s -o data/input.txt" % URL],
        "artifacts": ["data"],
    }]


def test_mounted_artifacts_are_handed_on(tmp_path):
    # The seed hands workflow.data["artifacts"] on as it is, and dstack
    # 0.0.x workflows write {path: ./data, mount: true} there (its own
    # schema would refuse them: only strings).
    data = dict(SEED_DATA, artifacts=[{"path": "./data", "mount": True}, "logs"])
    proc, jobs = run_provider(tmp_path, data, schema="type: object\n")
    assert proc.returncode == 0, proc.stderr
    assert jobs[0]["artifacts"] == [{"path": "./data", "mount": True}, "logs"]


def test_module_comes_from_contrib(tmp_path):
    main = "import dstack\nprint(dstack.__file__)\n"
    proc, _ = run_provider(tmp_path, SEED_DATA, main=main, name="which")
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == CONTRIB / "dstack" / "__init__.py"


def test_seed_command_with_user_site(tmp_path):
    """`PYTHONPATH=providers python3 providers/curl/main.py` replaces
    PYTHONPATH; the module is reached through a user site directory."""
    base = tmp_path / "userbase"
    env = provider_env(tmp_path, PYTHONUSERBASE=str(base))
    env.pop("PYTHONNOUSERSITE")
    probe = subprocess.run(
        [sys.executable, "-c",
         "import site; print(site.ENABLE_USER_SITE); print(site.getusersitepackages())"],
        env=env, capture_output=True, text=True, check=True)
    enabled, site_dir = probe.stdout.split("\n")[:2]
    if enabled != "True":
        pytest.skip("user site directories are disabled for this Python")
    Path(site_dir).mkdir(parents=True)
    (Path(site_dir) / "dstack").symlink_to(CONTRIB / "dstack")
    write_repo(tmp_path)
    (tmp_path / "workflow.json").write_text(json.dumps(workflow_doc(SEED_DATA)))
    env["DSTACK_WORKFLOW"] = str(tmp_path / "workflow.json")
    env["DSTACK_JOBS"] = str(tmp_path / "jobs.json")
    env["PYTHON"] = sys.executable
    proc = subprocess.run(
        ["sh", "-c", 'PYTHONPATH=providers "$PYTHON" providers/curl/main.py'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    jobs = json.loads((tmp_path / "jobs.json").read_text())
    assert jobs[0]["commands"] == ["curl %s -o data/input.txt" % URL]


# --------------------------------------------------------------------------
# Schema


@pytest.mark.parametrize("data, reason", [
    ({"url": URL, "artifacts": ["data"]}, "output: required"),
    ({"output": "o"}, "url: required"),
    (dict(SEED_DATA, foo=1), "unknown parameter 'foo'"),
    (dict(SEED_DATA, url=42), "url: expected a string"),
    (dict(SEED_DATA, output=None), "output: expected a string"),
    (dict(SEED_DATA, artifacts="data"), "artifacts: expected a list"),
    (dict(SEED_DATA, artifacts=["data", 3]), "artifacts[1]: expected a string"),
])
def test_seed_schema_failures(tmp_path, data, reason):
    proc, jobs = run_provider(tmp_path, data)
    assert_one_line_error(proc, "dstack: provider schema: %s: %s" % (SCHEMA_PATH, reason))
    assert jobs is None


def test_schema_needs_pyyaml(tmp_path):
    write_repo(tmp_path)
    wrapper = tmp_path / "no_yaml.py"
    wrapper.write_text("import runpy, sys\nsys.modules['yaml'] = None\n"
                       "runpy.run_path(sys.argv[1], run_name='__main__')\n")
    proc, jobs = run_provider(tmp_path, SEED_DATA, argv=[
        sys.executable, str(wrapper), "providers/curl/main.py"])
    assert_one_line_error(
        proc, "dstack: the provider's schema needs PyYAML (Debian: python3-yaml)")
    assert jobs is None


def test_provider_without_schema_needs_no_pyyaml(tmp_path):
    main = provider_source('return [Job(commands=["true"])]')
    write_repo(tmp_path, main, None, "plain")
    wrapper = tmp_path / "no_yaml.py"
    wrapper.write_text("import runpy, sys\nsys.modules['yaml'] = None\n"
                       "runpy.run_path(sys.argv[1], run_name='__main__')\n")
    proc, jobs = run_provider(tmp_path, {"anything": [1]}, main=main, schema=None,
                              name="plain", argv=[sys.executable, str(wrapper),
                                                  "providers/plain/main.py"])
    assert proc.returncode == 0, proc.stderr
    assert jobs == [{"commands": ["true"]}]


@pytest.mark.parametrize("schema, reason", [
    ("type: object\nproperties:\n  url:\n    type: strin\n",
     "invalid schema: properties.url.type: unknown type \"strin\""),
    ("type: object\nrequired: url\n", "invalid schema: required: expected a list of names"),
    ("type: [object\n", "invalid schema: 2:1:"),
    ("- 1\n", "invalid schema: the schema: expected a mapping"),
])
def test_invalid_schema_file(tmp_path, schema, reason):
    proc, jobs = run_provider(tmp_path, SEED_DATA, schema=schema)
    assert proc.returncode == 2
    assert proc.stderr.startswith("dstack: provider schema: %s: %s" % (SCHEMA_PATH, reason))
    assert proc.stderr.count("\n") == 1
    assert jobs is None


def test_missing_schema_file(tmp_path):
    proc, jobs = run_provider(tmp_path, SEED_DATA, schema=None)
    assert proc.returncode == 2
    assert proc.stderr.startswith("dstack: provider schema: %s: invalid schema: "
                                  "cannot read it: No such file" % SCHEMA_PATH)
    assert proc.stderr.count("\n") == 1


RICH_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "properties": {
        "count": {"type": "integer"},
        "rate": {"type": "number"},
        "flag": {"type": "boolean"},
        "mode": {"enum": ["fast", "slow"]},
        "either": {"type": ["string", "integer"]},
        "nested": {
            "type": "object",
            "additionalProperties": False,
            "required": ["a"],
            "properties": {"a": {"type": "array", "items": {"type": "integer"}}},
        },
    },
}


@pytest.mark.parametrize("data, reason", [
    ({"count": 1, "rate": 1, "flag": True, "mode": "fast", "either": 3,
      "nested": {"a": [1, 2]}, "other": "s"}, None),
    ({"count": 2.0, "either": "x"}, None),
    ({"count": True}, "count: expected an integer"),
    ({"count": 1.5}, "count: expected an integer"),
    ({"rate": "1"}, "rate: expected a number"),
    ({"flag": 1}, "flag: expected a boolean"),
    ({"mode": "medium"}, 'mode: expected one of "fast", "slow", not "medium"'),
    ({"either": 1.5}, "either: expected a string or an integer"),
    ({"nested": {}}, "nested.a: required"),
    ({"nested": {"a": [1], "b": 2}}, "nested: unknown parameter 'b'"),
    ({"nested": {"a": [1, "x"]}}, "nested.a[1]: expected an integer"),
    ({"nested": []}, "nested: expected an object"),
    ({"other": 3}, "other: expected a string"),
    ([], "parameters: expected an object"),
])
def test_schema_subset(data, reason):
    if reason is None:
        _schema.validate(data, RICH_SCHEMA)
    else:
        with pytest.raises(_schema.SchemaError) as e:
            _schema.validate(data, RICH_SCHEMA)
        assert str(e.value) == reason


def test_enum_tells_true_from_one():
    with pytest.raises(_schema.SchemaError):
        _schema.validate(True, {"enum": [1]})
    _schema.validate(1.0, {"enum": [1]})


# --------------------------------------------------------------------------
# The workflow file


def test_missing_dstack_workflow(tmp_path):
    script = write_repo(tmp_path)
    env = provider_env(tmp_path, DSTACK_JOBS=str(tmp_path / "jobs.json"))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("dstack: provider: DSTACK_WORKFLOW is not set")
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("content, reason", [
    (None, "cannot read it: No such file or directory"),
    ("{", "not valid JSON: "),
    ("[]", "expected a JSON object, found a list"),
    ('{"data": [1]}', "data: expected an object, found a list"),
])
def test_bad_dstack_workflow(tmp_path, content, reason):
    script = write_repo(tmp_path)
    wf = tmp_path / "workflow.json"
    if content is not None:
        wf.write_text(content)
    env = provider_env(tmp_path, DSTACK_WORKFLOW=str(wf),
                       DSTACK_JOBS=str(tmp_path / "jobs.json"))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("dstack: provider: DSTACK_WORKFLOW (%s): %s" % (wf, reason))
    assert proc.stderr.count("\n") == 1


def test_missing_dstack_jobs(tmp_path):
    script = write_repo(tmp_path)
    wf = tmp_path / "workflow.json"
    wf.write_text(json.dumps(workflow_doc(SEED_DATA)))
    env = provider_env(tmp_path, DSTACK_WORKFLOW=str(wf))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("dstack: provider: DSTACK_JOBS is not set")
    assert proc.stderr.count("\n") == 1


def test_workflow_context(tmp_path):
    main = provider_source('''
        w = self.workflow
        return [Job(commands=["true"], env={
            "NAME": w.name, "RUN": w.run_name, "ARGS": " ".join(w.args),
            "TAG": str(w.tag), "URL": w.repo.url, "BRANCH": w.repo["branch"],
            "DIRTY": str(w.repo.dirty), "DATA": ",".join(sorted(w.data)),
            "EXTRA": str(w.previous_jobs),
        })]
    ''')
    wf = workflow_doc({"b": 1, "a": 2}, args=["-l", "Hello, world!"], tag="v1",
                      previous_jobs=[])
    proc, jobs = run_provider(tmp_path, None, main=main, schema=None, name="ctx",
                              workflow=wf)
    assert proc.returncode == 0, proc.stderr
    assert jobs[0]["env"] == {
        "NAME": "tinyshakespeare", "RUN": "witty-otter-1",
        "ARGS": "-l Hello, world!", "TAG": "v1", "URL": "https://example.com/r.git",
        "BRANCH": "main", "DIRTY": "False", "DATA": "a,b", "EXTRA": "[]",
    }


# --------------------------------------------------------------------------
# Jobs


def test_depends_on_and_master_become_indexes(tmp_path):
    main = provider_source('''
        master = Job(commands=["serve"], ports=2)
        prep = Job(commands=["prep"])
        w1 = Job(commands=["work 1"], master=master, depends_on=[prep])
        w2 = Job(commands=["work 2"], master=master, depends_on=[w1, prep, w1])
        return [prep, master, w1, w2]
    ''')
    proc, jobs = run_provider(tmp_path, {}, main=main, schema=None, name="mw")
    assert proc.returncode == 0, proc.stderr
    assert jobs == [
        {"commands": ["prep"]},
        {"commands": ["serve"], "ports": 2},
        {"commands": ["work 1"], "depends_on": [0], "master": 1},
        {"commands": ["work 2"], "depends_on": [2, 0], "master": 1},
    ]


@pytest.mark.parametrize("body, reason", [
    ('a = Job(commands=["a"])\nreturn [Job(commands=["b"], depends_on=[a])]',
     "job 0: depends_on[0]: that Job is not among the jobs create_jobs() returned; "
     "return it in the list too"),
    ('a = Job(commands=["a"])\nreturn [Job(commands=["b"], master=a)]',
     "job 0: master: that Job is not among the jobs create_jobs() returned; "
     "return it in the list too"),
    ('a = Job(commands=["a"])\na.depends_on = [a]\nreturn [a]',
     "job 0: depends_on[0]: a job cannot depend on itself"),
    ('a = Job(commands=["a"])\na.master = a\nreturn [a]',
     "job 0: master: a job cannot be its own master"),
    ('a = Job(commands=["a"])\nb = Job(commands=["b"], depends_on=[a])\n'
     'a.depends_on = [b]\nreturn [a, b]',
     "depends_on: jobs 0 -> 1 -> 0 wait for each other"),
    ('a = Job(commands=["a"])\nreturn [a, a]',
     "create_jobs() returned the same Job twice, as jobs 0 and 1"),
    ('return [Job(commands=["a"], depends_on=["x"])]',
     "job 0: depends_on[0]: expected a Job, found 'x'"),
], ids=["depends-on-outside", "master-outside", "self-dependency", "self-master",
        "cycle", "twice", "not-a-job"])
def test_bad_job_references(tmp_path, body, reason):
    proc, jobs = run_provider(tmp_path, {}, main=provider_source(body), schema=None,
                              name="refs")
    assert_one_line_error(proc, "dstack: provider P: " + reason)
    assert jobs is None


def test_resources_and_other_fields(tmp_path):
    main = provider_source('''
        return [
            Job(image="ubuntu:22.04", commands=["a", "b"], env={"A": "1", "N": 2},
                ports=[8080, 8081], working_dir="src", artifacts=["out", "logs"],
                resources=ResourceRequirements(
                    cpu=2, memory="512MB",
                    gpu=GpuRequirements(count=1, name="A100", memory="16GB"),
                    shm_size=1048576)),
            Job(commands="one", resources=ResourceRequirements(gpu=2, memory=1024)),
            Job(commands=["c"], resources=ResourceRequirements(
                gpu={"name": "T4"}, memory="1.5GB")),
            Job(commands=["d"], resources=ResourceRequirements(), env=[]),
            Job(commands=["e"], resources={"cpu": 1}, env=["K=V=W"]),
        ]
    ''')
    proc, jobs = run_provider(tmp_path, {}, main=main, schema=None, name="res")
    assert proc.returncode == 0, proc.stderr
    assert jobs == [
        {"image": "ubuntu:22.04", "commands": ["a", "b"], "env": {"A": "1", "N": "2"},
         "ports": [8080, 8081], "working_dir": "src", "artifacts": ["out", "logs"],
         "resources": {"cpu": 2, "memory": "512MB",
                       "gpu": {"count": 1, "name": "A100", "memory": "16GB"},
                       "shm_size": 1048576}},
        {"commands": ["one"], "resources": {"memory": 1024, "gpu": 2}},
        {"commands": ["c"], "resources": {"memory": "1.5GB", "gpu": {"name": "T4"}}},
        {"commands": ["d"], "env": {}},
        {"commands": ["e"], "env": {"K": "V=W"}, "resources": {"cpu": 1}},
    ]
    # keys come in the seed's order
    assert list(jobs[0]) == ["image", "commands", "env", "ports", "working_dir",
                             "artifacts", "resources"]


@pytest.mark.parametrize("job, reason", [
    ('Job(image="x")', "job 0: commands: required (a list of strings)"),
    ('Job(commands=[1])', "job 0: commands[0]: expected a string, found 1"),
    ('Job(commands=[])', "job 0: commands: expected at least one command"),
    ('Job(commands=["a"], resources=ResourceRequirements(memory="lots"))',
     "job 0: resources.memory: expected a size like \"512MB\" or a number of bytes, "
     "found 'lots'"),
    ('Job(commands=["a"], resources=ResourceRequirements(memory="1.5"))',
     "job 0: resources.memory: expected a size like \"512MB\" or a number of bytes, "
     "found '1.5'"),
    ('Job(commands=["a"], resources=ResourceRequirements(cpu=-1))',
     "job 0: resources.cpu: expected a count (an integer, 0 or more), found -1"),
    ('Job(commands=["a"], resources=ResourceRequirements(gpu="A100"))',
     "job 0: resources.gpu: expected a count or a GpuRequirements, found 'A100'"),
    ('Job(commands=["a"], resources={"ram": 1})',
     "job 0: resources: unknown key 'ram' (expected cpu, memory, gpu, shm_size)"),
    ('Job(commands=["a"], resources=ResourceRequirements(gpu=GpuRequirements(count=True)))',
     "job 0: resources.gpu.count: expected a count (an integer, 0 or more), found True"),
    ('Job(commands=["a"], ports=[0])',
     "job 0: ports[0]: expected a port number (1-65535), found 0"),
    ('Job(commands=["a"], ports="80")',
     "job 0: ports: expected a count or a list of port numbers, found '80'"),
    ('Job(commands=["a"], env={"A": None})', "job 0: env.A: expected a string, found None"),
    ('Job(commands=["a"], env=["NOVALUE"])',
     "job 0: env[0]: expected NAME=VALUE, found 'NOVALUE'"),
    ('Job(commands=["a"], artifacts=[None])',
     "job 0: artifacts[0]: expected a string, found None"),
    ('Job(commands=["a"], artifacts=[{"path": "out", "mount": "yes"}])',
     "job 0: artifacts[0].mount: expected true or false, found 'yes'"),
    ('Job(commands=["a"], artifacts=[{"path": "out", "mnt": True}])',
     "job 0: artifacts[0]: unknown field 'mnt'"),
    ('Job(commands=["a"], artifacts=[{"mount": True}])',
     "job 0: artifacts[0].path: expected a string, found None"),
    ('Job(commands=["a"], working_dir=3)', "job 0: working_dir: expected a string, found 3"),
])
def test_bad_job_fields(tmp_path, job, reason):
    main = provider_source("return [Job(commands=['ok']), %s]" % job)
    proc, jobs = run_provider(tmp_path, {}, main=main, schema=None, name="bad")
    assert_one_line_error(proc, "dstack: provider P: " + reason.replace("job 0", "job 1"))
    assert jobs is None


@pytest.mark.parametrize("body, reason", [
    ('return ["echo hi"]',
     "create_jobs() returned 'echo hi' as job 0; expected a dstack.Job"),
    ('return [Job(commands=["a"]), {"commands": ["b"]}]',
     "create_jobs() returned a dict as job 1; expected a dstack.Job"),
    ('pass', "create_jobs() returned None; it must return a list of dstack.Job "
             "(a missing return?)"),
    ('return "echo hi"', "create_jobs() returned a string; it must return a list of "
                         "dstack.Job"),
    ('return 3', "create_jobs() returned an integer; it must return a list of dstack.Job"),
    ('return []', "create_jobs() returned no jobs; a run needs at least one"),
])
def test_create_jobs_returns_non_jobs(tmp_path, body, reason):
    proc, jobs = run_provider(tmp_path, {}, main=provider_source(body), schema=None,
                              name="nonjob")
    assert_one_line_error(proc, "dstack: provider P: " + reason)
    assert jobs is None


def test_one_job_or_a_generator_is_accepted(tmp_path):
    main = provider_source('return (Job(commands=[c]) for c in ["a", "b"])')
    proc, jobs = run_provider(tmp_path, {}, main=main, schema=None, name="gen")
    assert proc.returncode == 0, proc.stderr
    assert jobs == [{"commands": ["a"]}, {"commands": ["b"]}]
    main = provider_source('return Job(commands=["a"])')
    proc, jobs = run_provider(tmp_path, {}, main=main, schema=None, name="one")
    assert proc.returncode == 0, proc.stderr
    assert jobs == [{"commands": ["a"]}]


def test_create_jobs_is_abstract(tmp_path, monkeypatch):
    class Incomplete(dstack.Provider):
        pass

    wf = tmp_path / "w.json"
    wf.write_text(json.dumps(workflow_doc({})))
    monkeypatch.setenv("DSTACK_WORKFLOW", str(wf))
    with pytest.raises(TypeError):
        Incomplete()


def test_a_crash_in_create_jobs_shows_its_traceback(tmp_path):
    main = provider_source('raise RuntimeError("boom")')
    proc, jobs = run_provider(tmp_path, {}, main=main, schema=None, name="crash")
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "RuntimeError: boom" in proc.stderr
    assert jobs is None


def test_jobs_to_json_in_process():
    a = dstack.Job(commands=["a"])
    b = dstack.Job(commands=["b"], depends_on=[a], master=a,
                   resources=dstack.ResourceRequirements(cpu=1, memory="2GiB",
                                                         shm_size="64MB"))
    assert dstack.jobs_to_json([a, b]) == [
        {"commands": ["a"]},
        {"commands": ["b"], "resources": {"cpu": 1, "memory": "2GiB", "shm_size": "64MB"},
         "depends_on": [0], "master": 0},
    ]
    with pytest.raises(dstack.ProviderError):
        dstack.jobs_to_json([b])
