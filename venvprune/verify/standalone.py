"""``venvprune check``, and the manifest of a run that did not verify: the venv listed and judged, nothing pruned.

``venvprune check`` lists the venv as the final-stage checker does and joins what the manifest of the last prune
recorded of each check (:func:`venvprune.verify.probe.checklist.with_records`), then judges with the same code: a
check that failed when the venv was pruned is not blamed; without a manifest, each check is judged on its own.
Nothing is written, inside the target or out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from venvprune.verify import manifest
from venvprune.verify.baseline import runner_for
from venvprune.verify.changes import Transaction
from venvprune.verify.checks import Check, smoke_check
from venvprune.verify.compare import compare
from venvprune.verify.outcome import VerifyOptions, VerifyOutcome, outcome_of, unused
from venvprune.verify.probe import judge
from venvprune.verify.probe.checklist import changed_since, with_records

if TYPE_CHECKING:
    from venvprune.target import Target


def run_check(target: Target, options: VerifyOptions) -> VerifyOutcome:
    """The checks of the venv as it is, against the manifest of its last prune when there is one."""
    previous = manifest.previous_manifest(target, other_format_ok=False)
    with runner_for(target, options, "") as runner:
        discovery = runner.discover(options.check_modules)
        found = dict(discovery.found)
        tasks = with_records([dict(c.task) for c in discovery.checks], previous, str(target.root), found)
        checks = [Check.from_task(t) for t in tasks] + [smoke_check(command) for command in options.smoke]
        results = runner.run(checks)
    recorded = judge.recorded_states(tasks)
    comparison = compare(checks, recorded, results)
    raw = {check_id: result.as_probe() for check_id, result in results.items()}
    cause = judge.mostly_failing([dict(c.task, id=c.id) for c in checks], raw, options.timeout, str(runner.interpreter))
    return outcome_of(
        comparison,
        results,
        options.strict,
        compared_with="manifest" if previous is not None else "nothing",
        unused_libraries=unused(discovery.found, results.values()),
        unrecorded=sum(1 for t in tasks if not t.get("recorded")) if previous is not None else 0,
        changed_since_prune=tuple(changed_since(previous, found)),
        likely_cause=cause,
    )


def list_for_manifest(transaction: Transaction, target: Target, options: VerifyOptions) -> tuple[Path | None, str]:
    """The final-stage manifest of a run that did not verify: written from a quick listing, or an earlier one
    removed. The manifest written (None: none) and a line for the report."""
    if not options.manifest or target.interpreter is None:
        why = "--no-manifest" if not options.manifest else "no interpreter to list the venv with"
        removed = manifest.remove(transaction, target, why)
        return None, removed or f"no final-stage manifest written ({why})"
    previous = manifest.previous_manifest(target)
    with runner_for(target, options, "") as runner:
        discovery = runner.discover(options.check_modules)
    content = manifest.manifest_bytes(target, discovery, discovery.checks, None, previous)
    path = manifest.write(transaction, target, content)
    listed = manifest.unrecorded(content)
    if not listed:
        return path, "final-stage manifest written from a listing of the venv; every check keeps its verified record"
    return path, (
        f"final-stage manifest written from a listing of the venv: {listed} checks were not verified "
        "and check.py judges each on its own"
    )
