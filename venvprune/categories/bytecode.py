"""``bytecode``: ``__pycache__`` directories and ``.pyc``/``.pyo`` files that have their ``.py`` source beside them.

A ``.pyc`` outside ``__pycache__`` without a ``.py`` beside it *is* the module (sourceless distributions,
``compileall -b``): it is kept. A ``.pyc`` inside ``__pycache__`` is only ever used as a cache of a source file
(PEP 3147), so a whole ``__pycache__`` directory can go. The cost is start-up time: every cold start recompiles.
"""

from __future__ import annotations

from collections.abc import Sequence

from venvprune.plan import Action, ActionKind, CategoryResult, Kept
from venvprune.scan import FileEntry, Inventory

BYTECODE_SUFFIXES = (".pyc", ".pyo")
CACHE_REASON = "bytecode cache; Python recompiles it from the .py source (slower cold start)"


def _folder_name(rel: str) -> str:
    return rel.rpartition("/")[0].rpartition("/")[2]


def _is_bytecode(rel: str) -> bool:
    """``Path(rel).suffix in BYTECODE_SUFFIXES`` on the text (a name that is only the suffix has none)."""
    return rel.endswith(BYTECODE_SUFFIXES) and rel.rpartition("/")[2] not in BYTECODE_SUFFIXES


class Bytecode:
    name = "bytecode"
    default = True
    summary = "__pycache__ directories and .pyc files whose .py source is present"

    def plan(self, inventory: Inventory, planned: Sequence[Action]) -> CategoryResult:
        index = inventory.index
        actions: list[Action] = []
        kept: list[Kept] = []
        cache_dirs = [d for d in inventory.directories if d.name == "__pycache__"]
        for directory in cache_dirs:
            contents = index.under(directory)
            if contents and all(_is_bytecode(f.rel) and not f.is_symlink for f in contents):
                actions.append(
                    Action(
                        path=directory,
                        kind=ActionKind.REMOVE,
                        category=self.name,
                        reason=CACHE_REASON,
                        bytes_saved=sum(f.size for f in contents),
                        files=len(contents),
                        distribution=inventory.owner_of(contents[0].path),
                        is_directory=True,
                    )
                )
            else:  # something else lives there too: take only the bytecode
                actions.extend(self._file(inventory, f, CACHE_REASON) for f in contents if _is_bytecode(f.rel))

        for entry in inventory.files:
            # On the relative path's text: this runs for every file of the venv.
            if not _is_bytecode(entry.rel) or _folder_name(entry.rel) == "__pycache__":
                continue
            if inventory.index.exact(entry.path.with_suffix(".py")):
                actions.append(
                    self._file(inventory, entry, "bytecode beside its .py source, which Python imports instead")
                )
            else:
                kept.append(Kept(entry.path, self.name, "sourceless module: this .pyc is the code", entry.size))
        return CategoryResult(tuple(actions), tuple(kept))

    def _file(self, inventory: Inventory, entry: FileEntry, reason: str) -> Action:
        return Action(
            path=entry.path,
            kind=ActionKind.REMOVE,
            category=self.name,
            reason=reason,
            bytes_saved=entry.size,
            files=1,
            distribution=inventory.owner_of(entry.path),
        )


CATEGORY = Bytecode()
