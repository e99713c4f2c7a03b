"""The report as versioned JSON; ``schema.json`` beside this file describes it and the tests validate against it."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from venvprune.report.model import SCHEMA_VERSION, CheckReport, Report


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "venvprune_version": report.version,
        "command": "prune",
        "target": report.target,
        "kind": report.kind,
        "python": report.python,
        "dry_run": report.dry_run,
        "status": report.status,
        "totals": {
            "before_bytes": report.before_bytes,
            "after_bytes": report.after_bytes,
            "saved_bytes": report.saved_bytes,
            "target_bytes": report.target_bytes,
            "files_before": report.files_before,
            "files_removed": report.files_removed,
        },
        "categories": [
            {"name": r.name, "files": r.files, "rewritten": r.rewritten, "bytes": r.bytes} for r in report.categories
        ],
        "distributions": [asdict(d) for d in report.distributions],
        "kept": [{"path": k.path, "category": k.category, "reason": k.reason, "bytes": k.bytes} for k in report.kept],
        "actions": [asdict(a) for a in report.actions],
        "errors": [{"path": path, "message": message} for path, message in report.errors],
        "recovery": report.recovery,
        "recovery_problems": [
            {"path": path, "message": message, "kept_at": kept_at}
            for path, message, kept_at in report.recovery_problems
        ],
        "verification": _verification(report),
        "final_stage": asdict(report.final_stage) if report.final_stage is not None else None,
        "timings": [{"phase": name, "seconds": seconds} for name, seconds in report.timings],
        "warnings": list(report.warnings),
        "profile": report.profile,
        "consequences": [asdict(c) for c in report.consequences],
        "more_with_max": [{"category": m.category, "files": m.files, "bytes": m.bytes} for m in report.more_with_max],
        "advice": asdict(report.advice) if report.advice is not None else None,
        "warm": asdict(report.warm) if report.warm is not None else None,
    }


def check_report_dict(report: CheckReport) -> dict[str, Any]:
    """``venvprune check --json``: the target, and the verification section a prune's report has."""
    return {
        "schema_version": SCHEMA_VERSION,
        "venvprune_version": report.version,
        "command": "check",
        "target": report.target,
        "kind": report.kind,
        "python": report.python,
        "verification": asdict(report.verification),
        "timings": [{"phase": name, "seconds": seconds} for name, seconds in report.timings],
    }


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, sort_keys=False) + "\n"


def render_check_json(report: CheckReport) -> str:
    return json.dumps(check_report_dict(report), indent=2, sort_keys=False) + "\n"


def _verification(report: Report) -> dict[str, Any] | None:
    if report.verification is not None:
        return asdict(report.verification)
    if report.verify_skipped is not None:
        return {"skipped": report.verify_skipped}
    return None
