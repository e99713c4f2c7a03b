"""Everything pyelftools: detect ELF files, measure what can be cut, write the stripped copy.

INTERFACE (implemented by the ELF work, issue 3):
- MIN_HEADER_SIZE: files smaller than this are never ELF candidates.
- ElfFacts: frozen dataclass; `bytes_saved` (exact size reduction), `left_in_place` (symbol/debug bytes between
  segments that stay), `skip_reason` (None when strippable), plus what the writer needs.
- inspect(path) -> ElfFacts: never raises for bad content.
- write_stripped(source, destination, facts): create destination as the stripped copy of source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

MIN_HEADER_SIZE = 52  # an ELF32 header


@dataclass(frozen=True)
class ElfFacts:
    bytes_saved: int
    left_in_place: int
    skip_reason: Optional[str]


def inspect(path: Path) -> ElfFacts:
    raise NotImplementedError


def write_stripped(source: Path, destination: Path, facts: ElfFacts) -> None:
    raise NotImplementedError
