"""Scratch folders outside the target, named after the process that made them.

A venvprune killed with SIGKILL (a cancelled ``docker build``) cannot delete its scratch folders; the next run
deletes those whose process is gone, so they do not pile up in ``/tmp`` of a CI machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def make(kind: str) -> Path:
    """A new folder ``<tmp>/venvprune-<kind>-<pid>-<random>``; stale ones of dead processes are removed first."""
    prefix = f"venvprune-{kind}-"
    _sweep(prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


def _sweep(prefix: str) -> None:
    root = Path(tempfile.gettempdir())
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid = entry.name[len(prefix) :].partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)) and entry.is_dir() and not entry.is_symlink():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == os.geteuid():
                    shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
