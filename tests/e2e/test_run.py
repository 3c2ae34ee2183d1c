"""`dstack run`, `ps` and `logs` on real git repositories with the built-in
bash provider, as a user meets them: the job's output, its exit status,
its snapshot of the repository, its environment and its artifacts."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from conftest import (BIN, Dstack, assert_error, assert_ok, assert_usage_error, git, git_init,
                      kill_runner, make_repo, no_process, parse_table, wait_for)


@pytest.fixture
def repo(tmp_path):
    """A committed repository with a few workflows."""
    root = git_init(tmp_path / "repo")
    (root / ".dstack").mkdir()
    (root / ".dstack" / "workflows.yaml").write_text(textwrap.dedent("""\
        workflows:
          - name: hello
            help: |
              Says hello and leaves a file.
            provider: bash
            commands:
              - echo "hello from $RUN_NAME job $JOB_ID"
              - echo done > output/result.txt
            artifacts:
              - ./output

          - name: print-args
            provider: bash
            commands:
              - printf '<%s>\\n' ${{ run.args }}

          - name: fails
            provider: bash
            commands:
              - echo before
              - exit 3
              - echo never

          - name: lost-artifact
            provider: bash
            commands:
              - rmdir missing
            artifacts:
              - missing

          - name: env
            provider: bash
            env:
              - GREETING=hi there
              - FROM_SUBMITTER
            commands:
              - echo "G=$GREETING S=$FROM_SUBMITTER U=$PYTHONUNBUFFERED H=$JOB_HOSTNAME"

          - name: ports
            provider: bash
            ports: 2
            commands:
              - echo "$PORT_0 $PORT_1"

          - name: sleepy
            provider: bash
            commands:
              - echo started
              - sleep 1000$RUN_NAME_SUFFIX &
              - wait
            artifacts:
              - partial

          - name: snapshot
            provider: bash
            working_dir: src
            commands:
              - ls -a .. | sort | tr '\\n' ' '
              - echo
              - cat tracked.txt
              - echo scribble > tracked.txt
            artifacts:
              - out

          - name: elsewhere
            provider: bash
            working_dir: not/in/the/repo
            commands:
              - pwd
        """))
    (root / ".gitignore").write_text("ignored.txt\n")
    (root / "src").mkdir()
    (root / "src" / "tracked.txt").write_text("committed\n")
    (root / "gone.txt").write_text("deleted later\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def runs(ds, cwd, *flags):
    cp = assert_ok(ds("ps", *flags, cwd=cwd))
    return parse_table(cp.stdout)


def test_run_follows_output_and_stores_artifacts(ds, repo, tmp_path):
    cp = ds("run", "hello", cwd=repo)
    assert_ok(cp)
    [run] = runs(ds, repo)
    assert run["WORKFLOW"] == "hello" and run["STATUS"] == "done"
    assert f"hello from {run['RUN']} job {run['RUN']}/0\n" in cp.stdout
    assert run["ARTIFACTS"] == "output"
    logs = assert_ok(ds("logs", run["RUN"]))
    assert f"hello from {run['RUN']}" in logs.stdout
    out = tmp_path / "got"
    assert_ok(ds("artifacts", "download", run["RUN"], "-o", out))
    assert (out / "output" / "result.txt").read_text() == "done\n"
    # The user's checkout is untouched.
    assert not (repo / "output").exists()
    # The job's snapshot is gone once the run ends.
    assert list((ds.home / "work").iterdir()) == []


def test_run_args_reach_the_command_word_for_word(ds, repo):
    cp = assert_ok(ds("run", "print-args", "-l", "Hello, world!", "it's", cwd=repo))
    assert cp.stdout == "<-l>\n<Hello, world!>\n<it's>\n"


def test_failing_job_fails_the_run(ds, repo):
    cp = ds("run", "fails", cwd=repo)
    assert_error(cp, "failed")
    assert "before\n" in cp.stdout and "never" not in cp.stdout
    [run] = runs(ds, repo)
    assert run["STATUS"] == "failed"


def test_missing_artifact_fails_the_job_naming_it(ds, repo):
    cp = ds("run", "lost-artifact", cwd=repo)
    assert_error(cp, "failed")
    [run] = runs(ds, repo)
    logs = assert_ok(ds("logs", run["RUN"])).stdout
    assert "artifact path 'missing' does not exist" in logs


def test_environment_of_a_job(ds, repo):
    cp = assert_ok(ds("run", "env", cwd=repo, env={"FROM_SUBMITTER": "sub"}))
    assert "G=hi there S=sub U=1 H=127.0.0.1\n" in cp.stdout


def test_a_working_dir_the_repository_lacks_is_made(ds, repo):
    cp = assert_ok(ds("run", "elsewhere", cwd=repo))
    assert cp.stdout.endswith("/not/in/the/repo\n"), cp.stdout


def test_snapshot_is_the_working_tree_as_git_sees_it(ds, repo, tmp_path):
    (repo / "src" / "tracked.txt").write_text("edited, not committed\n")
    (repo / "untracked.txt").write_text("new\n")
    (repo / "ignored.txt").write_text("ignored\n")
    (repo / "gone.txt").unlink()
    cp = assert_ok(ds("run", "snapshot", cwd=repo / "src"))
    listing, content = cp.stdout.splitlines()[:2]
    names = listing.split()
    assert "untracked.txt" in names and ".dstack" in names and "src" in names
    assert "ignored.txt" not in names and "gone.txt" not in names and ".git" not in names
    assert content == "edited, not committed"
    # The job wrote to its copy, not to the user's file.
    assert (repo / "src" / "tracked.txt").read_text() == "edited, not committed\n"


def test_the_snapshot_is_taken_at_submission(ds, repo):
    # The run exists once `run -d` returns: edits after that are not its,
    # though its job starts a second later, after its provider.
    (repo / ".dstack" / "providers.yaml").write_text(textwrap.dedent("""\
        providers:
          - name: slowly
            commands:
              - sleep 1
              - >-
                echo '[{"commands": ["cat src/tracked.txt"]}]' > "$DSTACK_JOBS"
        """))
    with open(repo / ".dstack" / "workflows.yaml", "a") as f:
        f.write("\n  - name: later\n    provider: slowly\n")
    name = assert_ok(ds("run", "-d", "later", cwd=repo)).stdout.strip()
    (repo / "src" / "tracked.txt").write_text("edited after the run was submitted\n")
    cp = assert_ok(ds("logs", "-f", name, cwd=repo, timeout=60))
    assert "committed\n" in cp.stdout and "edited" not in cp.stdout, cp.stdout


def test_rerun_runs_the_recorded_snapshot_wherever_the_checkout_went(ds, repo, tmp_path):
    cp = assert_ok(ds("run", "-t", "first", "print-args", "a", "b c", "it's", cwd=repo))
    assert cp.stdout == "<a>\n<b c>\n<it's>\n"
    [original] = runs(ds, repo)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                          stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    # The checkout moves on: the workflow changes and is committed.
    workflows = repo / ".dstack" / "workflows.yaml"
    workflows.write_text(workflows.read_text().replace("printf '<%s>\\n'", "printf '[%s]\\n'"))
    git(repo, "commit", "-qam", "brackets")
    assert assert_ok(ds("run", "print-args", "x", cwd=repo)).stdout == "[x]\n"

    cp = assert_ok(ds("run", "--rerun", original["RUN"], cwd=repo))
    assert cp.stdout == "<a>\n<b c>\n<it's>\n", cp.stdout
    again = runs(ds, repo)[0]
    details = assert_ok(ds("ps", again["RUN"], cwd=repo)).stdout
    assert f"commit: {head}\n" in details and "args: a 'b c' 'it'\\''s'\n" in details, details
    # From anywhere, by tag too.
    cp = assert_ok(ds("run", "--rerun", ":first", cwd=tmp_path))
    assert cp.stdout == "<a>\n<b c>\n<it's>\n", cp.stdout

    assert_error(ds("run", "--rerun", "no-such-run-9", cwd=repo), "no run 'no-such-run-9'")
    assert_usage_error(ds("run", "--rerun", original["RUN"], "print-args", cwd=repo),
                       "unexpected 'print-args'")
    data = tmp_path / "data"
    data.mkdir()
    assert_ok(ds("tags", "add", "just-data", "-a", data, cwd=repo))
    assert_error(ds("run", "--rerun", ":just-data", cwd=repo), "has no snapshot to run again")


def ps_details(ds, cwd):
    """`ps` of the newest run: its "key: value" lines after the tables."""
    name = runs(ds, cwd)[0]["RUN"]
    details = assert_ok(ds("ps", name, cwd=cwd)).stdout.split("\n\n")[2]
    return [line.split(": ", 1) if ": " in line else [line.rstrip(":"), ""]
            for line in details.splitlines()]


def test_snapshots_of_unusual_repositories(ds, tmp_path):
    listing = ("workflows:\n  - name: ls\n    provider: bash\n    commands:\n"
               "      - find . -type f | sort\n")
    # No commit yet, .dstack untracked: the files are all there is.
    fresh = git_init(tmp_path / "fresh")
    (fresh / ".dstack").mkdir()
    (fresh / ".dstack" / "workflows.yaml").write_text(listing)
    (fresh / "f.txt").write_text("f\n")
    cp = assert_ok(ds("run", "ls", cwd=fresh))
    assert cp.stdout == "./.dstack/workflows.yaml\n./f.txt\n", cp.stdout
    details = dict(ps_details(ds, fresh))
    assert details["commit"] == " (dirty)" and details["branch"] == "main", details

    # A submodule is recorded by its commit, not followed.
    inner = git_init(tmp_path / "inner")
    (inner / "s.txt").write_text("s\n")
    git(inner, "add", "-A")
    git(inner, "commit", "-qm", "inner")
    inner_head = subprocess.run(["git", "-C", str(inner), "rev-parse", "HEAD"],
                                stdout=subprocess.PIPE, text=True).stdout.strip()
    outer = git_init(tmp_path / "outer")
    (outer / ".dstack").mkdir()
    (outer / ".dstack" / "workflows.yaml").write_text(listing)
    git(outer, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(inner), "lib")
    git(outer, "add", "-A")
    git(outer, "commit", "-qm", "outer")
    cp = assert_ok(ds("run", "ls", cwd=outer))
    assert cp.stdout == "./.dstack/workflows.yaml\n./.gitmodules\n", cp.stdout
    assert ["submodule", f"lib {inner_head}"] in ps_details(ds, outer)

    # A detached HEAD has no branch; a linked worktree is a checkout of its own.
    git(outer, "checkout", "-q", "--detach")
    assert_ok(ds("run", "ls", cwd=outer))
    assert dict(ps_details(ds, outer))["branch"] == ""
    git(outer, "worktree", "add", "-q", str(tmp_path / "wt"), "-b", "side")
    (tmp_path / "wt" / "only-here.txt").write_text("w\n")
    cp = assert_ok(ds("run", "ls", cwd=tmp_path / "wt"))
    assert "./only-here.txt\n" in cp.stdout, cp.stdout
    assert dict(ps_details(ds, tmp_path / "wt"))["branch"] == "side"


HOSTILE = """\
workflows:
  - name: up
    provider: bash
    commands:
      - "true"
    artifacts:
      - ../up
  - name: escape
    provider: bash
    commands:
      - rmdir out && ln -s /etc out
    artifacts:
      - out
  - name: inside
    provider: bash
    commands:
      - mkdir real && echo kept > real/f && rmdir out && ln -s real out
    artifacts:
      - out
  - name: names
    provider: bash
    commands:
      - printf x > "out/$(printf 'new\\nline')"
      - printf y > "out/$(printf 'bad\\377\\376utf')"
      - printf z > "out/$(printf '%0255d' 0)"
      - d=out; for i in $(seq 300); do d=$d/d; done; mkdir -p $d && echo deep > $d/f
      - ln -s /etc/passwd out/passwd-link
    artifacts:
      - out
"""


def test_artifacts_never_lead_the_store_out_of_the_job(ds, tmp_path):
    repo = make_repo(tmp_path / "repo", HOSTILE)
    # A path going up is refused before anything runs.
    assert_error(ds("run", "up", cwd=repo),
                 ".dstack/workflows.yaml:7:9: workflow 'up': artifact '../up' leads out of"
                 " working_dir")
    assert runs(ds, repo, "-a") == []
    # A symlink left where an artifact folder was is not followed out.
    cp = ds("run", "escape", cwd=repo)
    assert_error(cp, "failed")
    assert "artifact path 'out' leads out of the job's folder (to /etc): not stored" in cp.stdout
    [run] = runs(ds, repo)
    assert run["ARTIFACTS"] == "-"
    # One that stays inside is stored as the folder it leads to.
    assert_ok(ds("run", "inside", cwd=repo))
    out = tmp_path / "inside"
    assert_ok(ds("artifacts", "download", runs(ds, repo)[0]["RUN"], "-o", out, cwd=repo))
    assert (out / "out" / "f").read_text() == "kept\n"


# Each attempt prints WROTE if it got through, else "refused" (the names
# are quoted in the job's script: no apostrophes).
ATTEMPTS = {
    "create a file in the store": 'touch "$STORE/x"',
    "delete the packs": 'rm -rf "$STORE/packs"',
    "truncate the catalog": 'truncate -s 0 "$STORE/catalog.db"',
    "overwrite a pack": 'dd if=/dev/zero of="$(find "$STORE/packs" -type f | head -n 1)"'
                        ' bs=1 count=16 conv=notrunc',
    "remount the store writable": 'mount -o remount,rw "$STORE"',
    "unmount the read-only store": 'umount -l "$STORE" && touch "$STORE/x"',
    "reach it through the root of pid 1": 'touch "/proc/1/root$STORE/x"',
    "reach it through the root of the runner": 'touch "/proc/$PPID/root$STORE/x"',
    "enter the mount namespace of pid 1": 'nsenter -t 1 -m touch "$STORE/x"',
    "write the folder of other jobs": 'touch "$STORE/work/x"',
}


@pytest.fixture(params=["root", "nobody"])
def job_user(request, tmp_path):
    """(Dstack, folder, options that run dstack as the user): as root, or
    as nobody in a folder of its own outside pytest's 0700 ones."""
    if request.param == "root":
        yield Dstack(tmp_path / "home"), tmp_path, {}
        return
    base = Path(tempfile.mkdtemp(prefix="dstack-nobody-"))
    os.chmod(base, 0o755)
    try:
        yield Dstack(base / "home"), base, {
            "wrap": ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
            "env": {"HOME": str(base)}}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_job_cannot_write_the_store(job_user):
    # Issue 7: nothing a job does, as root or as another user, changes
    # what is stored; its own folder stays its to write.
    ds, base, as_user = job_user
    lines = [f"if {{ {cmd}; }} 2>/dev/null; then echo 'WROTE: {what}';"
             f" else echo 'refused: {what}'; fi" for what, cmd in ATTEMPTS.items()]
    repo = make_repo(base / "repo", textwrap.dedent("""\
        workflows:
          - name: keep
            provider: bash
            commands:
              - mkdir -p out && echo precious > out/f
            artifacts:
              - out
          - name: attack
            provider: bash
            env:
              - STORE=%s
            commands:
        %s
              - mkdir -p out && echo mine > out/f
            artifacts:
              - out
        """) % (ds.home, "\n".join(f"      - {json.dumps(line)}" for line in lines)))
    if as_user:
        subprocess.run(["chown", "-R", "65534:65534", str(base)], check=True)

    def runs_as_user():
        return parse_table(assert_ok(ds("ps", cwd=repo, **as_user)).stdout)

    assert_ok(ds("run", "keep", cwd=repo, **as_user))
    [kept] = runs_as_user()
    packs = {p: p.read_bytes() for p in ds.pack_files()}
    catalog = (ds.home / "catalog.db").stat()
    cp = assert_ok(ds("run", "attack", cwd=repo, **as_user))
    said = cp.stdout.splitlines()
    assert [l for l in said if l.startswith("refused: ")] == \
        [f"refused: {what}" for what in ATTEMPTS], cp.stdout
    assert not [l for l in said if "WROTE" in l], cp.stdout
    # Nothing stored changed: every pack as it was, the store where it was.
    assert {p: p.read_bytes() for p in packs} == packs
    assert (ds.home / "catalog.db").stat().st_ino == catalog.st_ino
    assert not (ds.home / "x").exists() and not (ds.home / "work" / "x").exists()
    assert_ok(ds("fsck", **as_user))
    for name, want in ((kept["RUN"], "precious\n"), (runs_as_user()[0]["RUN"], "mine\n")):
        out = base / name
        assert_ok(ds("artifacts", "download", name, "-o", out, **as_user))
        assert (out / "out" / "f").read_text() == want


def test_odd_names_deep_trees_and_symlinks_round_trip(ds, tmp_path):
    repo = make_repo(tmp_path / "repo", HOSTILE)
    assert_ok(ds("run", "names", cwd=repo))
    out = tmp_path / "dl"
    assert_ok(ds("artifacts", "download", runs(ds, repo)[0]["RUN"], "-o", out, cwd=repo))
    got = out / "out"
    assert (got / "new\nline").read_bytes() == b"x"
    assert (got / os.fsdecode(b"bad\xff\xfeutf")).read_bytes() == b"y"
    assert (got / ("0" * 255)).read_bytes() == b"z"
    assert (got.joinpath(*["d"] * 300) / "f").read_text() == "deep\n"
    # A symlink is stored as one, pointing where it pointed, never followed.
    assert os.readlink(got / "passwd-link") == "/etc/passwd"
    assert_ok(ds("fsck", cwd=repo))


def packs_size(ds):
    return sum(p.stat().st_size for p in (ds.home / "packs").rglob("*") if p.is_file())


def test_the_snapshot_is_stored_once_and_freed_by_gc(ds, repo):
    big = os.urandom(3 * 1024 * 1024)
    (repo / "src" / "data.bin").write_bytes(big)
    assert_ok(ds("run", "elsewhere", cwd=repo))
    first = packs_size(ds)
    assert first >= len(big), "the snapshot was not stored"
    # An unchanged repository adds nothing.
    assert_ok(ds("run", "elsewhere", cwd=repo))
    assert packs_size(ds) == first
    # While a run names it, gc keeps it; once none does, gc frees it.
    assert_ok(ds("gc", cwd=repo))
    assert packs_size(ds) == first
    assert_ok(ds("rm", "-a", cwd=repo))
    assert_ok(ds("gc", cwd=repo))
    assert packs_size(ds) < len(big)
    assert_ok(ds("fsck", cwd=repo))


def test_ps_lists_live_or_newest_and_all_with_a(ds, repo):
    assert_ok(ds("run", "hello", cwd=repo))
    ds("run", "fails", cwd=repo)
    latest = runs(ds, repo)
    assert [r["WORKFLOW"] for r in latest] == ["fails"]
    every = runs(ds, repo, "-a")
    assert [r["WORKFLOW"] for r in every] == ["fails", "hello"]
    assert every[0]["RUN"] != every[1]["RUN"]


def test_unknown_workflow_and_outside_a_repository(ds, repo, tmp_path):
    assert_error(ds("run", "nope", cwd=repo), "no workflow 'nope'")
    outside = tmp_path / "plain"
    outside.mkdir()
    assert_error(ds("run", "hello", cwd=outside), "not in a git repository")


def test_bad_workflow_file_names_file_line_and_column(ds, repo):
    (repo / ".dstack" / "workflows.yaml").write_text(textwrap.dedent("""\
        workflows:
          - name: bad
            provider: bash
            commands: [true]
            deps:
              - run: other
        """))
    cp = ds("run", "bad", cwd=repo)
    assert_error(cp, ".dstack/workflows.yaml:6:", 'expected "workflow" or "tag"')
    # Hostile nesting is refused as it is read (libyaml would take minutes).
    (repo / ".dstack" / "workflows.yaml").write_text("workflows: " + "[" * 100000 +
                                                     "]" * 100000 + "\n")
    cp = ds("run", "bad", cwd=repo, timeout=10)
    assert_error(cp, ".dstack/workflows.yaml:1:", "nested more than 72 deep")


def test_unknown_provider_cannot_start(ds, repo):
    (repo / ".dstack" / "workflows.yaml").write_text(textwrap.dedent("""\
        workflows:
          - name: odd
            provider: no-such-provider
        """))
    assert_error(ds("run", "odd", cwd=repo), "unknown provider 'no-such-provider'")
    assert runs(ds, repo) == []


def test_logs_of_unknown_run(ds):
    assert_error(ds("logs", "no-such-run-1"), "no run 'no-such-run-1'")


PIPELINE = textwrap.dedent("""\
    workflows:
      - name: prepare
        provider: bash
        commands:
          - mkdir -p data
          - echo "rows $RUN_NAME" > data/rows.txt
        artifacts:
          - data

      - name: train
        provider: bash
        deps:
          - workflow: prepare
        commands:
          - cat data/rows.txt
          - if { echo tamper >> data/rows.txt; } 2>/dev/null; then echo WRITABLE; else echo READ-ONLY; fi
          - mkdir -p model && cp data/rows.txt model/seen.txt
        artifacts:
          - model

      - name: evaluate
        provider: bash
        deps:
          - tag: best
        commands:
          - cat model/seen.txt
    """)


@pytest.fixture
def pipeline(repo):
    (repo / ".dstack" / "workflows.yaml").write_text(PIPELINE)
    git(repo, "commit", "-q", "-am", "pipeline")
    return repo


def test_deps_by_workflow_arrive_read_only(ds, pipeline, tmp_path):
    cp = ds("run", "train", cwd=pipeline)
    assert_error(cp, ".dstack/workflows.yaml:13:9:", "deps[0]",
                 "no done run of workflow 'prepare'")
    assert runs(ds, pipeline) == []

    assert_ok(ds("run", "prepare", cwd=pipeline))
    [prepared] = runs(ds, pipeline)
    cp = assert_ok(ds("run", "train", cwd=pipeline))
    assert cp.stdout.splitlines()[:2] == [f"rows {prepared['RUN']}", "READ-ONLY"]
    [trained] = runs(ds, pipeline)
    out = tmp_path / "model"
    assert_ok(ds("artifacts", "download", trained["RUN"], "-o", out))
    assert (out / "model" / "seen.txt").read_text() == f"rows {prepared['RUN']}\n"
    # The upstream run's artifacts are unchanged.
    again = tmp_path / "data"
    assert_ok(ds("artifacts", "download", prepared["RUN"], "-o", again))
    assert (again / "data" / "rows.txt").read_text() == f"rows {prepared['RUN']}\n"


def test_tag_option_moves_the_tag_and_deps_by_tag_follow_it(ds, pipeline):
    assert_error(ds("run", "evaluate", cwd=pipeline), "deps[0]", "no tag 'best'")
    assert_ok(ds("run", "prepare", cwd=pipeline))
    assert_ok(ds("run", "-t", "best", "train", cwd=pipeline))
    first = assert_ok(ds("run", "evaluate", cwd=pipeline)).stdout
    assert_ok(ds("run", "prepare", cwd=pipeline))
    assert_ok(ds("run", "-t", "best", "train", cwd=pipeline))
    tags = parse_table(assert_ok(ds("tags", "list")).stdout)
    assert [t["TAG"] for t in tags] == ["best"]
    every = runs(ds, pipeline, "-a")
    newest_train = next(r for r in every if r["WORKFLOW"] == "train")
    assert tags[0]["RUN"] == newest_train["RUN"]
    second = assert_ok(ds("run", "evaluate", cwd=pipeline)).stdout
    assert first != second
    assert_usage_error(ds("run", "-t", "bad/tag", "prepare", cwd=pipeline))


def test_ports_count_hands_out_free_ports(ds, repo):
    cp = assert_ok(ds("run", "ports", cwd=repo))
    first, second = (int(p) for p in cp.stdout.split())
    assert first > 0 and second > 0 and first != second


def test_ctrl_c_stops_the_run_and_its_processes(ds, repo):
    marker = "4242"  # makes this test's sleep easy to find
    env = dict(os.environ, DSTACK_HOME=str(ds.home), RUN_NAME_SUFFIX=marker)
    proc = subprocess.Popen([str(BIN), "run", "sleepy"], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "started\n"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "stopped" in err
    [run] = runs(ds, repo)
    assert run["STATUS"] == "stopped"
    left = subprocess.run(["pgrep", "-f", "sleep 1000" + marker], stdout=subprocess.PIPE, text=True)
    assert left.stdout == "", "the job's processes outlived the stop"


def test_ps_run_shows_jobs_and_commit(ds, repo):
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                          stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    ds("run", "fails", cwd=repo)
    (repo / "untracked.txt").write_text("makes it dirty\n")
    assert_ok(ds("run", "print-args", "a b", cwd=repo))
    every = runs(ds, repo, "-a")
    out = assert_ok(ds("ps", every[1]["RUN"])).stdout
    run_table, job_table, details = out.split("\n\n")
    assert parse_table(run_table)[0]["STATUS"] == "failed"
    assert parse_table(job_table) == [{"JOB": "0", "STATUS": "failed", "EXIT": "3",
                                       "REASON": "job 0 exited with status 3"}]
    assert f"commit: {head}\n" in details and "provider: bash\n" in details
    assert "reason: job 0 exited with status 3\n" in details
    out = assert_ok(ds("ps", every[0]["RUN"])).stdout
    assert f"commit: {head} (dirty)\n" in out and "args: 'a b'\n" in out
    assert_error(ds("ps", "no-such-run-9"), "no run 'no-such-run-9'")


def test_python_provider_runs_a_script_with_args_and_requirements(ds, repo):
    (repo / "hello.py").write_text(textwrap.dedent("""\
        import os, sys
        print("argv", sys.argv[1:])
        print("venv", bool(os.environ.get("VIRTUAL_ENV")))
        import dstack
        print("module", dstack.__name__)
        os.makedirs("out", exist_ok=True)
        open("out/args.txt", "w").write(" ".join(sys.argv[1:]))
        """))
    (repo / "requirements.txt").write_text("")
    (repo / ".dstack" / "workflows" ).mkdir()
    (repo / ".dstack" / "workflows" / "py.yaml").write_text(textwrap.dedent("""\
        workflows:
          - name: hello-py
            provider: python
            file: hello.py
            requirements: requirements.txt
            python: 3.99
            args: ["--name", "${{ run.args }}", --epochs, 10, --fast, true]
            artifacts: [out]
          - name: no-file
            provider: python
        """))
    cp = assert_ok(ds("run", "hello-py", "Ada Lovelace", cwd=repo))
    assert "dstack: python3.99 not found, using python3" in cp.stdout
    assert "argv ['--name', 'Ada Lovelace', '--epochs', '10', '--fast', 'true']" in cp.stdout
    assert "venv True" in cp.stdout and "module dstack" in cp.stdout
    assert_error(ds("run", "no-file", cwd=repo), "provider python needs 'file'")


SLOW = textwrap.dedent("""\
    workflows:
      - name: slow
        provider: bash
        commands:
          - echo begin
          - mkdir -p out && echo partial > out/file
          - sleep 60$SLOW_MARK
          - echo end
        artifacts: [out]
    """)


@pytest.fixture
def slow_repo(repo):
    (repo / ".dstack" / "workflows.yaml").write_text(SLOW)
    git(repo, "commit", "-q", "-am", "slow")
    return repo




@pytest.mark.parametrize("abort", [False, True])
def test_detached_run_follow_and_stop(ds, slow_repo, tmp_path, abort):
    mark = "31" if abort else "32"
    env = {"SLOW_MARK": mark}
    cp = assert_ok(ds("run", "-d", "slow", cwd=slow_repo, env=env))
    name = cp.stdout.strip()
    assert cp.stderr == ""
    [run] = runs(ds, slow_repo)
    assert run["RUN"] == name and run["STATUS"] in ("submitted", "downloading", "running")
    assert wait_for(lambda: "begin" in ds("logs", name).stdout)
    follower = ds.popen("logs", "-f", name)
    assert_ok(ds("stop", *(["-x"] if abort else []), name))
    out, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0 and out.startswith("begin\n")
    [run] = runs(ds, slow_repo)
    assert run["STATUS"] == ("aborted" if abort else "stopped")
    assert no_process("sleep 60" + mark)
    # stop keeps what the job stored; abort stores nothing.
    assert run["ARTIFACTS"] == ("-" if abort else "out")
    assert_error(ds("stop", name), "has ended")


def test_a_run_whose_runner_died_is_marked_failed(ds, slow_repo):
    cp = assert_ok(ds("run", "-d", "slow", cwd=slow_repo, env={"SLOW_MARK": "33"}))
    name = cp.stdout.strip()
    assert wait_for(lambda: not no_process("sleep 6033"))
    kill_runner("run -d slow")
    [run] = runs(ds, slow_repo)
    assert run["STATUS"] == "failed"
    assert "is gone; marked failed" in ds("logs", name).stdout
    # The job the dead runner left is ended with its run.
    assert wait_for(lambda: no_process("sleep 6033"), timeout=5)


def test_old_workflow_files_fail_only_the_workflow_that_cannot_run(ds, repo):
    (repo / ".dstack" / "workflows.yaml").write_text(textwrap.dedent("""\
        workflows:
          - name: abs
            provider: bash
            commands: [true]
            artifacts:
              - /output
          - name: notebook
            provider: lab
          - name: remote
            provider: bash
            commands: [true]
            deps:
              - workflow: someone/elsewhere/prepare
          - name: fine
            provider: bash
            resources:
              interruptible: true
            commands: [echo fine]
        """))
    assert_error(ds("run", "abs", cwd=repo), ".dstack/workflows.yaml:6:", "'/output'",
                 "container path")
    assert_error(ds("run", "notebook", cwd=repo), "unknown provider 'lab'")
    assert_error(ds("run", "remote", cwd=repo), "other repositories")
    # What the host backend cannot honour is said in the run's output.
    assert assert_ok(ds("run", "fine", cwd=repo)).stdout == (
        "dstack: resources.interruptible has no effect on the host backend\nfine\n")


def test_init_writes_a_runnable_example_once(ds, tmp_path):
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q")
    (root / "sub").mkdir()
    cp = assert_ok(ds("init", cwd=root / "sub"))
    assert cp.stdout.strip().endswith(".dstack/workflows.yaml")
    assert_ok(ds("run", "hello", "there", cwd=root))
    assert_error(ds("init", cwd=root), "workflows.yaml", "exists")


def test_rm_a_removes_what_it_may_and_names_what_it_skips(ds, repo):
    assert_ok(ds("run", "hello", cwd=repo))
    assert_ok(ds("run", "-t", "keep", "hello", cwd=repo))
    kept = runs(ds, repo, "-a")[0]["RUN"]
    cp = ds("rm", "-a", cwd=repo)
    assert_error(cp, kept, "tagged 'keep'")
    assert [r["RUN"] for r in runs(ds, repo, "-a")] == [kept]
