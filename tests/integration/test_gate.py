"""A gate you can put in CI (issue 9): ``venvprune check``, the prune's verification and the final-stage ``check.py``
judge alike, never fail a venv in which every program works, and never pass one silently.

Each test builds a real venv from wheels made at test time (extensions and bundled libraries compiled with gcc) and
runs venvprune and ``check.py`` as a user would.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.venv_builder import (
    make_venv,
    run,
)
from tests.wheel_builder import build_wheel

pytestmark = pytest.mark.integration

PYTHON37 = Path("/root/.pyenv/versions/3.7.16/bin/python")
SCHEMA = json.loads((Path(__file__).parents[2] / "venvprune" / "report" / "schema.json").read_text())

HEALTHY = {
    "okpkg/__init__.py": "VALUE = 1\n",
    "okpkg/cli.py": "def main():\n    print('okpkg runs')\n",
    "okpkg/tests/__init__.py": "",
    "okpkg/tests/test_it.py": "def test_it():\n    pass\n",
}
HEALTHY_ENTRY_POINTS = "[console_scripts]\nokpkg-cli = okpkg.cli:main\n"
PRE_BROKEN = {"prebroken/__init__.py": "raise RuntimeError('broken since it was installed')\n"}
# pandas' plotting backend: ``pandas:plotting._matplotlib`` names a submodule that ``import pandas`` does not load.
PLOTTING = {
    "plotpkg/__init__.py": "from plotpkg import plotting\n",
    "plotpkg/plotting/__init__.py": "",
    "plotpkg/plotting/_backend.py": "BACKEND = 'drawn'\n",
}
PLOTTING_ENTRY_POINTS = "[plotpkg_plotting_backends]\nbackend = plotpkg:plotting._backend\n"


def counting(name: str, counter: Path, body: str = "") -> dict[str, str]:
    """A package whose import appends its name to *counter*: how often each phase imported it."""
    return {
        f"{name}/__init__.py": f"with open({str(counter)!r}, 'a') as _f:\n    _f.write({name!r} + '\\n')\n{body}",
        f"{name}/tests/__init__.py": "",
        f"{name}/tests/test_it.py": "def test_it():\n    pass\n",
    }


def imports_counted(counter: Path) -> dict[str, int]:
    names = counter.read_text().split() if counter.exists() else []
    return {name: names.count(name) for name in sorted(set(names))}


def console_scripts(package: str, count: int) -> str:
    return "[console_scripts]\n" + "".join(f"{package}-{i} = {package}:main\n" for i in range(count))


def last_line(text: str) -> str:
    return text.rstrip().splitlines()[-1]


def pass_figure(line: str) -> str:
    """``12/13`` from ``venvprune check: 12/13 checks pass ...``."""
    match = re.search(r"(\d+/\d+) checks pass", line)
    assert match, line
    return match.group(1)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("wheels")
    return {
        "okpkg": build_wheel(work, "okpkg", HEALTHY, entry_points=HEALTHY_ENTRY_POINTS),
        "prebroken": build_wheel(work, "prebroken", PRE_BROKEN),
        "plotpkg": build_wheel(work, "plotpkg", PLOTTING, entry_points=PLOTTING_ENTRY_POINTS),
    }


@pytest.fixture
def healthy_venv(tmp_path: Path, wheels: dict[str, Path]) -> Path:
    return make_venv(Path(sys.executable), tmp_path / "venv", [wheels["okpkg"]])


# -- 1. no false alarms; check, the prune and check.py agree ----------------------------------------------------


# -- 2. no verification of what the change cannot affect -------------------------------------------------------


# -- 3, 4, 6. no silent passes -----------------------------------------------------------------------------------


# -- 5. the manifest describes the venv as it is -----------------------------------------------------------------


# -- 7, 8. no hangs ----------------------------------------------------------------------------------------------


# -- 9, 10. targets without an interpreter, and old Pythons ------------------------------------------------------


@pytest.mark.skipif(not PYTHON37.exists(), reason="needs pyenv's Python 3.7")
def test_a_python_37_venv_is_refused_up_front(tmp_path: Path) -> None:
    venv = tmp_path / "venv37"
    subprocess.run([str(PYTHON37), "-m", "venv", "--without-pip", str(venv)], check=True)
    for args in (("--dry-run",), (), ("check",)):
        code, _, err = run(*args, str(venv))
        assert code == 2, err
        assert "3.7" in err and "3.8" in err and len(err.strip().splitlines()) == 1


# -- 11. check speaks JSON and shows progress --------------------------------------------------------------------


# -- 12. tests: keep what is code --------------------------------------------------------------------------------
