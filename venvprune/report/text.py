"""The human report: what a build log shows. Plain text, no control characters."""

from __future__ import annotations

from venvprune.report.grouping import kept_groups, top_distributions
from venvprune.report.model import Report, human_bytes


def render_summary_line(report: Report) -> str:
    """The last line, which says it all: ``venvprune: 653 MB -> 402 MB (-38%), ...``."""
    sizes = f"{human_bytes(report.before_bytes)} -> {human_bytes(report.after_bytes)}"
    head = f"venvprune: {sizes} (-{report.saved_percent:.0f}%)"
    parts = [f"{report.files_removed:,} files removed"]
    if report.dry_run:
        parts.append("dry run, nothing changed")
    else:
        verification = report.verification or {}
        if "skipped" in verification:
            parts.append(f"not verified ({verification['skipped']})")
        elif verification:
            parts.append(f"{verification['checks_passed']}/{verification['checks_total']} checks pass")
        if report.errors:
            parts.append(f"{len(report.errors)} errors")
        if report.recovery_problems:
            parts.append(f"{len(report.recovery_problems)} originals not restored (see above)")
        if report.status == "check-failed":
            parts = ["verification failed, everything restored"]
    return f"{head}, {', '.join(parts)}"


def render_text(report: Report, verbose: bool = False) -> str:
    lines: list[str] = []
    mode = "dry run (nothing changed)" if report.dry_run else "pruned"
    python = f", Python {report.python}" if report.python else ""
    lines.append(f"venvprune {report.version}: {mode}: {report.target} ({report.kind}{python})")
    if report.recovery:
        lines.append(f"  note: {report.recovery}")
    for path, message, kept_at in report.recovery_problems:
        lines.append(f"  not restored: {path}: {message}" + (f"; kept in {kept_at}" if kept_at else ""))
    lines.append("")
    lines.append(f"  before  {human_bytes(report.before_bytes):>10}  {report.files_before:,} files")
    lines.append(
        f"  after   {human_bytes(report.after_bytes):>10}  "
        f"-{human_bytes(report.saved_bytes)} (-{report.saved_percent:.1f}%)"
    )
    lines.append("")
    lines.append(f"  {'category':<15} {'files':>8} {'rewritten':>10} {'bytes':>11} {'of venv':>8}")
    for row in report.categories:
        lines.append(
            f"  {row.name:<15} {row.files:>8,} {row.rewritten:>10,} {human_bytes(row.bytes):>11} {row.percent:>7.1f}%"
        )

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

    lines.extend(_verification_lines(report))
    if report.errors:
        lines.append("")
        lines.append(f"  errors ({len(report.errors)}): these files were left as they were")
        for path, message in report.errors:
            lines.append(f"  {path}: {message}")
    lines.append("")
    lines.append(render_summary_line(report))
    return "\n".join(lines) + "\n"


def _verification_lines(report: Report) -> list[str]:
    verification = report.verification
    if not verification or "skipped" in verification:
        return []
    lines = ["", f"  verification: {verification['checks_passed']}/{verification['checks_total']} checks pass"]
    before, after = verification.get("import_seconds_before"), verification.get("import_seconds_after")
    if isinstance(before, (int, float)) and isinstance(after, (int, float)):
        lines.append(
            f"  importing every module took {before:.1f} s before and {after:.1f} s after "
            "(without bytecode, each cold start compiles again)"
        )
    for failure in verification.get("pre_existing", []):  # type: ignore[attr-defined]
        lines.append(f"  already failing before pruning (not blamed): {failure}")
    for failure in verification.get("regressions", []):  # type: ignore[attr-defined]
        lines.append(f"  FAILED after pruning: {failure}")
    manifest = verification.get("manifest")
    if isinstance(manifest, str):
        checker = manifest.rpartition("/")[0] + "/check.py"
        lines.append(f"  final-stage check: run {checker} with the venv's python in the final image")
    return lines
