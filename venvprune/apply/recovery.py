"""Undo, or finish, a prune: after a kill (:func:`recover`), and for a rollback or a heal in the same run.

An original is put back only onto what the prune left there: the path must still hold what venvprune wrote (or
nothing, for a removal), inside the same folder it was taken from. A path that holds something else now (pip
installed another version since), or whose folder is gone or was replaced, keeps what is there; the original is
moved to ``.venvprune-unrestored/`` in the target, reported, and the run goes on. A journal entry that names a path
outside the target is refused. So no state exists from which the next run cannot make progress.

A venv copied in the middle of a prune (``cp -a``: a Docker layer, a CI cache) has new inodes: the journal's root
identity says so, and the folder identities are then not compared (sizes and times, which a copy keeps, still are).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from venvprune.apply import journal
from venvprune.apply.journal import JOURNAL_NAME, Entry
from venvprune.apply.tree import (
    PathChanged,
    Tree,
    checked_relative,
    delete,
    delete_each,
    identity,
    lstat,
    move,
    opened,
    stamp,
)
from venvprune.errors import ApplyError
from venvprune.target import STAGING_DIR_NAME, UNRESTORED_DIR_NAME, Target

COMMITTED_NAME = "COMMITTED"
REFUSED_DIR = "refused"  # in the unrestored folder: originals of journal entries outside the target
_PARTIAL_SUFFIXES = (".new", ".partial")  # a new file or a copy that never reached its place


@dataclass(frozen=True)
class FileError:
    path: Path
    message: str


@dataclass(frozen=True)
class LeftAside:
    """An original that could not be put back: reported, and kept in the unrestored folder for the user."""

    path: str  # as the journal named it, relative to the target when it is inside
    message: str
    kept_at: Path | None  # where the original is now (None: nothing was staged)


@dataclass(frozen=True)
class Recovery:
    """What a recovery or a rollback found and did."""

    outcome: str  # "restored" or "completed"
    operations: int
    errors: tuple[FileError, ...] = ()  # could not be done at all: the staging folder is kept
    left_aside: tuple[LeftAside, ...] = ()


def recover(target: Target) -> Recovery | None:
    """Finish or undo a prune that was interrupted; None when there was none.

    A prune started under another spelling of the target (the venv, or its site-packages directory) left its
    staging folder there: one inside the target is recovered too; one in the venv around a site-packages target is
    named, for the user to recover with the venv's own spelling.
    """
    for foreign in _foreign_staging(target):
        raise ApplyError(
            f"{foreign}: an interrupted prune of {foreign.parent} is pending; "
            f"run `venvprune {foreign.parent}` to recover it first"
        )
    found: Recovery | None = None
    for root_path in _staging_roots(target):
        with _opened_tree(root_path) as root:
            staging = open_staging(root)
            if staging is None:
                continue
            try:
                result = recover_staging(root, staging)
            finally:
                staging.close()
        found = result if found is None else _merged(found, result)
    return found


def pending(target: Target) -> Path | None:
    """The staging folder of an interrupted prune of *target*, if any (a dry run and a check refuse then)."""
    for foreign in _foreign_staging(target):
        return foreign
    for root_path in _staging_roots(target):
        with _opened_tree(root_path) as root:
            staging = open_staging(root)
        if staging is not None:
            staging.close()
            return root_path / STAGING_DIR_NAME
    return None


def open_staging(root: Tree) -> Tree | None:
    """The staging folder in *root*, if any; a symlink or a file there gets one line."""
    st = lstat(STAGING_DIR_NAME, root.fd)
    if st is None:
        return None
    if not stat.S_ISDIR(st.st_mode):
        what = "a symlink" if stat.S_ISLNK(st.st_mode) else "a file"
        raise ApplyError(
            f"{root.path / STAGING_DIR_NAME}: is {what}, not a staging folder of venvprune; "
            "move it away and run venvprune again"
        )
    return root.open_folder(STAGING_DIR_NAME)


@contextlib.contextmanager
def _opened_tree(path: Path) -> Iterator[Tree]:
    tree = Tree.open(path)
    try:
        yield tree
    finally:
        tree.close()


def _staging_roots(target: Target) -> list[Path]:
    return list(dict.fromkeys([target.root, *target.site_packages]))


def _foreign_staging(target: Target) -> Iterator[Path]:
    if target.root not in target.site_packages:
        return
    # lib/pythonX.Y/site-packages: the venv or prefix is three levels up.
    for ancestor in list(target.root.parents)[:3]:
        if os.path.lexists(ancestor / STAGING_DIR_NAME):
            yield ancestor / STAGING_DIR_NAME


def _merged(first: Recovery, second: Recovery) -> Recovery:
    outcome = "restored" if "restored" in (first.outcome, second.outcome) else "completed"
    return Recovery(
        outcome,
        first.operations + second.operations,
        first.errors + second.errors,
        first.left_aside + second.left_aside,
    )


def recover_staging(root: Tree, staging: Tree) -> Recovery:
    """Undo what the journal in *staging* says was done in *root*, or finish deleting a committed prune."""
    if lstat(COMMITTED_NAME, staging.fd) is not None:
        return Recovery("completed", 0, tuple(delete_committed(root, staging)))
    written = journal.read(staging.fd)
    same_tree = written.root is not None and written.root == root.identity()
    errors: list[FileError] = []
    left: list[LeftAside] = []
    restored = 0
    for entry in sorted(written.entries or (), key=lambda e: -e.op):
        try:
            rel = _journal_path(root, entry.path)
        except ValueError:
            left += _refuse(root, staging, entry)
            continue
        try:
            problem = put_back(root, staging, replace(entry, path=rel), same_tree=same_tree)
        except (OSError, ValueError) as exc:
            errors.append(FileError(root.path / rel, describe(exc)))
            continue
        if problem is None:
            restored += 1
        else:
            left.append(problem)
    if not errors:
        why = "the journal is not a regular file" if written.entries is None else "named by no journal line"
        for name in sorted(os.listdir(staging.fd)):
            if name == JOURNAL_NAME or name.endswith(_PARTIAL_SUFFIXES) or lstat(name, staging.fd) is None:
                continue
            # Staged, but no (readable) line says where it came from: kept for the user, never deleted.
            try:
                kept = keep_aside(root, staging, name, f"{REFUSED_DIR}/{name}")
            except OSError as exc:
                errors.append(FileError(staging.path / name, describe(exc)))
                continue
            left.append(LeftAside(f"{STAGING_DIR_NAME}/{name}", f"in the staging folder, {why}", kept))
    if errors:
        # Keep the staging folder: it still holds originals that could not be put back.
        return Recovery("restored", restored, tuple(errors), tuple(left))
    for name in delete(STAGING_DIR_NAME, root.fd):
        errors.append(FileError(root.path / name, "cannot be deleted; check the permissions of its folder"))
    return Recovery("restored", restored, tuple(errors), tuple(left))


def _journal_path(root: Tree, path: str) -> str:
    """A journal path as a path relative to *root*; ValueError when it names something outside."""
    if path.startswith("/"):
        return root.relative(path)  # a journal of venvprune 0.1: absolute paths
    return checked_relative(path)


def _refuse(root: Tree, staging: Tree, entry: Entry) -> list[LeftAside]:
    message = "outside the target; refused"
    if lstat(str(entry.op), staging.fd) is None:
        return [LeftAside(entry.path, message, None)]
    kept = keep_aside(root, staging, str(entry.op), f"{REFUSED_DIR}/{entry.op}")
    return [LeftAside(entry.path, message, kept)]


def put_back(root: Tree, staging: Tree, entry: Entry, *, same_tree: bool) -> LeftAside | None:
    """Undo one change, onto what the prune left there and nothing else; otherwise keep the original aside.

    *same_tree*: the journal was written in this very tree (not a copy), so folder identities can be compared.
    """
    staged = str(entry.op)
    for leftover in (staged + suffix for suffix in _PARTIAL_SUFFIXES):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover, dir_fd=staging.fd)
    has_original = lstat(staged, staging.fd) is not None
    try:
        with root.parent(entry.path) as (fd, name):
            current = lstat(name, fd)
            if entry.kind == "mkdir":
                with contextlib.suppress(OSError):  # a folder something else filled stays
                    os.rmdir(name, dir_fd=fd)
                return None
            if not has_original:
                if entry.kind == "create" and current is not None and stamp(current) in entry.new:
                    os.unlink(name, dir_fd=fd)  # a file venvprune created, unchanged since
                return None
            if same_tree and entry.parent is not None and identity(fd) != entry.parent:
                why = "its folder was replaced since (installed again?)"
            elif entry.kind == "remove":
                if current is None:
                    move(staged, staging.fd, name, fd)
                    return None
                if (
                    stat.S_ISDIR(current.st_mode)
                    and _split_here(entry, fd, name, staged, staging.fd, same_tree)
                    and _merge(staged, staging.fd, name, fd)
                ):
                    return None
                why = "holds something else now (installed since?)"
            elif current is not None and stamp(current) in entry.new:
                os.replace(staged, name, src_dir_fd=staging.fd, dst_dir_fd=fd)
                return None
            elif current is not None and entry.was is not None and stamp(current) == entry.was:
                os.unlink(staged, dir_fd=staging.fd)  # never replaced: the path still holds the original
                return None
            else:
                why = "is gone now" if current is None else "holds something else now (installed since?)"
    except PathChanged:
        if not has_original:
            return None
        why = "its folder is gone or is a symlink now"
    kept = keep_aside(root, staging, staged, entry.path)
    return LeftAside(entry.path, f"{why}; the original was not put back", kept)


def _split_here(entry: Entry, fd: int, name: str, staged: str, staging_fd: int, same_tree: bool) -> bool:
    """Is the folder at *name* the one a split move was emptying, and not a new one in its place?

    It is when it is the same folder (on this tree; an inode number alone can be reused) and what it holds now
    plus what was moved out is exactly what it held when the move began.
    """
    if entry.split_unknown:
        return True  # a journal of venvprune 0.1: a split move is all there is to go by
    if entry.split is None or entry.split_names is None:
        return False
    with opened(name, fd) as folder, opened(staged, staging_fd) as moved:
        if same_tree and identity(folder) != entry.split:
            return False
        here, there = set(os.listdir(folder)), set(os.listdir(moved))
        # A name in both is a folder inside, itself being moved in part (checked as it merges).
        return here | there == set(entry.split_names)


def _merge(staged: str, staged_parent: int, name: str, parent: int) -> bool:
    """Move the entries of *staged* back into the folder *name*; folders in both merge (moved in part too).

    False when an entry is in both and is not a folder in both: what is left stays staged.
    """
    merged = True
    with opened(staged, staged_parent) as staged_fd, opened(name, parent) as path_fd:
        for child in os.listdir(staged_fd):
            here = lstat(child, path_fd)
            there = lstat(child, staged_fd)
            if here is None:
                move(child, staged_fd, child, path_fd)
            elif there is not None and stat.S_ISDIR(here.st_mode) and stat.S_ISDIR(there.st_mode):
                merged = _merge(child, staged_fd, child, path_fd) and merged
            else:
                merged = False
    if merged:
        os.rmdir(staged, dir_fd=staged_parent)
    return merged


def keep_aside(root: Tree, staging: Tree, staged: str, rel: str) -> Path:
    """Move a staged original to ``<target>/.venvprune-unrestored/<rel>`` (never over anything); where it went."""
    destination = f"{UNRESTORED_DIR_NAME}/{rel}"
    try:
        with root.parent(destination, create=True) as (fd, name):
            candidate, number = name, 0
            while lstat(candidate, fd) is not None:
                number += 1
                candidate = f"{name}.{number}"
            move(staged, staging.fd, candidate, fd)
            return root.path / destination.rpartition("/")[0] / candidate
    except PathChanged as exc:
        raise ApplyError(
            f"{root.path / str(exc.filename)}: is a symlink or a file, not a folder; venvprune keeps originals it "
            "could not put back there and does not write through symlinks. Move it away and run venvprune again"
        ) from exc


def delete_committed(root: Tree, staging: Tree) -> list[FileError]:
    """Delete a committed staging folder with its COMMITTED marker last: killed midway, it still reads as committed.

    (Deleting in directory order, which on tmpfs is newest first, took the marker first, and a kill right after it
    left staged originals that the next run took for an uncommitted prune and put back.)
    """
    failed = delete_each(sorted(set(os.listdir(staging.fd)) - {COMMITTED_NAME}), staging.fd)
    if failed:  # the marker stays, so the next run finishes the rest
        return [FileError(staging.path / f, "cannot be deleted; check the permissions of its folder") for f in failed]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(COMMITTED_NAME, dir_fd=staging.fd)
    try:
        os.rmdir(STAGING_DIR_NAME, dir_fd=root.fd)
    except OSError as exc:
        # Renamed away or replaced while the prune ran: what is left there is not venvprune's to delete.
        return [FileError(root.path / STAGING_DIR_NAME, f"{describe(exc)}; remove it by hand")]
    return []


def describe(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
