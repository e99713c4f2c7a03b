"""The plan: immutable actions with a category and a reason, computed from the inventory without touching the disk.

The dry-run report is this plan rendered; applying it is :mod:`venvprune.apply`'s job.
"""

from __future__ import annotations

import bisect
import enum
import fnmatch
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from venvprune.errors import UsageError
from venvprune.scan import FileEntry, Inventory


class ActionKind(enum.Enum):
    REMOVE = "remove"  # a file or a whole directory goes to staging
    REWRITE = "rewrite"  # a file gets new content; the original goes to staging


class Phase(enum.IntEnum):
    """Order of application: files first, then the RECORDs that describe them."""

    FILES = 0
    METADATA = 1


class Transform(Protocol):
    """New content for a rewritten file. Implementations are frozen dataclasses.

    ``write`` reads the original from the open file *source* and writes the new content to the open, empty file
    *destination*; the transaction opens both (never following a symlink) and renames the new file into place.
    """

    def write(self, source: BinaryIO, destination: BinaryIO) -> None: ...


@dataclass(frozen=True)
class Action:
    path: Path
    kind: ActionKind
    category: str
    reason: str
    bytes_saved: int
    files: int  # files removed (a directory counts its files; a rewrite removes none)
    distribution: str | None
    is_directory: bool = False
    transform: Transform | None = None
    phase: Phase = Phase.FILES


@dataclass(frozen=True)
class Kept:
    """Something a category would have removed and deliberately did not, with why."""

    path: Path
    category: str
    reason: str
    bytes: int = 0


@dataclass(frozen=True)
class CategoryResult:
    actions: tuple[Action, ...] = ()
    kept: tuple[Kept, ...] = ()


class Category(Protocol):
    name: str
    default: bool  # part of the default selection
    summary: str  # one line for --help and the README

    def plan(self, inventory: Inventory, planned: Sequence[Action]) -> CategoryResult:
        """Actions for this category; *planned* holds the other categories' actions (RECORD needs them)."""
        ...


@dataclass(frozen=True)
class Plan:
    inventory: Inventory
    categories: tuple[str, ...]
    actions: tuple[Action, ...]
    kept: tuple[Kept, ...]
    unmatched_keep: tuple[str, ...] = ()  # --keep globs that match no path: a typo, or a path spelled another way

    @property
    def bytes_saved(self) -> int:
        return sum(a.bytes_saved for a in self.actions)

    @property
    def files_removed(self) -> int:
        return sum(a.files for a in self.actions)

    def by_phase(self, phase: Phase) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.phase is phase)


class FileIndex:
    """Files of an inventory sorted by path, for 'which files lie under this directory' in O(log n)."""

    def __init__(self, files: Iterable[FileEntry]) -> None:
        self._files = sorted(files, key=lambda f: str(f.path))
        self._keys = [str(f.path) for f in self._files]

    def under(self, directory: Path) -> list[FileEntry]:
        prefix = str(directory) + "/"
        start = bisect.bisect_left(self._keys, prefix)
        end = bisect.bisect_left(self._keys, prefix + "\U0010ffff")
        return self._files[start:end]


def build_plan(
    inventory: Inventory,
    categories: Sequence[Category],
    keep_globs: Sequence[str] = (),
    restored: Mapping[Path, str] | None = None,
) -> Plan:
    """Merge the categories' actions, drop what ``--keep`` protects and what a larger removal already covers.

    *restored*: paths an earlier prune's verification restored (a program needed them), with why; they are kept.
    """
    index = FileIndex(inventory.files)
    actions: list[Action] = []
    kept: list[Kept] = []
    derived = [c for c in categories if _is_derived(c)]
    for category in (c for c in categories if not _is_derived(c)):
        result = category.plan(inventory, ())
        actions.extend(result.actions)
        kept.extend(result.kept)

    keep = _KeepGlobs(inventory, keep_globs)
    actions, kept_by_glob = _apply_keep(inventory, actions, keep, index)
    kept.extend(kept_by_glob)
    actions, kept_as_restored = _keep_restored(actions, restored or {})
    kept.extend(kept_as_restored)
    actions = _drop_covered(actions)
    for action in actions:
        _guard(inventory, action)

    for category in derived:
        result = category.plan(inventory, tuple(actions))
        actions.extend(result.actions)
        kept.extend(result.kept)
    actions.sort(key=lambda a: (a.phase, str(a.path)))
    return Plan(inventory, tuple(c.name for c in categories), tuple(actions), tuple(kept), keep.unmatched())


def _is_derived(category: Category) -> bool:
    return getattr(category, "derived", False) is True


class _KeepGlobs:
    """``--keep`` globs, each matched against paths relative to site-packages.

    A glob may also be written absolute, or relative to the target's root (``lib/python3.11/site-packages/x``);
    either is turned into the same relative form.
    """

    def __init__(self, inventory: Inventory, globs: Sequence[str]) -> None:
        self.inventory = inventory
        self.globs = [(glob, re.compile(fnmatch.translate(_relative_glob(inventory, glob))).match) for glob in globs]

    def first_match(self, rels: Iterable[str]) -> str | None:
        rels = list(rels)
        return next((glob for glob, match in self.globs for rel in rels if match(rel)), None)

    def unmatched(self) -> tuple[str, ...]:
        if not self.globs:
            return ()
        target = self.inventory.target
        paths = [f.rel for f in self.inventory.files] + [target.relative(d) for d in self.inventory.directories]
        return tuple(glob for glob, match in self.globs if not any(match(path) for path in paths))


def _relative_glob(inventory: Inventory, glob: str) -> str:
    target = inventory.target
    for site_packages in target.site_packages:
        if os.path.isabs(glob):
            real = os.path.realpath(glob)  # /opt/venv may be a symlink to the resolved root
            prefix = f"{site_packages}/"
            if real.startswith(prefix):
                return real[len(prefix) :]
        else:
            prefix = f"{os.path.relpath(site_packages, target.root)}/"
            if glob.startswith(prefix) and not prefix.startswith(".."):
                return glob[len(prefix) :]
    return glob


def _apply_keep(
    inventory: Inventory, actions: list[Action], keep: _KeepGlobs, index: FileIndex
) -> tuple[list[Action], list[Kept]]:
    """``--keep GLOB`` protects what it matches and everything under it; a directory holding a kept file stays whole."""
    if not keep.globs:
        return actions, []
    remaining: list[Action] = []
    kept: list[Kept] = []
    for action in actions:
        rel = inventory.target.relative(action.path)
        rels = [rel, *ancestors(rel)]
        if action.is_directory:
            rels += [f.rel for f in index.under(action.path)]
        matched = keep.first_match(rels)
        if matched is None:
            remaining.append(action)
        else:
            kept.append(Kept(action.path, action.category, f"--keep {matched}", action.bytes_saved))
    return remaining, kept


def _keep_restored(actions: list[Action], restored: Mapping[Path, str]) -> tuple[list[Action], list[Kept]]:
    """What an earlier verification restored stays, and so does a directory that holds it."""
    if not restored:
        return actions, []
    remaining: list[Action] = []
    kept: list[Kept] = []
    for action in actions:
        reason = restored.get(action.path)
        if reason is None and action.is_directory:
            reason = next((why for path, why in restored.items() if action.path in path.parents), None)
        if reason is None:
            remaining.append(action)
        else:
            why = f"restored by verification in an earlier prune: {reason}"
            kept.append(Kept(action.path, action.category, why, action.bytes_saved))
    return remaining, kept


def _drop_covered(actions: list[Action]) -> list[Action]:
    """A change inside a directory that is removed as a whole is already counted there."""
    removed_dirs = {str(a.path) for a in actions if a.kind is ActionKind.REMOVE and a.is_directory}
    return [a for a in actions if not any(parent in removed_dirs for parent in ancestors(str(a.path)))]


def ancestors(path: str) -> Iterator[str]:
    """``/a/b/c`` -> ``/a/b``, ``/a`` (``a/b/c`` -> ``a/b``, ``a``): ``Path.parents`` as strings, which is faster."""
    end = path.rfind("/")
    while end > 0:
        yield path[:end]
        end = path.rfind("/", 0, end)


def _guard(inventory: Inventory, action: Action) -> None:
    """Last line of defence: no category may plan outside site-packages or inside a distribution's metadata."""
    if not inventory.target.contains(action.path) or action.path in inventory.target.site_packages:
        raise UsageError(f"{action.path}: planned by {action.category} but outside site-packages; this is a bug")
    if any(part.endswith((".dist-info", ".egg-info")) for part in action.path.parts) and action.phase is Phase.FILES:
        raise UsageError(f"{action.path}: planned by {action.category} inside package metadata; this is a bug")
