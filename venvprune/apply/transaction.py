"""A prune in progress: every change journalled first, every original staged, one way to end.

- a removal renames the file or directory into the staging folder;
- a rewrite hard-links the original into staging, writes the new content beside it and renames it over the path,
  so the path always holds either the old or the new content, and a hard-linked original (uv links venvs to its
  cache) is never changed under its other names;
- a created file (the final-stage checker) is noted so that recovery can delete it.

:func:`transaction` is the way to run one: rolled back on leaving unless :meth:`Transaction.commit` ran.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from venvprune import signals
from venvprune.apply import journal
from venvprune.apply.journal import JOURNAL_NAME, Entry
from venvprune.apply.recovery import (
    COMMITTED_NAME,
    FileError,
    Recovery,
    delete_committed,
    describe,
    put_back,
    recover_staging,
)
from venvprune.apply.tree import NEW_FILE, PathChanged, Stamp, Tree, delete, identity, lstat, move, stamp
from venvprune.errors import ApplyError
from venvprune.plan import Action, ActionKind
from venvprune.target import STAGING_DIR_NAME, UNRESTORED_DIR_NAME, Target


class Transaction:
    """A prune in progress. Use :func:`transaction`; it ends with :meth:`commit`, or is rolled back."""

    def __init__(self, target: Target, root: Tree, staging: Tree, writer: journal.Writer) -> None:
        self.target = target
        self.staging = target.staging_dir
        self._root = root
        self._staging = staging
        self._journal = writer
        self._next_op = 0
        self._entries: dict[int, Entry] = {}
        self._ids: dict[Path, int] = {}  # executed and not restored: path -> journal op number
        self._actions: dict[Path, Action] = {}
        self.committed = False
        self.rolled_back: Recovery | None = None

    @classmethod
    def begin(cls, target: Target) -> Transaction:
        root = Tree.open(target.root)
        try:
            try:
                os.mkdir(STAGING_DIR_NAME, 0o700, dir_fd=root.fd)  # 0o700: no one else can change what is staged
            except FileExistsError as exc:
                raise ApplyError(
                    f"{target.staging_dir}: an earlier prune is unfinished; run venvprune again to recover it"
                ) from exc
            except OSError as exc:
                raise ApplyError(
                    f"{target.staging_dir}: cannot create the staging folder ({exc.strerror}); is the target writable?"
                ) from exc
            staging = root.open_folder(STAGING_DIR_NAME)
        except BaseException:
            root.close()
            raise
        writer: journal.Writer | None = None
        try:
            for site_packages in target.site_packages:
                if site_packages.stat().st_dev != os.fstat(staging.fd).st_dev:
                    raise ApplyError(
                        f"{site_packages}: on another file system than {target.root}; "
                        "name the site-packages directory instead"
                    )
            fd = os.open(JOURNAL_NAME, NEW_FILE | os.O_APPEND, 0o600, dir_fd=staging.fd)
            writer = journal.Writer(open(fd, "a", encoding="utf-8"))  # noqa: SIM115 -- closed by the transaction
            writer.header(str(target.root), root.identity())
        except OSError as exc:  # a full disk: not even the journal fits
            _abandon(root, staging, writer)
            raise ApplyError(
                f"{target.staging_dir / JOURNAL_NAME}: cannot write the journal ({exc.strerror}); nothing was "
                "changed. Free some space on that file system and run venvprune again"
            ) from exc
        except BaseException:  # refused, or a signal before the first change: no staging folder outlives it
            _abandon(root, staging, writer)
            raise
        return cls(target, root, staging, writer)

    # -- changes -------------------------------------------------------------------------------------------------

    def execute(self, actions: Iterable[Action]) -> list[FileError]:
        """Apply *actions*; a failure on one file is collected and the others go on."""
        errors: list[FileError] = []
        for action in actions:
            try:
                if action.kind is ActionKind.REMOVE:
                    self._remove(action)
                else:
                    self._rewrite(action)
            except (OSError, ValueError) as exc:  # ValueError: content a transform cannot read (bad UTF-8, ELF)
                errors.append(FileError(action.path, describe(exc)))
        return errors

    def redo(self, actions: Iterable[Action]) -> list[FileError]:
        """Rewrite again from the staged originals (a RECORD after verification restored files it lists)."""
        errors: list[FileError] = []
        for action in actions:
            op = self._ids.get(action.path)
            if op is not None:
                try:
                    with self._root.parent(self._root.relative(action.path)) as (fd, name):
                        self._write_new(op, action, fd, name)
                except (OSError, ValueError) as exc:
                    errors.append(FileError(action.path, describe(exc)))
        return errors

    def create(self, path: Path, content: bytes) -> None:
        """Write a new file inside the target (replacing, recoverably, any file already there).

        Missing folders are created and journalled too, so recovery leaves no empty folder behind. A folder on the
        way that is a symlink or a file is refused: venvprune never writes through a symlink.
        """
        rel = self._root.relative(path)
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            with self._root.parent(folder) as (fd, name):
                st = lstat(name, fd)
                if st is None:
                    self._start("mkdir", folder, parent=fd)
                    os.mkdir(name, 0o755, dir_fd=fd)
                elif not stat.S_ISDIR(st.st_mode):
                    what = "a symlink" if stat.S_ISLNK(st.st_mode) else "a file"
                    raise ApplyError(
                        f"{self.target.root / folder}: is {what}, not a folder; venvprune does not write through "
                        "symlinks. Move it away and run venvprune again"
                    )
        with self._root.parent(rel) as (fd, name):
            st = lstat(name, fd)
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise ApplyError(f"{path}: is not a regular file; move it away and run venvprune again")
            # "replace" when an original is kept: recovery puts it back, and a second recovery (the first one killed
            # after putting it back) must not take a "create" with no staged original for a new file and delete it.
            op = self._start("replace" if st is not None else "create", rel, was=st, parent=fd)
            if st is not None:
                self._link_or_copy(name, fd, str(op))
            new = f"{op}.new"
            try:
                with open(os.open(new, NEW_FILE, 0o644, dir_fd=self._staging.fd), "wb") as handle:
                    handle.write(content)
                    handle.flush()
                    self._note(op, new=stamp(os.fstat(handle.fileno())))
                os.replace(new, name, src_dir_fd=self._staging.fd, dst_dir_fd=fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(new, dir_fd=self._staging.fd)
                raise

    def restore(self, actions: Iterable[Action]) -> list[FileError]:
        """Put the originals of executed *actions* back; used by verification to heal."""
        errors: list[FileError] = []
        for action in actions:
            op = self._ids.pop(action.path, None)
            if op is None:
                continue
            try:
                problem = put_back(self._root, self._staging, self._entries[op], same_tree=True)
            except (OSError, ValueError) as exc:
                errors.append(FileError(action.path, describe(exc)))
                continue
            if problem is not None:
                errors.append(FileError(action.path, f"{problem.message}; kept in {problem.kept_at}"))
        return errors

    def executed(self) -> tuple[Action, ...]:
        return tuple(self._actions[p] for p in self._ids if p in self._actions)

    def commit(self) -> list[FileError]:
        """Make the prune final: mark the journal committed, then delete the staged originals."""
        signals.commit_begins()  # from here on a signal lets the prune finish
        try:
            _write_marker(self._staging)
        except OSError:
            signals.commit_failed()  # not committed: the caller rolls back
            raise
        self.committed = True
        self._journal.close()
        errors = delete_committed(self._root, self._staging)
        self._release()
        return errors

    def rollback(self) -> Recovery:
        """Undo every change (idempotent); what could not be put back is kept aside and reported."""
        if self.rolled_back is None and not self.committed:
            self._journal.close()
            with signals.ignored():
                self.rolled_back = recover_staging(self._root, self._staging)
            self._release()
        return self.rolled_back or Recovery("restored", 0)

    # -- internals -----------------------------------------------------------------------------------------------

    def _remove(self, action: Action) -> None:
        rel = self._root.relative(action.path)
        with self._root.parent(rel) as (fd, name):
            st = lstat(name, fd)
            if st is None:
                raise FileNotFoundError(errno.ENOENT, "vanished since the plan was made", str(action.path))
            if action.is_directory != stat.S_ISDIR(st.st_mode):
                raise PathChanged(rel)
            op = self._start("remove", rel, action, was=st, parent=fd)
            move(name, fd, str(op), self._staging.fd, before_split=lambda folder: self._note(op, split=folder))

    def _rewrite(self, action: Action) -> None:
        assert action.transform is not None, "a rewrite action carries its transform"
        rel = self._root.relative(action.path)
        with self._root.parent(rel) as (fd, name):
            st = lstat(name, fd)
            if st is None or not stat.S_ISREG(st.st_mode):
                raise FileNotFoundError(errno.ENOENT, "vanished or changed since the plan was made", str(action.path))
            op = self._start("rewrite", rel, action, was=st, parent=fd)
            self._link_or_copy(name, fd, str(op))
            try:
                self._write_new(op, action, fd, name)
            except (OSError, ValueError):
                # This file only: undo it and go on. (A signal or a kill is left to the rollback or the next
                # recovery, which read the journal: the new file may or may not have reached the path.)
                del self._ids[action.path]
                put_back(self._root, self._staging, self._entries[op], same_tree=True)
                raise

    def _write_new(self, op: int, action: Action, fd: int, name: str) -> None:
        """New content from the staged original, written beside it (never through a symlink), then renamed over."""
        assert action.transform is not None
        new = f"{op}.new"
        source_fd = os.open(str(op), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._staging.fd)
        try:
            with (
                open(source_fd, "rb") as source,
                open(os.open(new, NEW_FILE, 0o600, dir_fd=self._staging.fd), "wb") as destination,
            ):
                action.transform.write(source, destination)
                destination.flush()
                original = os.fstat(source.fileno())
                os.fchmod(destination.fileno(), stat.S_IMODE(original.st_mode))
                if os.geteuid() == 0:
                    with contextlib.suppress(OSError):
                        os.fchown(destination.fileno(), original.st_uid, original.st_gid)
                written = stamp(os.fstat(destination.fileno()))
            self._note(op, new=written)
            os.replace(new, name, src_dir_fd=self._staging.fd, dst_dir_fd=fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(new, dir_fd=self._staging.fd)
            raise

    def _link_or_copy(self, name: str, fd: int, staged: str) -> None:
        try:
            os.link(name, staged, src_dir_fd=fd, dst_dir_fd=self._staging.fd, follow_symlinks=False)
            return
        except OSError:
            pass
        # The copy takes the staged name only when complete: recovery puts a staged original back over its path,
        # so a torn copy (a full disk, a kill) must never be found under that name.
        partial = f"{staged}.partial"
        try:
            with (
                open(os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd), "rb") as reader,
                open(os.open(partial, NEW_FILE, 0o600, dir_fd=self._staging.fd), "wb") as writer,
            ):
                shutil.copyfileobj(reader, writer, 1 << 20)
                writer.flush()
                st = os.fstat(reader.fileno())
                os.fchmod(writer.fileno(), stat.S_IMODE(st.st_mode))
                os.utime(writer.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
            os.replace(partial, staged, src_dir_fd=self._staging.fd, dst_dir_fd=self._staging.fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial, dir_fd=self._staging.fd)
            raise

    def _start(
        self, kind: str, rel: str, action: Action | None = None, *, was: os.stat_result | None = None, parent: int
    ) -> int:
        op = self._next_op
        self._next_op += 1
        entry = Entry(op, kind, rel, stamp(was) if was is not None else None, identity(parent))
        self._journal.append({"op": op, "kind": kind, "path": rel, "was": entry.was, "parent": entry.parent})
        self._entries[op] = entry
        if action is not None:
            self._ids[action.path] = op
            self._actions[action.path] = action
        return op

    def _note(self, op: int, *, new: Stamp | None = None, split: int | None = None) -> None:
        """More about a change, written before the step it describes (the new file is renamed over the path after;
        the folder's entries are moved after)."""
        if new is not None:
            self._journal.append({"op": op, "new": new})
            self._entries[op] = replace(self._entries[op], new=(*self._entries[op].new, new))
        if split is not None:
            folder, names = identity(split), tuple(sorted(os.listdir(split)))
            self._journal.append({"op": op, "split": folder, "names": names})
            self._entries[op] = replace(self._entries[op], split=folder, split_names=names)

    def _release(self) -> None:
        self._staging.close()
        self._root.close()

    def _abandon(self) -> None:
        """What the OS does for a killed process: its descriptors closed, nothing else (for tests of kills)."""
        self._journal.close()
        self._release()


@contextlib.contextmanager
def transaction(target: Target) -> Iterator[Transaction]:
    """The one way to run a transaction: rolled back on leaving, unless :meth:`Transaction.commit` ran.

    A write the transaction itself needs (journal, manifest, marker) that fails is an :class:`ApplyError` that
    says what the rollback could and could not put back.
    """
    txn = Transaction.begin(target)
    try:
        yield txn
    except OSError as exc:
        raise ApplyError(
            f"{exc.filename or target.root}: {exc.strerror or exc}; {rollback_state(txn.rollback(), txn.staging)}. "
            "Free some space or fix the permissions, then run venvprune again"
        ) from exc
    except BaseException:
        txn.rollback()
        raise
    else:
        txn.rollback()  # nothing when committed


def rollback_state(undone: Recovery, staging: Path) -> str:
    """What a rollback did, in words for a one-line error."""
    if undone.errors:
        return f"{len(undone.errors)} originals are still in {staging}"
    if undone.left_aside:
        kept = staging.parent / UNRESTORED_DIR_NAME
        return f"every change was restored except {len(undone.left_aside)}, whose originals are kept in {kept}"
    return "every change was restored"


def _write_marker(staging: Tree) -> None:
    try:
        with open(os.open(COMMITTED_NAME, NEW_FILE, 0o600, dir_fd=staging.fd), "w", encoding="utf-8") as handle:
            handle.write("committed\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        # An empty marker (a full disk) would read as committed: without it the prune is rolled back, as it must be.
        with contextlib.suppress(OSError):
            os.unlink(COMMITTED_NAME, dir_fd=staging.fd)
        raise


def _abandon(root: Tree, staging: Tree, writer: journal.Writer | None) -> None:
    if writer is not None:
        writer.close()
    staging.close()
    delete(STAGING_DIR_NAME, root.fd)
    root.close()
