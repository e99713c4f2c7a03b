"""One function coordinates the steps: target, recover, scan, plan, (baseline, apply, verify, commit).

Each step hands immutable data to the next; the dry run stops after the plan, which is its report.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from venvprune import apply, categories, knowledge, signals, verify, warm
from venvprune.advice import Advice, advise, builder_database
from venvprune.apply import FileError, Recovery
from venvprune.config import Config
from venvprune.errors import ApplyError, TargetError
from venvprune.plan import CategorySaving, Phase, Plan, WarmBytecode, build_plan, savings_beyond
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
    rollback: Recovery | None = None  # what undoing this run's changes did, when verification failed
    manifest: Path | None = None  # the final-stage manifest written without verification (from a listing)
    manifest_note: str | None = None  # what became of the final-stage manifest then
    advice: Advice | None = None  # for the final image: system libraries, GPU payload
    more_with_max: tuple[CategorySaving, ...] = ()  # a dry run under safe: what --profile max would save besides
    profile: str = categories.SAFE
    warm: warm.WarmSet | None = None  # --warm: what the modules load, and their import time before
    warm_seconds_after: Mapping[str, float] = field(default_factory=dict)  # their import time after the prune
    warm_compiled: int = 0  # bytecode files compiled for them


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
        signals.stop_if_received()  # between phases: a signal whose exception a finalizer swallowed still stops the run
        self.progress.start(name)
        self.detail = ""
        started = time.monotonic()
        yield
        seconds = time.monotonic() - started
        self.timings.append(PhaseTiming(name, seconds))
        self.progress.end(name, seconds, self.detail)
        signals.stop_if_received()


def verify_options(config: Config) -> verify.VerifyOptions:
    return verify.VerifyOptions(
        heal=config.heal,
        manifest=config.manifest,
        jobs=config.jobs,
        check_modules=warm_modules(config),
        smoke=config.smoke,
        timeout=config.timeout,
        strict=config.strict,
        scope=config.verify_scope,
    )


def prune(config: Config, progress: Progress) -> Outcome:
    # SIGTERM (docker stop) and SIGINT end every phase alike, with exit 130 and one line; not only while applying.
    with signals.handled():
        return _prune(config, progress)


def _prune(config: Config, progress: Progress) -> Outcome:
    phases = _Phases(progress)
    target = resolve_target(config.target, python=_python(config))
    selected = categories.select(config.only, config.include, config.exclude, config.profile)
    with apply.target_lock(target, shared=config.dry_run):
        recovery = None
        if config.dry_run:
            pending = apply.pending(target)
            if pending is not None:
                raise TargetError(
                    f"{pending}: an interrupted prune is pending; run `venvprune {pending.parent}` "
                    "to restore it before a dry run"
                )
        else:
            apply.check_own_folders(target)
            with phases.run("recover"), signals.deferred():  # a restore is never left half done by a signal
                recovery = apply.recover(target)
                phases.detail = f"{recovery.outcome} {recovery.operations} changes" if recovery else "nothing pending"
            if recovery is not None and recovery.errors:
                first = recovery.errors[0]
                raise ApplyError(
                    f"{first.path}: an interrupted prune could not be undone ({first.message}); its originals stay "
                    f"in {target.staging_dir}. Fix that, then run venvprune again"
                )
        with phases.run("scan"):
            inventory = scan(target, inspect_elf=any(c.name == "debug-symbols" for c in selected))
            phases.detail = f"{len(inventory.files)} files, {len(inventory.distributions)} distributions"
        warm_set = None
        if warm_modules(config) and target.interpreter is not None:
            with phases.run("warm"):  # what importing them loads, and how long it takes now
                warm_set = warm.survey(target.interpreter, target.root, warm_modules(config), target.site_packages)
                phases.detail = f"{len(warm_set.sources)} source files"
        warm_bytecode = _warm_bytecode(warm_set)
        with phases.run("plan"):
            restored = verify.restored_before(target, inventory)
            plan = build_plan(
                inventory, selected, config.keep, restored, knowledge=knowledge.load(), warm=warm_bytecode
            )
            phases.detail = f"{len(plan.actions)} changes"
        # The advice mostly waits on the package database (dpkg -S): it runs beside the rest of the prune.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="venvprune-advice") as background:
            advising = background.submit(advise, plan, builder_database())
            more: tuple[CategorySaving, ...] = ()
            if config.dry_run:
                outcome = Outcome(plan, True, Status.SUCCESS)
                if config.profile == categories.SAFE:
                    with phases.run("max-plan"):  # what --profile max would save besides, for the report
                        more = _more_with_max(config, plan, restored, warm_bytecode)
                        phases.detail = f"{sum(m.files for m in more)} more files with --profile max"
            else:
                outcome = _apply(config, target, plan, recovery, phases)
            with phases.run("advise"):
                found = advising.result()
                phases.detail = f"{len(found.system_libraries)} system libraries"
        return replace(
            outcome,
            advice=found,
            more_with_max=more,
            profile=config.profile,
            warm=warm_set,
            timings=tuple(phases.timings),
        )


def warm_modules(config: Config) -> tuple[str, ...]:
    """The modules whose bytecode stays: --warm, and the application's own --check-module."""
    return tuple(dict.fromkeys([*config.warm, *config.check_module]))


def _warm_bytecode(warm_set: warm.WarmSet | None) -> WarmBytecode | None:
    if warm_set is None or not warm_set.sources:
        return None
    return WarmBytecode({warm_set.bytecode_of(source): source for source in warm_set.sources}, warm_set.reason)


def _more_with_max(
    config: Config, plan: Plan, restored: Mapping[Path, str], warm_bytecode: WarmBytecode | None
) -> tuple[CategorySaving, ...]:
    """What ``--profile max`` would save beyond this plan (made under ``safe``), per category."""
    chosen = set(plan.categories)
    extra = [
        c
        for c in categories.select(config.only, config.include, config.exclude, categories.MAX)
        if c.name not in chosen and c.name not in categories.FOLLOWERS
    ]
    if not extra:
        return ()
    again = build_plan(plan.inventory, extra, config.keep, restored, knowledge=knowledge.load(), warm=warm_bytecode)
    return savings_beyond(plan, again)


def _apply(config: Config, target: Target, plan: Plan, recovery: Recovery | None, phases: _Phases) -> Outcome:
    options = verify_options(config)
    skipped = _why_not_verified(config, plan)
    baseline = None
    if skipped is None:
        with phases.run("baseline"):
            baseline = verify.take_baseline(target, options)
        if baseline.refusal is not None:  # the checks before pruning say no: nothing is changed
            refused = verify.refused_outcome(baseline, options)
            return Outcome(plan, False, Status.CHECK_FAILED, recovery, (), refused, timings=tuple(phases.timings))
    listed: tuple[Path | None, str | None] = (None, None)
    outcome = None
    with apply.transaction(target) as transaction:
        with phases.run("apply"):
            errors = transaction.execute(plan.by_phase(Phase.FILES))
            errors += transaction.execute(plan.by_phase(Phase.METADATA))
        compiled = _compile_warm(transaction, target, plan, phases)
        if baseline is not None:
            with phases.run("verify"):
                outcome = verify.verify_and_heal(transaction, plan, baseline, options)
                phases.detail = f"{outcome.checks_passed}/{outcome.checks_total} checks pass"
            if not outcome.ok:
                undone = transaction.rollback()
                return Outcome(
                    plan,
                    False,
                    Status.CHECK_FAILED,
                    recovery,
                    tuple(errors),
                    outcome,
                    timings=tuple(phases.timings),
                    rollback=undone,
                )
        else:
            with phases.run("manifest"):  # it must describe the venv as this run leaves it, verified or not
                listed = verify.list_for_manifest(transaction, target, options)
        seconds_after = {}
        if warm_modules(config) and target.interpreter is not None:
            with phases.run("warm"):  # the warm modules' import time, as the pruned venv starts them
                seconds_after = warm.import_seconds(target.interpreter, target.root, warm_modules(config))
        with phases.run("commit"):
            errors += transaction.commit()
    left_aside = recovery is not None and bool(recovery.left_aside)
    status = Status.PARTIAL if errors or left_aside else Status.SUCCESS
    manifest, note = listed
    done = Outcome(
        plan,
        False,
        status,
        recovery,
        tuple(errors),
        outcome,
        skipped,
        tuple(phases.timings),
        manifest=manifest,
        manifest_note=note,
    )
    return replace(done, warm_seconds_after=seconds_after, warm_compiled=compiled)


def _compile_warm(transaction: apply.Transaction, target: Target, plan: Plan, phases: _Phases) -> int:
    """Write the missing bytecode of the warm modules, compiled by the target's interpreter; how many files."""
    if not plan.warm_compile or target.interpreter is None:
        return 0
    with phases.run("compile"):
        compiled = warm.compile_bytecode(target.interpreter, target.root, [source for source, _ in plan.warm_compile])
        for source, bytecode in plan.warm_compile:
            if source in compiled:
                transaction.create(bytecode, compiled[source])
        phases.detail = f"{len(compiled)} files for --warm"
    return len(compiled)


def _python(config: Config) -> Path | None:
    """``--python``: the interpreter to check with instead of the target's own."""
    return Path(config.python) if config.python else None


def _why_not_verified(config: Config, plan: Plan) -> str | None:
    if not config.verify:
        return "--no-verify"
    if not plan.actions:
        return "nothing to change"
    return None  # without an interpreter the baseline says how to name one (--python)


@dataclass(frozen=True)
class CheckOutcome:
    target: Target
    verification: verify.VerifyOutcome
    timings: tuple[PhaseTiming, ...] = field(default=())


def check(config: Config, progress: Progress) -> CheckOutcome:
    """``venvprune check``: the checks alone, judged against the last prune's manifest; nothing is written."""
    phases = _Phases(progress)
    target = resolve_target(config.target, python=_python(config))
    with apply.target_lock(target, shared=True):
        pending = apply.pending(target)
        if pending is not None:
            raise TargetError(f"{pending}: an interrupted prune is pending; run `venvprune {pending.parent}` first")
        with phases.run("check"):
            outcome = verify.run_check(target, verify_options(config))
            phases.detail = f"{outcome.checks_passed}/{outcome.checks_total} checks pass"
    return CheckOutcome(target, outcome, tuple(phases.timings))
