"""The command line end to end on small trees: exit codes, outputs, and one-line errors."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.site_builder import install_dist, make_site, tree_digest
from venvprune import records
from venvprune.cli import cli


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = make_site(tmp_path / "prefix")
    install_dist(
        site,
        "pkg",
        {
            "pkg/__init__.py": "",
            "pkg/__pycache__/__init__.cpython-311.pyc": b"\x00" * 100,
            "pkg/tests/__init__.py": "",
        },
    )
    return site


def run(*args: str) -> tuple[int, str, str]:
    # click < 8.2 mixes stderr into stdout unless told not to; 8.2 always keeps them apart.
    runner = CliRunner(mix_stderr=False) if "mix_stderr" in inspect.signature(CliRunner).parameters else CliRunner()
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_dry_run_changes_nothing_and_prints_the_plan(site: Path) -> None:
    before = tree_digest(site.parents[2])
    code, out, err = run("--dry-run", "--exclude", "debug-symbols", str(site))
    assert code == 0
    assert tree_digest(site.parents[2]) == before
    assert "bytecode" in out and "tests" in out
    assert out.rstrip().splitlines()[-1].endswith("2 files removed, dry run, nothing changed")
    assert "venvprune: scan " in err and "venvprune: plan " in err


def test_prune_applies_the_plan_and_json_goes_to_stdout(site: Path) -> None:
    code, out, err = run("--no-verify", "--exclude", "debug-symbols", "--json", "-", str(site))
    assert code == 0
    report = json.loads(out)
    assert report["dry_run"] is False and report["status"] == "success"
    assert report["verification"] == {"skipped": "--no-verify"}
    assert not (site / "pkg/tests").exists() and not (site / "pkg/__pycache__").exists()
    assert err.rstrip().splitlines()[-1].startswith("venvprune: ")  # the human report went to stderr


def test_quiet_prints_one_line_and_report_files_are_written(site: Path, tmp_path: Path) -> None:
    code, out, _ = run("-q", "--dry-run", "--only", "tests", "--markdown", str(tmp_path / "r.md"), str(site))
    assert code == 0
    assert len(out.strip().splitlines()) == 1
    assert (tmp_path / "r.md").read_text().startswith("## venvprune dry run")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/venv"], "venvprune: error: /nonexistent/venv: no such file or directory"),
        (["/"], "venvprune: error: /: refusing to prune a system or home directory"),
    ],
)
def test_bad_targets_exit_2_with_one_line(args: list[str], message: str) -> None:
    code, _out, err = run(*args)
    assert code == 2
    assert err.startswith(message)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_category_is_a_usage_error(site: Path) -> None:
    code, _, err = run("--only", "nonsense", str(site))
    assert code == 2
    assert "nonsense" in err


def test_unknown_config_key_is_a_usage_error(site: Path, tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("kep = ['x']\n")
    code, _, err = run("--config", str(config), str(site))
    assert code == 2
    assert "unknown key 'kep' in venvprune settings; did you mean 'keep'?" in err


def test_version_and_help() -> None:
    assert run("--version")[1].startswith("venvprune, version ")
    code, out, _ = run("--help")
    assert code == 0 and "--dry-run" in out


def test_an_unwritable_report_path_is_refused_before_anything_changes(site: Path) -> None:
    before = tree_digest(site)
    code, _, err = run("--no-verify", "--json", "/nonexistent/dir/report.json", str(site))
    assert code == 2
    assert err.strip() == (
        "venvprune: error: /nonexistent/dir/report.json: cannot write the report there; "
        "/nonexistent/dir is not a writable folder"
    )
    assert tree_digest(site) == before


@pytest.mark.parametrize("selection", [["--only", "tests"], ["--only", "bytecode"], ["--exclude", "bytecode"]])
def test_record_follows_every_removal_whatever_the_selection(site: Path, selection: list[str]) -> None:
    code, _, err = run("--no-verify", *selection, str(site))
    assert code == 0, err
    listed = [row.normalised_path for row in records.read(next(site.glob("pkg-*.dist-info")) / "RECORD")]
    assert listed and all((site / path).exists() for path in listed), "RECORD lists files that are gone"
