"""After the plan's actions ran: the checks again, each judged against the baseline, and healing what broke.

A check that passed at baseline and fails now is a regression; its responsible actions are restored through the
transaction until it passes (:mod:`.heal`). A check that timed out at baseline is not run again (it would time out
again, and its verdict could not be trusted): it is reported as not run. On success the final-stage manifest and
checker are written with ``transaction.create()`` -- or, with ``--no-manifest``, an earlier one is removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from venvprune.plan import ActionKind, Phase, Plan
from venvprune.verify import manifest
from venvprune.verify.baseline import Baseline, runner_for
from venvprune.verify.bytecode import BytecodeCache, compile_sample, in_tree_cache, scale_to_all
from venvprune.verify.changes import Transaction
from venvprune.verify.checks import (
    Check,
    Result,
    bundle_uses,
    bundle_weights,
    import_seconds,
    package_costs,
)
from venvprune.verify.compare import baseline_states, checks_after, compare, describe
from venvprune.verify.heal import Attribution, heal
from venvprune.verify.outcome import Healed, VerifyOptions, VerifyOutcome, outcome_of, unused
from venvprune.verify.scope import affected_checks


def verify_and_heal(transaction: Transaction, plan: Plan, baseline: Baseline, options: VerifyOptions) -> VerifyOutcome:
    try:
        return _verify_and_heal(transaction, plan, baseline, options)
    finally:
        if baseline.bytecode is not None:
            baseline.bytecode.cleanup()


def _verify_and_heal(transaction: Transaction, plan: Plan, baseline: Baseline, options: VerifyOptions) -> VerifyOutcome:
    target = plan.inventory.target
    unverifiable = _undo_unverifiable(transaction, plan, baseline)
    if isinstance(unverifiable, VerifyOutcome):
        return unverifiable
    removed = [a.path for a in transaction.executed() if a.kind is ActionKind.REMOVE]
    checks = checks_after(baseline.checks, baseline.results, removed, plan.uninstalled)
    timed_out = {c.id for c in checks if baseline.results[c.id].timed_out or baseline.results[c.id].not_run}
    if options.scope == "all":
        affected = {c.id for c in checks}
    else:
        affected = affected_checks(checks, baseline.results, baseline.discovery, transaction.executed(), plan.inventory)
    again = [c for c in checks if c.id in affected and c.id not in timed_out]
    # The venv's bytecode was removed: read the baseline's copy of it from outside the venv (see .bytecode).
    pruned_bytecode = any(p.name == "__pycache__" or p.suffix in (".pyc", ".pyo") for p in removed)
    pycache = baseline.bytecode.path if pruned_bytecode and baseline.bytecode is not None else None
    weights = bundle_weights(baseline.checks, baseline.results)
    uses = bundle_uses(baseline.checks, baseline.results)
    costs = package_costs(baseline.results)
    sources = _lost_bytecode(baseline.bytecode, removed) if pycache is not None else ()
    sample = compile_sample(sources)
    recorded = baseline_states(baseline.results)
    with runner_for(target, options) as runner:

        def run(checks_again: Sequence[Check]) -> dict[str, Result]:
            return runner.run(checks_again, weights, uses, costs, pycache)

        results = runner.run(again, weights, uses, costs, pycache, estimate=sample)
        results.update({c: Result.skipped(f"{_timeout_reason(baseline.results[c])} before pruning") for c in timed_out})
        # What the change cannot affect says what it said at baseline.
        results.update({c.id: baseline.results[c.id] for c in checks if c.id not in results})
        # What a cold start of the pruned venv pays: the imports, and compiling what they load.
        seconds_after = import_seconds(checks, results) + scale_to_all(runner.compile_seconds, sample, sources)
        comparison = compare(checks, recorded, results)
        fields = {
            "rerun": len(again),
            "import_seconds_before": baseline.import_seconds,
            "import_seconds_after": round(seconds_after, 2),
            "unused_libraries": unused(baseline.discovery.found, [*baseline.results.values(), *results.values()]),
        }
        if comparison.failures and not options.heal:
            return _failed(outcome_of(comparison, results, options.strict, **fields), comparison.failures, results)
        healed: tuple[Healed, ...] = ()
        if comparison.failures:
            by_id = {c.id: c for c in checks}
            healing = heal(
                transaction,
                plan.by_phase(Phase.METADATA),
                _attribution(plan, baseline),
                lambda failing: run([by_id[c.id] for c in failing]),
                comparison.failures,
                results,
            )
            results = dict(healing.results)
            if healing.unhealed or healing.errors:
                failures = [*healing.unhealed, *(c for c in comparison.failures if not results[c.id].ok)]
                outcome = _failed(
                    outcome_of(comparison, results, options.strict, **fields), tuple(dict.fromkeys(failures)), results
                )
                errors = tuple(f"could not restore {e.path}: {e.message}" for e in healing.errors)
                return replace(outcome, failures=outcome.failures + errors)
            healed = tuple(
                Healed(r.action.path, r.action.category, r.reason, r.action.distribution) for r in healing.restored
            )
            comparison = compare(checks, recorded, results)
        outcome = outcome_of(comparison, results, options.strict, healed=healed + unverifiable, **fields)
        if not outcome.ok:
            return outcome  # --strict: everything is restored; no manifest
        if options.manifest:
            content = manifest.manifest_bytes(target, baseline.discovery, checks, results, restored=healed)
            return replace(outcome, manifest=manifest.write(transaction, target, content))
        return replace(outcome, manifest_note=manifest.remove(transaction, target, "--no-manifest"))


def _undo_unverifiable(transaction: Transaction, plan: Plan, baseline: Baseline) -> tuple[Healed, ...] | VerifyOutcome:
    """Undo the changes to distributions that a check could not judge at baseline (it timed out, or needs what did).

    Their checks are not run again, so nothing could say whether the change broke them: a pruner that saves less
    and breaks nothing is the promise, so they are restored, and the report says why (a longer --timeout prunes
    them next time). Not remembered in the manifest: a timeout is no fact about the package.
    """
    blocked: dict[str, str] = {}
    for check in baseline.checks:
        result = baseline.results.get(check.id)
        if result is not None and (result.timed_out or result.not_run):
            for distribution in check.distributions:
                blocked.setdefault(distribution, f"{check.id}: {_timeout_reason(result)}")
    undone = [a for a in transaction.executed() if a.phase is Phase.FILES and a.distribution in blocked]
    if not undone:
        return ()
    errors = [
        *transaction.restore(undone),
        *transaction.redo(a for a in plan.by_phase(Phase.METADATA) if a.distribution in blocked),
    ]
    if errors:
        return VerifyOutcome(
            ok=False,
            checks_total=0,
            checks_passed=0,
            failures=tuple(f"could not restore {e.path}: {e.message}" for e in errors),
        )
    return tuple(
        Healed(
            a.path,
            a.category,
            f"not verified ({blocked[a.distribution or '']} before pruning): undone rather than left unchecked; "
            "a longer --timeout lets it be pruned",
            a.distribution,
        )
        for a in undone
    )


def _lost_bytecode(bytecode: BytecodeCache | None, removed: Sequence[Path]) -> list[str]:
    """The sources whose bytecode the prune removed: what each cold start now compiles."""
    if bytecode is None:
        return []
    gone = set(removed)
    lost = []
    for source in bytecode.sources:
        cache = in_tree_cache(source, bytecode.cache_tag)
        if cache in gone or not gone.isdisjoint(cache.parents):
            lost.append(source)
    return lost


def _timeout_reason(result: Result) -> str:
    return result.not_run or result.error or "timed out"


def _attribution(plan: Plan, baseline: Baseline) -> Attribution:
    inventory = plan.inventory

    def files_named(directory: Path, name: str) -> bool:
        return any(f.name == name for f in inventory.index.under(directory))

    return Attribution(inventory.target.site_packages, inventory.owner_of, files_named, baseline.module_owners)


def _failed(outcome: VerifyOutcome, failures: Sequence[Check], results: Mapping[str, Result]) -> VerifyOutcome:
    return replace(outcome, ok=False, failures=tuple(describe(c, results.get(c.id)) for c in failures))
