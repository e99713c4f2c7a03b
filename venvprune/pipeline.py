"""One function coordinates the steps: target, recover, scan, plan, (baseline, apply, verify, commit).

Each step hands immutable data to the next; the dry run stops after the plan, which is its report.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from venvprune import categories, verify
from venvprune.apply import (
    FileError,
    Recovery,
    Transaction,
    recover,
    run_transaction,
    signals_deferred,
    signals_ignored,
    signals_interrupt,
    stop_if_signalled,
    target_lock,
)
from venvprune.config import Config
from venvprune.errors import ApplyError, TargetError
from venvprune.plan import Phase, Plan, build_plan
from venvprune.scan import scan
from venvprune.target import Target, resolve_target


class Status(enum.Enum):
    SUCCESS = "success"
    PARTIAL = "partial"  # some files could not be changed; the rest is pruned
    CHECK_FAILED = "check-failed"  # verification could not be healed; everything was restored


@dataclass(frozen=True)
class PhaseTiming:
    name: str
    seconds: float


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    dry_run: bool
    status: Status
    recovery: Recovery | None = None
    errors: tuple[FileError, ...] = ()
    verification: verify.VerifyOutcome | None = None
    verify_skipped: str | None = None  # why there was no verification
    timings: tuple[PhaseTiming, ...] = field(default=())


class Progress(Protocol):
    """Told when a phase starts and ends; the CLI decides how that looks."""

    def start(self, phase: str) -> None: ...

    def end(self, phase: str, seconds: float, detail: str) -> None: ...


class _Phases:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.timings: list[PhaseTiming] = []
        self.detail = ""

    @contextlib.contextmanager
    def run(self, name: str) -> Iterator[None]:
        stop_if_signalled()  # between phases: a signal whose exception a finalizer swallowed still stops the run
        self.progress.start(name)
        self.detail = ""
        started = time.monotonic()
        yield
        seconds = time.monotonic() - started
        self.timings.append(PhaseTiming(name, seconds))
        self.progress.end(name, seconds, self.detail)
        stop_if_signalled()


def verify_options(config: Config) -> verify.VerifyOptions:
    return verify.VerifyOptions(
        heal=config.heal,
        manifest=config.manifest,
        jobs=config.jobs,
        check_modules=config.check_module,
        smoke=config.smoke,
        timeout=config.timeout,
    )


def prune(config: Config, progress: Progress) -> Outcome:
    # SIGTERM (docker stop) and SIGINT end every phase alike, with exit 130 and one line; not only while applying.
    with signals_interrupt():
        return _prune(config, progress)


def _prune(config: Config, progress: Progress) -> Outcome:
    phases = _Phases(progress)
    target = resolve_target(config.target)
    selected = categories.select(config.only, config.include, config.exclude)
    with target_lock(target):
        recovery = None
        if config.dry_run:
            if target.staging_dir.exists():
                raise TargetError(
                    f"{target.staging_dir}: an interrupted prune is pending; run `venvprune {target.root}` "
                    "to restore it before a dry run"
                )
        else:
            with phases.run("recover"), signals_deferred():  # a restore is never left half done by a signal
                recovery = recover(target)
                phases.detail = f"{recovery.outcome} {recovery.operations} changes" if recovery else "nothing pending"
        with phases.run("scan"):
            inventory = scan(target, inspect_elf=any(c.name == "debug-symbols" for c in selected))
            phases.detail = f"{len(inventory.files)} files, {len(inventory.distributions)} distributions"
        with phases.run("plan"):
            plan = build_plan(inventory, selected, config.keep)
            phases.detail = f"{len(plan.actions)} changes"
        if config.dry_run:
            return Outcome(plan, True, Status.SUCCESS, timings=tuple(phases.timings))
        return _apply(config, target, plan, recovery, phases)


def _apply(config: Config, target: Target, plan: Plan, recovery: Recovery | None, phases: _Phases) -> Outcome:
    options = verify_options(config)
    skipped = _why_not_verified(config, target)
    baseline = None
    if skipped is None:
        with phases.run("baseline"):
            baseline = verify.take_baseline(target, options)
    transaction: Transaction | None = None  # set once run_transaction returns; before, it restores by itself
    try:
        with phases.run("apply"):  # inside the try: a signal at the phase's end must restore too
            transaction, errors = run_transaction(target, plan.by_phase(Phase.FILES))
        errors += transaction.execute(plan.by_phase(Phase.METADATA))
        outcome = None
        if baseline is not None:
            with phases.run("verify"):
                outcome = verify.verify_and_heal(transaction, plan, baseline, options)
                phases.detail = f"{outcome.checks_passed}/{outcome.checks_total} checks pass"
            if not outcome.ok:
                with signals_ignored():
                    transaction.rollback()
                return Outcome(
                    plan,
                    False,
                    Status.CHECK_FAILED,
                    recovery,
                    tuple(errors),
                    outcome,
                    timings=tuple(phases.timings),
                )
        with phases.run("commit"):
            errors += transaction.commit()
    except OSError as exc:  # a write the transaction needs (journal, manifest, marker) failed: undo, say where
        if transaction is None:
            raise
        with signals_ignored():
            undone = transaction.rollback()
        state = (
            f"{len(undone.errors)} originals are still in {transaction.staging}"
            if undone.errors
            else "every change was restored"
        )
        raise ApplyError(
            f"{exc.filename or target.root}: {exc.strerror or exc}; {state}. "
            "Free some space or fix the permissions, then run venvprune again"
        ) from exc
    except BaseException:
        if transaction is not None:
            with signals_ignored():
                transaction.rollback()
        raise
    status = Status.PARTIAL if errors else Status.SUCCESS
    return Outcome(plan, False, status, recovery, tuple(errors), outcome, skipped, tuple(phases.timings))


def _why_not_verified(config: Config, target: Target) -> str | None:
    if not config.verify:
        return "--no-verify"
    if target.interpreter is None:
        return f"no interpreter found for {target.root}"
    return None
