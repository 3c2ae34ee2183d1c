"""The built-in providers beyond bash and python: curl (a download into an
artifact, against a local web server) and docker (commands in an image,
run on the host by the host backend); parameters checked against each
provider's declaration before anything runs; and `dstack providers`."""
import os
import re
import socket
import subprocess
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import BIN, MiB, assert_error, assert_ok, make_repo, parse_table, write_random

SLOW_SIZE = 2 * MiB
SLOW_SECONDS = 2.5


class Handler(SimpleHTTPRequestHandler):
    """Files of the site, plus /slow (SLOW_SIZE bytes over SLOW_SECONDS),
    /slower (the same over a minute) and /redirect (to /data.bin)."""

    def do_GET(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/data.bin")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path in ("/slow", "/slower"):
            seconds = SLOW_SECONDS if self.path == "/slow" else 60
            self.send_response(200)
            self.send_header("Content-Length", str(SLOW_SIZE))
            self.end_headers()
            steps = 25
            try:
                for _ in range(steps):
                    self.wfile.write(b"s" * (SLOW_SIZE // steps))
                    self.wfile.flush()
                    time.sleep(seconds / steps)
                self.wfile.write(b"s" * (SLOW_SIZE % steps))
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path):
    site = tmp_path / "site"
    write_random(site / "data.bin", 3 * MiB + 17, seed=7)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", site
    server.shutdown()
    server.server_close()


def free_port():
    """A port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def runs(ds, cwd):
    return parse_table(assert_ok(ds("ps", "-a", cwd=cwd)).stdout)


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def test_curl_downloads_into_an_artifact(ds, tmp_path, http_server):
    url, site = http_server
    repo = make_repo(tmp_path / "repo", f"""\
        workflows:
          - name: download
            provider: curl
            url: {url}/data.bin
            output: ./data/data.bin
          - name: redirected
            provider: curl
            working_dir: sub
            url: {url}/redirect
            output: deep/er/copy.bin
        """)
    cp = assert_ok(ds("run", "download", cwd=repo))
    assert re.search(r"dstack: curl: data/data\.bin: 3\.0 MiB in [0-9.]+ s", cp.stdout), cp.stdout
    [run] = runs(ds, repo)
    assert run["STATUS"] == "done" and run["ARTIFACTS"] == "data"
    out = tmp_path / "out"
    ds.download(run["RUN"], out)
    assert files_under(out) == ["data/data.bin"]
    assert (out / "data" / "data.bin").read_bytes() == (site / "data.bin").read_bytes()

    # Redirects are followed; the default artifact is the folder holding
    # the output, relative to working_dir.
    assert_ok(ds("run", "redirected", cwd=repo))
    run = runs(ds, repo)[0]
    assert run["WORKFLOW"] == "redirected" and run["ARTIFACTS"] == "deep/er"
    out = tmp_path / "out2"
    ds.download(run["RUN"], out)
    assert files_under(out) == ["deep/er/copy.bin"]
    assert (out / "deep" / "er" / "copy.bin").read_bytes() == (site / "data.bin").read_bytes()


def test_curl_shows_progress_in_the_logs(ds, tmp_path, http_server):
    url, _ = http_server
    repo = make_repo(tmp_path / "repo", f"""\
        workflows:
          - name: slow
            provider: curl
            url: {url}/slow
            output: data/slow.bin
            artifacts: [data]
        """)
    assert_ok(ds("run", "slow", cwd=repo))
    [run] = runs(ds, repo)
    logs = assert_ok(ds("logs", run["RUN"])).stdout
    assert f"dstack: curl: {url}/slow -> data/slow.bin\n" in logs
    progress = re.findall(r"^dstack: curl: [0-9.]+ (?:B|KiB|MiB) of 2\.0 MiB \((\d+)%\)$",
                          logs, re.M)
    # About a line a second, never a flood.
    assert 1 <= len(progress) <= 2 * SLOW_SECONDS + 1, logs
    assert all(0 <= int(p) <= 100 for p in progress)
    assert re.search(r"^dstack: curl: data/slow\.bin: 2\.0 MiB in [0-9.]+ s$", logs, re.M), logs


def test_a_stopped_download_leaves_no_file(ds, tmp_path, http_server):
    url, _ = http_server
    repo = make_repo(tmp_path / "repo", f"""\
        workflows:
          - name: slower
            provider: curl
            url: {url}/slower
            output: data/slower.bin
        """)
    name = assert_ok(ds("run", "-d", "slower", cwd=repo)).stdout.strip()
    deadline = time.monotonic() + 30
    while " of 2.0 MiB " not in ds("logs", name).stdout:
        assert time.monotonic() < deadline, ds("logs", name).stdout
        time.sleep(0.2)
    assert_ok(ds("stop", name))
    [run] = runs(ds, repo)
    assert run["STATUS"] == "stopped" and run["ARTIFACTS"] == "data"
    out = tmp_path / "out"
    out.mkdir()
    assert_ok(ds("artifacts", "download", name, "-o", out))
    assert files_under(out) == []


def test_curl_http_error_fails_the_run_and_leaves_no_file(ds, tmp_path, http_server):
    url, _ = http_server
    repo = make_repo(tmp_path / "repo", f"""\
        workflows:
          - name: missing
            provider: curl
            url: {url}/missing.bin
            output: data/missing.bin
        """)
    cp = ds("run", "missing", cwd=repo)
    assert_error(cp, "failed")
    assert f"dstack: curl: {url}/missing.bin: HTTP 404\n" in cp.stdout
    [run] = runs(ds, repo)
    assert run["STATUS"] == "failed"
    logs = assert_ok(ds("logs", run["RUN"])).stdout
    assert f"dstack: curl: {url}/missing.bin: HTTP 404\n" in logs
    # The artifact folder existed before the job started; nothing is in it.
    out = tmp_path / "out"
    out.mkdir()
    assert_ok(ds("artifacts", "download", run["RUN"], "-o", out))
    assert files_under(out) == []


def test_curl_connection_refused_fails_the_run(ds, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/data.bin"
    repo = make_repo(tmp_path / "repo", f"""\
        workflows:
          - name: refused
            provider: curl
            url: {url}
            output: data/data.bin
        """)
    cp = ds("run", "refused", cwd=repo)
    assert_error(cp, "failed")
    [line] = [l for l in cp.stdout.splitlines() if l.startswith(f"dstack: curl: {url}: ")]
    assert "connect" in line.lower()
    [run] = runs(ds, repo)
    assert run["STATUS"] == "failed"


def dstack_curl(*args, cwd):
    """dstack-curl, the helper the curl provider's jobs run (beside dstack)."""
    return subprocess.run([str(BIN.parent / "dstack-curl"), *args], cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_curl_helper_directly(tmp_path, http_server, ds):
    """dstack-curl is what the job runs."""
    url, site = http_server
    cp = assert_ok(dstack_curl(f"{url}/data.bin", "a/b/c.bin", cwd=tmp_path))
    assert (tmp_path / "a" / "b" / "c.bin").read_bytes() == (site / "data.bin").read_bytes()
    # The mode any new file gets, not the temporary file's 0600.
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a" / "b" / "c.bin").stat().st_mode & 0o777 == 0o666 & ~umask
    cp = dstack_curl(f"{url}/nope", "x/nope.bin", cwd=tmp_path)
    assert cp.returncode == 1
    assert cp.stderr.splitlines()[-1] == f"dstack: curl: {url}/nope: HTTP 404"
    assert files_under(tmp_path / "x") == []
    assert dstack_curl("only-one", cwd=tmp_path).returncode == 2


BAD_WORKFLOWS = """\
    workflows:
      - name: no-url
        provider: curl
        output: data/x
      - name: no-output
        provider: curl
        url: http://127.0.0.1:1/x
      - name: output-list
        provider: curl
        url: http://127.0.0.1:1/x
        output: [a, b]
      - name: url-number
        provider: curl
        url: 42
        output: data/x
      - name: output-escapes
        provider: curl
        url: http://127.0.0.1:1/x
        output: ../x
      - name: output-bare
        provider: curl
        url: http://127.0.0.1:1/x
        output: x.bin
      - name: args-mapping
        provider: python
        file: x.py
        args: {a: 1}
      - name: docker-no-image
        provider: docker
        commands: [echo hi]
      - name: docker-no-commands
        provider: docker
        image: ubuntu:22.04
      - name: bash-no-commands
        provider: bash
        commands: []
    """


@pytest.mark.parametrize("workflow, needles", [
    ("no-url", ["workflow 'no-url'", "provider curl needs 'url'"]),
    ("no-output", ["workflow 'no-output'", "provider curl needs 'output'"]),
    ("output-list", ["workflow 'output-list'", "'output': expected a string"]),
    ("url-number", ["workflow 'url-number'", "'url': expected a string"]),
    ("output-escapes", ["workflow 'output-escapes'", "'output'", "../x"]),
    ("output-bare", ["workflow 'output-bare'", "'output'", "folder"]),
    ("args-mapping", ["workflow 'args-mapping'",
                      "'args': expected a string or a list of strings"]),
    ("docker-no-image", ["workflow 'docker-no-image'", "provider docker needs 'image'"]),
    ("docker-no-commands", ["workflow 'docker-no-commands'",
                            "provider docker needs 'commands'"]),
    ("bash-no-commands", ["workflow 'bash-no-commands'", "provider bash needs 'commands'"]),
])
def test_bad_parameters_fail_the_submission(ds, tmp_path, workflow, needles):
    repo = make_repo(tmp_path / "repo", BAD_WORKFLOWS)
    cp = ds("run", workflow, cwd=repo)
    assert_error(cp, *needles)
    assert cp.stdout == ""
    assert runs(ds, repo) == []


def test_docker_runs_its_commands_on_the_host(ds, tmp_path):
    repo = make_repo(tmp_path / "repo", """\
        workflows:
          - name: in-image
            provider: docker
            image: ubuntu:22.04
            commands:
              - echo "hello from $RUN_NAME"
              - mkdir -p out && echo made > out/file
            artifacts: [out]
        """)
    cp = assert_ok(ds("run", "in-image", cwd=repo))
    [run] = runs(ds, repo)
    assert f"hello from {run['RUN']}\n" in cp.stdout
    assert run["STATUS"] == "done" and run["ARTIFACTS"] == "out"
    out = ds.download(run["RUN"], tmp_path / "out")
    assert (out / "out" / "file").read_text() == "made\n"


PROVIDERS = """\
    providers:
      - name: echo
        commands:
          - |
            echo '[{"commands": ["echo from echo"]}]' > "$DSTACK_JOBS"
      - name: curl
        commands:
          - |
            echo '[{"commands": ["echo the repository curl ran"]}]' > "$DSTACK_JOBS"
    """


def test_providers_lists_builtins_then_the_repositorys(ds, tmp_path):
    repo = make_repo(tmp_path / "repo", """\
        workflows:
          - name: get
            provider: curl
            url: http://127.0.0.1:1/x
        """, PROVIDERS)
    cp = assert_ok(ds("providers", cwd=repo))
    assert cp.stderr == ""
    rows = parse_table(cp.stdout)
    assert [r["NAME"] for r in rows] == ["bash", "python", "docker", "echo", "curl"]
    by_name = {r["NAME"]: r for r in rows}
    for name in ("bash", "python", "docker"):
        assert by_name[name]["SOURCE"] == "built-in" and by_name[name]["HELP"]
    assert by_name["echo"]["SOURCE"] == ".dstack/providers.yaml"
    assert by_name["echo"]["HELP"] == "custom provider"
    # The repository's curl takes the built-in's place: shown once, and run.
    assert by_name["curl"]["SOURCE"] == ".dstack/providers.yaml"
    assert "in place of the built-in" in by_name["curl"]["HELP"]
    cp = assert_ok(ds("run", "get", cwd=repo))
    assert "the repository curl ran" in cp.stdout


def test_providers_outside_a_repository_lists_the_builtins(ds, tmp_path):
    rows = parse_table(assert_ok(ds("providers", cwd=tmp_path)).stdout)
    assert [(r["NAME"], r["SOURCE"]) for r in rows] == [
        ("bash", "built-in"), ("python", "built-in"), ("docker", "built-in"),
        ("curl", "built-in")]
    assert "providers" in assert_ok(ds("help")).stdout


def test_providers_reports_a_broken_providers_yaml(ds, tmp_path):
    repo = make_repo(tmp_path / "repo", "workflows: []\n", """\
        providers:
          - name: nameless-commands
        """)
    assert_error(ds("providers", cwd=repo), ".dstack/providers.yaml:")
    assert_error(ds("providers", "extra", cwd=repo), "providers", rc=2)
