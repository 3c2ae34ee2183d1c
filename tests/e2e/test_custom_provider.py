"""Custom providers, the seed's mechanism: the seed's curl example run
unchanged apart from its URL (pointing at a local HTTP server), a provider
written in shell, and providers that fail in the ways users meet."""
import textwrap
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

import conftest
from conftest import SEED_MAIN, SEED_SCHEMA, assert_error, assert_ok, parse_table

# Debian's tools first: the providers run python3 and pip3 from PATH.
DEBIAN_PATH = {"PATH": "/usr/local/bin:/usr/bin:/bin"}

SEED_PROVIDERS = """\
providers:
- name: curl
  image: python:3.9
  commands:
  - pip3 install -r providers/curl/requirements.txt
  - PYTHONPATH=providers python3 providers/curl/main.py
"""

@pytest.fixture
def http_server(tmp_path):
    """A local web server with the 'dataset' the seed downloads."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "input.txt").write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 partial(SimpleHTTPRequestHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", site
    server.shutdown()
    server.server_close()


def make_repo(root, workflows, providers=SEED_PROVIDERS, extra=None):
    """A repository with the seed's curl provider files and extra ones."""
    files = {"providers/curl/main.py": SEED_MAIN, "providers/curl/schema.yaml": SEED_SCHEMA,
             "providers/curl/requirements.txt": ""}
    files.update(extra or {})
    return conftest.make_repo(root, workflows, providers, files)


def seed_workflow(url, extra=""):
    return textwrap.dedent(f"""\
        workflows:
        - name: tinyshakespeare
          provider: curl
          url: {url}/input.txt
          output: data/input.txt
          artifacts:
          - data
        """) + extra


def runs(ds, cwd):
    return parse_table(assert_ok(ds("ps", "-a", cwd=cwd)).stdout)


def test_seed_curl_example(ds, tmp_path, http_server):
    url, site = http_server
    repo = make_repo(tmp_path / "repo", seed_workflow(url))
    cp = ds("run", "tinyshakespeare", cwd=repo, env=DEBIAN_PATH)
    assert_ok(cp)
    [run] = runs(ds, repo)
    assert run["STATUS"] == "done" and run["ARTIFACTS"] == "data"
    out = tmp_path / "out"
    assert_ok(ds("artifacts", "download", run["RUN"], "-o", out))
    assert (out / "data" / "input.txt").read_bytes() == (site / "input.txt").read_bytes()


PASS_ON_PROVIDERS = SEED_PROVIDERS + """\
- name: pass-on
  commands:
  - PYTHONPATH=providers python3 providers/pass-on/main.py
"""

PASS_ON_MAIN = """\
from dstack import Job, Provider


class PassOn(Provider):
    def create_jobs(self):
        return [Job(commands=self.workflow.data["commands"],
                    artifacts=self.workflow.data["artifacts"])]


if __name__ == "__main__":
    PassOn().start()
"""


def test_provider_hands_on_mounted_artifacts_as_workflows_write_them(ds, tmp_path):
    # dstack 0.0.x workflows write {path: ./out, mount: true}; a provider
    # may pass workflow.data["artifacts"] on as it is.
    workflows = textwrap.dedent("""\
        workflows:
        - name: train
          provider: pass-on
          commands: [mkdir -p out logs, echo model > out/model.txt, echo ok > logs/l]
          artifacts:
          - path: ./out
            mount: true
          - logs/
        """)
    repo = make_repo(tmp_path / "repo", workflows, PASS_ON_PROVIDERS,
                     {"providers/pass-on/main.py": PASS_ON_MAIN})
    assert_ok(ds("run", "train", cwd=repo, env=DEBIAN_PATH))
    [run] = runs(ds, repo)
    assert run["STATUS"] == "done"
    out = tmp_path / "out"
    assert_ok(ds("artifacts", "download", run["RUN"], "-o", out))
    assert (out / "out" / "model.txt").read_text() == "model\n"
    assert (out / "logs" / "l").read_text() == "ok\n"


def test_provider_schema_error_fails_the_run_naming_the_field(ds, tmp_path, http_server):
    url, _ = http_server
    workflows = textwrap.dedent(f"""\
        workflows:
        - name: tinyshakespeare
          provider: curl
          url: {url}/input.txt
          artifacts:
          - data
        """)
    repo = make_repo(tmp_path / "repo", workflows)
    cp = ds("run", "tinyshakespeare", cwd=repo, env=DEBIAN_PATH)
    assert_error(cp, "failed")
    assert "output" in cp.stdout and "provider 'curl' exited with status" in cp.stdout
    [run] = runs(ds, repo)
    assert run["STATUS"] == "failed"
    logs = assert_ok(ds("logs", run["RUN"])).stdout
    assert "provider 'curl' exited with status" in logs


def test_runner_checks_the_schema_named_in_providers_yaml(ds, tmp_path, http_server):
    url, _ = http_server
    providers = SEED_PROVIDERS + "  schema: providers/curl/schema.yaml\n"
    workflows = textwrap.dedent(f"""\
        workflows:
        - name: tinyshakespeare
          provider: curl
          url: {url}/input.txt
          output: data/input.txt
          colour: blue
        """)
    repo = make_repo(tmp_path / "repo", workflows, providers)
    cp = ds("run", "tinyshakespeare", cwd=repo, env=DEBIAN_PATH)
    assert_error(cp, ".dstack/workflows.yaml:2:", "colour", "curl", allow_warnings=True)
    assert runs(ds, repo) == []


SHELL_PROVIDERS = """\
providers:
- name: fan
  commands:
  - |
    echo "provider for $(python3 -c 'import json,os; print(json.load(open(os.environ["DSTACK_WORKFLOW"]))["workflow"])')"
  - sh providers/fan.sh
- name: broken-json
  commands:
  - |
    echo '[{"commands": ' > "$DSTACK_JOBS"
- name: bad-field
  commands:
  - |
    echo '[{"commands": ["true"], "artifacts": "out"}]' > "$DSTACK_JOBS"
- name: bad-mount
  commands:
  - |
    echo '[{"commands": ["true"], "artifacts": [{"path": "out", "mount": 1}]}]' > "$DSTACK_JOBS"
- name: crashes
  commands:
  - exit 7
- name: bash
  commands:
  - |
    echo '[{"commands": ["echo the repository provider won"]}]' > "$DSTACK_JOBS"
"""

FAN = """\
cat > "$DSTACK_JOBS" <<'JSON'
[
  {"commands": ["echo second $ORDER", "mkdir -p out", "echo $PORT_0 > out/port"],
   "env": {"ORDER": "2"}, "depends_on": [1], "ports": 1, "artifacts": ["out"]},
  {"commands": ["echo first $ORDER"], "env": {"ORDER": "1"}}
]
JSON
"""


def test_provider_in_shell_with_depends_on_env_and_ports(ds, tmp_path):
    workflows = textwrap.dedent("""\
        workflows:
        - name: fanout
          provider: fan
        - name: broken
          provider: broken-json
        - name: bad
          provider: bad-field
        - name: badmount
          provider: bad-mount
        - name: crash
          provider: crashes
        - name: shadow
          provider: bash
          commands: [echo the built-in ran]
        """)
    repo = make_repo(tmp_path / "repo", workflows, SHELL_PROVIDERS,
                     {"providers/fan.sh": FAN})
    cp = assert_ok(ds("run", "fanout", cwd=repo, env=DEBIAN_PATH))
    lines = cp.stdout.splitlines()
    assert lines[0] == "provider for fanout"
    assert lines.index("first 1") < lines.index("second 2")
    [run] = runs(ds, repo)
    out = tmp_path / "out"
    assert_ok(ds("artifacts", "download", run["RUN"], "-o", out))
    assert int((out / "out" / "port").read_text()) > 0

    cp = ds("run", "broken", cwd=repo)
    assert_error(cp, "failed")
    assert "provider 'broken-json': DSTACK_JOBS:" in cp.stdout
    cp = ds("run", "bad", cwd=repo)
    assert_error(cp, "failed")
    assert "provider 'bad-field': DSTACK_JOBS: jobs[0].artifacts" in cp.stdout
    cp = ds("run", "badmount", cwd=repo)
    assert_error(cp, "failed")
    assert ("provider 'bad-mount': DSTACK_JOBS: jobs[0].artifacts[0].mount:"
            " expected true or false") in cp.stdout
    cp = ds("run", "crash", cwd=repo)
    assert_error(cp, "failed")
    assert "provider 'crashes' exited with status 7" in cp.stdout
    cp = assert_ok(ds("run", "shadow", cwd=repo))
    assert "the repository provider won" in cp.stdout
