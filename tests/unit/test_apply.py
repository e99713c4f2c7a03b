"""The journalled transaction: staging, restore, commit and recovery after a crash at any step."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.site_builder import install_dist, make_site, tree_digest
from venvprune import categories
from venvprune.apply import JOURNAL_NAME, Transaction, recover, target_lock
from venvprune.errors import LockedError
from venvprune.plan import Action, ActionKind, Phase, Plan, build_plan
from venvprune.scan import scan
from venvprune.target import UNRESTORED_DIR_NAME, Target, resolve_target


@dataclass(frozen=True)
class Upper:
    """A rewrite for tests: the file's content in upper case."""

    def write(self, source: BinaryIO, destination: BinaryIO) -> None:
        destination.write(source.read().upper())


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = make_site(tmp_path / "prefix")
    install_dist(
        site,
        "pkg",
        {
            "pkg/__init__.py": "x = 1\n",
            "pkg/__pycache__/__init__.cpython-311.pyc": b"\x00" * 64,
            "pkg/tests/__init__.py": "",
            "pkg/tests/test_x.py": "def test(): pass\n",
            "pkg/data.txt": "hello\n",
        },
    )
    return site


def the_plan(site: Path) -> Plan:
    target = resolve_target(site)
    return build_plan(scan(target, inspect_elf=False), categories.select(only=("bytecode", "tests", "record")))


def rewrite(path: Path) -> Action:
    return Action(path, ActionKind.REWRITE, "test", "upper", 0, 0, "pkg", transform=Upper())


def test_commit_removes_planned_paths_and_rewrites_record(site: Path) -> None:
    plan = the_plan(site)
    transaction = Transaction.begin(plan.inventory.target)
    errors = transaction.execute(plan.by_phase(Phase.FILES))
    assert errors == []
    errors += transaction.execute(plan.by_phase(Phase.METADATA))
    assert transaction.commit() == []
    assert not (site / "pkg/tests").exists()
    assert not (site / "pkg/__pycache__").exists()
    assert not plan.inventory.target.staging_dir.exists()
    record = (site / "pkg-1.0.dist-info/RECORD").read_text()
    assert "pkg/tests/" not in record
    assert "pkg/__init__.py,sha256=" in record


def test_rollback_restores_every_byte(site: Path) -> None:
    before = tree_digest(site)
    plan = the_plan(site)
    transaction = Transaction.begin(plan.inventory.target)
    transaction.execute(plan.by_phase(Phase.FILES))
    transaction.execute(plan.by_phase(Phase.METADATA))
    assert tree_digest(site) != before
    transaction.rollback()
    assert tree_digest(site) == before
    assert not plan.inventory.target.staging_dir.exists()


def test_restore_some_then_redo_record_lists_them_again(site: Path) -> None:
    plan = the_plan(site)
    transaction = Transaction.begin(plan.inventory.target)
    transaction.execute(plan.by_phase(Phase.FILES))
    transaction.execute(plan.by_phase(Phase.METADATA))
    tests_dir = next(a for a in plan.actions if a.category == "tests")
    assert transaction.restore([tests_dir]) == []
    assert transaction.redo(plan.by_phase(Phase.METADATA)) == []
    transaction.commit()
    assert (site / "pkg/tests/test_x.py").exists()
    record = (site / "pkg-1.0.dist-info/RECORD").read_text()
    assert "pkg/tests/test_x.py,sha256=" in record
    assert tests_dir not in transaction.executed()


def test_rewrite_never_changes_a_hard_linked_inode(site: Path, tmp_path: Path) -> None:
    data = site / "pkg/data.txt"
    twin = tmp_path / "cache-copy.txt"
    os.link(data, twin)  # as uv links a venv's files to its cache
    transaction = Transaction.begin(resolve_target(site))
    assert transaction.execute([rewrite(data)]) == []
    transaction.commit()
    assert data.read_text() == "HELLO\n"
    assert twin.read_text() == "hello\n"
    assert twin.stat().st_nlink == 1


def test_rewrite_keeps_the_mode(site: Path) -> None:
    data = site / "pkg/data.txt"
    data.chmod(0o751)
    transaction = Transaction.begin(resolve_target(site))
    transaction.execute([rewrite(data)])
    transaction.commit()
    assert data.stat().st_mode & 0o777 == 0o751


def test_a_vanished_file_is_an_error_for_that_file_only(site: Path) -> None:
    plan = the_plan(site)
    (site / "pkg/__pycache__/__init__.cpython-311.pyc").unlink()
    (site / "pkg/__pycache__").rmdir()
    transaction = Transaction.begin(plan.inventory.target)
    errors = transaction.execute(plan.by_phase(Phase.FILES))
    transaction.commit()
    assert [(e.path.name, e.message) for e in errors] == [("__pycache__", "vanished since the plan was made")]
    assert not (site / "pkg/tests").exists()


def crash_after(site: Path, steps: int) -> Target:
    """Run a prune and abandon it after *steps* changes, as a SIGKILL would: no rollback, no commit."""
    plan = the_plan(site)
    transaction = Transaction.begin(plan.inventory.target)
    actions = list(plan.actions)[:steps]
    transaction.execute(actions)
    transaction._abandon()  # what the OS does for a killed process
    return plan.inventory.target


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 4])
def test_recovery_after_a_crash_restores_the_original(site: Path, steps: int) -> None:
    before = tree_digest(site)
    target = crash_after(site, steps)
    recovery = recover(target)
    assert recovery is not None and recovery.outcome == "restored" and recovery.errors == ()
    assert tree_digest(site) == before
    assert recover(target) is None


def test_recovery_after_a_committed_crash_finishes(site: Path) -> None:
    plan = the_plan(site)
    transaction = Transaction.begin(plan.inventory.target)
    transaction.execute(plan.actions)
    transaction._abandon()
    (plan.inventory.target.staging_dir / "COMMITTED").write_text("committed\n")  # killed right after the marker
    recovery = recover(plan.inventory.target)
    assert recovery is not None and recovery.outcome == "completed"
    assert not (site / "pkg/tests").exists()
    assert not plan.inventory.target.staging_dir.exists()


def test_recovery_ignores_a_torn_last_journal_line(site: Path) -> None:
    before = tree_digest(site)
    target = crash_after(site, 2)
    with open(target.staging_dir / JOURNAL_NAME, "a") as journal:
        journal.write('{"op": 9, "kind": "rem')
    recover(target)
    assert tree_digest(site) == before


def test_created_files_and_their_folders_are_removed_by_recovery(site: Path) -> None:
    target = resolve_target(site)
    before = tree_digest(site)
    transaction = Transaction.begin(target)
    transaction.create(site / "new" / "deeper" / "check.py", b"print('hi')\n")
    assert (site / "new/deeper/check.py").read_bytes() == b"print('hi')\n"
    transaction._abandon()
    recover(target)
    assert tree_digest(site) == before


def test_journal_is_written_before_each_change(site: Path) -> None:
    target = crash_after(site, 1)
    lines = [json.loads(line) for line in (target.staging_dir / JOURNAL_NAME).read_text().splitlines()]
    assert lines[0]["target"] == str(target.root)
    assert [line["kind"] for line in lines[1:]] == ["remove"]


def test_an_unfinished_prune_blocks_a_new_transaction(site: Path) -> None:
    target = crash_after(site, 1)
    with pytest.raises(Exception, match="an earlier prune is unfinished"):
        Transaction.begin(target)


def test_a_second_venvprune_on_the_same_target_is_refused(site: Path) -> None:
    target = resolve_target(site)
    with (
        target_lock(target),
        pytest.raises(LockedError, match="another venvprune is working on it"),
        target_lock(target),
    ):
        pass


def test_an_unreadable_record_is_reported_and_left_as_it_was(site: Path) -> None:
    plan = the_plan(site)
    record = site / "pkg-1.0.dist-info" / "RECORD"
    record.write_bytes(b"pkg/tests/__init__.py,,\n\xff\xfe not utf-8\n")
    transaction = Transaction.begin(plan.inventory.target)
    errors = transaction.execute(plan.by_phase(Phase.FILES))
    errors += transaction.execute(plan.by_phase(Phase.METADATA))
    transaction.commit()
    assert [e.path for e in errors] == [record]
    assert "utf-8" in errors[0].message
    assert record.read_bytes().endswith(b"\xff\xfe not utf-8\n")


def test_a_crlf_record_keeps_its_line_ends(site: Path) -> None:
    record = site / "pkg-1.0.dist-info" / "RECORD"
    record.write_bytes(record.read_bytes().replace(b"\n", b"\r\n"))
    plan = the_plan(site)
    transaction = Transaction.begin(plan.inventory.target)
    transaction.execute(plan.by_phase(Phase.FILES))
    assert transaction.execute(plan.by_phase(Phase.METADATA)) == []
    transaction.commit()
    rewritten = record.read_bytes()
    assert b"pkg/tests/" not in rewritten
    assert rewritten.count(b"\r\n") == rewritten.count(b"\n") > 0


class Killed(BaseException):
    """What SIGKILL does to Python code: nothing after it runs; no ``except Exception`` sees it."""


def overlay_like_renames(monkeypatch: pytest.MonkeyPatch, killed_after: int) -> None:
    """Renames as in a Docker layer: a folder refuses (EXDEV, overlayfs), a file moves; killed after some files."""
    real = os.rename
    moved = [0]

    def rename(source: str, destination: str, **fds: int) -> None:
        st = os.stat(source, dir_fd=fds.get("src_dir_fd"), follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EXDEV, "Invalid cross-device link", source)
        if moved[0] == killed_after:
            raise Killed
        moved[0] += 1
        real(source, destination, **fds)

    monkeypatch.setattr(os, "rename", rename)


@pytest.mark.parametrize("killed_after", range(4))
def test_a_folder_moved_entry_by_entry_and_killed_midway_is_merged_back(
    site: Path, monkeypatch: pytest.MonkeyPatch, killed_after: int
) -> None:
    (site / "pkg" / "tests" / "deep").mkdir()
    (site / "pkg" / "tests" / "deep" / "a.py").write_text("a = 1\n")
    (site / "pkg" / "tests" / "deep" / "b.py").write_text("b = 1\n")
    before = tree_digest(site)
    target = resolve_target(site)
    tests_dir = Action(site / "pkg" / "tests", ActionKind.REMOVE, "tests", "", 0, 3, "pkg", is_directory=True)
    transaction = Transaction.begin(target)
    overlay_like_renames(monkeypatch, killed_after)
    with pytest.raises(Killed):
        transaction.execute([tests_dir])
    monkeypatch.undo()
    transaction._abandon()
    recovery = recover(target)
    assert recovery is not None and recovery.errors == () and recovery.left_aside == ()
    assert tree_digest(site) == before


def test_a_folder_pip_put_where_a_split_move_was_cut_short_gets_nothing_merged_in(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = resolve_target(site)
    tests_dir = site / "pkg" / "tests"
    transaction = Transaction.begin(target)
    overlay_like_renames(monkeypatch, killed_after=1)
    with pytest.raises(Killed):
        transaction.execute([Action(tests_dir, ActionKind.REMOVE, "tests", "", 0, 2, "pkg", is_directory=True)])
    monkeypatch.undo()
    transaction._abandon()
    shutil.rmtree(tests_dir)  # a new version installed: a new folder in its place
    tests_dir.mkdir()
    (tests_dir / "test_new.py").write_text("# new\n")
    recovery = recover(target)
    assert recovery is not None and [left.path for left in recovery.left_aside] == ["pkg/tests"]
    assert sorted(p.name for p in tests_dir.iterdir()) == ["test_new.py"], "old files merged into the new folder"


def test_recovery_puts_an_original_back_only_onto_what_the_prune_left(site: Path) -> None:
    """Killed; then the rewritten file is replaced and the removed folder made again (pip installed a new version)."""
    plan = the_plan(site)
    target = plan.inventory.target
    data = site / "pkg" / "data.txt"
    transaction = Transaction.begin(target)
    assert transaction.execute([*plan.by_phase(Phase.FILES), rewrite(data)]) == []
    transaction._abandon()
    data.write_text("installed since\n")
    (site / "pkg" / "tests").mkdir()
    (site / "pkg" / "tests" / "test_new.py").write_text("# new\n")
    recovery = recover(target)
    assert recovery is not None and recovery.errors == ()
    assert {left.path for left in recovery.left_aside} == {"pkg/data.txt", "pkg/tests"}
    assert data.read_text() == "installed since\n"
    assert sorted(p.name for p in (site / "pkg" / "tests").iterdir()) == ["test_new.py"], "old files merged in"
    unrestored = site / UNRESTORED_DIR_NAME
    assert (unrestored / "pkg" / "data.txt").read_text() == "hello\n"
    assert (unrestored / "pkg" / "tests" / "test_x.py").is_file()
    assert (site / "pkg" / "__pycache__").is_dir(), "what could be restored was restored"
    assert not target.staging_dir.exists()
    assert recover(target) is None


def test_an_original_is_not_put_back_into_a_folder_that_was_replaced(site: Path) -> None:
    """Killed; then the package installed again (pip moves the old folder away, writes a new one, deletes the old)."""
    plan = the_plan(site)
    target = plan.inventory.target
    transaction = Transaction.begin(target)
    assert transaction.execute(plan.by_phase(Phase.FILES)) == []
    transaction._abandon()
    stash = site.parent / "stash"
    (site / "pkg").rename(stash)
    (site / "pkg").mkdir()
    (site / "pkg" / "__init__.py").write_text("x = 2\n")
    shutil.rmtree(stash)
    recovery = recover(target)
    assert recovery is not None and recovery.errors == ()
    assert sorted(left.path for left in recovery.left_aside) == ["pkg/__pycache__", "pkg/tests"]
    assert sorted(p.name for p in (site / "pkg").iterdir()) == ["__init__.py"], "old files put into the new folder"
    assert (site / UNRESTORED_DIR_NAME / "pkg" / "tests" / "test_x.py").is_file()


def _undeletable(path: Path) -> None:
    """Make *path* a file that unlink refuses: immutable for root (ext4 and most disks), its folder read-only else."""
    if os.geteuid() != 0:
        path.parent.chmod(0o500)
        return
    import subprocess

    result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"chattr +i unsupported here: {result.stderr.strip()}")


def _deletable_again(path: Path) -> None:
    if os.geteuid() != 0:
        path.parent.chmod(0o700)
    else:
        import subprocess

        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_deleting_in_threads_empties_every_folder_and_reports_exactly_what_stays(tmp_path: Path) -> None:
    """The commit's deletion: many folders deep and wide, a folder without permissions, a symlink to a folder outside
    (unlinked, never followed), and one file that cannot be deleted: it and the folders holding it stay, and are the
    only paths reported."""
    from venvprune.apply.tree import delete_each

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine\n")
    staging = tmp_path / "staging"
    for top in range(40):
        for sub in range(5):
            folder = staging / str(top) / f"sub{sub}" / "deeper"
            folder.mkdir(parents=True)
            for n in range(4):
                (folder / f"f{n}.py").write_text("x\n")
        (staging / str(top) / "file.txt").write_text("y\n")
    (staging / "7" / "link").symlink_to(outside, target_is_directory=True)
    (staging / "8" / "sub1").chmod(0)
    (staging / "loose.txt").write_text("z\n")
    stuck = staging / "12" / "sub3" / "alone" / "stuck.py"  # alone in its folder, which may be made read-only
    stuck.parent.mkdir()
    stuck.write_text("x\n")
    _undeletable(stuck)
    names = sorted(os.listdir(staging))
    fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
    try:
        failed = delete_each(names, fd, threads=4)
    finally:
        os.close(fd)
        _deletable_again(stuck)
    assert failed == ["12/sub3/alone/stuck.py"]
    left = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*"))
    assert left == ["12", "12/sub3", "12/sub3/alone", "12/sub3/alone/stuck.py"]
    assert (outside / "keep.txt").read_text() == "mine\n"
