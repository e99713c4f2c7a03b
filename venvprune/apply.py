"""The only module that changes the disk: a journalled transaction over the target.

Every change is recorded in a journal *before* it is made, and every original is kept in a staging folder inside
the target (same file system, so a rename) until the prune is committed:

- a removal renames the file or directory into staging;
- a rewrite hard-links the original into staging, writes the new content beside it and renames it over the path,
  so the path always holds either the old or the new content, and a hard-linked original (uv links venvs to its
  cache) is never changed under its other names;
- a created file (the final-stage checker) is noted so that recovery can delete it.

Killed at any moment, the target is restored by :func:`recover` on the next run -- or, when the journal says the
prune was committed, finished -- before anything else happens.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from venvprune import __version__
from venvprune.errors import ApplyError, Interrupted, LockedError
from venvprune.plan import Action, ActionKind
from venvprune.target import Target

JOURNAL_NAME = "journal.jsonl"
COMMITTED_NAME = "COMMITTED"


@dataclass(frozen=True)
class FileError:
    path: Path
    message: str


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover` found and did."""

    outcome: str  # "restored" or "completed"
    operations: int
    errors: tuple[FileError, ...] = ()


class Transaction:
    """A prune in progress. Create with :meth:`begin`; end with :meth:`commit` or :meth:`rollback`."""

    def __init__(self, target: Target, staging: Path) -> None:
        self.target = target
        self.staging = staging
        self._journal = open(staging / JOURNAL_NAME, "a", encoding="utf-8")  # noqa: SIM115 -- closed in _close
        self._next_op = 0
        self._ids: dict[Path, int] = {}  # executed and not restored: path -> journal op number
        self._actions: dict[Path, Action] = {}

    @classmethod
    def begin(cls, target: Target) -> Transaction:
        staging = target.staging_dir
        try:
            staging.mkdir()
        except FileExistsError as exc:
            raise ApplyError(f"{staging}: an earlier prune is unfinished; run venvprune again to recover it") from exc
        except OSError as exc:
            raise ApplyError(
                f"{staging}: cannot create the staging folder ({exc.strerror}); is the target writable?"
            ) from exc
        try:
            for site_packages in target.site_packages:
                if site_packages.stat().st_dev != staging.stat().st_dev:
                    raise ApplyError(
                        f"{site_packages}: on another file system than {target.root}; "
                        "name the site-packages directory instead"
                    )
            transaction = cls(target, staging)
            transaction._append({"venvprune": __version__, "target": str(target.root)})
        except OSError as exc:  # a full disk: not even the journal fits
            shutil.rmtree(staging, ignore_errors=True)
            raise ApplyError(
                f"{staging / JOURNAL_NAME}: cannot write the journal ({exc.strerror}); nothing was changed. "
                "Free some space on that file system and run venvprune again"
            ) from exc
        except BaseException:  # refused, or a signal before the first change: no staging folder outlives it
            shutil.rmtree(staging, ignore_errors=True)
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
                    self._rewrite(action, redo=False)
            except (OSError, ValueError) as exc:  # ValueError: content a transform cannot read (bad UTF-8, ELF)
                errors.append(FileError(action.path, _describe(exc)))
        return errors

    def redo(self, actions: Iterable[Action]) -> list[FileError]:
        """Rewrite again from the staged originals (a RECORD after verification restored files it lists)."""
        errors: list[FileError] = []
        for action in actions:
            if action.path in self._ids:
                try:
                    self._rewrite(action, redo=True)
                except (OSError, ValueError) as exc:
                    errors.append(FileError(action.path, _describe(exc)))
        return errors

    def create(self, path: Path, content: bytes) -> None:
        """Write a new file inside the target (replacing, recoverably, any file already there).

        Missing parent directories are created and journalled too, so recovery leaves no empty folder behind.
        """
        missing = [p for p in reversed(path.parents) if not os.path.lexists(p)]
        for directory in missing:
            self._start("mkdir", directory)
            directory.mkdir()
        # "replace" when an original is kept: recovery puts it back, and a second recovery (the first one killed
        # after putting it back) must not take a "create" with no staged original for a new file and delete it.
        kind = "replace" if os.path.lexists(path) else "create"
        op = self._start(kind, path)
        staged = self._staged(op)
        if kind == "replace":
            _link_or_copy(path, staged)
        new = staged.with_name(f"{op}.new")
        new.write_bytes(content)
        os.replace(new, path)

    def restore(self, actions: Iterable[Action]) -> list[FileError]:
        """Put the originals of executed *actions* back; used by verification to heal."""
        errors: list[FileError] = []
        for action in actions:
            op = self._ids.pop(action.path, None)
            if op is None:
                continue
            try:
                _restore_one(self._kind(action), action.path, self._staged(op))
            except OSError as exc:
                errors.append(FileError(action.path, _describe(exc)))
        return errors

    def executed(self) -> tuple[Action, ...]:
        return tuple(self._actions[p] for p in self._ids if p in self._actions)

    def commit(self) -> list[FileError]:
        """Make the prune final: mark the journal committed, then delete the staged originals."""
        _Signals.committing = True  # from here on a signal lets the prune finish (see signals_interrupt)
        try:
            _write_marker(self.staging / COMMITTED_NAME)
        except OSError:
            _Signals.committing = False  # not committed: the caller rolls back
            raise
        self._close()
        return _delete_committed(self.staging)

    def rollback(self) -> Recovery:
        self._close()
        return _recover_staging(self.staging)

    # -- internals -----------------------------------------------------------------------------------------------

    def _remove(self, action: Action) -> None:
        if not os.path.lexists(action.path):
            raise FileNotFoundError(errno.ENOENT, "vanished since the plan was made", str(action.path))
        op = self._start("remove", action.path, action)
        _move(action.path, self._staged(op))

    def _rewrite(self, action: Action, *, redo: bool) -> None:
        assert action.transform is not None, "a rewrite action carries its transform"
        if redo:
            op = self._ids[action.path]
        else:
            if action.path.is_symlink() or not action.path.is_file():
                raise FileNotFoundError(errno.ENOENT, "vanished or changed since the plan was made", str(action.path))
            op = self._start("rewrite", action.path, action)
            _link_or_copy(action.path, self._staged(op))
        original = self._staged(op)
        new = original.with_name(f"{op}.new")
        try:
            action.transform.write(original, new)
            _copy_ownership(original, new)
            os.replace(new, action.path)
        except BaseException:
            with contextlib.suppress(OSError):
                new.unlink()
            if not redo:  # leave the path as it was, and forget the op
                os.replace(original, action.path)
                del self._ids[action.path]
            raise

    def _start(self, kind: str, path: Path, action: Action | None = None) -> int:
        op = self._next_op
        self._next_op += 1
        self._append({"op": op, "kind": kind, "path": str(path)})
        self._ids[path] = op
        if action is not None:
            self._actions[path] = action
        return op

    def _kind(self, action: Action) -> str:
        return "remove" if action.kind is ActionKind.REMOVE else "rewrite"

    def _staged(self, op: int) -> Path:
        return self.staging / str(op)

    def _append(self, record: dict[str, object]) -> None:
        # One line per change, written before the change: a kill leaves at worst a torn last line for a change
        # that never started. Flushed (not fsynced): surviving a killed process is the promise, not a power cut.
        self._journal.write(json.dumps(record) + "\n")
        self._journal.flush()

    def _close(self) -> None:
        if not self._journal.closed:
            with contextlib.suppress(OSError):  # a line that never reached the disk was a change never started
                self._journal.close()


def recover(target: Target) -> Recovery | None:
    """Finish or undo a prune that was interrupted; None when there was none."""
    if not os.path.lexists(target.staging_dir):
        return None
    return _recover_staging(target.staging_dir)


def _recover_staging(staging: Path) -> Recovery:
    if (staging / COMMITTED_NAME).exists():
        return Recovery("completed", 0, tuple(_delete_committed(staging)))
    errors: list[FileError] = []
    restored = 0
    for op, kind, path in reversed(list(_read_journal(staging / JOURNAL_NAME))):
        staged = staging / str(op)
        try:
            if kind == "mkdir":
                # The files created in it were removed first (reverse order); a folder something else filled stays.
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            if kind == "create" and not os.path.lexists(staged):
                # No original was there. A leftover "<op>.new" means the new file never reached its path.
                if os.path.lexists(path) and not os.path.lexists(staging / f"{op}.new"):
                    path.unlink()
                    restored += 1
                continue
            if os.path.lexists(staged):
                _restore_one(kind, path, staged)
                restored += 1
        except OSError as exc:
            errors.append(FileError(path, _describe(exc)))
    if errors:
        # Keep the staging folder: it still holds originals that could not be put back.
        return Recovery("restored", restored, tuple(errors))
    errors.extend(_delete_tree(staging))
    return Recovery("restored", restored, tuple(errors))


def _read_journal(journal: Path) -> Iterator[tuple[int, str, Path]]:
    try:
        lines = journal.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn last line: that change never started
        if "op" in record:
            yield int(record["op"]), str(record["kind"]), Path(record["path"])


def _restore_one(kind: str, path: Path, staged: Path) -> None:
    if kind in ("rewrite", "create", "replace"):
        os.replace(staged, path)  # atomic: the path never goes missing
        return
    if _is_directory(path) and _is_directory(staged):
        # A directory whose contents were moved one by one (overlayfs, below) and a crash or a restore came
        # in the middle: put back what was moved, then drop the staged shell.
        for child in os.listdir(staged):
            _restore_one(kind, path / child, staged / child)
        staged.rmdir()
        return
    if os.path.lexists(path):
        # Recreated after we moved the original away (a cache written by some process): the original wins.
        _delete_path(path)
    _move(staged, path)


def _move(source: Path, destination: Path) -> None:
    """Rename *source* to *destination*, also where overlayfs refuses to rename a directory.

    In a Docker build, a directory created by an earlier layer cannot be renamed (EXDEV: overlayfs has
    ``redirect_dir`` off by default), while its files can. Such a directory is moved entry by entry into a new
    directory, and the emptied original is removed. :func:`_restore_one` merges back a move cut short.
    """
    try:
        os.rename(source, destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV or not _is_directory(source):
            raise
        mode = stat.S_IMODE(source.lstat().st_mode)
        destination.mkdir(mode=0o700, exist_ok=True)
        for child in os.listdir(source):
            _move(source / child, destination / child)
        os.chmod(destination, mode)
        source.rmdir()


def _is_directory(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError:
        # The copy takes the staged name only when complete: recovery puts a staged original back over its path,
        # so a torn copy (a full disk, a kill) must never be found under that name.
        partial = destination.with_name(destination.name + ".partial")
        try:
            shutil.copy2(source, partial, follow_symlinks=False)
            os.replace(partial, destination)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise


def _copy_ownership(original: Path, new: Path) -> None:
    st = original.stat()
    os.chmod(new, stat.S_IMODE(st.st_mode))
    if hasattr(os, "chown") and os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.chown(new, st.st_uid, st.st_gid)


def _write_marker(path: Path) -> None:
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("committed\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        # An empty marker (a full disk) would read as committed: without it the prune is rolled back, as it must be.
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def _delete_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _delete_committed(staging: Path) -> list[FileError]:
    """Delete a committed staging folder with its COMMITTED marker last: killed midway, it still reads as committed.

    (``rmtree`` goes in directory order, which on tmpfs is newest first: the marker went first, and a kill right
    after it left staged originals that the next run took for an uncommitted prune and put back.)
    """
    errors: list[FileError] = []
    for name in sorted(os.listdir(staging)):
        if name == COMMITTED_NAME:
            continue
        entry = staging / name
        if _is_directory(entry):
            errors.extend(_delete_tree(entry))
        else:
            try:
                entry.unlink()
            except OSError as exc:
                errors.append(FileError(entry, _describe(exc)))
    if errors:
        return errors  # the marker stays, so the next run finishes the rest
    return _delete_tree(staging)


def _delete_tree(path: Path) -> list[FileError]:
    errors: list[FileError] = []

    def retry(_func: object, failed: str, _error: object) -> None:
        # A read-only directory inside the tree: make it writable and try once more. Never a folder above the
        # tree (the target root itself), whose permissions are the user's.
        parent = Path(os.path.dirname(failed))
        if parent != path and path not in parent.parents:
            errors.append(FileError(Path(failed), "cannot be deleted; check the permissions of its folder"))
            return
        try:
            os.chmod(parent, 0o700)
            _delete_path(Path(failed))
        except OSError as exc:
            errors.append(FileError(Path(failed), _describe(exc)))

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)
    return errors


def _describe(exc: Exception) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


@contextlib.contextmanager
def target_lock(target: Target) -> Iterator[None]:
    """One venvprune per target: an advisory lock on the target directory itself, so no lock file is left behind."""
    fd = os.open(target.root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise LockedError(f"{target.root}: another venvprune is working on it; wait for it to finish") from exc
        yield
    finally:
        os.close(fd)


class _Signals:
    committing = False  # a commit has begun in this process: the prune is finished rather than undone
    received: str | None = None  # the name of a signal the handler raised for


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM (docker stop) into an exception, like SIGINT, so the transaction can restore before exiting.

    Once a commit has begun the originals are being deleted: there is nothing left to restore, so a signal is
    ignored and the run (and its report) ends normally. The signal is also noted for :func:`stop_if_signalled`.
    """
    _Signals.committing = False
    _Signals.received = None

    def handler(signum: int, _frame: FrameType | None) -> None:
        if not _Signals.committing:
            _Signals.received = signal.Signals(signum).name
            raise Interrupted(f"stopped by {_Signals.received}; every change was restored")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_if_signalled() -> None:
    """Raise again for a signal whose exception was lost.

    Python runs a signal handler wherever the main thread is, and an exception raised inside a finalizer (a
    generator or file closed by the garbage collector) is only printed as "ignored". The pipeline calls this
    between its phases, so such a signal still stops the run before the commit.
    """
    if _Signals.received is not None and not _Signals.committing:
        raise Interrupted(f"stopped by {_Signals.received}; every change was restored")


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """While restoring, a second signal must not leave the restore half done."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM and SIGINT back until the block is done (recovery): it ends whole, then the signal stops the run."""
    held = {signal.SIGTERM, signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def run_transaction(target: Target, actions: Sequence[Action]) -> tuple[Transaction, list[FileError]]:
    """Begin a transaction and execute *actions*; on any exception everything is restored and it is re-raised."""
    transaction = Transaction.begin(target)
    try:
        errors = transaction.execute(actions)
    except BaseException:
        with signals_ignored():
            transaction.rollback()
        raise
    return transaction, errors
