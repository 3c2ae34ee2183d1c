"""The job result cache: a job whose input key a done job had is served by
that job's artifacts instead of running; any change to what the key holds
(a tracked or untracked file, an env value, a dep's artifact, the image)
runs it; failed and stopped jobs never serve; two identical jobs at once
run once; gc keeps a served job's trees while some run or tag reaches
them."""
import re
import sqlite3

import pytest

from conftest import (assert_error, assert_ok, assert_same_tree, git, make_repo, parse_table,
                      wait_for)
from test_fs import ctl, is_mounted, mount_env, unmount_all

KEY = re.compile(r"input key ([0-9a-f]{64})")


def workflows(tmp_path, extra=""):
    """prep writes data/ from $VAL; train reads it into model/; every
    command run leaves a line in tmp_path/ran, so a test sees what ran."""
    ran = tmp_path / "ran"
    return f"""workflows:
  - name: prep
    provider: bash
    cache: true
    env: [VAL]
    commands:
      - echo prep >> {ran}
      - mkdir -p data && echo "value $VAL" > data/x && cat f.txt >> data/x
      - echo prepared $VAL
    artifacts: [data]
  - name: train
    provider: bash
    cache: true
    deps: [{{workflow: prep}}]
    commands:
      - echo train >> {ran}
      - mkdir -p model && cat data/x > model/m && echo trained
    artifacts: [model]
{extra}"""


def ran(tmp_path):
    path = tmp_path / "ran"
    return path.read_text().split() if path.exists() else []


def run(ds, repo, *args, env=None):
    return assert_ok(ds("run", *args, cwd=repo, env=dict({"VAL": "1"}, **(env or {}))))


def runs(ds, repo):
    return parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)


def jobs(ds, name):
    out = assert_ok(ds("ps", name)).stdout
    return parse_table(out.split("\n\n")[1])


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo", workflows(tmp_path), files={"f.txt": "one\n"})


def test_an_unchanged_job_is_served_by_the_done_one(ds, repo, tmp_path):
    first = run(ds, repo, "prep")
    key = KEY.search(first.stdout).group(1)
    assert f"dstack: job 0 runs (input key {key})" in first.stdout
    assert "prepared 1" in first.stdout
    [source] = runs(ds, repo)
    again = run(ds, repo, "prep")
    assert ran(tmp_path) == ["prep"], "the cached job ran"
    assert "prepared" not in again.stdout
    assert again.stdout == (f"dstack: job 0 is cached from {source['RUN']}/0"
                            f" (input key {key})\n")
    cached, _ = runs(ds, repo)
    assert cached["STATUS"] == "done (cached)" and source["STATUS"] == "done"
    assert cached["ARTIFACTS"] == "data"
    [job] = jobs(ds, cached["RUN"])
    assert job["STATUS"] == f"done (cached from {source['RUN']}/0)" and job["EXIT"] == "0"
    assert_ok(ds("artifacts", "download", source["RUN"], "-o", tmp_path / "a"))
    assert_ok(ds("artifacts", "download", cached["RUN"], "-o", tmp_path / "b"))
    assert_same_tree(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b" / "data" / "x").read_text() == "value 1\none\n"
    logs = assert_ok(ds("logs", cached["RUN"])).stdout
    assert f"cached from {source['RUN']}/0" in logs
    # The served run is a done run of prep: train's deps take it, same trees.
    run(ds, repo, "train")
    run(ds, repo, "train")
    assert ran(tmp_path) == ["prep", "train"]
    assert runs(ds, repo)[0]["STATUS"] == "done (cached)"
    ds.fsck_clean()


def test_any_change_the_job_can_see_runs_it(ds, repo, tmp_path):
    run(ds, repo, "prep")
    # Content, not timestamps: a touched file serves.
    (repo / "f.txt").touch()
    assert "is cached from" in run(ds, repo, "prep").stdout
    # One byte of a tracked file, uncommitted.
    (repo / "f.txt").write_text("onf\n")
    assert "prepared" in run(ds, repo, "prep").stdout
    # Committed as it is: the same snapshot, served.
    git(repo, "commit", "-qam", "onf")
    assert "is cached from" in run(ds, repo, "prep").stdout
    # An untracked file the job could read.
    (repo / "new.txt").write_text("x")
    assert "prepared" in run(ds, repo, "prep").stdout
    # An ignored one is not in the snapshot: served.
    (repo / ".gitignore").write_text("ignored.txt\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignore")
    run(ds, repo, "prep")
    (repo / "ignored.txt").write_text("y")
    assert "is cached from" in run(ds, repo, "prep").stdout
    # An env value (VAL, taken from the submitter): runs, then served again.
    assert "prepared 2" in run(ds, repo, "prep", env={"VAL": "2"}).stdout
    assert "is cached from" in run(ds, repo, "prep", env={"VAL": "1"}).stdout
    assert ran(tmp_path).count("prep") == 5
    ds.fsck_clean()


def test_a_secret_is_in_the_key_but_never_shown(ds, tmp_path):
    repo = make_repo(tmp_path / "repo", """workflows:
  - name: secret
    provider: bash
    cache: true
    env: [API_TOKEN]
    commands: [test -n "$API_TOKEN" && echo has a token]
""")
    for value, outcome in (("first-secret-value", "runs (input key"),
                           ("first-secret-value", "is cached from"),
                           ("second-secret-value", "runs (input key")):
        cp = assert_ok(ds("run", "secret", cwd=repo, env={"API_TOKEN": value}))
        assert outcome in cp.stdout and value not in cp.stdout
    for name in [r["RUN"] for r in runs(ds, repo)]:
        shown = assert_ok(ds("ps", name)).stdout + assert_ok(ds("logs", name)).stdout
        assert "secret-value" not in shown
    stored = b"".join(p.read_bytes() for p in ds.home.glob("catalog.db*"))
    assert b"secret-value" not in stored, "a secret was written to the catalog"


def test_a_dep_with_other_artifacts_runs_the_job(ds, repo, tmp_path):
    run(ds, repo, "prep")
    first_train = run(ds, repo, "train")
    assert "trained" in first_train.stdout
    # prep stores other bytes: train's deps differ.
    run(ds, repo, "--no-cache", "prep", env={"VAL": "2"})
    assert "trained" in run(ds, repo, "train").stdout
    # prep runs again storing what it stored first: train is served.
    out = run(ds, repo, "--no-cache", "prep").stdout
    assert "prepared 1" in out
    served = run(ds, repo, "train").stdout
    assert "is cached from" in served
    assert ran(tmp_path) == ["prep", "train", "prep", "train", "prep"]
    [train] = [r for r in runs(ds, repo) if r["WORKFLOW"] == "train"][-1:]
    assert train["RUN"] in served


def test_every_job_gets_a_key_and_the_flags_override_the_workflow(ds, tmp_path):
    marker = tmp_path / "ran"
    repo = make_repo(tmp_path / "repo", f"""workflows:
  - name: plain
    provider: bash
    commands: [echo plain >> {marker}, mkdir -p out, echo 1 > out/a]
    artifacts: [out]
""")
    # Without the cache a job runs, says nothing of it, and records its key.
    out = assert_ok(ds("run", "plain", cwd=repo)).stdout
    assert "input key" not in out and "cached" not in out
    [first] = runs(ds, repo)
    with sqlite3.connect(ds.home / "catalog.db") as db:
        [(key,)] = db.execute("SELECT input_key FROM jobs").fetchall()
    assert re.fullmatch("[0-9a-f]{64}", key)
    # So it serves a run with --cache; --no-cache runs whatever is there.
    out = assert_ok(ds("run", "--cache", "plain", cwd=repo)).stdout
    assert out == f"dstack: job 0 is cached from {first['RUN']}/0 (input key {key})\n"
    assert f"runs (input key {key})" in assert_ok(ds("run", "--no-cache", "plain",
                                                     cwd=repo)).stdout
    assert marker.read_text().split() == ["plain"] * 2


def test_failed_and_stopped_jobs_never_serve(ds, tmp_path):
    flag, ran_file = tmp_path / "ok", tmp_path / "ran"
    repo = make_repo(tmp_path / "repo", f"""workflows:
  - name: flaky
    provider: bash
    cache: true
    commands:
      - echo ran >> {ran_file}
      - mkdir -p out && echo made > out/a
      - test -e {flag}
    artifacts: [out]
  - name: slow
    provider: bash
    cache: true
    commands:
      - echo ran >> {ran_file}.slow
      - mkdir -p out && echo made > out/a
      - while [ ! -e {flag}.slow ]; do sleep 0.1; done
    artifacts: [out]
""")
    assert ds("run", "flaky", cwd=repo).returncode != 0
    assert ds("run", "flaky", cwd=repo).returncode != 0
    flag.touch()
    assert "runs (input key" in assert_ok(ds("run", "flaky", cwd=repo)).stdout
    assert "is cached from" in assert_ok(ds("run", "flaky", cwd=repo)).stdout
    assert ran_file.read_text().split() == ["ran"] * 3
    name = assert_ok(ds("run", "-d", "slow", cwd=repo)).stdout.strip()
    assert wait_for(lambda: (tmp_path / "ran.slow").exists(), timeout=60)
    assert_ok(ds("stop", name))
    (tmp_path / "ok.slow").touch()
    assert "runs (input key" in assert_ok(ds("run", "slow", cwd=repo)).stdout
    assert (tmp_path / "ran.slow").read_text().split() == ["ran"] * 2


def gated_repo(tmp_path, last):
    """A cached workflow "once" that notes each run in tmp_path/ran, waits
    for tmp_path/gate, then runs last."""
    return make_repo(tmp_path / "repo", f"""workflows:
  - name: once
    provider: bash
    cache: true
    commands:
      - echo ran >> {tmp_path / "ran"}
      - while [ ! -e {tmp_path / "gate"} ]; do sleep 0.05; done
      - {last}
""")


def test_two_identical_runs_at_once_execute_once(ds, tmp_path):
    gate, ran_file = tmp_path / "gate", tmp_path / "ran"
    repo = gated_repo(tmp_path, "echo made")
    first = ds.popen("run", "once", cwd=repo)
    second = ds.popen("run", "once", cwd=repo)
    assert wait_for(lambda: ran_file.exists(), timeout=60)
    # The later one says it waits: give both the time to ask.
    assert wait_for(lambda: sum("waits for" in assert_ok(ds("logs", r["RUN"])).stdout
                                for r in runs(ds, repo)) == 1, timeout=60)
    gate.touch()
    outs = [p.communicate(timeout=120)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    assert ran_file.read_text().split() == ["ran"]
    assert sorted(r["STATUS"] for r in runs(ds, repo)) == ["done", "done (cached)"]
    served = [o for o in outs if "is cached from" in o]
    assert len(served) == 1 and "which runs with the same inputs" in served[0]


def test_a_waiting_job_runs_when_the_one_it_waits_for_fails(ds, tmp_path):
    gate, ran_file = tmp_path / "gate", tmp_path / "ran"
    repo = gated_repo(tmp_path, f"test $(wc -l < {ran_file}) -gt 1")
    first = ds.popen("run", "once", cwd=repo)
    assert wait_for(lambda: ran_file.exists(), timeout=60)
    second = ds.popen("run", "once", cwd=repo)
    assert wait_for(lambda: any("waits for" in assert_ok(ds("logs", r["RUN"])).stdout
                                for r in runs(ds, repo)), timeout=60)
    gate.touch()
    first.communicate(timeout=120)
    out, _ = second.communicate(timeout=120)
    assert first.returncode != 0 and second.returncode == 0, out
    assert "runs (input key" in out
    assert ran_file.read_text().split() == ["ran", "ran"]


def test_gc_keeps_served_trees_while_a_run_or_tag_reaches_them(ds, repo, tmp_path):
    run(ds, repo, "prep")
    run(ds, repo, "prep")
    source, served = runs(ds, repo)[1]["RUN"], runs(ds, repo)[0]["RUN"]
    assert_ok(ds("tags", "add", "kept", served))
    assert_ok(ds("rm", source))
    assert_ok(ds("gc"))
    ds.fsck_clean()
    assert_ok(ds("artifacts", "download", ":kept", "-o", tmp_path / "out"))
    assert (tmp_path / "out" / "data" / "x").read_text() == "value 1\none\n"
    # The tagged run serves still; once nothing reaches the trees they go.
    assert "is cached from" in run(ds, repo, "prep").stdout
    assert_ok(ds("tags", "delete", "kept"))
    for r in runs(ds, repo):
        assert_ok(ds("rm", r["RUN"]))
    assert_ok(ds("gc"))
    assert ds.objects() == [], "served trees outlived every run"
    assert "runs (input key" in run(ds, repo, "prep").stdout
    ds.fsck_clean()


def test_inputs_narrow_the_key_to_the_paths_named(ds, tmp_path):
    ran_file = tmp_path / "ran"
    repo = make_repo(tmp_path / "repo", f"""workflows:
  - name: narrow
    provider: bash
    cache: true
    inputs: [src/, ./conf.txt]
    commands: [echo ran >> {ran_file}]
""", files={"src/a.py": "a\n", "conf.txt": "c\n", "README": "r\n"})
    assert_ok(ds("run", "narrow", cwd=repo))
    (repo / "README").write_text("changed\n")
    (repo / "other.txt").write_text("new\n")
    assert "is cached from" in assert_ok(ds("run", "narrow", cwd=repo)).stdout
    (repo / "src" / "a.py").write_text("b\n")
    assert "runs (input key" in assert_ok(ds("run", "narrow", cwd=repo)).stdout
    (repo / "src" / "new.py").write_text("n\n")
    assert "runs (input key" in assert_ok(ds("run", "narrow", cwd=repo)).stdout
    (repo / "conf.txt").write_text("d\n")
    assert "runs (input key" in assert_ok(ds("run", "narrow", cwd=repo)).stdout
    assert len(ran_file.read_text().split()) == 4


@pytest.mark.parametrize("inputs, message", [
    ("../x", "inputs[1]: '../x' leaves the repository"),
    ("/etc", "inputs[1]: '/etc' is not relative to the repository root"),
    (".", "inputs[1]: \".\" is the whole repository; name a part of it"),
])
def test_bad_inputs_name_the_place(ds, tmp_path, inputs, message):
    repo = make_repo(tmp_path / "repo", f"""workflows:
  - name: bad
    provider: bash
    inputs: [ok, "{inputs}"]
    commands: [echo hi]
""")
    assert_error(ds("run", "bad", cwd=repo), f".dstack/workflows.yaml:4:18: {message}")
    repo2 = make_repo(tmp_path / "repo2", """workflows:
  - name: bad
    provider: bash
    inputs: src
    commands: [echo hi]
""")
    assert_error(ds("run", "bad", cwd=repo2),
                 ".dstack/workflows.yaml:4:13: inputs: expected a list of paths")


def test_masters_and_workers_are_not_cached(ds, tmp_path):
    from test_jobs import JSON_PROVIDER, jobs_workflow, workflows_yaml
    jobs = [{"commands": ["echo master"]}, {"commands": ["echo worker"], "master": 0},
            {"commands": ["echo alone"]}]
    workflow = dict(jobs_workflow("dist", jobs), cache=True)
    repo = make_repo(tmp_path / "repo", workflows_yaml(workflow), JSON_PROVIDER)
    assert_ok(ds("run", "dist", cwd=repo))
    out = assert_ok(ds("run", "dist", cwd=repo)).stdout
    assert "job 0 is not cached: it runs together with other jobs (master and workers)" in out
    assert "job 1 is not cached" in out and "job 2 is cached from" in out
    assert out.count("master") >= 1 and "worker" in out


def test_the_tree_shows_the_key_and_the_source(ds, repo, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert_ok(ds("mount", mnt, cwd=repo, env=dict(mount_env(tmp_path), VAL="1"), timeout=60))
    try:
        first = run(ds, repo, "prep")
        key = KEY.search(first.stdout).group(1)
        source = runs(ds, repo)[0]["RUN"]
        # Through ctl, with the flag the CLI takes.
        code, [name] = ctl(mnt / "ctl", "--cache prep\n")
        assert code == 0
        assert wait_for(lambda: (mnt / "runs" / name / "status").read_text() == "done\n",
                        timeout=60)
        info = (mnt / "runs" / name / "jobs" / "0" / "info").read_text()
        assert f"cache_key: {key}\n" in info and f"cached_from: {source}/0\n" in info
        assert "cached: 1 of 1 jobs\n" in (mnt / "runs" / name / "info").read_text()
        assert (mnt / "runs" / name / "artifacts" / "data" / "x").read_text() == \
            "value 1\none\n"
        src_info = (mnt / "runs" / source / "jobs" / "0" / "info").read_text()
        assert f"cache_key: {key}\n" in src_info and "cached_from: \n" in src_info
    finally:
        unmount_all(ds, mnt)
    assert not is_mounted(mnt)


def test_a_waiting_job_stops_when_asked(ds, tmp_path):
    gate, ran_file = tmp_path / "gate", tmp_path / "ran"
    repo = gated_repo(tmp_path, "echo made")
    first = ds.popen("run", "once", cwd=repo)
    assert wait_for(lambda: ran_file.exists(), timeout=60)
    waiting = assert_ok(ds("run", "-d", "once", cwd=repo)).stdout.strip()
    assert wait_for(lambda: "waits for" in assert_ok(ds("logs", waiting)).stdout, timeout=60)
    assert_ok(ds("stop", waiting))
    assert [j["STATUS"] for j in jobs(ds, waiting)] == ["stopped"]
    gate.touch()
    first.communicate(timeout=120)
    assert first.returncode == 0
    assert ran_file.read_text().split() == ["ran"]
