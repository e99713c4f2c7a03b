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
            if contents and all(f.path.suffix in BYTECODE_SUFFIXES and not f.is_symlink for f in contents):
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
                actions.extend(
                    self._file(inventory, f, CACHE_REASON) for f in contents if f.path.suffix in BYTECODE_SUFFIXES
                )

        present = {f.path for f in inventory.files}
        for entry in inventory.files:
            if entry.path.suffix not in BYTECODE_SUFFIXES or entry.path.parent.name == "__pycache__":
                continue
            if entry.path.with_suffix(".py") in present:
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
