"""The report: one model (:mod:`.model`), rendered as text, Markdown or JSON."""

from venvprune.report.json_report import render_check_json, render_json
from venvprune.report.markdown import render_markdown
from venvprune.report.model import CheckReport, Report, build_check_report, build_report, human_bytes
from venvprune.report.text import render_check_text, render_summary_line, render_text

__all__ = [
    "CheckReport",
    "Report",
    "build_check_report",
    "build_report",
    "human_bytes",
    "render_check_json",
    "render_check_text",
    "render_json",
    "render_markdown",
    "render_summary_line",
    "render_text",
]
