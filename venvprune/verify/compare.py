"""The verdicts of a run against a record (the baseline, or a manifest's), with the probe's judge.

Only what passed before and fails now is a regression; what failed before too is not blamed; a check that could
not run is never a pass; the user's own checks fail whenever they fail (:mod:`venvprune.verify.probe.judge`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from venvprune.verify.checks import Check, Result
from venvprune.verify.probe import judge


@dataclass(frozen=True)
class Comparison:
    failures: tuple[Check, ...]  # fail the run (a regression, an explicit check failing)
    pre_existing: tuple[Check, ...]  # failed before too: reported, not blamed
    not_run: tuple[Check, ...]  # could not be run: never a pass
    passed: tuple[Check, ...]


def recorded_state(result: Result | None) -> str | None:
    """What a record says of a check: ``pass``, ``fail`` or ``not run`` (a timeout); None: no record."""
    return None if result is None else judge.record(result.as_probe())["state"]


def compare(checks: Sequence[Check], recorded: Mapping[str, str | None], now: Mapping[str, Result]) -> Comparison:
    """Each check's verdict: its result *now* against the state *recorded* for it (see :func:`recorded_state`)."""
    found: dict[str, list[Check]] = {judge.PASS: [], judge.FAIL: [], judge.NOT_BLAMED: [], judge.NOT_RUN: []}
    for check in checks:
        result = now.get(check.id)
        task = {**check.task, "kind": check.kind, "explicit": check.explicit}
        found[judge.verdict(task, result.as_probe() if result else None, recorded.get(check.id))].append(check)
    return Comparison(
        tuple(found[judge.FAIL]), tuple(found[judge.NOT_BLAMED]), tuple(found[judge.NOT_RUN]), tuple(found[judge.PASS])
    )


def baseline_states(baseline: Mapping[str, Result]) -> dict[str, str | None]:
    return {check_id: recorded_state(result) for check_id, result in baseline.items()}


def checks_after(
    checks: Iterable[Check],
    baseline: Mapping[str, Result],
    removed: Iterable[Path],
    uninstalled: Iterable[str] = (),
) -> list[Check]:
    """The checks to repeat after pruning.

    An extension module the plan itself removed (a compiled test helper inside a removed ``tests`` directory) is
    not checked: its absence is the plan, and any import that needs it fails its own check. Nor is a check of
    distributions the plan uninstalls whole (installers: pip's import, version and scripts); a distribution that needs
    one fails its own checks. A metadata check must now answer exactly what it answered at baseline. A check that
    needed a fresh process at baseline gets one at once.
    """
    gone = set(removed)
    gone_distributions = set(uninstalled)
    selected: list[Check] = []
    for check in checks:
        if check.subject is not None and (check.subject in gone or not gone.isdisjoint(check.subject.parents)):
            continue
        if check.distributions and gone_distributions.issuperset(check.distributions):
            continue
        before = baseline.get(check.id)
        if check.kind == "metadata" and before is not None and before.ok and before.value is not None:
            check = replace(check, task={**check.task, "expect": before.value})
        if before is not None and before.attempt != "shared":
            check = replace(check, task={**check.task, "fresh": True})
        selected.append(check)
    return selected


def describe(check: Check, result: Result | None) -> str:
    """``check: error`` for the report and the CLI."""
    return judge.describe({"id": check.id}, result.as_probe() if result is not None else None)
