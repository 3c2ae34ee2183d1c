"""Providers from other repositories (the seed's "Use providers"):
`provider: {repo: URL, name: NAME, ref: REF}` against a real `git daemon`
on 127.0.0.1 and file:// bare repositories made here.  The runner fetches
through libgit2 into a mirror under $DSTACK_HOME and runs the provider
from a checkout of the commit it resolved, which the run records."""
import re
import shutil
import socket
import subprocess
import textwrap
import threading

import pytest

from conftest import assert_error, assert_ok, git, git_init, make_repo, parse_table, wait_for

PROVIDERS = """\
providers:
  - name: hello
    commands:
      - echo "provider %s in $(basename "$PWD")"
      - >-
        echo '[{"commands": ["echo job sees $(cat data.txt)"]}]' > "$DSTACK_JOBS"
"""


def commit(repo, message):
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], stdout=subprocess.PIPE,
                          text=True, check=True).stdout.strip()


@pytest.fixture
def provider_repo(tmp_path):
    """A provider repository: the work tree, its bare copy served by
    `git daemon`, and the commits (v1 tagged)."""
    work = git_init(tmp_path / "provider")
    (work / ".dstack").mkdir()
    (work / ".dstack" / "providers.yaml").write_text(PROVIDERS % "v1")
    v1 = commit(work, "v1")
    git(work, "tag", "v1")
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / "prov.git")],
                   check=True)
    git(work, "remote", "add", "origin", str(served / "prov.git"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon = subprocess.Popen(["git", "daemon", "--export-all", f"--base-path={served}",
                               "--listen=127.0.0.1", f"--port={port}", "--reuseaddr",
                               str(served)], stderr=subprocess.DEVNULL)

    def listening():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    assert wait_for(listening, timeout=30), "git daemon did not start"
    try:
        yield {"work": work, "bare": served / "prov.git", "v1": v1,
               "git": f"git://127.0.0.1:{port}/prov.git",
               "file": f"file://{served / 'prov.git'}", "daemon": daemon}
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


def user_repo(root, url, ref=None, name="hello"):
    provider = f"      repo: {url}\n      name: {name}\n" + (f"      ref: {ref}\n" if ref else "")
    return make_repo(root, "workflows:\n  - name: w\n    provider:\n" + provider,
                     files={"data.txt": "user data\n"})


def details(ds, repo):
    name = parse_table(assert_ok(ds("ps", cwd=repo)).stdout)[0]["RUN"]
    return assert_ok(ds("ps", name, cwd=repo)).stdout.split("\n\n")[2]


def push(provider, version):
    (provider["work"] / ".dstack" / "providers.yaml").write_text(PROVIDERS % version)
    sha = commit(provider["work"], version)
    git(provider["work"], "push", "-q", "origin", "HEAD:main")
    return sha


@pytest.mark.parametrize("transport", ["git", "file"])
def test_a_provider_from_another_repository(ds, tmp_path, provider_repo, transport):
    url = provider_repo[transport]
    repo = user_repo(tmp_path / "user", url)
    cp = assert_ok(ds("run", "w", cwd=repo))
    # The provider runs in its own checkout; its job in the user's snapshot.
    assert "provider v1 in repo\n" in cp.stdout and "job sees user data\n" in cp.stdout, cp.stdout
    assert f"provider: hello ({url} at {provider_repo['v1']})\n" in details(ds, repo)

    # A new commit on the default branch is fetched by the next run.
    v2 = push(provider_repo, "v2")
    cp = assert_ok(ds("run", "w", cwd=repo))
    assert "provider v2 in repo\n" in cp.stdout, cp.stdout
    assert f"({url} at {v2})\n" in details(ds, repo)


def test_pinned_refs_and_the_cache_offline(ds, tmp_path, provider_repo):
    v2 = push(provider_repo, "v2")
    for ref, version in (("v1", "v1"), (provider_repo["v1"], "v1"), ("main", "v2"),
                         (v2[:12], "v2")):
        repo = user_repo(tmp_path / f"user-{ref}", provider_repo["git"], ref)
        cp = assert_ok(ds("run", "w", cwd=repo))
        assert f"provider {version} in repo\n" in cp.stdout, (ref, cp.stdout)

    # The daemon goes away: a commit pinned and cached still serves, with
    # a warning; a branch, which may have moved, does not.
    provider_repo["daemon"].terminate()
    provider_repo["daemon"].wait(timeout=30)
    pinned = user_repo(tmp_path / "pinned", provider_repo["git"], provider_repo["v1"])
    cp = assert_ok(ds("run", "w", cwd=pinned))
    assert "provider v1 in repo\n" in cp.stdout
    assert re.search(r"dstack: warning: provider repository \S+: cannot reach it: .*; using"
                     r" commit [0-9a-f]{40} from the cache", cp.stderr), cp.stderr
    branch = user_repo(tmp_path / "branch", provider_repo["git"], "main")
    assert_error(ds("run", "w", cwd=branch),
                 f"provider repository {provider_repo['git']}: cannot reach it")


def test_errors_name_the_url_and_what_failed(ds, tmp_path, provider_repo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = f"git://127.0.0.1:{s.getsockname()[1]}/prov.git"
    cases = [
        (nobody, None, "hello", f"provider repository {nobody}: cannot reach it"),
        (provider_repo["git"], "no-such-ref", "hello",
         f"provider repository {provider_repo['git']}: no branch, tag or commit 'no-such-ref'"),
        (provider_repo["git"], None, "other",
         f"provider repository {provider_repo['git']} has no provider 'other'"),
    ]
    for i, (url, ref, name, needle) in enumerate(cases):
        repo = user_repo(tmp_path / f"user{i}", url, ref, name)
        assert_error(ds("run", "w", cwd=repo), needle)
    # A repository without .dstack/providers.yaml.
    bare = git_init(tmp_path / "empty-provider")
    (bare / "README").write_text("nothing here\n")
    commit(bare, "readme")
    repo = user_repo(tmp_path / "user-empty", f"file://{bare}")
    assert_error(ds("run", "w", cwd=repo), "has no .dstack/providers.yaml")
    # Nothing was run or recorded for any of them.
    assert parse_table(assert_ok(ds("ps", "-a", cwd=tmp_path)).stdout or "RUN\n") == []


def test_runs_share_the_mirror_one_fetch_at_a_time(ds, tmp_path, provider_repo):
    repos = [user_repo(tmp_path / f"user{i}", provider_repo["git"]) for i in range(3)]
    procs = [ds.popen("run", "w", cwd=repo) for repo in repos]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "provider v1 in repo" in out, err
    mirrors = list((ds.home / "providers").glob("*.git"))
    assert len(mirrors) == 1, mirrors
