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
from collections.abc import Callable, Iterator
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


def delete(name: str, dir_fd: int) -> list[str]:
    """Delete *name*; a folder is emptied through descriptors, a symlink in it is unlinked, never followed.

    Only for trees venvprune made (the staging folder): a folder in it without permission for its owner is made
    writable (on its descriptor, never by name). Returns the paths, relative to *dir_fd*, that could not be deleted.
    """
    st = lstat(name, dir_fd)
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
        with _writable_folder(name, dir_fd, st) as inner:
            for child in os.listdir(inner):
                failed += [f"{name}/{f}" for f in delete(child, inner)]
        if not failed:
            os.rmdir(name, dir_fd=dir_fd)
    except OSError:
        failed.append(name)
    return failed


@contextlib.contextmanager
def _writable_folder(name: str, dir_fd: int, st: os.stat_result) -> Iterator[int]:
    full = stat.S_IRWXU
    if st.st_mode & full == full:
        with opened(name, dir_fd) as fd:
            yield fd
        return
    # Without read permission the folder cannot be opened to list it: change its mode through an O_PATH
    # descriptor (the /proc link names that very inode; a symlink swapped in meanwhile is not followed).
    path_fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.chmod(f"/proc/self/fd/{path_fd}", full)
        fd = os.open(f"/proc/self/fd/{path_fd}", DIRECTORY)
    finally:
        os.close(path_fd)
    try:
        yield fd
    finally:
        os.close(fd)
