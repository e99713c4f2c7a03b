"""One report model built from an :class:`~venvprune.pipeline.Outcome`; text, Markdown and JSON render it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from venvprune import __version__
from venvprune.advice import Advice
from venvprune.pipeline import CheckOutcome, Outcome, Status
from venvprune.plan import Action, ActionKind
from venvprune.target import Target
from venvprune.verify import VerifyOutcome
from venvprune.verify.probe.judge import human_bytes as human_bytes  # one implementation, shared with check.py

SCHEMA_VERSION = 2  # 2: verification "failures" (was "regressions"), "not_run", "unused_libraries"; "final_stage"


@dataclass(frozen=True)
class CategoryRow:
    name: str
    files: int  # files removed
    rewritten: int  # files rewritten in place (stripped ELF files, RECORDs)
    bytes: int
    percent: float  # of site-packages before


@dataclass(frozen=True)
class DistributionRow:
    name: str
    version: str
    bytes_before: int
    bytes_saved: int


@dataclass(frozen=True)
class KeptRow:
    path: str  # relative to the target root
    category: str
    reason: str
    bytes: int


@dataclass(frozen=True)
class ActionRow:
    path: str
    kind: str
    category: str
    reason: str
    bytes: int
    files: int
    distribution: str | None


@dataclass(frozen=True)
class HealedRow:
    path: str
    category: str
    reason: str


@dataclass(frozen=True)
class UnusedLibraryRow:
    path: str
    bytes: int
    distribution: str | None


@dataclass(frozen=True)
class VerificationRow:
    """The verification section: the same in a prune's report and in ``venvprune check``'s."""

    ok: bool
    strict: bool
    compared_with: str  # baseline (a prune), manifest (check, after a prune), nothing (each check on its own)
    refused: str | None  # why the prune did not start: the checks before pruning said no
    likely_cause: str | None  # when most checks do not pass
    checks_total: int
    checks_passed: int
    rerun: int | None  # checks repeated after pruning; the others could not be affected
    unrecorded: int  # checks of the manifest without a verified record: judged on their own
    changed_since_prune: tuple[str, ...]  # distributions installed, upgraded or removed since: judged on their own
    failures: tuple[str, ...]  # what fails the run: regressions that could not be healed, the user's own checks
    pre_existing: tuple[str, ...]  # failing before as well: reported, not blamed
    not_run: tuple[str, ...]  # could not be run: never a pass
    unused_libraries: tuple[UnusedLibraryRow, ...]  # bundled libraries nothing needs: reported, not checked
    healed: tuple[HealedRow, ...]  # changes undone because a check needed them
    import_seconds_before: float | None
    import_seconds_after: float | None


@dataclass(frozen=True)
class FinalStageRow:
    """The final-stage manifest and checker this run wrote, or what became of them."""

    manifest: str | None
    checker: str | None
    note: str | None


@dataclass(frozen=True)
class ConsequenceRow:
    """What stops working because a category removes some paths (the knowledge base's breaks rules)."""

    paths: tuple[str, ...]
    category: str
    what_breaks: str
    evidence: str
    files: int
    bytes: int


@dataclass(frozen=True)
class SavingRow:
    """What a category of ``--profile max`` would save beyond this run (a dry run under ``safe``)."""

    category: str
    files: int
    bytes: int
    percent: float  # of site-packages before


@dataclass(frozen=True)
class SystemLibraryRow:
    soname: str
    debian: str | None
    alpine: str
    source: str
    needed_by: tuple[str, ...]
    needed_by_count: int


@dataclass(frozen=True)
class GpuRow:
    distribution: str
    version: str
    bytes: int
    libraries: tuple[str, ...]


@dataclass(frozen=True)
class AdviceRow:
    """For the final stage: the system packages to install, and the GPU payload the venv carries."""

    package_database: str | None
    system_libraries: tuple[SystemLibraryRow, ...]
    apt: str | None
    apk: str | None
    gpu: tuple[GpuRow, ...]
    gpu_bytes: int
    cpu_hint: str | None


@dataclass(frozen=True)
class WarmModuleRow:
    module: str
    seconds_before: float | None  # import time before the prune (median of fresh processes); None: it failed
    seconds_after: float | None  # after it; None in a dry run


@dataclass(frozen=True)
class WarmRow:
    """--warm: the bytecode of what the modules load stays; their import time before and after."""

    modules: tuple[WarmModuleRow, ...]
    failed: tuple[str, ...]  # "module: error" of the modules that did not import
    sources: int  # source files their imports load, in site-packages
    kept_files: int  # bytecode files kept for them
    kept_bytes: int
    compile_files: int  # bytecode files missing, compiled by the target's interpreter (planned, in a dry run)


@dataclass(frozen=True)
class Report:
    target: str
    kind: str
    python: str | None
    dry_run: bool
    status: str
    before_bytes: int  # site-packages, what is pruned; the figures below are all of site-packages
    after_bytes: int
    target_bytes: int  # the whole target before, for scale
    files_before: int
    files_removed: int
    categories: tuple[CategoryRow, ...]
    distributions: tuple[DistributionRow, ...]  # every distribution that shrinks, most saved first
    kept: tuple[KeptRow, ...]
    actions: tuple[ActionRow, ...]
    errors: tuple[tuple[str, str], ...]
    recovery: str | None
    # Originals a recovery (or this run's rollback) could not put back: (path, what happened, where it is kept).
    recovery_problems: tuple[tuple[str, str, str | None], ...]
    verification: VerificationRow | None
    verify_skipped: str | None  # why there was no verification (a dry run has none and no reason)
    timings: tuple[tuple[str, float], ...]
    warnings: tuple[str, ...] = ()
    final_stage: FinalStageRow | None = None
    version: str = __version__
    profile: str = "safe"
    consequences: tuple[ConsequenceRow, ...] = ()
    more_with_max: tuple[SavingRow, ...] = ()
    advice: AdviceRow | None = None
    warm: WarmRow | None = None

    @property
    def saved_bytes(self) -> int:
        return self.before_bytes - self.after_bytes

    @property
    def saved_percent(self) -> float:
        return 100.0 * self.saved_bytes / self.before_bytes if self.before_bytes else 0.0


def build_report(outcome: Outcome) -> Report:
    plan = outcome.plan
    inventory = plan.inventory
    root = inventory.target.root
    done = _effective_actions(outcome)
    before = inventory.total_bytes
    saved = sum(a.bytes_saved for a in done)

    def rel(path: Path) -> str:
        # Relative to site-packages, as --keep globs are written: "numpy/_core/tests".
        if inventory.target.contains(path):
            return display_path(inventory.target.relative(path))
        text, prefix = str(path), str(root) + "/"
        return display_path(text[len(prefix) :] if text.startswith(prefix) else text)

    by_category: dict[str, list[Action]] = {name: [] for name in plan.categories}
    for action in done:
        by_category.setdefault(action.category, []).append(action)
    categories = tuple(
        CategoryRow(
            name,
            sum(a.files for a in actions),
            sum(1 for a in actions if a.kind is ActionKind.REWRITE),
            sum(a.bytes_saved for a in actions),
            100.0 * sum(a.bytes_saved for a in actions) / before if before else 0.0,
        )
        for name, actions in by_category.items()
    )

    size_by_dist: dict[str, int] = defaultdict(int)
    for entry in inventory.files:
        owner = inventory.owner_of_entry(entry)
        if owner is not None:
            size_by_dist[owner] += entry.size
    saved_by_dist: dict[str, int] = defaultdict(int)
    for action in done:
        if action.distribution is not None:
            saved_by_dist[action.distribution] += action.bytes_saved
    distributions = []
    for name, bytes_saved in sorted(saved_by_dist.items(), key=lambda item: (-item[1], item[0])):
        dist = inventory.distribution(name)
        distributions.append(DistributionRow(name, dist.version if dist else "", size_by_dist[name], bytes_saved))

    kept = [KeptRow(rel(k.path), k.category, k.reason, k.bytes) for k in plan.kept]
    if outcome.verification is not None:
        kept += [
            KeptRow(rel(h.path), h.category, f"restored by verification: {h.reason}", 0)
            for h in outcome.verification.healed
        ]

    verification = None
    final_stage = None
    if outcome.verification is not None:
        verification = verification_row(outcome.verification, inventory.target)
        final_stage = _final_stage(outcome.verification.manifest, outcome.verification.manifest_note)
    elif outcome.verify_skipped is not None:
        final_stage = _final_stage(outcome.manifest, outcome.manifest_note)

    recovery = None
    if outcome.recovery is not None:
        recovery = (
            f"an interrupted prune was found and {outcome.recovery.outcome} ({outcome.recovery.operations} changes)"
        )

    return Report(
        target=str(root),
        kind=inventory.target.kind.value,
        python=inventory.target.python_version,
        dry_run=outcome.dry_run,
        status=outcome.status.value,
        before_bytes=before,
        after_bytes=before - saved,
        target_bytes=inventory.target_bytes,
        files_before=sum(1 for f in inventory.files if not f.is_symlink),
        files_removed=sum(a.files for a in done),
        categories=categories,
        distributions=tuple(distributions),
        kept=_one_row_per_path(kept),
        actions=tuple(
            ActionRow(rel(a.path), a.kind.value, a.category, a.reason, a.bytes_saved, a.files, a.distribution)
            for a in done
        ),
        errors=tuple((rel(e.path), e.message) for e in outcome.errors),
        recovery=recovery,
        recovery_problems=tuple(
            (display_path(left.path), left.message, str(left.kept_at) if left.kept_at else None)
            for undone in (outcome.recovery, outcome.rollback)
            if undone is not None
            for left in undone.left_aside
        ),
        verification=verification,
        verify_skipped=outcome.verify_skipped,
        timings=tuple((t.name, round(t.seconds, 3)) for t in outcome.timings),
        warnings=tuple(_unmatched_keep_warning(glob, inventory.target) for glob in plan.unmatched_keep),
        final_stage=final_stage,
        profile=outcome.profile,
        consequences=tuple(
            ConsequenceRow(c.paths, c.category, c.what_breaks, c.evidence, c.files, c.bytes)
            for c in plan.consequences
            if outcome.status is not Status.CHECK_FAILED
        ),
        more_with_max=tuple(
            SavingRow(m.category, m.files, m.bytes, 100.0 * m.bytes / before if before else 0.0)
            for m in outcome.more_with_max
        ),
        advice=_advice_row(outcome.advice),
        warm=_warm_row(outcome),
    )


def _warm_row(outcome: Outcome) -> WarmRow | None:
    found = outcome.warm
    if found is None:
        return None
    reason = found.reason
    kept = [k for k in outcome.plan.kept if k.reason == reason]
    failed = dict(found.failed)
    return WarmRow(
        modules=tuple(
            WarmModuleRow(module, found.seconds_before.get(module), outcome.warm_seconds_after.get(module))
            for module in found.modules
            if module not in failed
        ),
        failed=tuple(f"{module}: {error}" for module, error in found.failed),
        sources=len(found.sources),
        kept_files=len(kept),
        kept_bytes=sum(k.bytes for k in kept),
        compile_files=outcome.warm_compiled if not outcome.dry_run else len(outcome.plan.warm_compile),
    )


def _advice_row(advice: Advice | None) -> AdviceRow | None:
    if advice is None:
        return None
    return AdviceRow(
        package_database=advice.package_database,
        system_libraries=tuple(
            SystemLibraryRow(lib.soname, lib.debian, lib.alpine, lib.source, lib.needed_by, lib.needed_by_count)
            for lib in advice.system_libraries
        ),
        apt=advice.apt_line,
        apk=advice.apk_line,
        gpu=tuple(GpuRow(g.distribution, g.version, g.bytes, g.libraries) for g in advice.gpu),
        gpu_bytes=advice.gpu_bytes,
        cpu_hint=advice.cpu_hint,
    )


def verification_row(v: VerifyOutcome, target: Target) -> VerificationRow:
    def rel(path: Path) -> str:
        return display_path(target.relative(path) if target.contains(path) else str(path))

    return VerificationRow(
        ok=v.ok,
        strict=v.strict,
        compared_with=v.compared_with,
        refused=v.refused,
        likely_cause=v.likely_cause,
        checks_total=v.checks_total,
        checks_passed=v.checks_passed,
        rerun=v.rerun,
        unrecorded=v.unrecorded,
        changed_since_prune=v.changed_since_prune,
        failures=v.failures,
        pre_existing=v.pre_existing,
        not_run=v.not_run,
        unused_libraries=tuple(UnusedLibraryRow(rel(u.path), u.size, u.distribution) for u in v.unused_libraries),
        healed=tuple(HealedRow(rel(h.path), h.category, h.reason) for h in v.healed),
        import_seconds_before=v.import_seconds_before,
        import_seconds_after=v.import_seconds_after,
    )


def _final_stage(manifest: Path | None, note: str | None) -> FinalStageRow | None:
    if manifest is None and note is None:
        return None
    checker = str(manifest.with_name("check.py")) if manifest is not None else None
    return FinalStageRow(str(manifest) if manifest is not None else None, checker, note)


@dataclass(frozen=True)
class CheckReport:
    """``venvprune check``'s report: the target and the verification section of a prune's report."""

    target: str
    kind: str
    python: str | None
    verification: VerificationRow
    timings: tuple[tuple[str, float], ...]
    version: str = __version__


def build_check_report(outcome: CheckOutcome) -> CheckReport:
    target = outcome.target
    return CheckReport(
        target=str(target.root),
        kind=target.kind.value,
        python=target.python_version,
        verification=verification_row(outcome.verification, target),
        timings=tuple((t.name, round(t.seconds, 3)) for t in outcome.timings),
    )


def _one_row_per_path(rows: list[KeptRow]) -> tuple[KeptRow, ...]:
    """A path a category kept for several reasons is one row with every reason (and the bytes of all)."""
    merged: dict[tuple[str, str], KeptRow] = {}
    for row in rows:
        key = (row.path, row.category)
        if key in merged:
            first = merged[key]
            row = KeptRow(row.path, row.category, f"{first.reason}; {row.reason}", first.bytes + row.bytes)
        merged[key] = row
    return tuple(merged.values())


def _unmatched_keep_warning(glob: str, target: Target) -> str:
    if glob.startswith("/") and not target.contains(Path(glob)):
        return f"--keep {glob} is outside the target's site-packages, where nothing is pruned anyway"
    return (
        f"--keep {glob} matches nothing; write it relative to site-packages (numpy/tests/*) or as a path inside "
        f"{target.root}"
    )


def _effective_actions(outcome: Outcome) -> list[Action]:
    """What the run did: the plan, less what failed and what verification restored (all of it when it failed)."""
    if outcome.status is Status.CHECK_FAILED:
        return []
    failed = {e.path for e in outcome.errors}
    healed = {h.path for h in outcome.verification.healed} if outcome.verification else set()
    return [a for a in outcome.plan.actions if a.path not in failed and a.path not in healed]


def display_path(text: str) -> str:
    """A path a build log and JSON can carry: undecodable bytes and control characters become escapes."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
