"""``record``: rewrite each affected ``RECORD`` to list only the files that remain, with new hashes for changed ones.

``*.dist-info`` itself is never removed: ``importlib.metadata`` needs METADATA for versions, entry_points.txt for
plugins, and top_level.txt or RECORD for ``packages_distributions()``. A RECORD that still lists removed files
makes ``pip`` and SBOM tools report a damaged install; this keeps it true.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from venvprune.plan import Action, ActionKind, CategoryResult, Phase, ancestors
from venvprune.scan import Inventory, read_record, record_path

REASON = "list only the files that remain, with new hashes for changed files"


@dataclass(frozen=True)
class RewriteRecord:
    """Drop rows of removed files (that are still absent when applied) and rehash rows of rewritten files."""

    site_packages: Path
    dropped: frozenset[str]
    rehashed: frozenset[str]

    def write(self, source: Path, destination: Path) -> None:
        # Bytes, not read_text(): universal newlines would hide a CRLF RECORD, which is then written as it was.
        line_end = "\r\n" if b"\r\n" in source.read_bytes() else "\n"
        out = io.StringIO()
        writer = csv.writer(out, lineterminator=line_end)
        for row in read_record(source):
            rel = record_path(row[0])
            full = self.site_packages / rel
            # A removal that verification restored is on disk again and keeps its row.
            if rel in self.dropped and not os.path.lexists(full):
                continue
            if rel in self.rehashed and full.is_file() and not full.is_symlink():
                row = [row[0], _record_hash(full), str(full.stat().st_size)]
            writer.writerow(row)
        with open(destination, "w", encoding="utf-8", newline="") as handle:
            handle.write(out.getvalue())


def _record_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")


class Record:
    name = "record"
    default = True
    summary = "rewrite RECORD of changed distributions to list only what remains (dist-info is never deleted)"
    derived = True  # planned from the other categories' actions

    def plan(self, inventory: Inventory, planned: Sequence[Action]) -> CategoryResult:
        # Strings, not Paths: this runs once per RECORD line of the whole venv.
        removed_files = {str(a.path) for a in planned if a.kind is ActionKind.REMOVE and not a.is_directory}
        removed_dirs = {str(a.path) for a in planned if a.kind is ActionKind.REMOVE and a.is_directory}
        rewritten = {str(a.path) for a in planned if a.kind is ActionKind.REWRITE}
        actions: list[Action] = []
        for dist in inventory.distributions:
            if dist.record is None:
                continue
            dropped = set()
            rehashed = set()
            for rel in dist.files:
                full = f"{dist.site_packages}/{rel}"
                if full in removed_files or any(parent in removed_dirs for parent in ancestors(full)):
                    dropped.add(rel)
                elif full in rewritten:
                    rehashed.add(rel)
            if not dropped and not rehashed:
                continue
            actions.append(
                Action(
                    path=dist.record,
                    kind=ActionKind.REWRITE,
                    category=self.name,
                    reason=REASON,
                    bytes_saved=sum(dist.record_line_bytes.get(rel, 0) for rel in dropped),
                    files=0,
                    distribution=dist.name,
                    transform=RewriteRecord(dist.site_packages, frozenset(dropped), frozenset(rehashed)),
                    phase=Phase.METADATA,
                )
            )
        return CategoryResult(tuple(actions))


CATEGORY = Record()
