"""What verification is asked to do, and what it found: one outcome for the prune and for ``venvprune check``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from venvprune.verify.checks import Check, Result, mapped_libraries
from venvprune.verify.compare import Comparison, describe
from venvprune.verify.probe.checklist import unused_libraries

SCOPES = ("affected", "all")  # --verify: repeat after pruning what the change can affect, or every check


@dataclass(frozen=True)
class VerifyOptions:
    heal: bool = True
    manifest: bool = True
    jobs: int = 0  # 0: one worker per CPU
    check_modules: tuple[str, ...] = ()
    smoke: tuple[str, ...] = ()
    timeout: float = 120.0  # seconds per check
    strict: bool = False  # every check not run, not blamed or timed out fails the run
    scope: str = "affected"  # see SCOPES


@dataclass(frozen=True)
class Healed:
    """A planned change undone because a check failed without it."""

    path: Path
    category: str
    reason: str  # e.g. "foo/bar.py needed it: ModuleNotFoundError: No module named 'foo.tests'"
    distribution: str | None = None


@dataclass(frozen=True)
class UnusedLibrary:
    """A bundled library that no extension module or program needs and no import loaded: reported, not checked."""

    path: Path
    size: int
    distribution: str | None


@dataclass(frozen=True)
class VerifyOutcome:
    ok: bool
    checks_total: int
    checks_passed: int
    failures: tuple[str, ...] = ()  # what fails the run: regressions that could not be healed, explicit checks
    pre_existing: tuple[str, ...] = ()  # failing before (baseline, manifest) as well: not blamed
    not_run: tuple[str, ...] = ()  # could not be run (a module they need timed out): never a pass
    unused_libraries: tuple[UnusedLibrary, ...] = ()
    healed: tuple[Healed, ...] = ()
    strict: bool = False
    compared_with: str = "baseline"  # baseline (a prune), manifest, or nothing (each check judged on its own)
    refused: str | None = None  # why the prune did not start: the checks before pruning said no
    rerun: int | None = None  # checks repeated after pruning (the rest could not be affected)
    unrecorded: int = 0  # checks of a manifest written without verification: judged on their own
    changed_since_prune: tuple[str, ...] = ()  # distributions installed, upgraded or removed since the manifest
    likely_cause: str | None = None  # when most checks do not pass: why that is likely
    import_seconds_before: float | None = None
    import_seconds_after: float | None = None
    manifest: Path | None = None  # the final-stage manifest this run wrote
    manifest_note: str | None = None  # what became of the final-stage manifest, when it was not written


def outcome_of(
    comparison: Comparison,
    results: Mapping[str, Result],
    strict: bool,
    **fields: Any,
) -> VerifyOutcome:
    """An outcome from the verdicts: it fails on a failure, and with *strict* on anything that did not pass."""

    def lines(checks: Iterable[Check]) -> tuple[str, ...]:
        return tuple(describe(c, results.get(c.id)) for c in checks)

    failed = bool(comparison.failures) or (strict and bool(comparison.pre_existing or comparison.not_run))
    total = len(comparison.failures + comparison.pre_existing + comparison.not_run + comparison.passed)
    return VerifyOutcome(
        ok=not failed,
        checks_total=total,
        checks_passed=len(comparison.passed),
        failures=lines(comparison.failures),
        pre_existing=lines(comparison.pre_existing),
        not_run=lines(comparison.not_run),
        strict=strict,
        **fields,
    )


def unused(found: Mapping[str, Any], results: Iterable[Result]) -> tuple[UnusedLibrary, ...]:
    """The bundled libraries of a discovery that nothing needs and no import of *results* loaded."""
    libraries = unused_libraries(dict(found), mapped_libraries(results)) if found else []
    return tuple(UnusedLibrary(Path(u["path"]), int(u["bytes"]), u["owner"]) for u in libraries)
