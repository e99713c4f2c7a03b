"""``debug-symbols``: cut symbol and debug sections off the end of ELF files, never moving a loaded byte.

GNU strip relayouts libraries that auditwheel's patchelf modified and the loader then refuses them
(pypa/manylinux#119, NixOS/patchelf#10, pypa/auditwheel#716). Here only sections that lie wholly after the
last byte any segment maps are dropped, by cutting the file and writing a new section-header table; see
:mod:`venvprune.elf`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from venvprune import elf
from venvprune.plan import Action, ActionKind, CategoryResult, Kept
from venvprune.scan import Inventory

REASON = "symbol and debug sections after the last loaded byte; the loaded bytes are unchanged"
LEFT_IN_PLACE = "symbol/debug sections between segments stay where they are"


@dataclass(frozen=True)
class StripDebugSymbols:
    facts: elf.ElfFacts

    path: Path  # the file it was planned for, to name it in errors

    def write(self, source: BinaryIO, destination: BinaryIO) -> None:
        elf.copy_stripped(source.fileno(), destination.fileno(), self.facts, self.path)


class DebugSymbols:
    name = "debug-symbols"
    default = True
    summary = "symbol and debug sections at the end of ELF files (found by content, not by name)"

    def plan(self, inventory: Inventory, planned: Sequence[Action]) -> CategoryResult:
        actions: list[Action] = []
        kept: list[Kept] = []
        for entry in inventory.files:
            facts = entry.elf
            if facts is None:
                continue
            if facts.skip_reason is not None:
                kept.append(Kept(entry.path, self.name, facts.skip_reason))
            else:
                actions.append(
                    Action(
                        path=entry.path,
                        kind=ActionKind.REWRITE,
                        category=self.name,
                        reason=REASON,
                        bytes_saved=facts.bytes_saved,
                        files=0,
                        distribution=inventory.owner_of(entry.path),
                        transform=StripDebugSymbols(facts, entry.path),
                    )
                )
            if facts.left_in_place:
                kept.append(Kept(entry.path, self.name, LEFT_IN_PLACE, facts.left_in_place))
        return CategoryResult(tuple(actions), tuple(kept))


CATEGORY = DebugSymbols()
