"""Reads that fail with EIO, as a dying disk makes them fail.

tests/fault/fault.c, preloaded with DSTACK_FAULT_EIO=TEXT, fails every read
of a file whose path holds TEXT.  Wherever it strikes (the packs, the
catalog, the files being stored, the snapshot a job starts from) dstack
says so in one line naming what it could not read, exits non-zero or
fails the run with that reason, shows EIO through the tree, and leaves
what it stored before intact: the same commands without the fault work
and fsck is clean.
"""
import errno
import os
import subprocess

import pytest

from conftest import (MiB, assert_error, assert_ok, assert_same_tree, describe,
                      fault_env, make_repo, parse_table, wait_for, write_random)
from test_fs import is_mounted
from test_jobs import JSON_PROVIDER, jobs_workflow, workflows_yaml


@pytest.fixture
def stored(ds, tmp_path):
    """A run holding a folder, tagged t."""
    data = tmp_path / "data"
    write_random(data / "big.bin", 2 * MiB, seed=8)
    (data / "small.txt").write_text("small\n")
    ds.add("t", data)
    return data


def test_eio_from_the_packs_fails_a_download(ds, tmp_path, stored):
    cp = ds("artifacts", "download", ":t", "-o", tmp_path / "bad", env=fault_env(eio="/packs/"))
    line = assert_error(cp, "Input/output error")
    assert "/packs/" in line, line
    ds.fsck_clean()
    assert_same_tree(stored, ds.download(":t", tmp_path / "good") / "data")


def test_eio_from_the_catalog_is_one_line_and_changes_nothing(ds, tmp_path, stored):
    for args in (("tags", "list"), ("artifacts", "list", ":t"), ("gc",),
                 ("tags", "add", "t2", "-a", stored)):
        assert_error(ds(*args, env=fault_env(eio="catalog.db")), "catalog")
    assert list(ds.tags()) == ["t"]
    ds.fsck_clean()
    assert_same_tree(stored, ds.download(":t", tmp_path / "good") / "data")


def test_eio_from_a_file_being_stored_names_it_and_stores_nothing(ds, tmp_path, stored):
    more = tmp_path / "more"
    write_random(more / "fine.bin", MiB, seed=9)
    write_random(more / "failing.bin", MiB, seed=10)
    before = sorted(p.name for p in ds.pack_files())
    cp = ds("tags", "add", "more", "-a", more, env=fault_env(eio="failing.bin"))
    assert_error(cp, "failing.bin", "Input/output error")
    assert list(ds.tags()) == ["t"]
    assert ds.tmp_entries() == []
    ds.fsck_clean()
    # What reached the packs before the failure is garbage, not a run.
    assert_ok(ds("gc"))
    assert sorted(p.name for p in ds.pack_files()) == before
    ds.add("more", more)
    assert_same_tree(more, ds.download(":more", tmp_path / "got") / "more")


WORKFLOWS = """\
    workflows:
      - name: hello
        provider: bash
        commands:
          - cat input.txt
          - mkdir -p out && cp input.txt out/
        artifacts:
          - out
    """


def test_eio_from_a_snapshot_fails_the_run_with_the_reason(ds, tmp_path):
    repo = make_repo(tmp_path / "repo", WORKFLOWS, files={"input.txt": "input\n"})
    cp = ds("run", "hello", cwd=repo, env=fault_env(eio="/packs/"))
    assert cp.returncode == 1, describe(cp)
    [run] = parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)
    assert run["STATUS"] == "failed", run
    details = assert_ok(ds("ps", run["RUN"], cwd=repo)).stdout
    assert "reason: " in details and "Input/output error" in details, details
    # The job ends too, with the same reason, not left "downloading".
    [job] = parse_table(details.split("\n\n")[1])
    assert job["STATUS"] == "failed" and "Input/output error" in job["REASON"], details
    assert os.listdir(ds.home / "work") == []
    ds.fsck_clean()
    assert_ok(ds("run", "hello", cwd=repo))


def test_a_job_failing_to_store_leaves_the_others_to_end(ds, tmp_path):
    """Job 0 cannot read its artifact and fails at once while job 1 still
    runs: the runner waits for job 1, which ends done with its artifact,
    rather than leaving it behind with the run."""
    jobs = [{"commands": ["echo x > out/failing.bin"], "artifacts": ["out"]},
            {"commands": ["sleep 2", "echo late > late/late.txt"],
             "artifacts": ["late"]}]
    repo = make_repo(tmp_path / "repo", workflows_yaml(jobs_workflow("pair", jobs)),
                     JSON_PROVIDER)
    cp = ds("run", "pair", cwd=repo, env=fault_env(eio="failing.bin"))
    assert cp.returncode == 1, describe(cp)
    [run] = parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)
    assert run["STATUS"] == "failed", run
    details = assert_ok(ds("ps", run["RUN"], cwd=repo)).stdout
    job0, job1 = parse_table(details.split("\n\n")[1])
    assert job0["STATUS"] == "failed" and "Input/output error" in job0["REASON"], details
    assert job1["STATUS"] == "done", details
    out = ds.download(run["RUN"], tmp_path / "got")
    assert (out / "late" / "late.txt").read_text() == "late\n"
    assert os.listdir(ds.home / "work") == []
    ds.fsck_clean()


def test_eio_from_the_packs_is_eio_through_the_tree(ds, tmp_path, stored):
    repo = make_repo(tmp_path / "repo", WORKFLOWS, files={"input.txt": "input\n"})
    assert_ok(ds("run", "hello", cwd=repo))
    [run] = parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    daemon = ds.popen("mount", "-f", mnt, cwd=repo, env=fault_env(eio="/packs/"))
    try:
        assert wait_for(lambda: is_mounted(mnt), timeout=30), daemon.poll()
        artifact = mnt / "runs" / run["RUN"] / "artifacts" / "out" / "input.txt"
        with pytest.raises(OSError) as e:
            artifact.read_bytes()
        assert e.value.errno == errno.EIO, e.value
        # What the catalog answers still reads, and the daemon still serves.
        assert (mnt / "runs" / run["RUN"] / "status").read_text() == "done\n"
        with pytest.raises(OSError) as e:
            artifact.read_bytes()
        assert e.value.errno == errno.EIO, e.value
        assert_ok(ds("umount", mnt))
        daemon.wait(timeout=60)
    finally:
        if is_mounted(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    assert daemon.returncode == 0, daemon.communicate()
    ds.fsck_clean()
