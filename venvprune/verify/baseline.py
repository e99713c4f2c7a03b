"""The baseline: every check, run in the target's interpreter before any change, and whether pruning may start.

It may not when the checks before pruning already say no: the user's own checks (``--check-module``, ``--smoke``)
are assertions and fail; with ``--strict``, any check does not pass; or most checks fail, which says the timeout,
the system or the interpreter is wrong, not the packages -- a baseline like that would let anything through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from venvprune.errors import UsageError
from venvprune.verify.bytecode import BytecodeCache
from venvprune.verify.checks import Check, Discovery, Result, import_seconds, loaded_sources, smoke_check
from venvprune.verify.compare import describe
from venvprune.verify.outcome import VerifyOptions, VerifyOutcome, unused
from venvprune.verify.probe import judge
from venvprune.verify.runner import Runner

if TYPE_CHECKING:
    from venvprune.target import Target


@dataclass(frozen=True)
class Baseline:
    """Every check and what it said before any change."""

    discovery: Discovery
    checks: tuple[Check, ...] = ()
    results: Mapping[str, Result] = field(default_factory=dict)
    import_seconds: float = 0.0
    bytecode: BytecodeCache | None = field(default=None, compare=False)  # the venv's bytecode, kept aside
    refusal: str | None = None  # why pruning must not start
    refused: tuple[Check, ...] = ()  # the checks behind the refusal

    @property
    def python(self) -> str:
        return self.discovery.python

    @property
    def module_owners(self) -> Mapping[str, tuple[str, ...]]:
        return self.discovery.module_owners

    @property
    def failures(self) -> tuple[str, ...]:
        """Every check that did not pass, described."""
        return tuple(describe(c, self.results.get(c.id)) for c in self.checks if not self._passed(c))

    def _passed(self, check: Check) -> bool:
        result = self.results.get(check.id)
        return result is not None and result.ok and not result.not_run


def runner_for(target: Target, options: VerifyOptions, otherwise: str = ", or prune with --no-verify") -> Runner:
    """A runner of the target's interpreter; *otherwise*: what else the user may do when it has none."""
    if target.interpreter is None:
        raise UsageError(
            f"{target.root}: no Python interpreter to run the checks with (a `pip install --target` folder?); "
            f"name one with --python PATH{otherwise}"
        )
    return Runner(target.interpreter, target.root, target.site_packages, options.jobs, options.timeout)


def take_baseline(target: Target, options: VerifyOptions, keep_bytecode: bool = True) -> Baseline:
    with runner_for(target, options) as runner:
        discovery = runner.discover(options.check_modules)
        checks = discovery.checks + tuple(smoke_check(command) for command in options.smoke)
        results = runner.run(checks)
    bytecode = None
    if keep_bytecode and discovery.cache_tag:
        # The standard library is never pruned: only what site-packages loads needs its bytecode kept aside.
        sites = tuple(f"{p}/" for p in target.site_packages)
        sources = [s for s in loaded_sources(checks, results) if s.startswith(sites)]
        bytecode = BytecodeCache(sources, discovery.cache_tag)
    baseline = Baseline(discovery, checks, results, import_seconds(checks, results), bytecode)
    refusal, refused = _refusal(baseline, options, str(target.interpreter))
    if refusal is None:
        return baseline
    if bytecode is not None:
        bytecode.cleanup()  # nothing will be pruned: no after-check needs it
    return Baseline(discovery, checks, results, baseline.import_seconds, None, refusal, refused)


def _refusal(baseline: Baseline, options: VerifyOptions, python: str) -> tuple[str | None, tuple[Check, ...]]:
    failing = tuple(c for c in baseline.checks if not baseline._passed(c))
    explicit = tuple(c for c in failing if c.explicit)
    if explicit:
        names = ", ".join(c.id for c in explicit)
        return f"your own checks must pass before pruning, and {names} did not", explicit
    if options.strict and failing:
        return f"--strict: {len(failing)} checks did not pass before pruning", failing
    tasks = [dict(c.task, id=c.id) for c in baseline.checks]
    raw = {check_id: result.as_probe() for check_id, result in baseline.results.items()}
    cause = judge.mostly_failing(tasks, raw, options.timeout, python, " before pruning")
    return (cause, failing) if cause else (None, ())


def refused_outcome(baseline: Baseline, options: VerifyOptions) -> VerifyOutcome:
    """The outcome of a prune that did not start: the baseline's figures, the checks that said no, and why."""
    refused = {c.id for c in baseline.refused}
    not_blamed = tuple(c for c in baseline.checks if not baseline._passed(c) and c.id not in refused)
    return VerifyOutcome(
        ok=False,
        checks_total=len(baseline.checks),
        checks_passed=len(baseline.checks) - len(baseline.failures),
        failures=tuple(describe(c, baseline.results.get(c.id)) for c in baseline.refused),
        pre_existing=tuple(describe(c, baseline.results.get(c.id)) for c in not_blamed),
        unused_libraries=unused(baseline.discovery.found, baseline.results.values()),
        strict=options.strict,
        refused=baseline.refusal,
        import_seconds_before=baseline.import_seconds,
    )
