"""Report files: refused before the prune when they cannot be written, then written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from venvprune.errors import UsageError

STDOUT = "-"


def check_destinations(json: str | None, markdown: str | None) -> None:
    """Refuse, before anything changes, report destinations that cannot work: a report must not fail a done prune."""
    if json == STDOUT and markdown == STDOUT:
        raise UsageError("--json and --markdown both write to stdout; send one of them to a file")
    for option, destination in (("--json", json), ("--markdown", markdown)):
        if destination is not None and destination != STDOUT:
            _check_destination(option, Path(destination))


def _check_destination(option: str, path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; give {option} a file name, e.g. {path / 'venvprune-report'}")
    if path.exists() and not path.is_file():  # a device or a pipe (/dev/stdout): written into, so it must be writable
        if not os.access(path, os.W_OK):
            raise UsageError(f"{path}: cannot write the report there; it is not writable")
        return
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"{path}: cannot write the report there; {folder} is not a writable folder")


def write_report(path: Path, text: str) -> None:
    """Write *text* to *path*: a regular file atomically (a reader never sees half a report), anything else in place.

    A file gets the mode the umask gives any new file, as with a shell's ``>``. Raises ``OSError``; no temporary file
    outlives a failure.
    """
    if path.exists() and not path.is_file():
        # /dev/stdout, a named pipe: renaming a file over it would replace the device, not write to it.
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
