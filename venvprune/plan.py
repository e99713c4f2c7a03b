"""The plan: immutable actions with a category and a reason, computed from the inventory without touching the disk.

The dry-run report is this plan rendered; applying it is :mod:`venvprune.apply`'s job.
"""

from __future__ import annotations

import enum
import fnmatch
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Protocol

from venvprune.errors import UsageError
from venvprune.knowledge import KnowledgeBase, RuleKind
from venvprune.scan import FileEntry, FileIndex, Inventory


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
    # Set on every action that uninstalls a whole distribution (installers): its metadata goes too, and outside
    # site-packages its scripts (bin/pip); the actions of one uninstall are planned all together or not at all.
    uninstalls: str | None = None


@dataclass(frozen=True)
class Kept:
    """Something a category would have removed and deliberately did not, with why."""

    path: Path
    category: str
    reason: str
    bytes: int = 0


@dataclass(frozen=True)
class Consequence:
    """What stops working because a category removes some paths (a ``breaks`` rule of the knowledge base)."""

    paths: tuple[str, ...]  # the rule's globs, relative to site-packages
    category: str
    what_breaks: str
    evidence: str
    files: int
    bytes: int


@dataclass(frozen=True)
class WarmBytecode:
    """Bytecode that stays whatever the categories plan (``--warm``), and why: bytecode path -> its source."""

    files: Mapping[Path, Path]
    reason: str


@dataclass(frozen=True)
class CategorySaving:
    """What one category would save in addition to a plan (the dry run under ``safe`` shows ``max``'s)."""

    category: str
    files: int
    bytes: int


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
    consequences: tuple[Consequence, ...] = ()
    warm_compile: tuple[tuple[Path, Path], ...] = ()  # (source, bytecode) of --warm modules, compiled when applied

    @property
    def uninstalled(self) -> tuple[str, ...]:
        """Distributions the plan uninstalls whole (metadata included): their absence afterwards is the plan."""
        return tuple(sorted({a.uninstalls for a in self.actions if a.uninstalls is not None}))

    @property
    def bytes_saved(self) -> int:
        return sum(a.bytes_saved for a in self.actions)

    @property
    def files_removed(self) -> int:
        return sum(a.files for a in self.actions)

    def by_phase(self, phase: Phase) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.phase is phase)


def build_plan(
    inventory: Inventory,
    categories: Sequence[Category],
    keep_globs: Sequence[str] = (),
    restored: Mapping[Path, str] | None = None,
    *,
    knowledge: KnowledgeBase | None = None,
    warm: WarmBytecode | None = None,
) -> Plan:
    """Merge the categories' actions, drop what ``--keep``, the knowledge base's keep rules and an earlier
    verification protect and what a larger removal already covers; name what the remaining removals break (the
    knowledge base's breaks rules).

    *restored*: paths an earlier prune's verification restored (a program needed them), with why; they are kept.

    *warm*: the bytecode of what the ``--warm`` modules load stays (a ``__pycache__`` folder holding some of it
    loses only the rest); what is missing of it is listed to compile.
    """
    knowledge = knowledge or KnowledgeBase()
    installed = {d.name: d.version for d in inventory.distributions}
    index = inventory.index
    actions: list[Action] = []
    kept: list[Kept] = []
    derived = [c for c in categories if _is_derived(c)]
    for category in (c for c in categories if not _is_derived(c)):
        result = category.plan(inventory, ())
        actions.extend(result.actions)
        kept.extend(result.kept)

    to_compile: tuple[tuple[Path, Path], ...] = ()
    if warm is not None:
        actions, kept_warm = _keep_warm(actions, warm, index)
        kept.extend(kept_warm)
        to_compile = tuple(
            sorted((source, pyc) for pyc, source in warm.files.items() if not index.exact(pyc) and index.exact(source))
        )
    user_keep = _Globs(inventory, [(glob, f"--keep {glob}") for glob in keep_globs])
    known_keep = _Globs(
        inventory,
        [(path, rule.reason) for rule in knowledge.applicable(installed, RuleKind.KEEP) for path in rule.paths],
    )
    planned = actions
    for protection in (user_keep, known_keep):
        actions, kept_by_glob = _apply_keep(inventory, actions, protection, index)
        kept.extend(kept_by_glob)
    actions, kept_as_restored = _keep_restored(actions, restored or {})
    kept.extend(kept_as_restored)
    actions, kept_whole = _uninstall_whole(planned, actions, kept)
    kept.extend(kept_whole)
    actions = _drop_covered(actions)
    kept = _not_removed(kept, actions)
    for action in actions:
        _guard(inventory, action)

    for category in derived:
        result = category.plan(inventory, tuple(actions))
        actions.extend(result.actions)
        kept.extend(result.kept)
    actions.sort(key=lambda a: (a.phase, str(a.path)))
    consequences = _consequences(inventory, actions, knowledge, installed, index)
    return Plan(
        inventory,
        tuple(c.name for c in categories),
        tuple(actions),
        tuple(kept),
        user_keep.unmatched(),
        consequences,
        to_compile,
    )


def savings_beyond(plan: Plan, other: Plan) -> tuple[CategorySaving, ...]:
    """What *other*'s removals would save beyond *plan*'s, per category of *other*: the files *plan* keeps, and of
    a file *plan* only strips, what the stripping leaves. Both plans are of one inventory."""
    index = plan.inventory.index

    def removed_files(actions: Iterable[Action]) -> Iterator[tuple[Action, FileEntry]]:
        for action in actions:
            if action.kind is ActionKind.REMOVE:
                for entry in index.under(action.path) if action.is_directory else index.exact(action.path):
                    yield action, entry

    # The index's entries, by identity: both plans' actions resolve to the same FileEntry objects, so no path string
    # is made per removed file.
    gone = {id(entry) for _, entry in removed_files(plan.actions)}
    stripped = {str(a.path): a.bytes_saved for a in plan.actions if a.kind is ActionKind.REWRITE}
    files: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for action, entry in removed_files(other.actions):
        if id(entry) in gone or entry.is_symlink:
            continue
        gone.add(id(entry))
        files[action.category] += 1
        sizes[action.category] += entry.size - stripped.get(entry.path_str, 0)
    return tuple(CategorySaving(name, files[name], sizes[name]) for name in other.categories if name in files)


def _is_derived(category: Category) -> bool:
    return getattr(category, "derived", False) is True


class _Globs:
    """Globs with a reason each (``--keep``, keep rules), matched against paths relative to site-packages.

    A glob may also be written absolute, or relative to the target's root (``lib/python3.11/site-packages/x``);
    either is turned into the same relative form.
    """

    def __init__(self, inventory: Inventory, globs: Sequence[tuple[str, str]]) -> None:
        self.inventory = inventory
        patterns = [fnmatch.translate(_relative_glob(inventory, glob)) for glob, _ in globs]
        self.globs = [(glob, reason, re.compile(pattern).match) for (glob, reason), pattern in zip(globs, patterns)]
        # One pass of one expression first: most paths match no glob at all.
        self._any = re.compile("|".join(f"(?:{p})" for p in patterns)).match if patterns else None

    def first_match(self, rels: Iterable[str]) -> str | None:
        """The reason of the first glob that matches one of *rels*; None when none does."""
        if self._any is None:
            return None
        hits = [rel for rel in rels if self._any(rel)]
        return next((reason for _, reason, match in self.globs for rel in hits if match(rel)), None)

    def unmatched(self) -> tuple[str, ...]:
        if not self.globs:
            return ()
        target = self.inventory.target
        paths = [f.rel for f in self.inventory.files] + [target.relative(d) for d in self.inventory.directories]
        return tuple(glob for glob, _, match in self.globs if not any(match(path) for path in paths))


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
    inventory: Inventory, actions: list[Action], keep: _Globs, index: FileIndex
) -> tuple[list[Action], list[Kept]]:
    """A protection keeps what it matches and everything under it; a directory holding a kept file stays whole."""
    if not keep.globs:
        return actions, []
    remaining: list[Action] = []
    kept: list[Kept] = []
    for action in actions:
        rel = inventory.target.relative(action.path)
        rels = [rel, *ancestors(rel)]
        if action.is_directory:
            rels += [f.rel for f in index.under(action.path)]
        reason = keep.first_match(rels)
        if reason is None:
            remaining.append(action)
        else:
            kept.append(Kept(action.path, action.category, reason, action.bytes_saved))
    return remaining, kept


def _keep_warm(actions: list[Action], warm: WarmBytecode, index: FileIndex) -> tuple[list[Action], list[Kept]]:
    """The warm bytecode stays; the removal of a ``__pycache__`` folder that holds some of it (or where missing warm
    bytecode will be compiled) becomes the removal of each of its other files."""
    folders = {pyc.parent for pyc in warm.files}
    remaining: list[Action] = []
    kept: list[Kept] = []
    for action in actions:
        if action.kind is not ActionKind.REMOVE:
            remaining.append(action)
        elif action.path in warm.files:
            kept.append(Kept(action.path, action.category, warm.reason, action.bytes_saved))
        elif action.is_directory and action.path in folders:
            for entry in index.under(action.path):
                if entry.path in warm.files:
                    kept.append(Kept(entry.path, action.category, warm.reason, entry.size))
                else:
                    remaining.append(
                        replace(action, path=entry.path, bytes_saved=entry.size, files=1, is_directory=False)
                    )
        else:
            remaining.append(action)
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


def _uninstall_whole(
    planned: Sequence[Action], remaining: list[Action], kept: Sequence[Kept]
) -> tuple[list[Action], list[Kept]]:
    """A distribution is uninstalled whole or not at all: when a protection kept part of it, all of it stays, and
    the report says which protection."""
    wanted = Counter(a.uninstalls for a in planned if a.uninstalls is not None)
    left = Counter(a.uninstalls for a in remaining if a.uninstalls is not None)
    partial = {name for name, count in wanted.items() if left[name] != count}
    if not partial:
        return remaining, []
    by_path = {k.path: k.reason for k in kept}
    why = {
        a.uninstalls: by_path[a.path]
        for a in planned
        if a.uninstalls in partial and a.path in by_path and a not in remaining
    }
    still = [
        Kept(
            a.path,
            a.category,
            f"{a.uninstalls} is uninstalled whole or not at all, and part of it is kept: "
            f"{why.get(a.uninstalls, 'a protection')}",
            0,
        )
        for a in remaining
        if a.uninstalls in partial
    ]
    return [a for a in remaining if a.uninstalls not in partial], still


def _drop_covered(actions: list[Action]) -> list[Action]:
    """A change inside a directory that is removed as a whole is already counted there; so is a change of a file
    that another category removes (a stripped test executable), and a second removal of one path (the first
    category, in the registry's order, has it)."""
    removed_dirs = {str(a.path) for a in actions if a.kind is ActionKind.REMOVE and a.is_directory}
    removed = {a.path for a in actions if a.kind is ActionKind.REMOVE}
    seen: set[Path] = set()
    remaining = []
    for action in actions:
        if any(parent in removed_dirs for parent in ancestors(str(action.path))):
            continue
        if action.path in seen or (action.kind is ActionKind.REWRITE and action.path in removed):
            continue
        seen.add(action.path)
        remaining.append(action)
    return remaining


def _not_removed(kept: list[Kept], actions: Sequence[Action]) -> list[Kept]:
    """What one category keeps inside what another removes is not kept: it is not listed as such (a build file kept
    by a guard inside a test suite the tests category removes)."""
    removed = {str(a.path) for a in actions if a.kind is ActionKind.REMOVE}
    return [k for k in kept if str(k.path) not in removed and not any(p in removed for p in ancestors(str(k.path)))]


def ancestors(path: str) -> Iterator[str]:
    """``/a/b/c`` -> ``/a/b``, ``/a`` (``a/b/c`` -> ``a/b``, ``a``): ``Path.parents`` as strings, which is faster."""
    end = path.rfind("/")
    while end > 0:
        yield path[:end]
        end = path.rfind("/", 0, end)


def _guard(inventory: Inventory, action: Action) -> None:
    """Last line of defence: no category may plan outside site-packages or inside a distribution's metadata, except
    an uninstall, which takes the whole distribution: its metadata and the scripts its RECORD lists."""
    # Every distribution of that name: a leftover second dist-info folder goes with the one uninstalled.
    uninstalled = [d for d in inventory.distributions if d.name == action.uninstalls]
    if any(action.path == d.metadata_dir and action.is_directory for d in uninstalled):
        return
    if any(action.path in d.scripts for d in uninstalled):
        return
    if not inventory.target.contains(action.path) or action.path in inventory.target.site_packages:
        raise UsageError(f"{action.path}: planned by {action.category} but outside site-packages; this is a bug")
    if any(part.endswith((".dist-info", ".egg-info")) for part in action.path.parts) and action.phase is Phase.FILES:
        raise UsageError(f"{action.path}: planned by {action.category} inside package metadata; this is a bug")


def _consequences(
    inventory: Inventory,
    actions: Sequence[Action],
    knowledge: KnowledgeBase,
    installed: dict[str, str],
    index: FileIndex,
) -> tuple[Consequence, ...]:
    """What the removals break, by the knowledge base's breaks rules: one line per rule and category.

    A removal counts when it takes what a rule's glob names, or a folder holding it; a part inside it does not
    (the tests category's ``torch/include/c10/test`` breaks nothing that ``torch/include`` as a whole does).
    """
    found: list[Consequence] = []
    for rule in knowledge.applicable(installed, RuleKind.BREAKS):
        globs = [(glob, re.compile(fnmatch.translate(glob)).match) for glob in rule.paths]
        hit: dict[str, list[Action]] = {}
        for action in actions:
            rel = inventory.target.relative(action.path)
            if action.kind is ActionKind.REMOVE and any(
                _takes(rel, action, glob, match, index) for glob, match in globs
            ):
                hit.setdefault(action.category, []).append(action)
        for category, removed in sorted(hit.items()):
            found.append(
                Consequence(
                    rule.paths,
                    category,
                    rule.why,
                    rule.evidence,
                    sum(a.files for a in removed),
                    sum(a.bytes_saved for a in removed),
                )
            )
    return tuple(found)


def _takes(rel: str, action: Action, glob: str, match: Callable[[str], object], index: FileIndex) -> bool:
    """Whether removing *rel* takes what *glob* names: it matches, or it is a folder holding a match."""
    if match(rel):
        return True
    if not action.is_directory:
        return False
    fixed = re.split(r"[*?[]", glob, maxsplit=1)[0]  # the part of the glob without wildcards
    if fixed == glob:  # a plain path: taken when it lies inside the removed folder
        return glob.startswith(rel + "/")
    return (fixed.startswith(rel + "/") or rel.startswith(fixed)) and any(
        match(f.rel) for f in index.under(action.path)
    )
