"""The report as Markdown, for a pull-request comment or a CI job summary."""

from __future__ import annotations

from venvprune.report.grouping import kept_groups, top_distributions
from venvprune.report.model import Report, human_bytes
from venvprune.report.text import render_summary_line


def render_markdown(report: Report) -> str:
    mode = "dry run" if report.dry_run else "pruned"
    lines = [
        f"## venvprune {mode}: `{report.target}`",
        "",
        f"**{human_bytes(report.before_bytes)} -> {human_bytes(report.after_bytes)}** "
        f"(-{human_bytes(report.saved_bytes)}, -{report.saved_percent:.1f}%), {report.files_removed:,} files removed",
        "",
        "| category | files removed | files rewritten | bytes | % of venv |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.name} | {r.files:,} | {r.rewritten:,} | {human_bytes(r.bytes)} | {r.percent:.1f}% |"
        for r in report.categories
    ]
    top = top_distributions(report)
    if top:
        lines += ["", "| distribution | before | saved |", "|---|---:|---:|"]
        lines += [
            f"| {d.name} {d.version} | {human_bytes(d.bytes_before)} | {human_bytes(d.bytes_saved)} |" for d in top
        ]
    groups = kept_groups(report)
    if groups:
        lines += ["", "| kept | count | reason | example |", "|---|---:|---|---|"]
        lines += [
            f"| {g.category} | {g.count:,} | {g.reason} | `{g.examples[0] if g.examples else ''}` |" for g in groups
        ]
    if report.recovery_problems:
        lines += ["", "**Not restored** by the recovery of an interrupted prune:", ""]
        lines += [
            f"- `{path}`: {message}" + (f" (kept in `{kept_at}`)" if kept_at else "")
            for path, message, kept_at in report.recovery_problems
        ]
    if report.errors:
        lines += ["", "**Errors** (left as they were):", ""]
        lines += [f"- `{path}`: {message}" for path, message in report.errors]
    lines += ["", f"`{render_summary_line(report)}`", ""]
    return "\n".join(lines)
