"""SIGKILL at hundreds of points of the ingest, run and gc paths.

tests/fault/fault.c, preloaded, counts a dstack process's changes to files
(each write, sync, rename, unlink, truncate, mkdir) and kills it with
SIGKILL at the Nth, before the change is made.  A first, uncut pass counts
the changes a path makes; then the path is cut at points spread over that
count: in chunk and pack writes, between an object's fsync and the
catalog's commit, inside SQLite's journal writes, in log appends, in the
job's folder, in gc's unlinks.  After every cut:

- `dstack fsck` finds the store consistent;
- every run that reached done reads back byte for byte (artifacts and logs);
- the cut run is either whole or, once anything looks at it, marked failed
  with the reason that its runner is gone, and its job folders are gone;
- the next command works.

DSTACK_KILL_POINTS_SCALE scales the number of cuts: 240 on the plain build,
an eighth of them on the sanitized one, where each command costs several
plain ones and what is sought is a memory error on a recovery path.
"""
import os
import random
import signal
import subprocess

from conftest import (BIN, MiB, RUN_NAME, assert_ok, assert_same_snapshot,
                      describe, fault_env, git, make_repo, parse_table, snapshot,
                      wait_for, write_random)
from test_fs import daemon_pids, is_mounted

SANITIZED = "asan" in BIN.parent.parent.name
SCALE = float(os.environ.get("DSTACK_KILL_POINTS_SCALE", 0.12 if SANITIZED else 1.0))


def count_changes(ds, tmp_path, *args, cwd=None):
    """Runs args uncut; returns how many changes to files it made."""
    report = tmp_path / "changes"
    assert_ok(ds(*args, cwd=cwd, env=fault_env(count=report)))
    return int(report.read_text())


def kill_points(total, wanted):
    """wanted points spread evenly over 1..total (all of them if fewer)."""
    wanted = max(1, int(wanted * SCALE))
    if total <= wanted:
        return list(range(1, total + 1))
    return sorted({1 + (total - 1) * i // (wanted - 1) for i in range(wanted)})


def cut(ds, point, *args, cwd=None):
    """Runs args, killed at its point-th change; True if it was killed."""
    cp = ds(*args, cwd=cwd, env=fault_env(kill_at=point))
    assert cp.returncode in (0, -signal.SIGKILL), describe(cp)
    return cp.returncode == -signal.SIGKILL


def assert_fsck_clean(ds, where):
    cp = ds("fsck", timeout=300)
    assert cp.returncode == 0 and cp.stdout == "" and cp.stderr == "", \
        f"{where}\n" + describe(cp)


def assert_reads_back(ds, spec, want, out, where):
    """spec's one artifact (a folder stored by `tags add -a`) is want."""
    cp = ds("artifacts", "download", spec, "-o", out)
    assert cp.returncode == 0, f"{where}\n" + describe(cp)
    [artifact] = os.listdir(out)
    assert_same_snapshot(want, snapshot(out / artifact), where)


def test_kill_points_in_ingest(ds, tmp_path):
    rng = random.Random(7)
    base = tmp_path / "base"
    write_random(base / "b.bin", 2 * MiB, seed=1)
    (base / "t.txt").write_text("base\n")
    os.symlink("t.txt", base / "link")
    ds.add("base", base)
    want_base = snapshot(base)

    data = tmp_path / "data"

    def fresh_data():
        # New bytes every time: the ingest has chunks and packs to write,
        # not only references to ones stored before.
        write_random(data / "big.bin", MiB + rng.randrange(4096), seed=rng.random())
        for i in range(12):
            (data / "small" / f"{i}.txt").parent.mkdir(parents=True, exist_ok=True)
            (data / "small" / f"{i}.txt").write_text(f"{rng.random()}\n" * (i + 1))
        return snapshot(data)

    fresh_data()
    total = count_changes(ds, tmp_path, "tags", "add", "counted", "-a", data)
    points = kill_points(total, 80)
    killed = 0
    for n, point in enumerate(points):
        want = fresh_data()
        tag = f"cut{n}"
        where = f"ingest killed at change {point} of {total}"
        killed += cut(ds, point, "tags", "add", tag, "-a", data)
        assert_fsck_clean(ds, where)
        assert_reads_back(ds, ":base", want_base, tmp_path / f"base{n}", where)
        # The tag names a whole run or none: the commit is the last step.
        if tag in {row["TAG"] for row in parse_table(ds.ok("tags", "list").stdout)}:
            assert_reads_back(ds, f":{tag}", want, tmp_path / f"got{n}", where)
    # The store takes the next ingest, and its temp files are gone.
    want = fresh_data()
    ds.add("after", data)
    assert_reads_back(ds, ":after", want, tmp_path / "after", "after the cuts")
    assert ds.tmp_entries() == []
    print(f"ingest: {killed} kills of {len(points)} points over {total} changes")
    assert killed >= len(points) - 2


WORKFLOWS = """\
    workflows:
      - name: make
        provider: bash
        commands:
          - echo "making $RUN_NAME"
          - mkdir -p out
          - seq 1 20000 | sed "s/\\$/ $RUN_NAME/" > out/lines.txt
          - cp blob.bin out/
          - echo "made $RUN_NAME"
        artifacts:
          - out

      - name: use
        provider: bash
        deps:
          - workflow: make
        commands:
          - echo "using $(tail -n 1 out/lines.txt)"
          - mkdir -p used
          - cp out/lines.txt used/copy.txt
        artifacts:
          - used
    """


def expected_lines(name):
    return "".join(f"{i} {name}\n" for i in range(1, 20001)).encode()


def test_kill_points_in_runs(ds, tmp_path):
    repo = make_repo(tmp_path / "repo", WORKFLOWS)
    write_random(repo / "blob.bin", 256 * 1024, seed=3)
    git(repo, "add", "blob.bin")
    git(repo, "commit", "-q", "-m", "blob")
    blob = (repo / "blob.bin").read_bytes()
    assert_ok(ds("run", "make", cwd=repo))
    totals = {wf: count_changes(ds, tmp_path, "run", wf, cwd=repo) for wf in ("make", "use")}
    points = [(wf, p) for wf in ("make", "use") for p in kill_points(totals[wf], 60)]

    def runs():
        return parse_table(assert_ok(ds("ps", "-a", cwd=repo)).stdout)

    def check_run(run, where):
        """A done run reads back whole; a cut one says its runner is gone."""
        name = run["RUN"]
        if run["STATUS"] == "failed":
            details = assert_ok(ds("ps", name, cwd=repo)).stdout
            assert "reason: its runner (pid" in details and "is gone" in details, \
                f"{where}\n{details}"
            return
        assert run["STATUS"] == "done", f"{where}: {run}"
        out = tmp_path / "check" / name
        assert_ok(ds("artifacts", "download", name, "-o", out))
        logs = assert_ok(ds("logs", name)).stdout
        if run["WORKFLOW"] == "make":
            assert (out / "out" / "lines.txt").read_bytes() == expected_lines(name), where
            assert (out / "out" / "blob.bin").read_bytes() == blob, where
            assert logs == f"making {name}\nmade {name}\n", f"{where}\n{logs}"
        else:
            made = (out / "used" / "copy.txt").read_bytes()
            source = made.split(b"\n")[0].split(b" ")[1].decode()
            assert RUN_NAME.match(source) and made == expected_lines(source), where
            assert logs == f"using 20000 {source}\n", f"{where}\n{logs}"

    checked = set()
    killed, missed = 0, []
    for wf, point in points:
        where = f"run {wf} killed at change {point} of {totals[wf]}"
        if cut(ds, point, "run", wf, cwd=repo):
            killed += 1
        else:
            missed.append((wf, point))
        # ps looks at the runs, so the cut one is marked failed by now.
        listed = runs()
        assert all(r["STATUS"] in ("done", "failed") for r in listed), f"{where}: {listed}"
        for run in listed:
            if run["RUN"] not in checked:
                check_run(run, where)
                checked.add(run["RUN"])
        # The dead runner's job folders went with it.
        assert os.listdir(ds.home / "work") == [], f"{where}: {os.listdir(ds.home / 'work')}"
        assert_fsck_clean(ds, where)
    # Every run still reads back after all the cuts, and the next run works.
    for run in runs():
        check_run(run, "after the cuts")
    assert_ok(ds("run", "use", cwd=repo))
    print(f"runs: {killed} kills of {len(points)} points over {totals} changes")
    # A run flushes its log once or twice as ticks fall (the job's two lines
    # are apart by its work), so its last changes may be fewer than counted:
    # only points near the end may go unreached.
    assert all(point > totals[wf] * 0.9 for wf, point in missed), missed


def test_kill_points_in_gc(ds, tmp_path):
    rng = random.Random(11)
    keep = tmp_path / "keep"
    write_random(keep / "k.bin", MiB, seed=5)
    ds.add("keep", keep)
    want_keep = snapshot(keep)

    def make_garbage(n):
        """Three runs, two of them deleted: gc has packs and rows to remove."""
        names = []
        for i in range(3):
            junk = tmp_path / "junk"
            write_random(junk / "j.bin", 256 * 1024 + rng.randrange(4096), seed=rng.random())
            names.append(ds.add(f"junk{n}-{i}", junk))
        for i in range(2):
            ds.ok("tags", "delete", f"junk{n}-{i}")
            ds.ok("rm", names[i])

    make_garbage("counted")
    total = count_changes(ds, tmp_path, "gc")
    points = kill_points(total, 40)
    killed = 0
    for n, point in enumerate(points):
        make_garbage(n)
        where = f"gc killed at change {point} of {total}"
        killed += cut(ds, point, "gc")
        assert_fsck_clean(ds, where)
        assert_reads_back(ds, ":keep", want_keep, tmp_path / f"keep{n}", where)
        assert_reads_back(ds, f":junk{n}-2", snapshot(tmp_path / "junk"),
                          tmp_path / f"junk{n}", where)
    # A whole gc afterwards leaves only what runs reach.
    assert_ok(ds("gc"))
    assert_fsck_clean(ds, "after the last gc")
    print(f"gc: {killed} kills of {len(points)} points over {total} changes")
    assert killed >= len(points) - 2


def test_kill_points_in_the_daemon(ds, tmp_path):
    # The daemon runs what ctl starts: cut it while it serves two runs,
    # then mount again, as a user whose machine went down would.
    repo = make_repo(tmp_path / "repo", WORKFLOWS)
    write_random(repo / "blob.bin", 64 * 1024, seed=4)
    git(repo, "add", "blob.bin")
    git(repo, "commit", "-q", "-m", "blob")
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    def serve(env):
        """Mounts in the foreground, starts make then use through ctl,
        waits for their end or the daemon's; True if it was killed."""
        daemon = ds.popen("mount", "-f", mnt, cwd=repo, env=env)
        try:
            assert wait_for(lambda: is_mounted(mnt) or daemon.poll() is not None, timeout=30)
            for workflow in ("make", "use"):
                try:
                    (mnt / "ctl").write_text(workflow + "\n")
                except OSError:
                    break
                wait_for(lambda: daemon.poll() is not None or not [
                    r for r in parse_table(ds.ok("ps", "-a", cwd=repo).stdout)
                    if r["STATUS"] not in ("done", "failed")], timeout=60)
            if daemon.poll() is None:
                ds.ok("umount", mnt)
            daemon.wait(timeout=60)
        finally:
            if is_mounted(mnt):
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        assert daemon.returncode in (0, -signal.SIGKILL), daemon.communicate()
        # Nothing of it lingers: a job's child caught binding deps from
        # the tree as the daemon died once hung there for good.
        assert wait_for(lambda: not daemon_pids(mnt), timeout=20), daemon_pids(mnt)
        return daemon.returncode == -signal.SIGKILL

    # The first mount makes the catalog: count on the second.
    assert not serve({})
    report = tmp_path / "changes"
    assert not serve(fault_env(count=report))
    total = int(report.read_text())
    points = kill_points(total, 20)
    killed = 0
    for point in points:
        where = f"daemon killed at change {point} of {total}"
        killed += serve(fault_env(kill_at=point))
        listed = parse_table(ds.ok("ps", "-a", cwd=repo).stdout)
        for run in listed:
            if run["STATUS"] == "failed":
                details = ds.ok("ps", run["RUN"], cwd=repo).stdout
                assert "is gone" in details or "no done run" in details, f"{where}\n{details}"
            else:
                assert run["STATUS"] == "done", f"{where}: {listed}"
        assert os.listdir(ds.home / "work") == [], where
        assert_fsck_clean(ds, where)
    assert not serve({})
    print(f"daemon: {killed} kills of {len(points)} points over {total} changes")
    assert killed >= len(points) - 2
