"""Tags and runs: add, list, delete, duplicates, unknown names, bad names,
and `rm`."""
import pytest

from conftest import RUN_NAME, assert_error, assert_same_tree, parse_table


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "data"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("a\n")
    (src / "b.bin").write_bytes(bytes(range(256)) * 100)
    return src


def test_empty_store_lists_only_the_header(ds):
    cp = ds.ok("tags", "list")
    assert cp.stdout.split() == ["TAG", "RUN", "WORKFLOW", "ARTIFACTS", "SUBMITTED"]
    assert cp.stderr == ""


def test_add_list_delete(ds, folder, tmp_path):
    run1 = ds.add("v1", folder)
    run2 = ds.add("v2", folder)
    assert run1 != run2
    assert run1.endswith("-1") and run2.endswith("-2")

    # Tag an existing run by name, and by :tag.
    assert ds.ok("tags", "add", "best", run1).stdout == ""
    ds.ok("tags", "add", "also-best", ":best")
    tags = ds.tags()
    assert sorted(tags) == ["also-best", "best", "v1", "v2"]
    assert tags["best"]["RUN"] == run1 and tags["also-best"]["RUN"] == run1
    assert tags["v2"]["RUN"] == run2
    assert all(row["ARTIFACTS"] == "data" for row in tags.values())

    ds.download(":best", tmp_path / "out")
    assert_same_tree(folder, tmp_path / "out" / "data")

    assert ds.ok("tags", "delete", "v1").stdout == ""
    assert "v1" not in ds.tags()
    # The run stays (still tagged best), reachable by name.
    rows = parse_table(ds.ok("artifacts", "list", run1).stdout)
    assert {r["FILE"] for r in rows} == {"sub/a.txt", "b.bin"}
    assert_error(ds("artifacts", "list", ":v1"), "v1")

    # A deleted tag name can be used again.
    ds.ok("tags", "add", "v1", run2)
    assert ds.tags()["v1"]["RUN"] == run2


def test_duplicate_tag_fails_and_changes_nothing(ds, folder, tmp_path):
    run1 = ds.add("v1", folder)
    run2 = ds.add("v2", folder)
    assert_error(ds("tags", "add", "v1", run2), "v1", "exists")
    assert ds.tags()["v1"]["RUN"] == run1

    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("x\n")
    stored = ds.pack_bytes()
    assert_error(ds("tags", "add", "v1", "-a", other), "v1", "exists")
    # Refused before the folder is read, not after storing it.
    assert ds.pack_bytes() == stored
    tags = ds.tags()
    assert tags["v1"]["RUN"] == run1 and tags["v1"]["ARTIFACTS"] == "data"
    assert len(tags) == 2


def test_unknown_names_are_named(ds, folder):
    ds.add("v1", folder)
    assert_error(ds("tags", "add", "new", "calm-owl-99"), "calm-owl-99")
    assert_error(ds("tags", "add", "new", ":missing"), "missing")
    assert_error(ds("tags", "delete", "missing"), "missing")
    assert_error(ds("artifacts", "list", ":missing"), "missing")
    assert_error(ds("artifacts", "list", "calm-owl-99"), "calm-owl-99")
    assert_error(ds("rm", "calm-owl-99"), "calm-owl-99")
    assert "new" not in ds.tags()


@pytest.mark.parametrize("bad", ["-x", "a/b", "", ".hidden", "sp ace", "../up",
                                 "tab\tx", "t" * 300])
def test_invalid_tag_names_are_refused(ds, folder, bad):
    run1 = ds.add("ok", folder)
    cp = ds("tags", "add", bad, run1)
    # "-x" may read as an unknown option (usage, 2) or a bad name (1).
    assert cp.returncode in (1, 2), cp
    assert cp.stderr.startswith("dstack: ")
    if bad not in ("-x",):
        assert_error(cp, "tag")
    cp = ds("tags", "add", bad, "-a", folder)
    assert cp.returncode in (1, 2)
    assert cp.stderr.startswith("dstack: ")
    assert list(ds.tags()) == ["ok"]


def test_invalid_tag_is_refused_before_storing_anything(ds, folder, tmp_path):
    """A bad tag name is known before a byte is read: nothing stored."""
    ds.ok("tags", "list")
    before = ds.pack_bytes()
    big = tmp_path / "big"
    big.mkdir()
    (big / "f").write_bytes(b"\x01" * 3_000_000)
    cp = ds("tags", "add", "a/b", "-a", big)
    assert_error(cp, "a/b")
    assert ds.pack_bytes() == before


def test_rm_refuses_a_tagged_run_naming_the_tag(ds, folder, tmp_path):
    run1 = ds.add("keep", folder)
    assert_error(ds("rm", run1), "keep")
    ds.download(run1, tmp_path / "out")

    ds.ok("tags", "delete", "keep")
    assert ds.ok("rm", run1).stdout == ""
    assert_error(ds("artifacts", "list", run1), run1)
    assert_error(ds("rm", run1), run1)
    ds.fsck_clean()


def test_rm_refuses_while_any_tag_names_the_run(ds, folder):
    run1 = ds.add("one", folder)
    ds.ok("tags", "add", "two", run1)
    ds.ok("tags", "delete", "one")
    assert_error(ds("rm", run1), "two")
    ds.ok("tags", "delete", "two")
    ds.ok("rm", run1)
    assert RUN_NAME.match(run1)
