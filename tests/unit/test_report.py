"""The report: one model, text for build logs, Markdown, and JSON that validates against the shipped schema."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from tests.site_builder import install_dist, make_site
from venvprune import categories
from venvprune.pipeline import Outcome, Status
from venvprune.plan import Kept, build_plan
from venvprune.report import build_report, render_json, render_markdown, render_summary_line, render_text
from venvprune.report.model import KeptRow, display_path, human_bytes
from venvprune.scan import scan
from venvprune.target import resolve_target
from venvprune.verify import Healed, VerifyOutcome

SCHEMA = json.loads((Path(__file__).parents[2] / "venvprune" / "report" / "schema.json").read_text())


@pytest.fixture
def outcome(tmp_path: Path) -> Outcome:
    site = make_site(tmp_path)
    install_dist(
        site,
        "pkg",
        {
            "pkg/__init__.py": "from pkg.tests import helpers\n",
            "pkg/__pycache__/__init__.cpython-311.pyc": b"\x00" * 2000,
            "pkg/tests/__init__.py": "",
            "pkg/tests/helpers.py": "",
            "pkg/old.pyc": b"\x00" * 30,
        },
        version="2.5",
    )
    install_dist(site, "other", {"other/__init__.py": "", "other/test/__init__.py": "x" * 500})
    plan = build_plan(scan(resolve_target(site), inspect_elf=False), categories.select(exclude=["debug-symbols"]))
    return Outcome(plan, True, Status.SUCCESS)


def test_json_validates_against_the_schema(outcome: Outcome) -> None:
    document = json.loads(render_json(build_report(outcome)))
    jsonschema.validate(document, SCHEMA)
    assert document["totals"]["before_bytes"] - document["totals"]["after_bytes"] == document["totals"]["saved_bytes"]
    assert {c["name"]: c["files"] for c in document["categories"]} == {
        "bytecode": 1,
        "tests": 1,
        "package-extras": 0,
        "record": 0,
    }
    assert document["distributions"][0] == {
        "name": "pkg",
        "version": "2.5",
        "bytes_before": document["distributions"][0]["bytes_before"],
        "bytes_saved": document["distributions"][0]["bytes_saved"],
    }
    assert {k["path"].split("/")[-1]: k["reason"] for k in document["kept"]} == {
        "tests": "pkg/__init__.py imports it at runtime",
        "old.pyc": "sourceless module: this .pyc is the code",
    }


def test_text_report_is_plain_and_ends_with_the_summary(outcome: Outcome) -> None:
    text = render_text(build_report(outcome))
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", text), "no control characters in a build log"
    last = text.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(
        r"venvprune: [\d.,]+ k?B -> [\d.,]+ k?B \(-\d+%\), 2 files removed, dry run, nothing changed", last
    )
    assert "kept on purpose" in text and "pkg/__init__.py imports it at runtime" in text
    assert "distributions that shrink most" in text


def test_markdown_has_the_tables(outcome: Outcome) -> None:
    markdown = render_markdown(build_report(outcome))
    assert "| category | files removed | files rewritten | bytes | % of site-packages |" in markdown
    assert "| bytecode | 1 | 0 |" in markdown


def test_units_and_unprintable_paths() -> None:
    assert [human_bytes(n) for n in (999, 1000, 653_200_000, 2_500_000_000)] == [
        "999 B",
        "1.0 kB",
        "653.2 MB",
        "2.5 GB",
    ]
    assert display_path("caf\udce9/\x1b[31m") == "caf\\xe9/\\x1b[31m"


def test_a_path_kept_for_two_reasons_is_listed_once(outcome: Outcome) -> None:
    plan = outcome.plan
    library = plan.inventory.target.site_packages[0] / "pkg" / "lib.so"
    twice = (
        Kept(library, "debug-symbols", "nothing removable after the last segment"),
        Kept(library, "debug-symbols", "symbol/debug sections between segments stay where they are", 4000),
    )
    report = build_report(replace(outcome, plan=replace(plan, kept=plan.kept + twice)))
    rows = [k for k in report.kept if k.path == "pkg/lib.so"]
    assert rows == [
        KeptRow(
            "pkg/lib.so",
            "debug-symbols",
            "nothing removable after the last segment; symbol/debug sections between segments stay where they are",
            4000,
        )
    ]
    assert render_text(report).count("pkg/lib.so") == 1


def test_an_empty_run_shows_no_minus_zero(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    install_dist(site, "pkg", {"pkg/__init__.py": ""})
    plan = build_plan(scan(resolve_target(site), inspect_elf=False), categories.select())
    report = build_report(Outcome(plan, True, Status.SUCCESS))
    text = render_text(report) + render_markdown(report)
    assert "-0" not in text, text
    assert render_summary_line(report).startswith("venvprune: ") and "(0%)" in render_summary_line(report)


def test_markdown_names_each_verification_failure(outcome: Outcome) -> None:
    site = outcome.plan.inventory.target.site_packages[0]
    verification = VerifyOutcome(
        ok=True,
        checks_total=78,
        checks_passed=77,
        pre_existing=("entry point pandas_plotting_backends:matplotlib: ImportError: no matplotlib",),
        healed=(Healed(site / "pkg" / "tests", "tests", "pkg/core.py needed it"),),
    )
    report = build_report(replace(outcome, dry_run=False, verification=verification))
    markdown = render_markdown(report)
    assert "### Verification: 77/78 checks pass" in markdown
    assert "- already failing before pruning (not blamed): entry point pandas_plotting_backends:matplotlib" in markdown
    assert "- restored: `pkg/tests` (tests): pkg/core.py needed it" in markdown


def test_the_report_says_what_was_measured_beside_the_whole_target(tmp_path: Path) -> None:
    site = make_site(tmp_path / "prefix")
    install_dist(site, "pkg", {"pkg/__init__.py": "", "pkg/tests/__init__.py": "x" * 1000})
    (tmp_path / "prefix" / "lib" / "python3.11" / "os.py").write_text("y" * 300_000)  # the standard library
    plan = build_plan(scan(resolve_target(tmp_path / "prefix"), inspect_elf=False), categories.select())
    report = build_report(Outcome(plan, True, Status.SUCCESS))
    assert report.target_bytes == report.before_bytes + 300_000
    text = render_text(report)
    assert "  measured: site-packages (the whole prefix: 301.4 kB)" in text.splitlines(), text
    assert "of venv" not in text and "of venv" not in render_markdown(report)
    assert json.loads(render_json(report))["totals"]["target_bytes"] == report.target_bytes


def test_verbose_lists_every_path_under_its_category(outcome: Outcome) -> None:
    report = build_report(outcome)
    quiet, verbose = render_text(report), render_text(report, verbose=True)
    for action in report.actions:
        if action.category != "record":
            assert f"    {action.path}" in verbose and f"    {action.path}" not in quiet
