"""The human report: what a build log shows. Plain text, no control characters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from venvprune.report.grouping import actions_by_category, kept_groups, top_distributions
from venvprune.report.model import CheckReport, Report, UnusedLibraryRow, human_bytes
from venvprune.verify.probe import judge
from venvprune.verify.probe.checklist import changed_line

SHOWN = 10  # lines of one kind (not blamed, not run, unused libraries) the text shows; --json has them all


def saved_text(report: Report) -> str:
    """``-246.1 MB (-38.0%)``; ``0 B (0.0%)`` when nothing goes, never ``-0 B``."""
    if not report.saved_bytes:
        return "0 B (0.0%)"
    return f"-{human_bytes(report.saved_bytes)} (-{report.saved_percent:.1f}%)"


def render_summary_line(report: Report) -> str:
    """The last line, which says it all: ``venvprune: 653 MB -> 402 MB (-38%), ...``."""
    sizes = f"{human_bytes(report.before_bytes)} -> {human_bytes(report.after_bytes)}"
    percent = f"-{report.saved_percent:.0f}%" if report.saved_bytes else "0%"
    head = f"venvprune: {sizes} ({percent})"
    parts = [f"{report.files_removed:,} file{'' if report.files_removed == 1 else 's'} removed"]
    if report.dry_run:
        parts.append("dry run, nothing changed")
    else:
        if report.verify_skipped is not None:
            parts.append(f"not verified ({report.verify_skipped})")
        elif report.verification is not None:
            parts.append(judge.summary(asdict(report.verification)))
        if report.errors:
            parts.append(f"{len(report.errors)} errors")
        if report.recovery_problems:
            parts.append(f"{len(report.recovery_problems)} originals not restored (see above)")
        if report.status == "check-failed":
            kept = len(report.recovery_problems)
            refused = report.verification is not None and report.verification.refused
            if refused:
                parts = ["verification failed, before pruning, nothing changed"]
            elif kept:
                parts = [f"verification failed, restored except {kept} originals kept aside (see above)"]
            else:
                parts = ["verification failed, everything restored"]
    return f"{head}, {', '.join(parts)}"


def measured_text(report: Report) -> str:
    """What the figures measure, beside the whole target (a prefix holds far more than its site-packages)."""
    if report.kind == "site-packages":
        return "measured: site-packages, the whole target"
    return f"measured: site-packages (the whole {report.kind}: {human_bytes(report.target_bytes)})"


def render_text(report: Report, verbose: bool = False) -> str:
    lines: list[str] = []
    mode = "dry run (nothing changed)" if report.dry_run else "pruned"
    python = f", Python {report.python}" if report.python else ""
    lines.append(f"venvprune {report.version}: {mode}: {report.target} ({report.kind}{python})")
    if report.recovery:
        lines.append(f"  note: {report.recovery}")
    for path, message, kept_at in report.recovery_problems:
        lines.append(f"  not restored: {path}: {message}" + (f"; kept in {kept_at}" if kept_at else ""))
    lines.append(f"  {measured_text(report)}")
    lines.append("")
    lines.append(f"  before  {human_bytes(report.before_bytes):>10}  {report.files_before:,} files")
    lines.append(f"  after   {human_bytes(report.after_bytes):>10}  {saved_text(report)}")
    lines.append("")
    lines.append(f"  {'category':<15} {'files':>8} {'rewritten':>10} {'bytes':>11} {'share':>7}")
    for row in report.categories:
        lines.append(
            f"  {row.name:<15} {row.files:>8,} {row.rewritten:>10,} {human_bytes(row.bytes):>11} {row.percent:>6.1f}%"
        )
    lines.extend(_more_with_max_lines(report))
    if verbose:
        for category, actions in actions_by_category(report):
            lines.append("")
            lines.append(f"  {category}: {len(actions):,} paths")
            lines.extend(f"    {action.path} ({human_bytes(action.bytes)})" for action in actions)

    top = top_distributions(report)
    if top:
        lines.append("")
        lines.append("  distributions that shrink most")
        for dist in top:
            after = dist.bytes_before - dist.bytes_saved
            lines.append(
                f"  {dist.name + ' ' + dist.version:<34} "
                f"{human_bytes(dist.bytes_before):>10} -> {human_bytes(after):>10}"
                f"  (-{human_bytes(dist.bytes_saved)})"
            )

    groups = kept_groups(report)
    if groups:
        lines.append("")
        lines.append("  kept on purpose")
        for group in groups:
            size = f" ({human_bytes(group.bytes)})" if group.bytes else ""
            if group.count == 1:
                lines.append(f"  {group.category:<15} {group.examples[0]}{size}: {group.reason}")
                continue
            lines.append(f"  {group.category:<15} {group.count:,} paths{size}: {group.reason}")
            shown = group.examples if verbose else group.examples[:2]
            lines.extend(f"  {'':<15}   {path}" for path in shown)
            if group.count > len(shown):
                lines.append(f"  {'':<15}   ... and {group.count - len(shown):,} more (see --json)")

    lines.extend(_consequence_lines(report))
    lines.extend(_verification_lines(report))
    lines.extend(warm_lines(report))
    lines.extend(advice_lines(report))
    if report.errors:
        lines.append("")
        lines.append(f"  errors ({len(report.errors)}): these files were left as they were")
        for path, message in report.errors:
            lines.append(f"  {path}: {message}")
    lines.append("")
    lines.append(render_summary_line(report))
    return "\n".join(lines) + "\n"


def _more_with_max_lines(report: Report) -> list[str]:
    if not report.more_with_max:
        return []
    more = sum(m.bytes for m in report.more_with_max)
    lines = ["", f"  --profile max would also remove (after {human_bytes(report.after_bytes - more)}):"]
    for row in report.more_with_max:
        lines.append(f"  {row.category:<15} {row.files:>8,} {'':>10} {human_bytes(row.bytes):>11} {row.percent:>6.1f}%")
    return lines


def _consequence_lines(report: Report) -> list[str]:
    if not report.consequences:
        return []
    lines = ["", "  what stops working without what is removed (keep it with --keep PATH if the image needs it)"]
    for row in report.consequences:
        lines.append(f"  {row.category:<15} {', '.join(row.paths)} ({human_bytes(row.bytes)}): {row.what_breaks}")
        lines.append(f"  {'':<15}   {row.evidence}")
    return lines


def warm_lines(report: Report) -> list[str]:
    """--warm: what stays for the warm modules, and their import time before and after."""
    found = report.warm
    if found is None:
        return []
    compiled = "to compile" if report.dry_run else "compiled"
    lines = [
        "",
        f"  warm: {found.sources:,} source files load for {', '.join(m.module for m in found.modules) or 'nothing'}; "
        f"their bytecode stays ({found.kept_files:,} files, {human_bytes(found.kept_bytes)}), "
        f"{found.compile_files:,} {compiled}",
    ]
    for module in found.modules:
        before = f"{module.seconds_before:.2f} s" if module.seconds_before is not None else "?"
        if module.seconds_after is None:
            lines.append(f"    import {module.module}: {before} before")
            continue
        change = f" ({100 * (module.seconds_after / module.seconds_before - 1):+.0f}%)" if module.seconds_before else ""
        lines.append(f"    import {module.module}: {before} before, {module.seconds_after:.2f} s after{change}")
    lines += [f"    not warmed (it does not import): {failure}" for failure in found.failed]
    return lines


def advice_lines(report: Report) -> list[str]:
    """For the final stage: the packages the venv needs from the system, and its GPU payload."""
    advice = report.advice
    if advice is None or not (advice.system_libraries or advice.gpu):
        return []
    lines = ["", "  for the final image"]
    if advice.system_libraries:
        where = f"packages from {advice.package_database}" if advice.package_database else "no package database"
        lines.append(f"  system libraries the venv needs and does not bundle ({where}):")
        for lib in advice.system_libraries:
            package = lib.debian or "?"
            example = lib.needed_by[0] if lib.needed_by else ""
            others = f" and {lib.needed_by_count - 1:,} more" if lib.needed_by_count > 1 else ""
            lines.append(f"    {lib.soname:<22} {package:<18} {lib.source:<16} needed by {example}{others}")
        if advice.apt:
            lines.append(f"  Debian/Ubuntu: RUN {advice.apt}")
        if advice.apk:
            lines.append(f"  Alpine:        RUN {advice.apk}")
    if advice.gpu:
        lines.append(f"  GPU payload: {human_bytes(advice.gpu_bytes)} of CUDA/ROCm")
        for gpu in advice.gpu:
            example = f" ({', '.join(gpu.libraries)})" if gpu.libraries else ""
            lines.append(f"    {gpu.distribution + ' ' + gpu.version:<34} {human_bytes(gpu.bytes):>10}{example}")
        if advice.cpu_hint:
            lines.append(f"  {advice.cpu_hint}")
    return lines


def _verification_lines(report: Report) -> list[str]:
    verification = report.verification
    lines: list[str] = []
    if verification is not None:
        lines += ["", f"  verification: {judge.summary(asdict(verification))}"]
        if verification.refused:
            lines.append(f"  the checks before pruning said no: {verification.refused}")
        if verification.rerun is not None and verification.rerun < verification.checks_total:
            lines.append(
                f"  after pruning, {verification.rerun} checks ran again: the others cannot be affected by what "
                "changed (--verify all repeats every check)"
            )
        before, after = verification.import_seconds_before, verification.import_seconds_after
        if before is not None and after is not None:
            lines.append(
                f"  importing every module took {before:.1f} s before and {after:.1f} s after "
                "(without bytecode, each cold start compiles again)"
            )
        failed = "FAILED before pruning" if verification.refused else "FAILED after pruning"
        lines += [f"  {failed}: {failure}" for failure in verification.failures]
        lines += _capped("already failing before pruning (not blamed)", verification.pre_existing)
        lines += _capped("not run", verification.not_run)
        lines += _unused_lines(verification.unused_libraries)
    final_stage = report.final_stage
    if final_stage is not None and final_stage.checker:
        lines.append(f"  final-stage check: run {final_stage.checker} with the venv's python in the final image")
    if final_stage is not None and final_stage.note:
        lines.append(f"  final-stage check: {final_stage.note}")
    return lines


def _capped(label: str, items: Sequence[str]) -> list[str]:
    lines = [f"  {label}: {item}" for item in items[:SHOWN]]
    if len(items) > SHOWN:
        lines.append(f"  {label}: ... and {len(items) - SHOWN} more (see --json)")
    return lines


def _unused_lines(libraries: Sequence[UnusedLibraryRow]) -> list[str]:
    if not libraries:
        return []
    size = human_bytes(sum(u.bytes for u in libraries))
    lines = [f"  unused bundled libraries ({len(libraries)}, {size}): nothing loads them, so they are not checked"]
    lines += [f"    {u.path} ({human_bytes(u.bytes)})" for u in libraries[:SHOWN]]
    if len(libraries) > SHOWN:
        lines.append(f"    ... and {len(libraries) - SHOWN} more (see --json)")
    return lines


def render_check_text(report: CheckReport, quiet: bool = False) -> str:
    """``venvprune check``'s output: the lines check.py prints, then the last line that says it all."""
    verification = report.verification
    lines: list[str] = []
    if not quiet and verification.compared_with == "nothing":
        lines.append(f"venvprune check: no manifest of a prune in {report.target}: each check is judged on its own")
    if not quiet and verification.changed_since_prune:
        lines.append(f"venvprune check: {changed_line(verification.changed_since_prune)}")
    if not quiet and verification.compared_with != "nothing" and verification.unrecorded:
        lines.append(
            f"venvprune check: {verification.unrecorded} checks were not verified when the venv was pruned "
            "(--no-verify, or added since): each is judged on its own"
        )
    section = asdict(verification)
    for line in judge.report_lines(section, "when the venv was pruned"):
        if not quiet or line.startswith("FAILED"):
            lines.append(line)
    if verification.likely_cause:
        lines.append(f"venvprune check: {verification.likely_cause}")
    lines.append(f"venvprune check: {judge.summary(section)} in {report.target}")
    return "\n".join(lines) + "\n"
