"""The report as Markdown, for a pull-request comment or a CI job summary."""

from __future__ import annotations

from dataclasses import asdict

from venvprune.report.grouping import kept_groups, top_distributions
from venvprune.report.model import Report, human_bytes
from venvprune.report.text import measured_text, render_summary_line, saved_text
from venvprune.verify.probe import judge


def render_markdown(report: Report) -> str:
    mode = "dry run" if report.dry_run else "pruned"
    lines = [
        f"## venvprune {mode}: `{report.target}`",
        "",
        f"**{human_bytes(report.before_bytes)} -> {human_bytes(report.after_bytes)}** ({saved_text(report)}), "
        f"{report.files_removed:,} files removed; {measured_text(report)}",
    ]
    if report.warnings:
        lines += ["", *(f"> **Warning:** {warning}" for warning in report.warnings)]
    lines += [
        "",
        "| category | files removed | files rewritten | bytes | % of site-packages |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.name} | {r.files:,} | {r.rewritten:,} | {human_bytes(r.bytes)} | {r.percent:.1f}% |"
        for r in report.categories
    ]
    if report.more_with_max:
        lines += ["", "`--profile max` would also remove:", "", "| category | files | bytes |", "|---|---:|---:|"]
        lines += [f"| {m.category} | {m.files:,} | {human_bytes(m.bytes)} |" for m in report.more_with_max]
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
    if report.consequences:
        lines += ["", "**What stops working** without what is removed (keep it with `--keep PATH` if needed):", ""]
        lines += [
            f"- `{', '.join(c.paths)}` ({c.category}, {human_bytes(c.bytes)}): {c.what_breaks} "
            f"([evidence]({c.evidence}))"
            for c in report.consequences
        ]
    lines += _verification(report)
    lines += _warm(report)
    lines += _advice(report)
    if report.errors:
        lines += ["", "**Errors** (left as they were):", ""]
        lines += [f"- `{path}`: {message}" for path, message in report.errors]
    lines += ["", f"`{render_summary_line(report)}`", ""]
    return "\n".join(lines)


def _warm(report: Report) -> list[str]:
    found = report.warm
    if found is None:
        return []
    lines = [
        "",
        f"### Warm: {found.sources:,} source files, bytecode kept ({found.kept_files:,} files, "
        f"{human_bytes(found.kept_bytes)}), {found.compile_files:,} compiled",
        "",
        "| import | before | after |",
        "|---|---:|---:|",
    ]
    for module in found.modules:
        before = f"{module.seconds_before:.2f} s" if module.seconds_before is not None else "?"
        after = f"{module.seconds_after:.2f} s" if module.seconds_after is not None else "(dry run)"
        lines.append(f"| `{module.module}` | {before} | {after} |")
    lines += [f"- not warmed (it does not import): {failure}" for failure in found.failed]
    return lines


def _advice(report: Report) -> list[str]:
    advice = report.advice
    if advice is None or not (advice.system_libraries or advice.gpu):
        return []
    lines = ["", "### For the final image"]
    if advice.system_libraries:
        lines += ["", "| library | Debian package | found by | needed by |", "|---|---|---|---|"]
        lines += [
            f"| `{lib.soname}` | {lib.debian or '?'} | {lib.source} | {lib.needed_by_count:,} files, e.g. "
            f"`{lib.needed_by[0] if lib.needed_by else ''}` |"
            for lib in advice.system_libraries
        ]
        lines += ["", "```dockerfile"]
        lines += [f"RUN {line}" for line in (advice.apt, advice.apk) if line]
        lines += ["```"]
    if advice.gpu:
        lines += ["", f"GPU payload: **{human_bytes(advice.gpu_bytes)}** of CUDA/ROCm", ""]
        lines += [f"- {g.distribution} {g.version}: {human_bytes(g.bytes)}" for g in advice.gpu]
        if advice.cpu_hint:
            lines += ["", advice.cpu_hint]
    return lines


def _verification(report: Report) -> list[str]:
    verification = report.verification
    final_stage = report.final_stage
    tail = []
    if final_stage is not None and final_stage.checker:
        tail.append(f"- final-stage check: `{final_stage.checker}`")
    if final_stage is not None and final_stage.note:
        tail.append(f"- final-stage check: {final_stage.note}")
    if verification is None:
        head = ["", f"### Not verified ({report.verify_skipped})"] if report.verify_skipped else []
        return head + ([""] if head and tail else []) + tail
    lines = ["", f"### Verification: {judge.summary(asdict(verification))}", ""]
    if verification.refused:
        lines.append(f"- the checks before pruning said no (nothing was changed): {verification.refused}")
    failed = "FAILED before pruning" if verification.refused else "FAILED after pruning (everything was restored)"
    lines += [f"- {failed}: {failure}" for failure in verification.failures]
    lines += [f"- already failing before pruning (not blamed): {failure}" for failure in verification.pre_existing]
    lines += [f"- not run: {line}" for line in verification.not_run]
    lines += [f"- unused bundled library: `{u.path}` ({human_bytes(u.bytes)})" for u in verification.unused_libraries]
    lines += [f"- restored: `{h.path}` ({h.category}): {h.reason}" for h in verification.healed]
    before, after = verification.import_seconds_before, verification.import_seconds_after
    if before is not None and after is not None:
        lines.append(f"- importing every module: {before:.1f} s before, {after:.1f} s after (no bytecode)")
    return lines + tail
