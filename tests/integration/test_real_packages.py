"""The data venv of docs/why.md, from PyPI: the usual find/strip chain breaks it, venvprune must not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.site_builder import tree_digest
from tests.venv_survey import OK, regressions, survey

pytestmark = pytest.mark.integration

PACKAGES = ["pandas", "numpy", "scipy", "matplotlib", "scikit-learn", "pyarrow"]


@pytest.fixture(scope="module")
def data_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("data") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    return venv


def test_data_analysis_venv_shrinks_and_everything_still_imports(data_venv: Path, tmp_path: Path) -> None:
    before_survey = survey(data_venv)
    working = {name for name, state in before_survey.modules.items() if state == OK}
    assert {"pandas", "numpy", "scipy", "matplotlib", "sklearn", "pyarrow"} <= working

    before = tree_digest(data_venv)
    dry = subprocess.run(
        [sys.executable, "-m", "venvprune", "--dry-run", str(data_venv)], capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    assert tree_digest(data_venv) == before, "a dry run changed the venv"

    report_path = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "venvprune", "--json", str(report_path), str(data_venv)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(report_path.read_text())
    totals = report["totals"]
    print(run.stdout.rstrip().splitlines()[-1])
    assert totals["after_bytes"] < 0.8 * totals["before_bytes"], "expected at least 20% off a 650 MB data venv"
    assert report["verification"]["ok"] is True

    # Each top-level module imported in its own process, every entry point loaded, every version and metadata
    # digest compared: nothing that worked before fails now.
    assert regressions(before_survey, survey(data_venv)) == []
