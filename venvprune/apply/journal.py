"""The journal: one JSON line per change, written before the change, in the staging folder.

A kill leaves at worst a torn last line, for a change that never started. Lines are flushed, not fsynced:
surviving a killed process is the promise, not a power cut.

Format 2 (venvprune 0.2): a header ``{"venvprune", "journal": 2, "target", "root": [dev, ino]}``, then per change
``{"op", "kind", "path", "was", "parent"}``, and notes: ``{"op", "new": stamp}`` (what venvprune wrote there,
before it was renamed into place) and ``{"op", "split": [dev, ino], "names": [...]}`` (a folder being moved entry
by entry, and what it held then). Paths are relative to the target root; format 1 (venvprune 0.1) had absolute
paths and no identities, and is still read.

Reading trusts nothing: a line that is not a well-formed record of a change is skipped as torn, and a journal that
is not a regular file is not read at all (a FIFO would block).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import dataclass, replace
from typing import IO, Any

from venvprune import __version__
from venvprune.apply.tree import Identity, Stamp

JOURNAL_NAME = "journal.jsonl"
FORMAT = 2
KINDS = ("remove", "rewrite", "create", "replace", "mkdir")
_MAX_OP = 1 << 40


@dataclass(frozen=True)
class Entry:
    """One change as the journal holds it."""

    op: int
    kind: str  # remove, rewrite, create, replace, mkdir
    path: str  # relative to the target root (absolute in journals of venvprune 0.1)
    was: Stamp | None = None  # what the path held before
    parent: Identity | None = None  # the folder that held it
    new: tuple[Stamp, ...] = ()  # what venvprune wrote there (a RECORD rewritten again after a restore: several)
    split: Identity | None = None  # a folder moved entry by entry (overlayfs): which one is being emptied
    split_names: tuple[str, ...] | None = None  # and what it held when the move began
    split_unknown: bool = False  # a split move journalled by venvprune 0.1, without the folder's identity


@dataclass(frozen=True)
class Journal:
    """What a journal says: the tree it was written in, and its changes (None: unusable, not a regular file)."""

    root: Identity | None
    entries: tuple[Entry, ...] | None


class Writer:
    """Appends records to a new journal file created in the staging folder."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    def header(self, target: str, root: Identity) -> None:
        self.append({"venvprune": __version__, "journal": FORMAT, "target": target, "root": list(root)})

    def append(self, record: dict[str, object]) -> None:
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if not self._handle.closed:
            with contextlib.suppress(OSError):  # a line that never reached the disk was a change never started
                self._handle.close()

    @property
    def closed(self) -> bool:
        return self._handle.closed


def read(staging_fd: int) -> Journal:
    try:
        fd = os.open(JOURNAL_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=staging_fd)
    except FileNotFoundError:
        return Journal(None, ())
    except OSError:
        return Journal(None, None)  # a symlink (ELOOP), or unreadable
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder, a FIFO (O_NONBLOCK: opening it did not wait)
        os.close(fd)
        return Journal(None, None)
    with open(fd, "rb") as handle:
        root: Identity | None = None
        entries: dict[int, Entry] = {}
        for raw in handle:  # line by line: a huge journal is not read whole
            record = _record(raw)
            if record is None:
                continue
            if "journal" in record or "venvprune" in record:
                root = _identity(record.get("root")) or root
                continue
            op = record.get("op")
            if not isinstance(op, int) or isinstance(op, bool) or not 0 <= op < _MAX_OP:
                continue
            if "kind" in record:
                entry = _entry(op, record)
                if entry is not None and op not in entries:
                    entries[op] = entry
            elif op in entries:
                entries[op] = _noted(entries[op], record)
    return Journal(root, tuple(entries.values()))


def _record(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # a torn line, or not JSON at all
        return None
    return record if isinstance(record, dict) else None


def _entry(op: int, record: dict[str, Any]) -> Entry | None:
    kind, path = record.get("kind"), record.get("path")
    if kind not in KINDS or not isinstance(path, str) or not path or "\x00" in path:
        return None
    was = record.get("was")
    return Entry(op, kind, path, _stamp(was), _identity(record.get("parent")))


def _noted(entry: Entry, record: dict[str, Any]) -> Entry:
    new = _stamp(record.get("new"))
    if new is not None:
        return replace(entry, new=(*entry.new, new))
    split = record.get("split")
    if split is True:
        return replace(entry, split_unknown=True)
    identity = _identity(split)
    names = record.get("names")
    if identity is None or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return entry
    return replace(entry, split=identity, split_names=tuple(names))


def _stamp(value: object) -> Stamp | None:
    if (
        isinstance(value, list)
        and len(value) == 3
        and value[0] in ("file", "dir", "link")
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:])
    ):
        return (value[0], value[1], value[2])
    return None


def _identity(value: object) -> Identity | None:
    if isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value):
        return (value[0], value[1])
    return None
