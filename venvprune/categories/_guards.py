"""What the opt-in categories share: where a file sits, and whether its package's own code names it.

Not a category. A file whose name appears as a string literal in its distribution's Python code (outside its test
suites) may be read at run time (``files(...) / "iris.rst"``, ``_rel_readlines('_cffi_include.h')``): the opt-in
categories keep it and say which file names it. The code is read once per inventory and distribution, when asked.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from pathlib import Path

from venvprune.scan import FileEntry, Inventory

METADATA_SUFFIXES = (".dist-info", ".egg-info", ".data")
TEST_DIR_NAMES = frozenset({"tests", "test"})

# A quoted string that could name a file: word characters, dots, slashes, dashes, plus signs. The lookahead and
# backreference make the run atomic: a run not closed by a quote fails at once instead of being retried one
# character shorter at a time, which took a third of the time (a shorter run is never closed by a quote either).
_STRING_LITERAL = re.compile(rb"""["'](?=([\w./+-]+))\1["']""")


def in_package(rel: str) -> bool:
    """True for a path below a top-level package (``pkg/docs``), not site-packages itself nor package metadata."""
    parts = rel.split("/")
    return len(parts) >= 2 and not any(p.endswith(METADATA_SUFFIXES) for p in parts)


class Mentions:
    """Names (the last component of each string literal) in each distribution's ``.py`` code, and where."""

    def __init__(self, inventory: Inventory) -> None:
        self._inventory = inventory
        self._code: dict[str | None, list[FileEntry]] | None = None
        self._names: dict[str | None, dict[str, str]] = {}

    def naming(self, path: Path, name: str | None = None) -> str | None:
        """Which file of *path*'s distribution names it (or *name*), as ``pkg/mod.py``; None when none does."""
        owner = self._inventory.owner_of(path)
        return self._names_of(owner).get(name or path.name)

    def _names_of(self, owner: str | None) -> dict[str, str]:
        if owner not in self._names:
            self._names[owner] = _literal_names(self._code_files().get(owner, ()))
        return self._names[owner]

    def _code_files(self) -> dict[str | None, list[FileEntry]]:
        if self._code is None:
            self._code = {}
            for entry in self._inventory.files:
                # A test suite's code names files it reads in tests, not at run time.
                if entry.rel.endswith(".py") and not entry.is_symlink and TEST_DIR_NAMES.isdisjoint(entry.parts):
                    self._code.setdefault(self._inventory.owner_of_entry(entry), []).append(entry)
        return self._code


def _literal_names(files: Iterable[FileEntry]) -> dict[str, str]:
    names: dict[str, str] = {}
    seen: set[bytes] = set()
    for entry in files:
        try:
            with open(entry.path_str, "rb") as handle:
                source = handle.read()
        except OSError:
            continue
        # findall and the set run in C; only a literal not seen in an earlier file is split here.
        for literal in set(_STRING_LITERAL.findall(source)) - seen:
            seen.add(literal)
            for part in literal.decode("utf-8", "replace").split("/"):
                # "iris.rst" names a file; "sklearn.datasets.descr" names the folder descr too.
                for name in (part, *part.split(".")):
                    if name:
                        names.setdefault(name, entry.rel)
    return names


_MENTIONS: dict[int, tuple[weakref.ref[Inventory], Mentions]] = {}


def mentions(inventory: Inventory) -> Mentions:
    """The one :class:`Mentions` of *inventory*: the categories of one plan share what was read."""
    cached = _MENTIONS.get(id(inventory))
    if cached is not None and cached[0]() is inventory:
        return cached[1]
    found = Mentions(inventory)
    _MENTIONS.clear()  # one plan at a time; an id may be reused once its inventory is gone
    _MENTIONS[id(inventory)] = (weakref.ref(inventory), found)
    return found
