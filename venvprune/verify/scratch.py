"""Scratch folders outside the target, each held by a lock for as long as its process lives.

A venvprune killed with SIGKILL (a cancelled ``docker build``) cannot delete its scratch folders; the next run
deletes those whose lock nobody holds, so they do not pile up in ``/tmp`` of a CI machine. The lock, not the
process id in the name, says whether a folder is in use: a process id means nothing in another PID namespace (a
container, ``unshare --pid``), where a live venvprune outside would look dead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path

# Open lock descriptors of the folders this process made: closed, and the lock released, when it exits or dies.
_held: dict[Path, int] = {}


# A folder is made, then locked: one younger than this may be another run's, between the two steps.
_STALE_AFTER = 60.0


def make(kind: str) -> Path:
    """A new folder ``<tmp>/venvprune-<kind>-<pid>-<random>``; stale ones nobody holds are removed first."""
    prefix = f"venvprune-{kind}-"
    _sweep(prefix)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held[path] = fd
    return path


def remove(path: Path) -> None:
    """Delete a folder :func:`make` returned, and let go of its lock."""
    shutil.rmtree(path, ignore_errors=True)
    fd = _held.pop(path, None)
    if fd is not None:
        os.close(fd)


def _sweep(prefix: str) -> None:
    root = Path(tempfile.gettempdir())
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix) or entry in _held:
            continue
        with contextlib.suppress(OSError):
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                st = os.fstat(fd)
                if st.st_uid != os.geteuid() or time.time() - st.st_mtime < _STALE_AFTER:
                    continue
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a live run: BlockingIOError, left alone
                shutil.rmtree(entry, ignore_errors=True)  # rmtree does not follow symlinks inside it
            finally:
                os.close(fd)
