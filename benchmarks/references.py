"""The reference venvs of the benchmark, built once into a cache folder and then only read.

- ``data``: pandas, numpy, scipy, matplotlib, scikit-learn, pyarrow;
- ``ml``: CPU torch 2.13.0 (installed first, alone, so nothing else picks another build), transformers,
  sentence-transformers, fastapi, psycopg2-binary, pypdf;
- ``synthetic-N``: a venv without pip whose site-packages holds N files in N/10 directories, N/200 distributions
  of the same shape (see :func:`build_synthetic`).

A venv is built in ``NAME.building`` and renamed to ``NAME`` when complete, so a folder under its final name is whole.
A folder someone else made under that name is used when every requirement is installed in it, and never changed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SYNTHETIC_SOURCE = r"""
#include <string.h>
static const char table[] = "synthetic native helper of the venvprune benchmark";
int synth_checksum(const char *text) { int s = 0; while (*text) s = s * 31 + *text++; return s; }
int synth_table_length(void) { return (int)strlen(table); }
"""


@dataclass(frozen=True)
class Reference:
    name: str  # the folder in the cache
    description: str
    installs: tuple[tuple[str, ...], ...]  # pip install steps, in order


REFERENCES = {
    "data": Reference(
        "venv-data",
        "pandas, numpy, scipy, matplotlib, scikit-learn, pyarrow",
        (("pandas", "numpy", "scipy", "matplotlib", "scikit-learn", "pyarrow"),),
    ),
    "ml": Reference(
        "venv-ml",
        "CPU torch 2.13.0, transformers, sentence-transformers, fastapi, psycopg2-binary, pypdf",
        (("torch==2.13.0",), ("transformers", "sentence-transformers", "fastapi", "psycopg2-binary", "pypdf")),
    ),
}


class CacheError(Exception):
    """A reference venv cannot be used or built; the message names the folder and what to do."""


def reference_venv(key: str, cache: Path, python: str, torch_index_url: str | None) -> Path:
    reference = REFERENCES[key]
    venv = cache / reference.name
    requirements = [r for step in reference.installs for r in step]
    if venv.exists():
        missing = _missing(venv, requirements)
        if missing:
            raise CacheError(
                f"{venv}: exists but lacks {', '.join(missing)} (still being built, or broken); "
                "wait for its build or remove the folder so the benchmark builds it"
            )
        return venv
    building = cache / (reference.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    print(f"building {venv} ({reference.description}) ...", file=sys.stderr)
    subprocess.run([python, "-m", "venv", str(building)], check=True)
    pip = [str(building / "bin" / "python"), "-m", "pip", "install", "-q"]
    for step in reference.installs:
        extra = ["--extra-index-url", torch_index_url] if torch_index_url and step[0].startswith("torch") else []
        subprocess.run([*pip, *extra, *step], check=True)
    missing = _missing(building, requirements)
    if missing:
        raise CacheError(f"{building}: pip finished but {', '.join(missing)} is not installed")
    building.rename(venv)
    return venv


def _missing(venv: Path, requirements: list[str]) -> list[str]:
    """Requirements (``name`` or ``name==version``) not installed in *venv*, asked of its own interpreter."""
    query = (
        "import sys, importlib.metadata as m\n"
        "for r in sys.argv[1:]:\n"
        "    name, _, version = r.partition('==')\n"
        "    try:\n"
        "        found = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        found = None\n"
        "    if found is None or (version and found != version and not found.startswith(version + '+')):\n"
        "        print(r)\n"
    )
    python = venv / "bin" / "python"
    if not python.exists():
        return requirements
    completed = subprocess.run(
        [str(python), "-I", "-B", "-c", query, *requirements], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        return requirements
    return completed.stdout.split()


def distributions(venv: Path) -> list[str]:
    """``name==version`` of every distribution in *venv*, from its dist-info folder names."""
    found = []
    for dist_info in sorted(venv.glob("lib/python*/site-packages/*.dist-info")):
        name, _, version = dist_info.name[: -len(".dist-info")].partition("-")
        found.append(f"{name}=={version}")
    return found


# -- the synthetic tree ------------------------------------------------------------------------------------------

FILES_PER_DISTRIBUTION = 200
DIRECTORIES_PER_DISTRIBUTION = 20
SUBPACKAGES = 6
MODULES_PER_SUBPACKAGE = 11  # plus its __init__.py
TEST_MODULES = 9  # plus tests/__init__.py
TEST_DATA_FILES = 4
DATA_FILES = 24
ELF_EVERY = 5  # one distribution in five ships a small shared library (gcc -g, so it has symbols to cut)
READS_OWN_VERSION_EVERY = 10  # importlib.metadata.version() at import time: needs its dist-info
IMPORTS_OWN_TESTS_EVERY = 50  # runtime code imports its own tests package (as networkx once did)


def synthetic_venv(files: int, cache: Path, python: str) -> Path:
    venv = cache / f"synthetic-{files}"
    if venv.exists():
        return venv
    building = cache / f"synthetic-{files}.building"
    shutil.rmtree(building, ignore_errors=True)
    print(f"building {venv} ({files:,} files) ...", file=sys.stderr)
    build_synthetic(building, files, python)
    building.rename(venv)
    return venv


def build_synthetic(venv: Path, files: int, python: str) -> None:
    """A venv whose site-packages holds *files* files in *files*/10 directories.

    Each distribution (``synthNNNNN``) has 200 files in 20 directories, as pip leaves them: a package of six
    subpackages of twelve modules, ``__pycache__`` beside every package (compiled by the venv's own Python), a
    ``tests`` package with its ``__pycache__`` and data, package data, a ``_lib`` folder holding a gcc-built shared
    library (every fifth distribution; a text file in the others) and a dist-info with METADATA, WHEEL, INSTALLER,
    top_level.txt and a RECORD that lists every file with its hash. Every tenth distribution reads its own version
    with importlib.metadata when imported, every fiftieth imports its own tests package from runtime code.
    """
    if files < FILES_PER_DISTRIBUTION or files % FILES_PER_DISTRIBUTION:
        raise CacheError(f"synthetic trees have a multiple of {FILES_PER_DISTRIBUTION} files, not {files}")
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site_packages,) = venv.glob("lib/python*/site-packages")
    rng = random.Random(files)
    with tempfile.TemporaryDirectory() as scratch:
        library = _compile_library(Path(scratch))
        for number in range(files // FILES_PER_DISTRIBUTION):
            _write_distribution(site_packages, number, rng, library)
    # Bytecode as pip writes it: by the venv's interpreter, beside every module.
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "compileall", "-q", "-j", "0", str(site_packages)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    for dist_info in site_packages.glob("*.dist-info"):
        _write_record(site_packages, dist_info)


def _compile_library(directory: Path) -> bytes:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise CacheError("gcc not found: the synthetic tree ships small gcc-built shared libraries; install gcc")
    source = directory / "synth.c"
    source.write_text(SYNTHETIC_SOURCE)
    output = directory / "libsynth.so"
    subprocess.run([compiler, "-g", "-O1", "-shared", "-fPIC", "-o", str(output), str(source)], check=True)
    return output.read_bytes()


def _write_distribution(site_packages: Path, number: int, rng: random.Random, library: bytes) -> None:
    name = f"synth{number:05d}"
    package = site_packages / name
    files: dict[str, bytes] = {}
    init = f'"""Synthetic package {name} of the venvprune benchmark."""\n'
    if number % READS_OWN_VERSION_EVERY == 0:
        init += f'import importlib.metadata\n__version__ = importlib.metadata.version("{name}")\n'
    init += "".join(f"from {name} import sub{s}\n" for s in range(SUBPACKAGES))
    files["__init__.py"] = init.encode()
    for sub in range(SUBPACKAGES):
        files[f"sub{sub}/__init__.py"] = (
            "".join(f"from . import mod{m:02d}\n" for m in range(MODULES_PER_SUBPACKAGE))
        ).encode()
        for module in range(MODULES_PER_SUBPACKAGE):
            files[f"sub{sub}/mod{module:02d}.py"] = _module_source(name, sub, module, rng)
    if number % IMPORTS_OWN_TESTS_EVERY == 0:
        files["sub0/mod00.py"] += f"from {name}.tests import helpers as _helpers\n".encode()
    files["tests/__init__.py"] = b""
    files["tests/helpers.py"] = b"def expected(value):\n    return value * 2\n"
    for test in range(TEST_MODULES - 1):
        files[f"tests/test_case{test}.py"] = (
            f"from {name}.sub{test % SUBPACKAGES} import mod00\nfrom {name}.tests import helpers\n\n\n"
            f"def test_case():\n    assert helpers.expected(1) == 2\n"
        ).encode()
    for data in range(TEST_DATA_FILES):
        files[f"tests/data/case{data}.json"] = _data(rng, 400, 2000)
    for data in range(DATA_FILES):
        files[f"data/table{data:02d}.csv"] = _data(rng, 200, 4000)
    if number % ELF_EVERY == 0:
        files[f"_lib/lib{name}.so"] = library
    else:
        files["_lib/NOTICE.txt"] = b"The native helper is built on some platforms only.\n"
    for rel, content in files.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    if number % ELF_EVERY == 0:
        os.chmod(package / f"_lib/lib{name}.so", 0o755)
    dist_info = site_packages / f"{name}-1.{number % 7}.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.{number % 7}.0\nSummary: synthetic package\n"
    )
    (dist_info / "WHEEL").write_text("Wheel-Version: 1.0\nGenerator: venvprune-benchmark\nRoot-Is-Purelib: true\n")
    (dist_info / "INSTALLER").write_text("pip\n")
    (dist_info / "top_level.txt").write_text(name + "\n")


def _module_source(package: str, sub: int, module: int, rng: random.Random) -> bytes:
    constants = "\n".join(f"CONSTANT_{i} = {rng.randrange(10**6)}" for i in range(8))
    functions = "\n\n".join(
        f"def function_{i}(value, factor={rng.randrange(2, 9)}):\n"
        f'    """Scale *value* ({package}.sub{sub}.mod{module:02d}, function {i})."""\n'
        f"    total = value * factor + CONSTANT_{i % 8}\n"
        f"    return [total + k for k in range({rng.randrange(2, 6)})]"
        for i in range(6)
    )
    return f'"""Module {module} of {package}.sub{sub}."""\n\nimport os\n\n{constants}\n\n\n{functions}\n'.encode()


def _data(rng: random.Random, low: int, high: int) -> bytes:
    return "\n".join(
        ",".join(str(rng.randrange(1000)) for _ in range(8)) for _ in range(rng.randrange(low, high) // 32)
    ).encode()


def _write_record(site_packages: Path, dist_info: Path) -> None:
    package = site_packages / dist_info.name.split("-")[0]
    rows = []
    for path in sorted(p for p in package.rglob("*") if p.is_file()) + sorted(dist_info.iterdir()):
        data = path.read_bytes()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{path.relative_to(site_packages).as_posix()},sha256={digest},{len(data)}")
    rows.append(f"{dist_info.name}/RECORD,,")
    (dist_info / "RECORD").write_text("\n".join(rows) + "\n")
