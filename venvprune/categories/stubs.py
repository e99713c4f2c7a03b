"""``stubs`` (opt-in): type stubs (``.pyi``) and ``py.typed`` markers, which type checkers read and Python does not.

Never by extension alone: a package that attaches its stub at import time (``lazy_loader.attach_stub(__name__,
__file__)`` reads ``__init__.pyi`` to learn what to import lazily: scikit-image) keeps it, and so does any stub or
marker whose name its package's code names. The knowledge base may keep more.
"""

from __future__ import annotations

from collections.abc import Sequence

from venvprune.categories._guards import mentions
from venvprune.plan import Action, ActionKind, CategoryResult, Kept
from venvprune.scan import FileEntry, FileIndex, Inventory

STUB_SUFFIX = ".pyi"
MARKER = "py.typed"
ATTACH_STUB = b"attach_stub"
REASON_STUB = "type stub: read by type checkers, never imported"
REASON_MARKER = "PEP 561 marker for type checkers; nothing reads it at run time"


class Stubs:
    name = "stubs"
    default = False
    summary = "type stubs (.pyi) and py.typed markers, unless the package reads them at run time"

    def plan(self, inventory: Inventory, planned: Sequence[Action]) -> CategoryResult:
        named = mentions(inventory)
        actions: list[Action] = []
        kept: list[Kept] = []
        for entry in inventory.files:
            is_stub = entry.suffix == STUB_SUFFIX
            if entry.is_symlink or not (is_stub or entry.name == MARKER):
                continue
            why = _attached_by(entry, inventory.index) if is_stub else None
            reader = named.naming(entry.path)
            if reader is not None:
                why = f"{reader} names it: read at run time"
            if why is not None:
                kept.append(Kept(entry.path, self.name, why, entry.size))
                continue
            actions.append(
                Action(
                    path=entry.path,
                    kind=ActionKind.REMOVE,
                    category=self.name,
                    reason=REASON_STUB if is_stub else REASON_MARKER,
                    bytes_saved=entry.size,
                    files=1,
                    distribution=inventory.owner_of(entry.path),
                )
            )
        return CategoryResult(tuple(actions), tuple(kept))


def _attached_by(stub: FileEntry, index: FileIndex) -> str | None:
    """Why a lazy loader reads *stub* at import: the module beside it attaches it."""
    module = stub.path.with_suffix(".py")
    if not index.exact(module):
        return None
    try:
        source = module.read_bytes()
    except OSError:
        return None
    if ATTACH_STUB in source:
        return f"{module.name} beside it calls attach_stub: read at import to learn what to load lazily"
    return None


CATEGORY = Stubs()
