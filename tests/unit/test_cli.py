"""The command line end to end on small trees: exit codes, outputs, and one-line errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_runner import run_cli
from tests.site_builder import install_dist, make_site, tree_digest
from venvprune import records


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


run = run_cli


@pytest.mark.parametrize("profile", ["safe", "max"])
def test_dry_run_changes_nothing_and_prints_the_plan(site: Path, profile: str) -> None:
    before = tree_digest(site.parents[2])
    code, out, err = run("--dry-run", "--profile", profile, "--exclude", "debug-symbols", str(site))
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


@pytest.mark.parametrize("spelling", ["relative", "absolute"])
def test_record_rows_that_leave_site_packages_follow_their_removal(tmp_path: Path, spelling: str) -> None:
    """A distribution split over purelib and platlib (``lib/`` and ``lib64/`` apart) lists its platlib files as
    ``../../../lib64/...``, or as absolute paths: removing one of them must drop its row, as for any other row."""
    purelib = make_site(tmp_path)
    platlib = tmp_path / "lib64" / "python3.11" / "site-packages"
    outside = "../../../lib64/python3.11/site-packages"
    dist_info = install_dist(
        purelib,
        "split",
        {"split/__init__.py": "", f"{outside}/split_ext/__init__.py": "", f"{outside}/split_ext/tests/__init__.py": ""},
    )
    if spelling == "absolute":
        rows = [
            records.Row((str(platlib / row.path[len(outside) + 1 :]), *row.fields[1:]))
            if row.path.startswith(outside)
            else row
            for row in records.read(dist_info / "RECORD")
        ]
        (dist_info / "RECORD").write_bytes(records.dump(rows))
    code, _, err = run("--no-verify", "--only", "tests", str(tmp_path))
    assert code == 0, err
    assert not (platlib / "split_ext" / "tests").exists()
    listed = [row.normalised_path for row in records.read(dist_info / "RECORD")]
    assert all(os.path.lexists(os.path.join(purelib, path)) for path in listed), listed


def test_a_report_path_that_is_a_folder_is_refused_before_anything_changes(site: Path, tmp_path: Path) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    before = tree_digest(site)
    code, _, err = run("--no-verify", "--json", str(folder), str(site))
    assert code == 2
    assert err.startswith(f"venvprune: error: {folder}: ") and len(err.splitlines()) == 1
    assert tree_digest(site) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prefix", "reports"]  # no temp file beside it
    assert list(folder.iterdir()) == []


def full_device(folder: Path) -> Path:
    """A device whose every write fails with ENOSPC (/dev/full's twin, so that a regression replaces only the twin)."""
    path = folder / "full"
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except PermissionError:  # no CAP_MKNOD: the fixed code writes into /dev/full and never replaces it
        return Path("/dev/full")
    return path


def test_a_report_that_fails_after_the_commit_says_the_prune_succeeded(site: Path, tmp_path: Path) -> None:
    device = full_device(tmp_path)
    code, _, err = run("--no-verify", "--markdown", str(device), str(site))
    assert code == 3, err
    assert not (site / "pkg/tests").exists()
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"venvprune: error: {device}: cannot write the report (No space left on device)")
    assert "the prune succeeded" in last
    assert device.is_char_device()  # written into, never replaced by a file


def test_a_report_that_fails_in_a_dry_run_is_a_failure(site: Path, tmp_path: Path) -> None:
    code, _, err = run("--dry-run", "--json", str(full_device(tmp_path)), str(site))
    assert code == 4
    assert err.strip().splitlines()[-1].endswith("nothing was changed")


def test_a_closed_stdout_after_the_commit_says_the_prune_succeeded(site: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # `venvprune --json - | true`: the reader is gone before the report is written
    try:
        done = subprocess.run(
            [sys.executable, "-m", "venvprune", "--no-verify", "--json", "-", str(site)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 3, done.stderr
    assert not (site / "pkg/tests").exists()
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("venvprune: error: stdout: cannot write the report") and "the prune succeeded" in last


def test_both_reports_on_stdout_is_a_usage_error(site: Path) -> None:
    code, out, err = run("--dry-run", "--json", "-", "--markdown", "-", str(site))
    assert code == 2 and out == ""
    assert err.startswith("venvprune: error: --json and --markdown both write to stdout") and len(err.splitlines()) == 1


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_report_files_follow_the_umask(site: Path, tmp_path: Path, umask: int, mode: int) -> None:
    previous = os.umask(umask)
    try:
        code, _, err = run(
            "--dry-run", "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"), str(site)
        )
    finally:
        os.umask(previous)
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "r.md").stat().st_mode) == mode


@pytest.mark.parametrize("value", ["inf", "nan", "1e300", "-inf", "0"])
def test_a_timeout_that_is_not_a_number_of_seconds_is_a_usage_error(site: Path, value: str) -> None:
    code, _, err = run("--timeout", value, str(site))
    assert code == 2
    assert err.startswith("venvprune: error: --timeout") and len(err.splitlines()) == 1, err


def test_the_command_line_selection_wins_over_the_file(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.venvprune]\nexclude = ["tests"]\n')
    monkeypatch.chdir(tmp_path)
    code, _, err = run("--no-verify", "--only", "tests", str(site))
    assert code == 0, err
    assert not (site / "pkg/tests").exists()
    assert (site / "pkg/__pycache__").exists()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--only", "tests", "--exclude", "tests"], ("--only", "--exclude")),
        (["--only", "tests", "--include", "bytecode"], ("--only", "--include")),
        (["--include", "tests", "--exclude", "tests"], ("--include", "--exclude")),
        (
            [
                "--exclude",
                "tests",
                "--exclude",
                "bytecode",
                "--exclude",
                "debug-symbols",
                "--exclude",
                "package-extras",
            ],
            ("--exclude",),
        ),
    ],
)
def test_an_empty_or_contradictory_selection_is_a_usage_error(site: Path, args: list[str], named: tuple[str]) -> None:
    before = tree_digest(site)
    code, _, err = run("--no-verify", *args, str(site))
    assert code == 2
    assert err.startswith("venvprune: error: ") and len(err.splitlines()) == 1, err
    assert all(option in err for option in named), err
    assert tree_digest(site) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jobs", "x", "SITE"], "--jobs: 'x' is not a valid integer; see `venvprune --help`"),
        (["--dry-rn", "SITE"], "--dry-rn: no such option (did you mean --dry-run?); see `venvprune --help`"),
        (["SITE", "--json"], "Option '--json' requires an argument; see `venvprune --help`"),
        (["--only", "nonsense", "SITE"], "--only: 'nonsense' is not one of"),
        (["check", "--keep", "x", "SITE"], "--keep: no such option"),
        (["SITE", "SITE"], "Got unexpected extra argument"),
    ],
)
def test_option_errors_are_one_line_naming_the_option(site: Path, args: list[str], message: str) -> None:
    code, out, err = run(*(str(site) if arg == "SITE" else arg for arg in args))
    assert code == 2 and out == ""
    assert err.startswith(f"venvprune: error: {message}") and len(err.splitlines()) == 1, err


def test_help_shows_both_forms_of_the_command_line() -> None:
    code, out, _ = run("--help")
    assert code == 0
    assert out.startswith("Usage: venvprune [OPTIONS] [VENV]\n   or: venvprune check [OPTIONS] [VENV]\n")
    assert "venvprune prune" not in out and "--dry-run" in out
    code, out, _ = run("check", "--help")
    assert code == 0 and out.startswith("Usage: venvprune check [OPTIONS] [VENV]") and "--dry-run" not in out


def test_a_bad_virtual_env_is_named_as_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTUAL_ENV", "/nope")
    for args in ([], ["check"]):
        code, _, err = run(*args)
        assert code == 2
        assert err.startswith("venvprune: error: /nope: no such file or directory") and "$VIRTUAL_ENV" in err


def test_check_reads_the_same_settings_as_the_prune(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.venvprune]\ntimeout = 0.5\n")
    monkeypatch.chdir(tmp_path)
    for args in ([], ["check"]):
        code, _, err = run(*args, str(site))
        assert code == 2
        assert (
            err
            == f"venvprune: error: {tmp_path / 'pyproject.toml'}: timeout must be a number from 1 to 86400, not 0.5\n"
        )


def test_a_keep_glob_that_matches_nothing_is_named(site: Path) -> None:
    code, out, err = run("-q", "--dry-run", "--keep", "pkg/tests", "--keep", "nmupy/*", str(site))
    assert code == 0
    assert err.splitlines() == [
        "venvprune: warning: --keep nmupy/* matches nothing; write it relative to site-packages (numpy/tests/*) or "
        f"as a path inside {site}"
    ]
    assert out.endswith("1 file removed, dry run, nothing changed\n")  # pkg/tests kept, its __pycache__ goes
