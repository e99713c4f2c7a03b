"""Verification: prove that what worked before pruning still works after it, and heal what broke.

INTERFACE (implemented by the verification work, issue 4); the pipeline calls:
- take_baseline(target, options) -> Baseline            before any change
- verify_and_heal(transaction, plan, baseline, options) -> VerifyOutcome
      after the plan's actions ran; restores responsible actions through the transaction until green, writes the
      final-stage manifest and checker with transaction.create() when options.manifest and the outcome is ok.
- run_check(target, options) -> CheckResult              for `venvprune check`
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from venvprune.apply import Transaction
    from venvprune.plan import Plan
    from venvprune.target import Target


@dataclass(frozen=True)
class VerifyOptions:
    heal: bool = True
    manifest: bool = True
    jobs: int = 0  # 0: one worker per CPU
    check_modules: tuple[str, ...] = ()
    smoke: tuple[str, ...] = ()
    timeout: float = 120.0


@dataclass(frozen=True)
class Baseline:
    pass


@dataclass(frozen=True)
class Healed:
    """A planned change undone because a check failed without it."""

    path: Path
    category: str
    reason: str  # e.g. "numpy/_core/tests: needed by `import numpy.foo` (ModuleNotFoundError ...)"


@dataclass(frozen=True)
class VerifyOutcome:
    ok: bool
    checks_total: int
    checks_passed: int
    regressions: tuple[str, ...] = ()  # failures that could not be healed (everything was restored)
    pre_existing: tuple[str, ...] = ()  # failures already there before pruning, never blamed
    healed: tuple[Healed, ...] = ()
    import_seconds_before: Optional[float] = None
    import_seconds_after: Optional[float] = None
    manifest: Optional[Path] = None


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    checks_total: int
    failures: tuple[str, ...]


def take_baseline(target: Target, options: VerifyOptions) -> Baseline:
    raise NotImplementedError


def verify_and_heal(transaction: Transaction, plan: Plan, baseline: Baseline, options: VerifyOptions) -> VerifyOutcome:
    raise NotImplementedError


def run_check(target: Target, options: VerifyOptions) -> CheckResult:
    raise NotImplementedError
