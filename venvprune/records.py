"""RECORD files of installed distributions: parse rows, hash files, write rows back.

A RECORD is CSV (the wheel spec, PEP 376): ``path,hash,size`` per row, the hash written ``sha256=<urlsafe base64
without padding>``. A path may hold a comma, a quote, a line feed or a carriage return inside its quotes, so the
file is read as bytes and parsed without newline translation, and written back with the line ending it had.

Standard library only and Python 3.8+, importing nothing from venvprune: the probe that runs inside the target's own
interpreter may use it as it is.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import posixpath
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

HASH_ALGORITHM = "sha256"
_CHUNK = 1 << 20
# Threads hashing at once: more than the CPUs only take turns, which costs next to nothing.
_HASH_THREADS = 4


@dataclass(frozen=True)
class Row:
    """One row as it was written; fields beyond the third (or a short row) are kept, so a rewrite loses nothing."""

    fields: tuple[str, ...]

    @property
    def path(self) -> str:
        """The path as written: POSIX, relative to site-packages (``../../bin/tool`` for files outside it)."""
        return self.fields[0]

    @property
    def hash(self) -> str:
        return self.fields[1] if len(self.fields) > 1 else ""

    @property
    def size(self) -> str:
        return self.fields[2] if len(self.fields) > 2 else ""

    @property
    def normalised_path(self) -> str:
        return normalise(self.path)

    def with_content(self, digest: str, size: int) -> Row:
        """This row describing new content (a stripped library): the hash and size change, the path does not."""
        return Row((self.path, digest, str(size), *self.fields[3:]))


def row_for(path: str, data: bytes) -> Row:
    """A complete row for *data* installed at *path* (as an installer writes it)."""
    return Row((path, hash_bytes(data), str(len(data))))


def parse(data: bytes) -> list[Row]:
    """The rows of a RECORD's bytes, blank lines skipped.

    Raises ``ValueError`` when *data* is not UTF-8 CSV (``UnicodeDecodeError`` is one): a caller that read such a
    RECORD as no rows would drop every row of it when writing it back.
    """
    text = data.decode("utf-8")
    try:
        # newline="": the csv module sees CR and LF as written, inside quotes too. strict: a quote that never closes
        # is an error, not a name that runs to the end of the file.
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        return [Row(tuple(fields)) for fields in reader if fields]
    except csv.Error as exc:
        raise ValueError(f"malformed RECORD ({exc})") from exc


def read(path: str | os.PathLike[str]) -> list[Row]:
    """The rows of the RECORD file at *path*; ``OSError`` when it cannot be read, ``ValueError`` as :func:`parse`."""
    with open(path, "rb") as handle:
        return parse(handle.read())


def line_ending(data: bytes) -> str:
    """The line ending a RECORD was written with, to write it back the same way (pip and installers differ)."""
    if data.endswith(b"\r\n"):
        return "\r\n"
    if data.endswith(b"\n"):
        return "\n"
    return "\r\n" if b"\r\n" in data else "\n"


def dump(rows: Iterable[Row], line_end: str = "\n") -> bytes:
    """RECORD bytes for *rows*; a field holding a comma, a quote, CR or LF is quoted, so :func:`parse` reads it back."""
    return "".join(_format(row) + line_end for row in rows).encode("utf-8")


def _format(row: Row) -> str:
    # Not csv.writer: before Python 3.11.9 / 3.12.3, with a "\n" line terminator it leaves a carriage return
    # unquoted, and a reader then splits the row there (python/cpython#67044).
    if row.fields == ("",):
        return '""'  # a row of one empty field, not a blank line
    return ",".join(_quote(field) for field in row.fields)


def _quote(field: str) -> str:
    if "," in field or '"' in field or "\r" in field or "\n" in field:
        return '"' + field.replace('"', '""') + '"'
    return field


def row_sizes(rows: Iterable[Row], line_end: str = "\n") -> list[int]:
    """Bytes each row takes in a RECORD written by :func:`dump` (what removing the row saves)."""
    end = len(line_end)
    return [_formatted_size(row) + end for row in rows]


def _formatted_size(row: Row) -> int:
    joined = ",".join(row.fields)
    # Nearly every row: no field holds a comma, a quote, CR or LF, so :func:`_format` would return it joined.
    plain = joined.count(",") == len(row.fields) - 1 and not any(c in joined for c in '"\r\n')
    if plain and row.fields != ("",):
        return len(joined) if joined.isascii() else len(joined.encode("utf-8"))
    return len(_format(row).encode("utf-8"))


def hash_bytes(data: bytes) -> str:
    return _encode(hashlib.new(HASH_ALGORITHM, data).digest())


def hash_file(path: str | os.PathLike[str]) -> str:
    """The RECORD hash of the file at *path*, read in chunks (a library may be hundreds of MB)."""
    digest = hashlib.new(HASH_ALGORITHM)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return _encode(digest.digest())


def hash_files(paths: Iterable[str]) -> dict[str, tuple[str, int]]:
    """The RECORD hash and size of each regular file of *paths* (a symlink or a missing file is left out), hashed in
    threads: hashlib lets go of the GIL, and a RECORD rewritten after stripping may list hundreds of MB of libraries.
    """
    regular = [p for p in paths if os.path.isfile(p) and not os.path.islink(p)]
    if len(regular) < 2:
        return {p: (hash_file(p), os.path.getsize(p)) for p in regular}
    with ThreadPoolExecutor(max_workers=min(len(regular), _HASH_THREADS)) as threads:
        digests = threads.map(hash_file, regular)
        return {p: (digest, os.path.getsize(p)) for p, digest in zip(regular, digests)}


def normalise(row_path: str) -> str:
    """A RECORD path in one spelling (``pkg/./a.py`` -> ``pkg/a.py``); ``..`` is kept for files outside."""
    if not row_path or not _may_change(row_path):
        return row_path  # normpath would return it as it is: this runs for every row of every RECORD
    return posixpath.normpath(row_path)


def _may_change(row_path: str) -> bool:
    """Whether normpath may change *row_path*: only a "." or ".." part, an empty part or a trailing slash can."""
    return "/." in row_path or row_path.startswith(".") or "//" in row_path or row_path.endswith("/")


def _encode(digest: bytes) -> str:
    return HASH_ALGORITHM + "=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
