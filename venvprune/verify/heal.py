"""Healing: find the executed actions behind a regression, restore them, check again, widen until green.

Each regressed check climbs a ladder, one rung per round in which it still fails:

0. what the error names: a removed path in the traceback or message, the package a ``ModuleNotFoundError`` names
   (``foo.tests`` -> ``foo/tests``), a shared object by name (``libfoo.so.1``), the library a dlopen check loads;
1. every action of the distribution the check belongs to;
2. every action of the distributions whose files appear in the traceback;
3. everything.

A rung that finds nothing new is skipped at once. After each restore, the RECORD rewrites of the affected
distributions are redone so RECORD lists the restored files again. Only the checks that failed are run again:
putting originals back cannot break what passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from venvprune.plan import Action, Phase
from venvprune.verify.changes import ChangeError, Changes
from venvprune.verify.checks import Check, Result
from venvprune.verify.compare import describe

NAMED, DISTRIBUTION, TRACEBACK, EVERYTHING = range(4)
_EXTENSION_SUFFIXES = (".py", ".pyc", ".so", ".pyd")


@dataclass(frozen=True)
class Restored:
    action: Action
    reason: str


@dataclass(frozen=True)
class Attribution:
    """How paths and names in an error map to actions; built from the plan's inventory and the discovery."""

    site_dirs: tuple[Path, ...]
    owner_of: Callable[[Path], str | None]  # file -> canonical distribution name
    files_named: Callable[[Path, str], bool]  # does this removed directory hold a file with this name?
    module_owners: Mapping[str, tuple[str, ...]]  # top-level import name -> distributions

    def suspects(self, check: Check, result: Result, executed: Sequence[Action], rung: int) -> list[Action]:
        """The executed actions this rung blames for *check* failing with *result*."""
        candidates = [a for a in executed if rung == EVERYTHING or self._may_restore(a, check)]
        if rung == NAMED:
            paths = [Path(f) for f in result.files] + ([check.subject] if check.subject is not None else [])
            # An action is named when its path is a path in the error or one of their ancestors.
            named = {ancestor for p in paths for ancestor in (p, *p.parents)}
            return [a for a in candidates if self._named(a, check, result, named)]
        if rung == DISTRIBUTION:
            return [a for a in candidates if a.distribution in check.distributions]
        if rung == TRACEBACK:
            owners = self._traceback_distributions(result)
            return [a for a in candidates if a.distribution in owners]
        return candidates

    def _may_restore(self, action: Action, check: Check) -> bool:
        # A RECORD rewrite is redone after each restore, not restored -- unless the metadata itself regressed.
        return action.phase is not Phase.METADATA or check.kind == "metadata"

    def _named(self, action: Action, check: Check, result: Result, named: set[Path]) -> bool:
        if check.kind == "metadata":
            return action.phase is Phase.METADATA and action.distribution in check.distributions
        if action.path in named:
            return True
        dotted = self._dotted_names(action.path)
        if any(m == d or m.startswith(d + ".") for m in result.modules for d in dotted):
            return True
        return any(
            action.path.name == library or (action.is_directory and self.files_named(action.path, library))
            for library in result.libraries
        )

    def _dotted_names(self, path: Path) -> list[str]:
        names = []
        for site_dir in self.site_dirs:
            try:
                parts = list(path.relative_to(site_dir).parts)
            except ValueError:
                continue
            if parts and parts[-1].endswith(_EXTENSION_SUFFIXES):
                parts[-1] = parts[-1].split(".", 1)[0]
                if parts[-1] == "__init__":
                    parts.pop()
            if parts and all(p.isidentifier() for p in parts):
                names.append(".".join(parts))
        return names

    def _traceback_distributions(self, result: Result) -> set[str]:
        owners = {self.owner_of(Path(f)) for f in result.files}
        for module in result.modules:
            owners.update(self.module_owners.get(module.split(".")[0], ()))
        owners.discard(None)
        return {o for o in owners if o is not None}

    def needed_by(self, result: Result, action: Action) -> str | None:
        """The file that needed what was removed: the innermost traceback frame in site-packages, outside it."""
        for frame in reversed(result.frames):
            path = Path(frame)
            if path == action.path or action.path in path.parents:
                continue
            for site_dir in self.site_dirs:
                if site_dir in path.parents:
                    return path.relative_to(site_dir).as_posix()
        return None


@dataclass(frozen=True)
class HealResult:
    results: Mapping[str, Result]  # the latest result of every check
    restored: tuple[Restored, ...]
    unhealed: tuple[Check, ...]  # regressions left (empty: green)
    errors: tuple[ChangeError, ...] = ()


def heal(
    transaction: Changes,
    metadata_actions: Sequence[Action],
    attribution: Attribution,
    run: Callable[[Sequence[Check]], Mapping[str, Result]],
    regressed: Sequence[Check],
    results: Mapping[str, Result],
) -> HealResult:
    """Restore, check again, widen, until *regressed* pass or nothing is left to restore.

    *metadata_actions* are the plan's RECORD rewrites, redone for the distributions whose files come back; *run*
    runs checks and returns their results.
    """
    latest = dict(results)
    rungs = {check.id: NAMED for check in regressed}
    last_error = {check.id: latest[check.id].error for check in regressed}
    restored: list[Restored] = []
    errors: list[ChangeError] = []
    failing = list(regressed)
    while failing:
        executed = transaction.executed()
        chosen: dict[Path, Restored] = {}
        unhealable: list[Check] = []
        for check in failing:
            result = latest[check.id]
            if result.error != last_error[check.id]:
                # A restore got it further and it fails on something else now: start from what that error names.
                rungs[check.id] = NAMED
                last_error[check.id] = result.error
            rung = rungs[check.id]
            while rung <= EVERYTHING:
                # Suspects another check already chose this round count: two checks often fail for one cause.
                found = attribution.suspects(check, result, executed, rung)
                if found:
                    for action in found:
                        if action.path not in chosen:
                            chosen[action.path] = Restored(action, _reason(attribution, check, result, action, rung))
                    break
                rung += 1
            rungs[check.id] = rung + 1  # still failing next round: look wider
            if rung > EVERYTHING:
                unhealable.append(check)
        if unhealable and not chosen:
            return HealResult(latest, tuple(restored), tuple(failing), tuple(errors))
        actions = [r.action for r in chosen.values()]
        errors += transaction.restore(actions)
        restored += chosen.values()
        distributions = {a.distribution for a in actions if a.phase is Phase.FILES}
        errors += transaction.redo(a for a in metadata_actions if a.distribution in distributions)
        if errors:
            return HealResult(latest, tuple(restored), tuple(failing), tuple(errors))
        latest.update(run(failing))
        failing = [check for check in failing if not latest[check.id].ok]
    return HealResult(latest, tuple(restored), (), tuple(errors))


def _reason(attribution: Attribution, check: Check, result: Result, action: Action, rung: int) -> str:
    if rung == NAMED:
        who = attribution.needed_by(result, action) or f"`{check.id}`"
        return f"{who} needed it: {result.error}"
    scope = {
        DISTRIBUTION: "with the rest of its distribution",
        TRACEBACK: "with the distributions in the traceback",
        EVERYTHING: "with every other change",
    }[rung]
    return f"restored {scope}, the error naming no single file: {describe(check, result)}"
