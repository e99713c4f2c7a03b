"""--profile max on a real venv from PyPI whose packages compile at run time (cffi, Cython): what their compilers
read stays (headers cffi inlines, Cython's Includes and Utility code, setuptools for cffi), the installer goes whole,
and nothing a user checks regresses (tests/venv_survey.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.venv_survey import regressions, survey

pytestmark = pytest.mark.integration

CFFI_BUILD = textwrap.dedent(
    """
    import sys, tempfile
    from cffi import FFI
    ffi = FFI()
    ffi.cdef("int add(int, int);")
    ffi.set_source("_added", "static int add(int a, int b) { return a + b; }")
    where = tempfile.mkdtemp()
    ffi.compile(tmpdir=where)
    sys.path.insert(0, where)
    import _added
    assert _added.lib.add(2, 3) == 5
    """
)

CYTHON_BUILD = textwrap.dedent(
    """
    import os, subprocess, sys, sysconfig, tempfile
    where = tempfile.mkdtemp()
    source = os.path.join(where, "fast.pyx")
    with open(source, "w") as handle:
        handle.write("from libc.math cimport sqrt\\ndef root(double x):\\n    return sqrt(x)\\n")
    subprocess.run([sys.executable, "-m", "cython", "-3", source], check=True)
    module = os.path.join(where, "fast" + sysconfig.get_config_var("EXT_SUFFIX"))
    include = "-I" + sysconfig.get_paths()["include"]
    subprocess.run(["gcc", "-shared", "-fPIC", include, os.path.join(where, "fast.c"), "-o", module], check=True)
    sys.path.insert(0, where)
    import fast
    assert fast.root(9.0) == 3.0
    """
)


@pytest.fixture(scope="module")
def compilers_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("compilers") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "cffi", "Cython", "setuptools"], check=True)
    return venv


def run_in(venv: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, cwd=cwd)


def test_max_keeps_what_runtime_compilers_read(compilers_venv: Path, tmp_path: Path) -> None:
    for code in (CFFI_BUILD, CYTHON_BUILD):
        assert run_in(compilers_venv, code, tmp_path).returncode == 0, "the compilers work before pruning"
    before = survey(compilers_venv)
    report_path = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "venvprune", "--profile", "max", "--json", str(report_path), str(compilers_venv)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(report_path.read_text())
    assert report["profile"] == "max" and report["verification"]["ok"] is True
    assert report["verification"]["healed"] == [], "nothing the plan removed was needed by a check"

    site = next((compilers_venv / "lib").glob("python3*/site-packages"))
    # The installer went whole (pip), scripts and metadata with it; setuptools stays for cffi.
    assert not list(site.glob("pip*")) and not (compilers_venv / "bin" / "pip").exists()
    assert list(site.glob("setuptools-*.dist-info"))
    kept = {k["path"]: k["reason"] for k in report["kept"]}
    assert "cffi compiles (ffi.compile, ffi.verify) through setuptools" in kept["setuptools"]
    assert (site / "cffi" / "_cffi_include.h").is_file()
    assert (site / "Cython" / "Includes" / "libc" / "math.pxd").is_file()
    removed = {a["path"] for a in report["actions"]}
    assert any(p.endswith((".pyi", "py.typed")) for p in removed), "stubs went"

    for code in (CFFI_BUILD, CYTHON_BUILD):
        result = run_in(compilers_venv, code, tmp_path)
        assert result.returncode == 0, result.stderr
    assert regressions(before, survey(compilers_venv), uninstalled=report_uninstalled(report)) == []


def report_uninstalled(report: dict[str, object]) -> list[str]:
    actions = report["actions"]
    assert isinstance(actions, list)
    return sorted(
        {a["distribution"] for a in actions if a["category"] == "installers" and a["path"].endswith(".dist-info")}
    )
