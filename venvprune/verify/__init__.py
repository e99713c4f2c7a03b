"""Verification: prove that what worked before pruning still works after it, and heal what broke.

The pipeline calls:

- :func:`take_baseline` before any change: every check, run in the target's own interpreter;
- :func:`verify_and_heal` after the plan's actions ran: the same checks again; a check that passed at baseline and
  fails now is a regression, whose responsible actions are restored through the transaction until it passes (see
  :mod:`.heal`); on success the final-stage manifest and checker are written with ``transaction.create()``;
- :func:`run_check` for ``venvprune check``: the checks alone, writing nothing.

The checks (:mod:`.probe`, which runs inside the target): every importable top-level module of every distribution
is imported; ``importlib.metadata`` answers each distribution's version and maps its import names; every entry
point loads (never runs); every ELF shared library dlopens with lazy binding; plus ``--check-module`` and ``--smoke``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from venvprune.plan import ActionKind, FileIndex, Phase
from venvprune.verify.bytecode import BytecodeCache, compile_sample, scale_to_all
from venvprune.verify.changes import Transaction
from venvprune.verify.checks import Check, Discovery, Result, Runner, VerifyError, smoke_check
from venvprune.verify.checks import bundle_uses as _bundle_uses
from venvprune.verify.checks import bundle_weights as _bundle_weights
from venvprune.verify.checks import import_seconds as _import_seconds
from venvprune.verify.checks import loaded_sources as _loaded_sources
from venvprune.verify.checks import package_costs as _package_costs
from venvprune.verify.compare import checks_after, compare, describe
from venvprune.verify.heal import Attribution, heal
from venvprune.verify.manifest import CHECKER_NAME, MANIFEST_NAME, checker_bytes, manifest_bytes, manifest_dir

if TYPE_CHECKING:
    from venvprune.plan import Plan
    from venvprune.target import Target

__all__ = [
    "Baseline",
    "CheckResult",
    "Healed",
    "VerifyError",
    "VerifyOptions",
    "VerifyOutcome",
    "run_check",
    "take_baseline",
    "verify_and_heal",
]


@dataclass(frozen=True)
class VerifyOptions:
    heal: bool = True
    manifest: bool = True
    jobs: int = 0  # 0: one worker per CPU
    check_modules: tuple[str, ...] = ()
    smoke: tuple[str, ...] = ()
    timeout: float = 120.0  # seconds per check


@dataclass(frozen=True)
class Baseline:
    """Every check and what it said before any change."""

    checks: tuple[Check, ...] = ()
    results: Mapping[str, Result] = field(default_factory=dict)
    python: str = ""
    module_owners: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    import_seconds: float = 0.0
    bytecode: BytecodeCache | None = field(default=None, compare=False)  # the venv's bytecode, kept aside

    @property
    def failures(self) -> tuple[str, ...]:
        return tuple(describe(c, self.results.get(c.id)) for c in self.checks if not self._ok(c))

    def _ok(self, check: Check) -> bool:
        result = self.results.get(check.id)
        return result is not None and result.ok


@dataclass(frozen=True)
class Healed:
    """A planned change undone because a check failed without it."""

    path: Path
    category: str
    reason: str  # e.g. "foo/bar.py needed it: ModuleNotFoundError: No module named 'foo.tests'"


@dataclass(frozen=True)
class VerifyOutcome:
    ok: bool
    checks_total: int
    checks_passed: int
    regressions: tuple[str, ...] = ()  # failures that could not be healed (everything was restored)
    pre_existing: tuple[str, ...] = ()  # failures already there before pruning, never blamed
    healed: tuple[Healed, ...] = ()
    import_seconds_before: float | None = None
    import_seconds_after: float | None = None
    manifest: Path | None = None


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    checks_total: int
    failures: tuple[str, ...]


def take_baseline(target: Target, options: VerifyOptions) -> Baseline:
    return _baseline(target, options, keep_bytecode=True)


def _baseline(target: Target, options: VerifyOptions, keep_bytecode: bool) -> Baseline:
    with _runner(target, options) as runner:
        discovery = runner.discover(options.check_modules)
        checks = _with_smoke(discovery, options)
        results = runner.run(checks)
    bytecode = None
    if keep_bytecode and discovery.cache_tag:
        # The standard library is never pruned: only what site-packages loads needs its bytecode kept aside.
        sites = tuple(f"{p}/" for p in target.site_packages)
        sources = [s for s in _loaded_sources(checks, results) if s.startswith(sites)]
        bytecode = BytecodeCache(sources, discovery.cache_tag)
    seconds = _import_seconds(checks, results)
    return Baseline(checks, results, discovery.python, discovery.module_owners, seconds, bytecode)


def run_check(target: Target, options: VerifyOptions) -> CheckResult:
    """The checks alone (``venvprune check``): nothing is written, inside the target or out."""
    baseline = _baseline(target, options, keep_bytecode=False)
    return CheckResult(not baseline.failures, len(baseline.checks), baseline.failures)


def verify_and_heal(transaction: Transaction, plan: Plan, baseline: Baseline, options: VerifyOptions) -> VerifyOutcome:
    try:
        return _verify_and_heal(transaction, plan, baseline, options)
    finally:
        if baseline.bytecode is not None:
            baseline.bytecode.cleanup()


def _verify_and_heal(transaction: Transaction, plan: Plan, baseline: Baseline, options: VerifyOptions) -> VerifyOutcome:
    target = plan.inventory.target
    removed = [a.path for a in transaction.executed() if a.kind is ActionKind.REMOVE]
    checks = checks_after(baseline.checks, baseline.results, removed)
    # The venv's bytecode was removed: read the baseline's copy of it from outside the venv (see .bytecode).
    pruned_bytecode = any(p.name == "__pycache__" or p.suffix in (".pyc", ".pyo") for p in removed)
    pycache = baseline.bytecode.path if pruned_bytecode and baseline.bytecode is not None else None
    weights = _bundle_weights(baseline.checks, baseline.results)
    uses = _bundle_uses(baseline.checks, baseline.results)
    costs = _package_costs(baseline.results)
    sources = baseline.bytecode.sources if pycache is not None and baseline.bytecode is not None else ()
    sample = compile_sample(sources)
    with _runner(target, options) as runner:

        def run(again: Sequence[Check]) -> dict[str, Result]:
            return runner.run(again, weights, uses, costs, pycache)

        results = runner.run(checks, weights, uses, costs, pycache, estimate=sample)
        # What a cold start of the pruned venv pays: the imports, and compiling what they load.
        seconds_after = _import_seconds(checks, results) + scale_to_all(runner.compile_seconds, sample, sources)
        comparison = compare(checks, baseline.results, results)
        pre_existing = tuple(describe(c, baseline.results.get(c.id)) for c in comparison.pre_existing)
        outcome = VerifyOutcome(
            ok=True,
            checks_total=len(checks),
            checks_passed=len(comparison.passed),
            pre_existing=pre_existing,
            import_seconds_before=baseline.import_seconds,
            import_seconds_after=round(seconds_after, 2),
        )
        if comparison.regressions and not options.heal:
            return _failed(outcome, comparison.regressions, results)
        healed: tuple[Healed, ...] = ()
        if comparison.regressions:
            by_id = {c.id: c for c in checks}
            healing = heal(
                transaction,
                plan.by_phase(Phase.METADATA),
                _attribution(plan, baseline),
                lambda again: run([by_id[c.id] for c in again]),
                comparison.regressions,
                results,
            )
            results = dict(healing.results)
            if healing.unhealed or healing.errors:
                failures = [*healing.unhealed, *(c for c in comparison.regressions if not results[c.id].ok)]
                outcome = _failed(outcome, tuple(dict.fromkeys(failures)), results)
                errors = tuple(f"could not restore {e.path}: {e.message}" for e in healing.errors)
                return replace(outcome, regressions=outcome.regressions + errors)
            healed = tuple(Healed(r.action.path, r.action.category, r.reason) for r in healing.restored)
            comparison = compare(checks, baseline.results, results)
        outcome = replace(outcome, checks_passed=len(comparison.passed), healed=healed)
        if options.manifest:
            outcome = replace(outcome, manifest=_write_manifest(transaction, target, baseline, checks, results))
    return outcome


def _runner(target: Target, options: VerifyOptions) -> Runner:
    if target.interpreter is None:
        raise VerifyError(f"{target.root}: no interpreter to run the checks with")
    return Runner(target.interpreter, target.root, target.site_packages, options.jobs, options.timeout)


def _with_smoke(discovery: Discovery, options: VerifyOptions) -> tuple[Check, ...]:
    return discovery.checks + tuple(smoke_check(command) for command in options.smoke)


def _attribution(plan: Plan, baseline: Baseline) -> Attribution:
    inventory = plan.inventory
    index: list[FileIndex] = []  # built on first use: most regressions name no shared object

    def files_named(directory: Path, name: str) -> bool:
        if not index:
            index.append(FileIndex(inventory.files))
        return any(f.path.name == name for f in index[0].under(directory))

    return Attribution(inventory.target.site_packages, inventory.owner_of, files_named, baseline.module_owners)


def _failed(outcome: VerifyOutcome, regressions: tuple[Check, ...], results: Mapping[str, Result]) -> VerifyOutcome:
    return replace(outcome, ok=False, regressions=tuple(describe(c, results.get(c.id)) for c in regressions))


def _write_manifest(
    transaction: Transaction, target: Target, baseline: Baseline, checks: list[Check], results: Mapping[str, Result]
) -> Path:
    assert target.interpreter is not None
    passed = [c for c in checks if results.get(c.id) is not None and results[c.id].ok]
    directory = manifest_dir(target)
    manifest = directory / MANIFEST_NAME
    transaction.create(manifest, manifest_bytes(target, target.interpreter, baseline.python, passed, results))
    transaction.create(directory / CHECKER_NAME, checker_bytes(target))
    return manifest
