"""Baseline against after: only what passed before and fails now is a regression; the rest is never blamed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from venvprune.verify.checks import Check, Result


@dataclass(frozen=True)
class Comparison:
    regressions: tuple[Check, ...]  # passed at baseline, fail now
    pre_existing: tuple[Check, ...]  # failed at baseline: reported, never blamed
    passed: tuple[Check, ...]


def compare(checks: Sequence[Check], baseline: Mapping[str, Result], after: Mapping[str, Result]) -> Comparison:
    regressions: list[Check] = []
    pre_existing: list[Check] = []
    passed: list[Check] = []
    for check in checks:
        before = baseline.get(check.id)
        now = after.get(check.id)
        if before is None or not before.ok:
            pre_existing.append(check)
        elif now is None or not now.ok:
            regressions.append(check)
        else:
            passed.append(check)
    return Comparison(tuple(regressions), tuple(pre_existing), tuple(passed))


def checks_after(checks: Iterable[Check], baseline: Mapping[str, Result], removed: Iterable[Path]) -> list[Check]:
    """The checks to repeat after pruning.

    A library the plan itself removed (a compiled test helper inside a removed ``tests`` directory) is not checked:
    its absence is the plan, and any import that needs it fails its own check. A metadata check must now answer
    exactly what it answered at baseline. A check that needed a fresh process at baseline gets one at once.
    """
    gone = set(removed)
    selected: list[Check] = []
    for check in checks:
        if check.subject is not None and (check.subject in gone or not gone.isdisjoint(check.subject.parents)):
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
    return f"{check.id}: {result.error if result is not None else 'no result'}"
