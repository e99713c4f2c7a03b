"""A folder reached through file descriptors: every path below it one component at a time, never through a symlink.

Every change venvprune makes goes through these functions. A name is always resolved relative to the descriptor
of the folder that holds it, opened with ``O_NOFOLLOW``; a folder that became a symlink (or a file, or vanished) is
:class:`PathChanged` and is not followed. Where a system call would follow a symlink given a name (``chmod``,
``utime``, ``stat``), it is made on an open descriptor instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_FOLLOWED = (errno.ELOOP, errno.ENOTDIR, errno.ENOENT)  # a component is a symlink, a file, or gone

Stamp = tuple[str, int, int]  # (type, size, mtime in ns): what a path held; `cp -a` keeps it, unlike an inode
Identity = tuple[int, int]  # (device, inode) of a folder: which folder it is, on this machine, in this tree


class PathChanged(OSError):
    """A folder on the path is gone or is not a real folder any more (a symlink, a file): not followed."""

    def __init__(self, rel: str) -> None:
        super().__init__(errno.ENOENT, "changed since the plan: a folder on its path is gone or is a symlink now", rel)


class Tree:
    """A directory opened once; paths below it are reached one component at a time, never through a symlink."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def open(cls, path: Path) -> Tree:
        return cls(path, os.open(path, DIRECTORY))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def identity(self) -> Identity:
        return identity(self.fd)

    def relative(self, path: Path | str) -> str:
        """*path* relative to this tree; :class:`ValueError` when it lies outside it (lexically)."""
        text, prefix = os.path.normpath(path), str(self.path).rstrip("/") + "/"
        if not text.startswith(prefix):
            raise ValueError(f"{path}: outside {self.path}")
        return checked_relative(text[len(prefix) :])

    @contextlib.contextmanager
    def parent(self, rel: str, *, create: bool = False) -> Iterator[tuple[int, str]]:
        """``(descriptor of the folder holding rel, rel's last component)``; :class:`PathChanged` where not followed.

        With *create*, missing folders are made (mode 0o755, as the user's umask allows).
        """
        *folders, name = checked_relative(rel).split("/")
        fd = os.dup(self.fd)
        try:
            for depth, part in enumerate(folders):
                try:
                    child = os.open(part, DIRECTORY, dir_fd=fd)
                except OSError as exc:
                    if not (create and exc.errno == errno.ENOENT):
                        if exc.errno in _NOT_FOLLOWED:
                            raise PathChanged("/".join(folders[: depth + 1])) from exc
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = child
            yield fd, name
        finally:
            os.close(fd)

    def open_folder(self, rel: str) -> Tree:
        with self.parent(rel) as (fd, name):
            try:
                return Tree(self.path / rel, os.open(name, DIRECTORY, dir_fd=fd))
            except OSError as exc:
                if exc.errno in _NOT_FOLLOWED:
                    raise PathChanged(rel) from exc
                raise


def checked_relative(rel: str) -> str:
    """*rel* when it is a plain relative path (no ``..``, ``.``, empty or NUL parts); else :class:`ValueError`."""
    if not rel or rel.startswith("/") or "\x00" in rel or any(p in ("", ".", "..") for p in rel.split("/")):
        raise ValueError(f"{rel!r}: not a path inside the target")
    return rel


def lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def stamp(st: os.stat_result) -> Stamp:
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "file"
    return (kind, st.st_size if kind != "dir" else 0, st.st_mtime_ns if kind != "dir" else 0)


def identity(fd: int) -> Identity:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


@contextlib.contextmanager
def opened(name: str, dir_fd: int) -> Iterator[int]:
    """The folder *name* in *dir_fd*, opened without following a symlink."""
    fd = os.open(name, DIRECTORY, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def move(
    source: str,
    source_fd: int,
    destination: str,
    destination_fd: int,
    before_split: Callable[[int], None] | None = None,
) -> None:
    """Rename, also where overlayfs refuses to rename a directory.

    In a Docker build, a directory created by an earlier layer cannot be renamed (EXDEV: overlayfs has
    ``redirect_dir`` off by default), while its files can. Such a directory is moved entry by entry into a new
    directory, and the emptied original is removed. *before_split* is told the open directory's descriptor first
    (to journal which folder is being emptied), so that a recovery can merge back a move cut short -- into that
    folder, and no other.
    """
    try:
        os.rename(source, destination, src_dir_fd=source_fd, dst_dir_fd=destination_fd)
        return
    except OSError as exc:
        st = lstat(source, source_fd)
        if exc.errno != errno.EXDEV or st is None or not stat.S_ISDIR(st.st_mode):
            raise
    with opened(source, source_fd) as inner_source:
        if before_split is not None:
            before_split(inner_source)
        with contextlib.suppress(FileExistsError):
            os.mkdir(destination, 0o700, dir_fd=destination_fd)
        with opened(destination, destination_fd) as inner_destination:
            for child in os.listdir(inner_source):
                move(child, inner_source, child, inner_destination)
            os.chmod(inner_destination, stat.S_IMODE(st.st_mode))
    os.rmdir(source, dir_fd=source_fd)


# Deleting waits on the disk, not on a CPU: on ext4 mounted with `discard` every freed file waits for its discard, and
# eight threads unlinking at once finished 10,000 files in 0.4-0.8 s where one took 4.7 s; on tmpfs they cost nothing
# noticeable. Threads, not a process pool: unlink and rmdir release the GIL while they wait.
DELETE_THREADS = 8


def delete(name: str, dir_fd: int) -> list[str]:
    """Delete *name*; a folder is emptied through descriptors, a symlink in it is unlinked, never followed.

    Only for trees venvprune made (the staging folder): a folder in it without permission for its owner is made
    writable (on its descriptor, never by name). Returns the paths, relative to *dir_fd*, that could not be deleted.
    """
    return delete_each([name], dir_fd)


def delete_each(names: Iterable[str], dir_fd: int, threads: int = DELETE_THREADS) -> list[str]:
    """:func:`delete` for each of *names*, in *threads* threads: every folder is reached through the descriptor of the
    one holding it, and removed once all its entries are gone; returns when every deletion has ended.

    An exception other than :class:`OSError` in any thread (none is expected) stops the others and is raised here once
    they have all stopped.
    """
    deletion = _Deletion(dir_fd, list(names))
    deletion.run(threads)
    return sorted(deletion.failed)


class _Folder:
    """A folder being emptied: its descriptor stays open until its last entry is gone."""

    def __init__(self, fd: int, rel: str, name: str, parent: _Folder | None, entries: int) -> None:
        self.fd = fd
        self.rel = rel  # relative to the descriptor the deletion started from
        self.name = name  # in its parent
        self.parent = parent
        self.entries = entries  # not yet deleted (or failed)
        self.failed = False  # an entry could not be deleted, so this folder stays too


_Entry = tuple[str, "bool | None"]  # a name in a folder, and whether it is a folder (None: not known yet)


class _Deletion:
    """Batches of entries to delete on a stack (depth first, so that few folders are open at once), shared by the
    threads. A batch is a folder's entries, up to :data:`_BATCH`: one lock per batch, not per file, keeps the threads
    from costing more than they save where unlinking is fast (tmpfs)."""

    _BATCH = 64

    def __init__(self, dir_fd: int, names: list[str]) -> None:
        self.top = _Folder(dir_fd, "", "", None, len(names))
        self.stack: list[tuple[_Folder, list[_Entry]]] = []
        self._push(self.top, [(name, None) for name in names])
        self.condition = threading.Condition()
        self.opened: set[_Folder] = set()
        self.failed: list[str] = []
        self.error: BaseException | None = None
        self.finished = not names

    def run(self, threads: int) -> None:
        helpers = [threading.Thread(target=self._work, daemon=True) for _ in range(max(0, threads - 1))]
        for helper in helpers:
            helper.start()
        self._work()  # the calling thread deletes too
        for helper in helpers:
            helper.join()
        for folder in self.opened:  # left open only when an error stopped the deletion
            os.close(folder.fd)
        if self.error is not None:
            raise self.error

    def _push(self, folder: _Folder, entries: list[_Entry]) -> None:
        self.stack.extend((folder, entries[i : i + self._BATCH]) for i in range(0, len(entries), self._BATCH))

    def _work(self) -> None:
        try:
            while True:
                with self.condition:
                    while not self.stack and not self.finished and self.error is None:
                        self.condition.wait()
                    if self.finished or self.error is not None:
                        return
                    folder, batch = self.stack.pop()
                self._delete(folder, batch)
        except BaseException as exc:  # handed to the calling thread, which raises it
            with self.condition:
                self.error = self.error or exc
                self.condition.notify_all()

    def _delete(self, folder: _Folder, batch: list[_Entry]) -> None:
        failed: list[str] = []
        empty: list[_Folder] = []
        found: list[tuple[_Folder, list[_Entry]]] = []
        for name, is_folder in batch:
            rel = f"{folder.rel}/{name}" if folder.rel else name
            try:
                st = lstat(name, folder.fd) if is_folder is not False else None
                if st is not None and stat.S_ISDIR(st.st_mode):
                    listed = self._open(name, rel, folder, st)
                    if listed is None:
                        empty.append(_Folder(-1, rel, name, folder, 0))
                    else:
                        found.append(listed)
                elif st is not None or is_folder is False:
                    os.unlink(name, dir_fd=folder.fd)
            except FileNotFoundError:
                pass  # gone already
            except OSError:
                failed.append(rel)
        with self.condition:
            for inner, entries in found:
                self.opened.add(inner)
                self._push(inner, entries)
            self.failed += failed
            self.condition.notify_all()
        for inner in empty:
            self._emptied(inner)
        # The folders found are entries of *folder* still: it is done with them when they are emptied.
        self._entries_done(folder, len(batch) - len(found) - len(empty), failed=bool(failed))

    def _open(self, name: str, rel: str, folder: _Folder, st: os.stat_result) -> tuple[_Folder, list[_Entry]] | None:
        """The folder *name*, opened and listed; None when it is empty (closed again, for :meth:`_emptied`)."""
        fd = _open_writable_folder(name, folder.fd, st)
        try:
            with os.scandir(fd) as listing:
                entries: list[_Entry] = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in listing]
        except BaseException:
            os.close(fd)
            raise
        if not entries:
            os.close(fd)
            return None
        return _Folder(fd, rel, name, folder, len(entries)), entries

    def _entries_done(self, folder: _Folder, count: int, *, failed: bool) -> None:
        with self.condition:
            folder.failed = folder.failed or failed
            folder.entries -= count
            emptied = count > 0 and folder.entries == 0  # only the call that empties it, however many see 0
        if emptied:
            self._emptied(folder)

    def _emptied(self, folder: _Folder) -> None:
        """Every entry of *folder* is handled: remove it (unless one failed) and tell its parent."""
        if folder.parent is None:
            with self.condition:
                self.finished = True
                self.condition.notify_all()
            return
        if folder.fd != -1:
            with self.condition:
                self.opened.discard(folder)
            os.close(folder.fd)
        removed = not folder.failed
        if removed:
            try:
                os.rmdir(folder.name, dir_fd=folder.parent.fd)
            except FileNotFoundError:
                pass
            except OSError:
                removed = False
                with self.condition:
                    self.failed.append(folder.rel)
        self._entries_done(folder.parent, 1, failed=not removed)


def _open_writable_folder(name: str, dir_fd: int, st: os.stat_result) -> int:
    full = stat.S_IRWXU
    if st.st_mode & full == full:
        return os.open(name, DIRECTORY, dir_fd=dir_fd)
    # Without read permission the folder cannot be opened to list it: change its mode through an O_PATH
    # descriptor (the /proc link names that very inode; a symlink swapped in meanwhile is not followed). The /proc
    # entry is itself a link, so it is opened without O_NOFOLLOW, which refused it (ELOOP) and left the folder.
    path_fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.chmod(f"/proc/self/fd/{path_fd}", full)
        return os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(path_fd)
