"""``docs`` (opt-in): documentation shipped inside packages: ``docs/`` and ``examples/`` folders, README, CHANGELOG
and the like.

Never by name alone: a file or folder whose name its package's code names is data, not documentation (scikit-learn
reads its datasets' descriptions, ``descr/iris.rst``; templates are read by name), and stays; so does a folder that is
a Python package (it has an ``__init__.py``), which code may import. Licences (LICENSE, COPYING, NOTICE) are never
documentation here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from venvprune.categories._guards import in_package, mentions
from venvprune.plan import Action, ActionKind, CategoryResult, Kept
from venvprune.scan import Inventory

DOC_DIR_NAMES = frozenset({"doc", "docs", "example", "examples"})
DOC_FILE_STEMS = ("README", "CHANGELOG", "CHANGES", "HISTORY", "NEWS", "AUTHORS", "CONTRIBUTING")
DOC_FILE_SUFFIXES = ("", ".md", ".rst", ".txt")
REASON_DIR = "documentation or examples folder inside the package; nothing imports it"
REASON_FILE = "documentation file inside the package; nothing reads it"


class Docs:
    name = "docs"
    default = False
    summary = "docs/ and examples/ folders, README and CHANGELOG files inside packages (never licences)"

    def plan(self, inventory: Inventory, planned: Sequence[Action]) -> CategoryResult:
        index = inventory.index
        named = mentions(inventory)
        actions: list[Action] = []
        kept: list[Kept] = []
        folders: list[Path] = []
        for directory in sorted(inventory.directories, key=lambda d: len(d.parts)):
            rel = inventory.target.relative(directory)
            if directory.name.lower() not in DOC_DIR_NAMES or not in_package(rel):
                continue
            if any(directory.is_relative_to(outer) for outer in folders):
                continue
            contents = index.under(directory)
            size = sum(f.size for f in contents)
            reader = named.naming(directory)
            if reader is not None:
                kept.append(Kept(directory, self.name, f"{reader} names it: data, not documentation", size))
                continue
            if any(f.path.name == "__init__.py" for f in contents):
                kept.append(
                    Kept(directory, self.name, "a Python package (it has __init__.py): code may import it", size)
                )
                continue
            folders.append(directory)
            actions.append(
                Action(
                    path=directory,
                    kind=ActionKind.REMOVE,
                    category=self.name,
                    reason=REASON_DIR,
                    bytes_saved=size,
                    files=len(contents),
                    distribution=inventory.owner_of(contents[0].path if contents else directory),
                    is_directory=True,
                )
            )
        for entry in inventory.files:
            name = entry.name
            stem, dot, suffix = name.partition(".")
            if (
                entry.is_symlink
                or stem.upper() not in DOC_FILE_STEMS
                or (dot + suffix).lower() not in DOC_FILE_SUFFIXES
            ):
                continue
            if not in_package(entry.rel) or any(entry.path.is_relative_to(folder) for folder in folders):
                continue
            reader = named.naming(entry.path)
            if reader is not None:
                kept.append(Kept(entry.path, self.name, f"{reader} names it: data, not documentation", entry.size))
                continue
            actions.append(
                Action(
                    path=entry.path,
                    kind=ActionKind.REMOVE,
                    category=self.name,
                    reason=REASON_FILE,
                    bytes_saved=entry.size,
                    files=1,
                    distribution=inventory.owner_of(entry.path),
                )
            )
        return CategoryResult(tuple(actions), tuple(kept))


CATEGORY = Docs()
