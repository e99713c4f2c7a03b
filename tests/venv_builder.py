"""Real venvs for the verification tests: made with ``python -m venv``, wheels built at test time, extensions and
libraries compiled with gcc.

The venvs have no pip (so only a test's own distributions are checked); the tool's pip installs into them with
``--python``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from click.testing import CliRunner

from venvprune.cli import cli

NO_ELF = ("--exclude", "debug-symbols")  # the ELF category is exercised by its own tests
SCHEMA = json.loads((Path(__file__).parents[1] / "venvprune" / "report" / "schema.json").read_text())


def extension_source(name: str, body: str = "") -> str:
    return textwrap.dedent(
        f"""
        #include <Python.h>
        {body}
        static struct PyModuleDef def = {{PyModuleDef_HEAD_INIT, "{name}", NULL, -1, NULL}};
        PyMODINIT_FUNC PyInit_{name}(void) {{ return PyModule_Create(&def); }}
        """
    )


@dataclass(frozen=True)
class Python:
    executable: Path
    include: str
    extension_suffix: str


def describe_python(executable: Path) -> Python:
    code = (
        "import sysconfig, importlib.machinery as m\n"
        "print(sysconfig.get_paths()['include']); print(m.EXTENSION_SUFFIXES[0])"
    )
    out = subprocess.run([str(executable), "-I", "-c", code], capture_output=True, text=True, check=True).stdout
    include, suffix = out.split()
    return Python(executable, include, suffix)


def compile_extension(python: Python, work: Path, name: str, body: str = "", link: tuple[str, ...] = ()) -> bytes:
    source = work / f"{name}.c"
    source.write_text(extension_source(name, body))
    output = work / f"{name}{python.extension_suffix}"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O0", f"-I{python.include}", str(source), "-o", str(output), *link], check=True
    )
    return output.read_bytes()


def compile_library(work: Path, name: str, source: str, *flags: str) -> Path:
    """``gcc -shared`` of *source* (C) into *work*/*name*, with *flags* (``-L``, ``-l``, ``-Wl,...``)."""
    c_file = work / f"{name}.c"
    c_file.write_text(source)
    output = work / name
    subprocess.run(["gcc", "-shared", "-fPIC", "-O0", str(c_file), "-o", str(output), *flags], check=True)
    return output


def make_venv(python: Path, where: Path, wheels: list[Path]) -> Path:
    """A venv without pip (so only the fixture's distributions are checked), the wheels installed offline."""
    subprocess.run([str(python), "-m", "venv", "--without-pip", str(where)], check=True)
    # The tool's pip installs for the venv's interpreter (pip --python): no pip inside the venv to check too.
    # pip compiles bytecode; the bytecode category removes it, and the checks must not write it back.
    pip = [sys.executable, "-m", "pip", "--python", str(where / "bin" / "python"), "--disable-pip-version-check"]
    if wheels:
        subprocess.run([*pip, "install", "-q", "--no-index", "--no-deps", *map(str, wheels)], check=True)
    return where


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def run(*args: str) -> tuple[int, str, str]:
    """venvprune through click's runner: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def prune_json(*args: str) -> tuple[int, dict[str, Any], str]:
    """A prune with the JSON report on stdout, which must follow the shipped schema: (exit code, report, stderr)."""
    code, out, err = run(*NO_ELF, "--json", "-", "--jobs", "2", *args)
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    return code, report, err


def final_stage_check(
    venv: Path, *args: str, cwd: Path | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -B .venvprune/check.py`` as the README's final stage runs it."""
    checker = venv / ".venvprune" / "check.py"
    python = str(venv / "bin" / "python")
    return subprocess.run(
        [python, "-B", str(checker), *args], capture_output=True, text=True, cwd=cwd or venv, timeout=timeout
    )
