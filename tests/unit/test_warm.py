"""--warm: the bytecode of what importing a module loads stays (or is compiled by the target's own interpreter), in a
real venv made at test time; the report shows the import time before and after."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tests.cli_runner import run_cli
from tests.site_builder import install_dist, make_site
from venvprune import categories, warm
from venvprune.plan import ActionKind, WarmBytecode, build_plan
from venvprune.scan import scan
from venvprune.target import resolve_target

SCHEMA = json.loads((Path(warm.__file__).parent / "report" / "schema.json").read_text())
TAG = f"cpython-{sys.version_info[0]}{sys.version_info[1]}"


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A venv (no pip) with a package: importing app.fast loads app and app.fast, never app.slow."""
    where = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    site = next((where / "lib").glob("python3*/site-packages"))
    install_dist(
        site,
        "app",
        {"app/__init__.py": "", "app/fast.py": "VALUE = 1\n", "app/slow.py": "VALUE = 2\n"},
    )
    # app/__init__ and app/slow compiled at install; app/fast not (as uv installs).
    subprocess.run(
        [str(where / "bin" / "python"), "-m", "py_compile", str(site / "app/__init__.py"), str(site / "app/slow.py")],
        check=True,
    )
    return where


def site_of(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def test_survey_names_what_an_import_loads(venv: Path) -> None:
    site = site_of(venv)
    found = warm.survey(venv / "bin" / "python", venv, ["app.fast", "missing_module"], [site])
    assert found.sources == {site / "app/__init__.py", site / "app/fast.py"}
    assert found.cache_tag == TAG
    assert [module for module, _ in found.failed] == ["missing_module"]
    assert "ModuleNotFoundError" in found.failed[0][1]
    assert set(found.seconds_before) == {"app.fast"}
    assert found.bytecode_of(site / "app/fast.py") == site / "app/__pycache__" / f"fast.{TAG}.pyc"


def test_the_plan_keeps_warm_bytecode_and_lists_what_to_compile(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    install_dist(
        site,
        "app",
        {
            "app/__init__.py": "",
            "app/fast.py": "",
            "app/slow.py": "",
            f"app/__pycache__/__init__.{TAG}.pyc": b"\x00" * 10,
            f"app/__pycache__/slow.{TAG}.pyc": b"\x00" * 20,
        },
    )
    pycache = site / "app/__pycache__"
    warm_bytecode = WarmBytecode(
        {pycache / f"__init__.{TAG}.pyc": site / "app/__init__.py", pycache / f"fast.{TAG}.pyc": site / "app/fast.py"},
        "warm reason",
    )
    inventory = scan(resolve_target(site), inspect_elf=False)
    plan = build_plan(inventory, categories.select(only=["bytecode"]), warm=warm_bytecode)
    assert [(a.path.name, a.kind, a.is_directory) for a in plan.actions if a.category == "bytecode"] == [
        (f"slow.{TAG}.pyc", ActionKind.REMOVE, False)
    ]
    assert [(k.path.name, k.reason) for k in plan.kept] == [(f"__init__.{TAG}.pyc", "warm reason")]
    assert plan.warm_compile == ((site / "app/fast.py", pycache / f"fast.{TAG}.pyc"),)
    # Without --warm the folder goes whole.
    plain = build_plan(inventory, categories.select(only=["bytecode"]))
    assert [a.path for a in plain.actions if a.category == "bytecode"] == [pycache]


def test_warm_keeps_and_compiles_and_reports_the_import_time(venv: Path, tmp_path: Path) -> None:
    site = site_of(venv)
    code, out, err = run_cli("--no-verify", "--warm", "app.fast", "--json", "-", str(venv))
    assert code == 0, err
    pycache = site / "app/__pycache__"
    assert sorted(p.name for p in pycache.iterdir()) == [f"__init__.{TAG}.pyc", f"fast.{TAG}.pyc"]
    # The compiled bytecode is the target interpreter's own: Python imports it without recompiling.
    check = "import importlib.util as u, app.fast; print(u.cache_from_source(app.fast.__file__))"
    result = subprocess.run([str(venv / "bin" / "python"), "-B", "-c", check], capture_output=True, text=True)
    assert result.stdout.strip() == str(pycache / f"fast.{TAG}.pyc")
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    found = report["warm"]
    assert (found["sources"], found["kept_files"], found["compile_files"]) == (2, 1, 1)
    [module] = found["modules"]
    assert module["module"] == "app.fast" and module["seconds_before"] > 0 and module["seconds_after"] > 0
    assert "import app.fast:" in err and "before" in err and "after" in err  # the human report on stderr


def test_a_dry_run_plans_the_warm_bytecode_and_changes_nothing(venv: Path) -> None:
    site = site_of(venv)
    before = sorted(p.name for p in (site / "app/__pycache__").iterdir())
    code, out, _ = run_cli("--dry-run", "--warm", "app.fast", "--json", "-", str(venv))
    assert code == 0
    assert sorted(p.name for p in (site / "app/__pycache__").iterdir()) == before
    found = json.loads(out)["warm"]
    assert found["compile_files"] == 1 and found["modules"][0]["seconds_after"] is None


def test_check_module_warms_too(venv: Path) -> None:
    code, out, _ = run_cli("--dry-run", "--check-module", "app.fast", "--json", "-", str(venv))
    assert code == 0
    assert [m["module"] for m in json.loads(out)["warm"]["modules"]] == ["app.fast"]
