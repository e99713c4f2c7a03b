"""The only module that changes the target: a journalled transaction, confined to the target.

Every change is recorded in a journal *before* it is made, and every original is kept in a staging folder inside
the target (same file system, so a rename) until the prune is committed:

- a removal renames the file or directory into staging;
- a rewrite hard-links the original into staging, writes the new content beside it and renames it over the path,
  so the path always holds either the old or the new content, and a hard-linked original (uv links venvs to its
  cache) is never changed under its other names;
- a created file (the final-stage checker) is noted so that recovery can delete it.

Confinement. Every change is made relative to directory file descriptors opened one component at a time from the
target root with ``O_NOFOLLOW`` (:class:`_Tree`): a folder that became a symlink since the plan is never followed,
and that change is skipped and reported. The journal holds paths relative to the target, so a venv copied in the
middle of a prune (``cp -a``, a Docker layer, a CI cache) is recovered in the copy, and recovery refuses any entry
that names a path outside the target.

Recovery never gets stuck. Killed at any moment, the target is restored by :func:`recover` on the next run -- or,
when the journal says the prune was committed, finished. An original is put back only onto what the prune left
there: a path that now holds something else (pip installed another version since) or whose folder is gone keeps
what is there, and the original is moved to ``.venvprune-unrestored/`` in the target, reported, and the run goes on.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from venvprune import __version__, signals
from venvprune.errors import ApplyError, LockedError, UsageError
from venvprune.plan import Action, ActionKind
from venvprune.target import MANIFEST_DIR_NAME, STAGING_DIR_NAME, UNRESTORED_DIR_NAME, Target

JOURNAL_NAME = "journal.jsonl"
COMMITTED_NAME = "COMMITTED"
JOURNAL_FORMAT = 2  # 1: absolute paths (venvprune 0.1), still read for paths inside the target
REFUSED_DIR = "refused"  # in the unrestored folder: originals of journal entries outside the target

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_FOLLOWED = (errno.ELOOP, errno.ENOTDIR, errno.ENOENT)  # a component is a symlink, a file, or gone


@dataclass(frozen=True)
class FileError:
    path: Path
    message: str


@dataclass(frozen=True)
class LeftAside:
    """An original recovery could not put back: reported, and kept in the unrestored folder for the user."""

    path: str  # as the journal named it, relative to the target when it is inside
    message: str
    kept_at: Path | None  # where the original is now (None: nothing was staged)


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover` found and did."""

    outcome: str  # "restored" or "completed"
    operations: int
    errors: tuple[FileError, ...] = ()  # could not be done at all: the staging folder is kept
    left_aside: tuple[LeftAside, ...] = ()


class PathChanged(OSError):
    """A folder on the path is gone or is not a real folder any more (a symlink, a file): not followed."""

    def __init__(self, rel: str) -> None:
        super().__init__(errno.ENOENT, "changed since the plan: a folder on its path is gone or is a symlink now", rel)


# -- the tree, reached through directory file descriptors ------------------------------------------------------------


class _Tree:
    """A directory opened once; paths below it are reached one component at a time, never through a symlink."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def open(cls, path: Path) -> _Tree:
        return cls(path, os.open(path, _DIRECTORY))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def relative(self, path: Path) -> str:
        """*path* relative to this tree, or :class:`ValueError` when it lies outside it (lexically)."""
        text, prefix = os.path.normpath(path), str(self.path).rstrip("/") + "/"
        if not text.startswith(prefix):
            raise ValueError(f"{path}: outside {self.path}")
        return _checked_relative(text[len(prefix) :])

    @contextlib.contextmanager
    def parent(self, rel: str, *, create: bool = False) -> Iterator[tuple[int, str]]:
        """``(fd of the folder holding rel, its last component)``; raises :class:`PathChanged` where not followed.

        With *create*, missing folders are made (mode 0o755, as the user's umask allows).
        """
        *folders, name = rel.split("/")
        fd = os.dup(self.fd)
        try:
            for depth, part in enumerate(folders):
                try:
                    child = os.open(part, _DIRECTORY, dir_fd=fd)
                except OSError as exc:
                    if not (create and exc.errno == errno.ENOENT):
                        if exc.errno in _NOT_FOLLOWED:
                            raise PathChanged("/".join(folders[: depth + 1])) from exc
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, _DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = child
            yield fd, name
        finally:
            os.close(fd)

    def open_folder(self, rel: str) -> _Tree:
        with self.parent(rel) as (fd, name):
            try:
                return _Tree(self.path / rel, os.open(name, _DIRECTORY, dir_fd=fd))
            except OSError as exc:
                if exc.errno in _NOT_FOLLOWED:
                    raise PathChanged(rel) from exc
                raise


def _checked_relative(rel: str) -> str:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{rel}: not a path inside the target")
    return rel


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


Stamp = tuple[str, int, int]  # (type, size, mtime in ns): what a path held; survives `cp -a`, unlike an inode


def _stamp(st: os.stat_result) -> Stamp:
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "file"
    return (kind, st.st_size if kind != "dir" else 0, st.st_mtime_ns if kind != "dir" else 0)


def _move(
    source: str, source_fd: int, destination: str, destination_fd: int, before_split: Callable[[], None] | None = None
) -> None:
    """Rename, also where overlayfs refuses to rename a directory.

    In a Docker build, a directory created by an earlier layer cannot be renamed (EXDEV: overlayfs has
    ``redirect_dir`` off by default), while its files can. Such a directory is moved entry by entry into a new
    directory, and the emptied original is removed; *before_split* is called first (to journal it), so that a
    recovery knows to merge back a move cut short.
    """
    try:
        os.rename(source, destination, src_dir_fd=source_fd, dst_dir_fd=destination_fd)
        return
    except OSError as exc:
        st = _lstat(source, source_fd)
        if exc.errno != errno.EXDEV or st is None or not stat.S_ISDIR(st.st_mode):
            raise
    if before_split is not None:
        before_split()
    with contextlib.suppress(FileExistsError):
        os.mkdir(destination, 0o700, dir_fd=destination_fd)
    with _opened(source, source_fd) as inner_source, _opened(destination, destination_fd) as inner_destination:
        for child in os.listdir(inner_source):
            _move(child, inner_source, child, inner_destination)
        os.chmod(inner_destination, stat.S_IMODE(st.st_mode))
    os.rmdir(source, dir_fd=source_fd)


@contextlib.contextmanager
def _opened(name: str, dir_fd: int) -> Iterator[int]:
    fd = os.open(name, _DIRECTORY, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def _delete(name: str, dir_fd: int) -> list[str]:
    """Delete *name* (a tree is emptied through file descriptors: a symlink in it is unlinked, never followed).

    Only for trees venvprune made (staging, mode 0o700): a folder in it without write permission is made writable.
    Returns the paths (relative to *dir_fd*) that could not be deleted.
    """
    st = _lstat(name, dir_fd)
    if st is None:
        return []
    if not stat.S_ISDIR(st.st_mode):
        try:
            os.unlink(name, dir_fd=dir_fd)
        except OSError:
            return [name]
        return []
    failed: list[str] = []
    try:
        with contextlib.suppress(OSError):
            if st.st_mode & stat.S_IRWXU != stat.S_IRWXU:
                os.chmod(name, 0o700, dir_fd=dir_fd)
        with _opened(name, dir_fd) as inner:
            for child in os.listdir(inner):
                failed += [f"{name}/{f}" for f in _delete(child, inner)]
        if not failed:
            os.rmdir(name, dir_fd=dir_fd)
    except OSError:
        failed.append(name)
    return failed


def _describe(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


# -- the journal ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """One change as the journal holds it."""

    op: int
    kind: str  # remove, rewrite, create, replace, mkdir
    path: str  # relative to the target root (absolute in journals of venvprune 0.1)
    was: Stamp | None = None  # what the path held before
    new: tuple[Stamp, ...] = ()  # what venvprune wrote there (a RECORD rewritten again after a restore: several)
    split: bool = False  # a directory moved entry by entry (overlayfs)


def _read_journal(staging: _Tree) -> list[_Entry]:
    try:
        fd = os.open(JOURNAL_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=staging.fd)
    except FileNotFoundError:
        return []
    with open(fd, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    entries: dict[int, _Entry] = {}
    for line in lines:
        try:
            record = json.loads(line)
            op = int(record["op"])
        except (ValueError, KeyError, TypeError):
            continue  # the header, or a torn last line: that change never started
        if "kind" in record:
            was = record.get("was")
            entries[op] = _Entry(op, str(record["kind"]), str(record["path"]), tuple(was) if was else None)
        elif op in entries and "new" in record:
            entries[op] = replace(entries[op], new=(*entries[op].new, tuple(record["new"])))
        elif op in entries and record.get("split"):
            entries[op] = replace(entries[op], split=True)
    return list(entries.values())


# -- the transaction -----------------------------------------------------------------------------------------------


class Transaction:
    """A prune in progress. Use :func:`transaction`; it ends with :meth:`commit`, or is rolled back."""

    def __init__(self, target: Target, root: _Tree, staging: _Tree) -> None:
        self.target = target
        self.staging = target.staging_dir
        self._root = root
        self._staging = staging
        # Transforms read and write staged files by path: through the folder's descriptor where /proc has it, so
        # that renaming the staging folder away in the middle changes nothing.
        proc = Path(f"/proc/self/fd/{staging.fd}")
        self._staged_dir = proc if proc.is_dir() else self.staging
        fd = os.open(
            JOURNAL_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=staging.fd
        )
        self._journal = open(fd, "a", encoding="utf-8")  # noqa: SIM115 -- closed in _close
        self._next_op = 0
        self._entries: dict[int, _Entry] = {}
        self._ids: dict[Path, int] = {}  # executed and not restored: path -> journal op number
        self._actions: dict[Path, Action] = {}
        self.committed = False
        self.rolled_back: Recovery | None = None

    @classmethod
    def begin(cls, target: Target) -> Transaction:
        root = _Tree.open(target.root)
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
        transaction: Transaction | None = None
        try:
            for site_packages in target.site_packages:
                if site_packages.stat().st_dev != os.fstat(staging.fd).st_dev:
                    raise ApplyError(
                        f"{site_packages}: on another file system than {target.root}; "
                        "name the site-packages directory instead"
                    )
            transaction = cls(target, root, staging)
            transaction._append({"venvprune": __version__, "journal": JOURNAL_FORMAT, "target": str(target.root)})
        except OSError as exc:  # a full disk: not even the journal fits
            if transaction is not None:
                transaction._close()
            _abandon(root, staging)
            raise ApplyError(
                f"{target.staging_dir / JOURNAL_NAME}: cannot write the journal ({exc.strerror}); nothing was "
                "changed. Free some space on that file system and run venvprune again"
            ) from exc
        except BaseException:  # refused, or a signal before the first change: no staging folder outlives it
            if transaction is not None:
                transaction._close()
            _abandon(root, staging)
            raise
        return transaction

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
                errors.append(FileError(action.path, _describe(exc)))
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
                    errors.append(FileError(action.path, _describe(exc)))
        return errors

    def create(self, path: Path, content: bytes) -> None:
        """Write a new file inside the target (replacing, recoverably, any file already there).

        Missing folders are created and journalled too, so recovery leaves no empty folder behind. A folder on the
        way that is a symlink is refused: venvprune never writes through one.
        """
        rel = self._root.relative(path)
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            with self._root.parent(folder) as (fd, name):
                st = _lstat(name, fd)
                if st is None:
                    self._start("mkdir", folder)
                    os.mkdir(name, 0o755, dir_fd=fd)
                elif not stat.S_ISDIR(st.st_mode):
                    what = "a symlink" if stat.S_ISLNK(st.st_mode) else "a file"
                    raise ApplyError(
                        f"{self.target.root / folder}: is {what}, not a folder; venvprune does not write through "
                        "symlinks. Move it away and run venvprune again"
                    )
        with self._root.parent(rel) as (fd, name):
            st = _lstat(name, fd)
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise ApplyError(f"{path}: is not a regular file; move it away and run venvprune again")
            # "replace" when an original is kept: recovery puts it back, and a second recovery (the first one killed
            # after putting it back) must not take a "create" with no staged original for a new file and delete it.
            kind = "replace" if st is not None else "create"
            op = self._start(kind, rel, was=st)
            if st is not None:
                self._link_or_copy(name, fd, str(op))
            new = f"{op}.new"
            with open(
                os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=self._staging.fd), "wb"
            ) as handle:
                handle.write(content)
            self._note(op, new=_stamp(os.stat(new, dir_fd=self._staging.fd)))
            os.replace(new, name, src_dir_fd=self._staging.fd, dst_dir_fd=fd)

    def restore(self, actions: Iterable[Action]) -> list[FileError]:
        """Put the originals of executed *actions* back; used by verification to heal."""
        errors: list[FileError] = []
        for action in actions:
            op = self._ids.pop(action.path, None)
            if op is None:
                continue
            try:
                problem = _put_back(self._root, self._staging, self._entries[op])
            except OSError as exc:
                errors.append(FileError(action.path, _describe(exc)))
                continue
            if problem is not None:
                errors.append(FileError(action.path, problem.message))
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
        self._close()
        errors = _delete_committed(self._root, self._staging)
        self._release()
        return errors

    def rollback(self) -> Recovery:
        """Undo every change (idempotent); what could not be put back is kept aside and reported."""
        if self.rolled_back is None and not self.committed:
            self._close()
            with signals.ignored():
                self.rolled_back = _recover_staging(self._root, self._staging)
            self._release()
        return self.rolled_back or Recovery("restored", 0)

    # -- internals -----------------------------------------------------------------------------------------------

    def _remove(self, action: Action) -> None:
        rel = self._root.relative(action.path)
        with self._root.parent(rel) as (fd, name):
            st = _lstat(name, fd)
            if st is None:
                raise FileNotFoundError(errno.ENOENT, "vanished since the plan was made", str(action.path))
            if action.is_directory != stat.S_ISDIR(st.st_mode):
                raise PathChanged(rel)
            op = self._start("remove", rel, action, was=st)
            _move(name, fd, str(op), self._staging.fd, before_split=lambda: self._note(op, split=True))

    def _rewrite(self, action: Action) -> None:
        assert action.transform is not None, "a rewrite action carries its transform"
        rel = self._root.relative(action.path)
        with self._root.parent(rel) as (fd, name):
            st = _lstat(name, fd)
            if st is None or not stat.S_ISREG(st.st_mode):
                raise FileNotFoundError(errno.ENOENT, "vanished or changed since the plan was made", str(action.path))
            op = self._start("rewrite", rel, action, was=st)
            self._link_or_copy(name, fd, str(op))
            try:
                self._write_new(op, action, fd, name)
            except (OSError, ValueError):
                # This file only: undo it and go on. (A signal or a kill is left to the rollback or the next
                # recovery, which read the journal: the new file may or may not have reached the path.)
                del self._ids[action.path]
                _put_back(self._root, self._staging, self._entries[op])
                raise

    def _write_new(self, op: int, action: Action, fd: int, name: str) -> None:
        """New content from the staged original, written beside it, then renamed over the path."""
        assert action.transform is not None
        new = f"{op}.new"
        try:
            action.transform.write(self._staged_dir / str(op), self._staged_dir / new)
            original = os.stat(str(op), dir_fd=self._staging.fd)
            os.chmod(new, stat.S_IMODE(original.st_mode), dir_fd=self._staging.fd)
            if os.geteuid() == 0:
                with contextlib.suppress(OSError):
                    os.chown(new, original.st_uid, original.st_gid, dir_fd=self._staging.fd)
            self._note(op, new=_stamp(os.stat(new, dir_fd=self._staging.fd)))
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
            source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            with open(source, "rb") as reader:
                st = os.fstat(reader.fileno())
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                with open(os.open(partial, flags, 0o600, dir_fd=self._staging.fd), "wb") as writer:
                    shutil.copyfileobj(reader, writer, 1 << 20)
                    os.fchmod(writer.fileno(), stat.S_IMODE(st.st_mode))
            os.utime(partial, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=self._staging.fd)
            os.replace(partial, staged, src_dir_fd=self._staging.fd, dst_dir_fd=self._staging.fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial, dir_fd=self._staging.fd)
            raise

    def _start(self, kind: str, rel: str, action: Action | None = None, was: os.stat_result | None = None) -> int:
        op = self._next_op
        self._next_op += 1
        entry = _Entry(op, kind, rel, _stamp(was) if was is not None else None)
        self._append({"op": op, "kind": kind, "path": rel, "was": entry.was})
        self._entries[op] = entry
        if action is not None:
            self._ids[action.path] = op
            self._actions[action.path] = action
        return op

    def _note(self, op: int, *, new: Stamp | None = None, split: bool = False) -> None:
        """More about a change, written before the step it describes (the new file is renamed over the path after)."""
        if new is not None:
            self._append({"op": op, "new": new})
            self._entries[op] = replace(self._entries[op], new=(*self._entries[op].new, new))
        if split:
            self._append({"op": op, "split": True})
            self._entries[op] = replace(self._entries[op], split=True)

    def _append(self, record: dict[str, object]) -> None:
        # One line per change, written before the change: a kill leaves at worst a torn last line for a change
        # that never started. Flushed (not fsynced): surviving a killed process is the promise, not a power cut.
        self._journal.write(json.dumps(record) + "\n")
        self._journal.flush()

    def _close(self) -> None:
        if not self._journal.closed:
            with contextlib.suppress(OSError):  # a line that never reached the disk was a change never started
                self._journal.close()

    def _release(self) -> None:
        self._staging.close()
        self._root.close()

    def _abandon(self) -> None:
        """What the OS does for a killed process: its descriptors closed, nothing else (for tests of kills)."""
        self._close()
        self._release()


@contextlib.contextmanager
def transaction(target: Target) -> Iterator[Transaction]:
    """The one way to run a transaction: rolled back on leaving, unless :meth:`Transaction.commit` ran.

    A write the transaction itself needs (journal, manifest, marker) that fails is an :class:`ApplyError` that
    says whether every change was restored.
    """
    txn = Transaction.begin(target)
    try:
        yield txn
    except OSError as exc:
        undone = txn.rollback()
        state = (
            f"{len(undone.errors)} originals are still in {txn.staging}"
            if undone.errors
            else "every change was restored"
        )
        raise ApplyError(
            f"{exc.filename or target.root}: {exc.strerror or exc}; {state}. "
            "Free some space or fix the permissions, then run venvprune again"
        ) from exc
    except BaseException:
        txn.rollback()
        raise
    else:
        txn.rollback()  # nothing when committed


def _abandon(root: _Tree, staging: _Tree) -> None:
    staging.close()
    _delete(STAGING_DIR_NAME, root.fd)
    root.close()


# -- recovery ------------------------------------------------------------------------------------------------------


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
        root = _Tree.open(root_path)
        try:
            staging = _open_staging(root)
            if staging is None:
                continue
            try:
                result = _recover_staging(root, staging)
            finally:
                staging.close()
        finally:
            root.close()
        found = result if found is None else _merged(found, result)
    return found


def pending(target: Target) -> Path | None:
    """The staging folder of an interrupted prune of *target*, if any (a dry run and a check refuse then)."""
    for foreign in _foreign_staging(target):
        return foreign
    for root_path in _staging_roots(target):
        root = _Tree.open(root_path)
        try:
            staging = _open_staging(root)
        finally:
            root.close()
        if staging is not None:
            staging.close()
            return root_path / STAGING_DIR_NAME
    return None


def _staging_roots(target: Target) -> list[Path]:
    return list(dict.fromkeys([target.root, *target.site_packages]))


def _foreign_staging(target: Target) -> Iterator[Path]:
    if target.root not in target.site_packages:
        return
    # lib/pythonX.Y/site-packages: the venv or prefix is three levels up.
    for ancestor in list(target.root.parents)[:3]:
        if os.path.lexists(ancestor / STAGING_DIR_NAME):
            yield ancestor / STAGING_DIR_NAME


def _open_staging(root: _Tree) -> _Tree | None:
    st = _lstat(STAGING_DIR_NAME, root.fd)
    if st is None:
        return None
    if not stat.S_ISDIR(st.st_mode):
        what = "a symlink" if stat.S_ISLNK(st.st_mode) else "a file"
        raise ApplyError(
            f"{root.path / STAGING_DIR_NAME}: is {what}, not a staging folder of venvprune; "
            "move it away and run venvprune again"
        )
    return root.open_folder(STAGING_DIR_NAME)


def _merged(first: Recovery, second: Recovery) -> Recovery:
    outcome = "restored" if "restored" in (first.outcome, second.outcome) else "completed"
    return Recovery(
        outcome,
        first.operations + second.operations,
        first.errors + second.errors,
        first.left_aside + second.left_aside,
    )


def _recover_staging(root: _Tree, staging: _Tree) -> Recovery:
    errors: list[FileError] = []
    if _lstat(COMMITTED_NAME, staging.fd) is not None:
        return Recovery("completed", 0, tuple(_delete_committed(root, staging)))
    left: list[LeftAside] = []
    restored = 0
    for entry in sorted(_read_journal(staging), key=lambda e: -e.op):
        try:
            rel = _journal_path(root, entry.path)
        except ValueError:
            left += _refuse(root, staging, entry)
            continue
        try:
            problem = _put_back(root, staging, replace(entry, path=rel))
        except OSError as exc:
            errors.append(FileError(root.path / rel, _describe(exc)))
            continue
        if problem is None:
            restored += 1
        else:
            left.append(problem)
    if not errors:
        # Anything else in staging belongs to no journal line (a torn one): kept for the user, never deleted.
        for name in sorted(os.listdir(staging.fd)):
            if name != JOURNAL_NAME and not name.endswith((".new", ".partial")):
                try:
                    kept = _keep_aside(root, staging, name, f"{REFUSED_DIR}/{name}")
                except OSError as exc:
                    errors.append(FileError(staging.path / name, _describe(exc)))
                    continue
                left.append(
                    LeftAside(f"{STAGING_DIR_NAME}/{name}", "in the staging folder, named by no journal line", kept)
                )
    if errors:
        # Keep the staging folder: it still holds originals that could not be put back.
        return Recovery("restored", restored, tuple(errors), tuple(left))
    for name in _delete(STAGING_DIR_NAME, root.fd):
        errors.append(FileError(root.path / name, "cannot be deleted; check the permissions of its folder"))
    return Recovery("restored", restored, tuple(errors), tuple(left))


def _journal_path(root: _Tree, path: str) -> str:
    """A journal path as a path relative to *root*; ValueError when it names something outside."""
    if path.startswith("/"):
        return root.relative(Path(path))  # a journal of venvprune 0.1: absolute paths
    return _checked_relative(path)


def _refuse(root: _Tree, staging: _Tree, entry: _Entry) -> list[LeftAside]:
    message = "outside the target; refused"
    if _lstat(str(entry.op), staging.fd) is None:
        return [LeftAside(entry.path, message, None)]
    kept = _keep_aside(root, staging, str(entry.op), f"{REFUSED_DIR}/{entry.op}")
    return [LeftAside(entry.path, message, kept)]


def _put_back(root: _Tree, staging: _Tree, entry: _Entry) -> LeftAside | None:
    """Undo one change, onto what the prune left there and nothing else; otherwise keep the original aside."""
    staged = str(entry.op)
    for leftover in (f"{staged}.new", f"{staged}.partial"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover, dir_fd=staging.fd)
    has_original = _lstat(staged, staging.fd) is not None
    try:
        with root.parent(entry.path) as (fd, name):
            current = _lstat(name, fd)
            if entry.kind == "mkdir":
                with contextlib.suppress(OSError):  # a folder something else filled stays
                    os.rmdir(name, dir_fd=fd)
                return None
            if not has_original:
                if entry.kind == "create" and current is not None and _stamp(current) in entry.new:
                    os.unlink(name, dir_fd=fd)  # a file venvprune created, unchanged since
                return None
            if entry.kind == "remove":
                if current is None:
                    _move(staged, staging.fd, name, fd)
                    return None
                if entry.split and stat.S_ISDIR(current.st_mode):
                    return _merge_back(root, staging, entry, fd, name)
            elif current is not None and _stamp(current) in entry.new:
                os.replace(staged, name, src_dir_fd=staging.fd, dst_dir_fd=fd)
                return None
            elif current is not None and entry.was is not None and _stamp(current) == entry.was:
                os.unlink(staged, dir_fd=staging.fd)  # never replaced: the path still holds the original
                return None
    except PathChanged:
        if not has_original:
            return None
        kept = _keep_aside(root, staging, staged, entry.path)
        return LeftAside(entry.path, "its folder is gone or is a symlink now; the original was not put back", kept)
    kept = _keep_aside(root, staging, staged, entry.path)
    now = "is gone now" if current is None else "holds something else now (installed since?)"
    return LeftAside(entry.path, f"{now}; the original was not put back", kept)


def _merge_back(root: _Tree, staging: _Tree, entry: _Entry, fd: int, name: str) -> LeftAside | None:
    """A directory moved entry by entry and cut short: put back what was moved, then drop the staged shell."""
    if _merge(str(entry.op), staging.fd, name, fd):
        return None
    kept = _keep_aside(root, staging, str(entry.op), entry.path)
    return LeftAside(entry.path, "holds something else now (installed since?); the original was not put back", kept)


def _merge(staged: str, staged_parent: int, name: str, parent: int) -> bool:
    """Move the entries of *staged* back into the folder *name*; folders in both merge (moved in part too).

    False when an entry is in both and is not a folder in both: what is left stays staged.
    """
    merged = True
    with _opened(staged, staged_parent) as staged_fd, _opened(name, parent) as path_fd:
        for child in os.listdir(staged_fd):
            here = _lstat(child, path_fd)
            if here is None:
                _move(child, staged_fd, child, path_fd)
            elif stat.S_ISDIR(here.st_mode) and stat.S_ISDIR(
                os.stat(child, dir_fd=staged_fd, follow_symlinks=False).st_mode
            ):
                merged = _merge(child, staged_fd, child, path_fd) and merged
            else:
                merged = False
    if merged:
        os.rmdir(staged, dir_fd=staged_parent)
    return merged


def _keep_aside(root: _Tree, staging: _Tree, staged: str, rel: str) -> Path:
    """Move a staged original to ``<target>/.venvprune-unrestored/<rel>`` (never over anything); where it went."""
    destination = f"{UNRESTORED_DIR_NAME}/{rel}"
    try:
        with root.parent(destination, create=True) as (fd, name):
            candidate, number = name, 0
            while _lstat(candidate, fd) is not None:
                number += 1
                candidate = f"{name}.{number}"
            _move(staged, staging.fd, candidate, fd)
            return root.path / destination.rpartition("/")[0] / candidate
    except PathChanged as exc:
        raise ApplyError(
            f"{root.path / UNRESTORED_DIR_NAME}: is a symlink or a file, not a folder; venvprune does not write "
            "through symlinks. Move it away and run venvprune again"
        ) from exc


def _write_marker(staging: _Tree) -> None:
    try:
        fd = os.open(
            COMMITTED_NAME,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=staging.fd,
        )
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write("committed\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        # An empty marker (a full disk) would read as committed: without it the prune is rolled back, as it must be.
        with contextlib.suppress(OSError):
            os.unlink(COMMITTED_NAME, dir_fd=staging.fd)
        raise


def _delete_committed(root: _Tree, staging: _Tree) -> list[FileError]:
    """Delete a committed staging folder with its COMMITTED marker last: killed midway, it still reads as committed.

    (Deleting in directory order, which on tmpfs is newest first, took the marker first, and a kill right after it
    left staged originals that the next run took for an uncommitted prune and put back.)
    """
    failed: list[str] = []
    for name in sorted(os.listdir(staging.fd)):
        if name != COMMITTED_NAME:
            failed += _delete(name, staging.fd)
    if failed:  # the marker stays, so the next run finishes the rest
        return [FileError(staging.path / f, "cannot be deleted; check the permissions of its folder") for f in failed]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(COMMITTED_NAME, dir_fd=staging.fd)
    try:
        os.rmdir(STAGING_DIR_NAME, dir_fd=root.fd)
    except OSError as exc:
        # Renamed away or replaced while the prune ran: what is left there is not venvprune's to delete.
        return [FileError(root.path / STAGING_DIR_NAME, f"{_describe(exc)}; remove it by hand")]
    return []


# -- own folders and the lock --------------------------------------------------------------------------------------


def check_own_folders(target: Target) -> None:
    """Refuse, before anything changes, a symlink or a file where venvprune writes a folder of its own."""
    for name in (MANIFEST_DIR_NAME,):
        path = target.root / name
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
            what = "a symlink" if os.path.islink(path) else "a file"
            raise ApplyError(
                f"{path}: is {what}, not venvprune's folder; venvprune does not write through symlinks. "
                "Move it away and run venvprune again"
            )


@contextlib.contextmanager
def target_lock(target: Target, *, shared: bool = False) -> Iterator[None]:
    """One venvprune changes a target at a time: flock(2) on the target's folders, so no lock file is left behind.

    The lock belongs to the folders themselves (their device and inode), not to how they were spelled: a prune of
    a venv and one of its site-packages directory lock each other out. A dry run and a check take it *shared*: any
    number of them at once, none while a prune works.
    """
    folders: dict[tuple[int, int], int] = {}
    try:
        for folder in (target.root, *target.site_packages):
            try:
                fd = os.open(folder, _DIRECTORY)
            except OSError as exc:
                raise UsageError(f"{folder}: cannot open it ({exc.strerror}); check its permissions") from exc
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) in folders:
                os.close(fd)
            else:
                folders[(st.st_dev, st.st_ino)] = fd
        for _, fd in sorted(folders.items()):
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except OSError as exc:
                raise LockedError(f"{target.root}: another venvprune is working on it; wait for it to finish") from exc
        yield
    finally:
        for fd in folders.values():
            os.close(fd)
