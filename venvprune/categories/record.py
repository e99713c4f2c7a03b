"""``record``: rewrite each affected ``RECORD`` to list only the files that remain, with new hashes for changed ones.

``*.dist-info`` itself is never removed: ``importlib.metadata`` needs METADATA for versions, entry_points.txt for
plugins, and top_level.txt or RECORD for ``packages_distributions()``. A RECORD that still lists removed files
makes ``pip`` and SBOM tools report a damaged install; this keeps it true.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from venvprune import records
from venvprune.plan import Action, ActionKind, CategoryResult, Phase, ancestors
from venvprune.scan import Inventory

REASON = "list only the files that remain, with new hashes for changed files"


@dataclass(frozen=True)
class RewriteRecord:
    """Drop rows of removed files (that are still absent when applied) and rehash rows of rewritten files."""

    site_packages: Path
    dropped: frozenset[str]
    rehashed: frozenset[str]

    def write(self, source: BinaryIO, destination: BinaryIO) -> None:
        data = source.read()
        rows = records.parse(data)
        remaining: list[records.Row] = []
        site_packages = str(self.site_packages)
        fresh = records.hash_files(
            os.path.join(site_packages, row.normalised_path) for row in rows if row.normalised_path in self.rehashed
        )
        for row in rows:
            rel = row.normalised_path
            if rel in self.dropped:
                # A removal that verification restored is on disk again and keeps its row.
                if not os.path.lexists(os.path.join(site_packages, rel)):
                    continue
            elif rel in self.rehashed:
                content = fresh.get(os.path.join(site_packages, rel))
                if content is not None:
                    row = row.with_content(*content)
            remaining.append(row)
        destination.write(records.dump(remaining, records.line_ending(data)))


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
            if dist.record is None or str(dist.metadata_dir) in removed_dirs:
                continue  # no RECORD, or uninstalled whole (installers): nothing left to describe
            dropped = set()
            rehashed = set()
            for rel in dist.files:
                full = f"{dist.site_packages}/{rel}"
                if rel.startswith(("/", "../")):
                    # A row outside this site-packages (``../../../lib64/...``, an absolute path): planned actions
                    # name the file by its own path, not through this one.
                    full = os.path.normpath(os.path.join(dist.site_packages, rel))
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
