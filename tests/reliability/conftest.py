"""What the reliability tests (issue 5) share: how venvprune is run, the guards every test keeps, and the venvs.

The guards: a sentinel folder outside the target (its own ``tests/``, ``__pycache__/``, a ``.so`` with symbols and a
RECORD) that symlinks inside the target point to, and a hard-linked twin of the target (``cp -al``, as uv links a
venv to its cache). Every test ends with :meth:`Guard.check`: both must be byte-identical to what they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.elf_helpers import extension_module, shared_library
from tests.site_builder import tree_digest
from tests.wheel_builder import build_wheel, pip_install
from venvprune.target import MANIFEST_DIR_NAME

REPO = Path(__file__).resolve().parents[2]

# The whole prune: ELF stripping and verification included. Until both had landed the suite ran with
# ("--no-verify", "--exclude", "debug-symbols"); this is the one place to put such flags back.
PRUNE_FLAGS: tuple[str, ...] = ()

STAGING = ".venvprune-staging"
PHASE_LINE = re.compile(r"^venvprune: ([a-z-]+) \d+\.\d s")  # one line per phase on stderr when it is not a TTY

Digest = dict[str, tuple[str, str]]


# -- running venvprune ---------------------------------------------------------------------------------------------


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a venvprune subprocess: this checkout importable, no PYTHON* surprises."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def prune_command(*args: str, python: str | None = None) -> list[str]:
    """``venvprune [PRUNE_FLAGS] ARGS``; the flags come first so that ARGS may end with the target."""
    return [python or sys.executable, "-m", "venvprune", *PRUNE_FLAGS, *args]


def run_venvprune(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a prune to its end. *cwd* is a folder without a pyproject.toml, so no stray [tool.venvprune] applies."""
    return subprocess.run(
        prune_command(*args),
        cwd=cwd,
        env=env or tool_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """Exit *code*, and on stderr one ``venvprune: error: ...`` line holding every fragment; never a traceback."""
    assert result.returncode == code, f"exit {result.returncode}, wanted {code}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("venvprune: error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert "internal error" not in result.stderr, result.stderr


def spellings(path: Path, venv: Path) -> set[str]:
    """The ways a report may show *path*: relative to its site-packages, to the target, or in full."""
    forms = {str(path)}
    for base in (venv, *venv.glob("lib*/python3*/site-packages")):
        with contextlib.suppress(ValueError):
            forms.add(str(path.relative_to(base)))
    return forms


def report_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON report a ``--json -`` run printed on stdout."""
    try:
        return json.loads(result.stdout)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise AssertionError(f"no JSON report (exit {result.returncode}):\n{result.stderr}") from exc


# -- venvs ---------------------------------------------------------------------------------------------------------


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def archive(venv: Path, destination: Path) -> Path:
    with tarfile.open(destination, "w") as tar:
        tar.add(venv, arcname=venv.name)
    return destination


def reset(archive_path: Path, venv: Path) -> Path:
    """Put *venv* back, at the same path, exactly as archived (absolute symlinks out of it included)."""
    if os.path.lexists(venv):
        make_writable(venv)
        shutil.rmtree(venv)
    with tarfile.open(archive_path) as tar:
        if hasattr(tarfile, "fully_trusted_filter"):  # our own archive: keep its symlinks out of the target
            tar.extractall(venv.parent, filter="fully_trusted")
        else:
            tar.extractall(venv.parent)
    return venv


def make_writable(root: Path) -> None:
    """Undo what permission tests did, so that the folder can be deleted."""
    for directory, dirnames, _ in os.walk(root):
        for name in dirnames:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)


def venv_digest(venv: Path) -> Digest:
    """:func:`tree_digest`, except that the manifest's checks count as a set.

    The verification lists its checks in the order the target's importlib.metadata finds distributions, which is
    the order of the file system's directory listing; a second prune of a pruned venv may list the same checks in
    another order. Everything else is compared byte for byte.
    """
    digest = tree_digest(venv)
    manifest = venv / MANIFEST_DIR_NAME / "manifest.json"
    key = os.path.relpath(manifest, venv)
    if key in digest and digest[key][0] == "file":
        data = json.loads(manifest.read_text(encoding="utf-8"))
        data["checks"] = sorted(data.get("checks", []), key=lambda c: json.dumps(c, sort_keys=True))
        digest[key] = ("manifest", hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest())
    return digest


def staging_left(venv: Path) -> bool:
    return os.path.lexists(venv / STAGING)


# -- guards --------------------------------------------------------------------------------------------------------


class Guard:
    """A sentinel folder outside the target, symlinks to it from inside, and hard-linked twins of targets."""

    def __init__(self, where: Path, library: Path) -> None:
        self.sentinel = where / "sentinel"
        (self.sentinel / "tests").mkdir(parents=True)
        (self.sentinel / "tests" / "test_outside.py").write_text("def test():\n    pass\n")
        shutil.copy2(library, self.sentinel / "tests" / "_outside.so")
        shutil.copy2(library, self.sentinel / "libsymbols.so")
        (self.sentinel / "__pycache__").mkdir()
        (self.sentinel / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\x00" * 32)
        (self.sentinel / "mod.py").write_text("X = 1\n")
        (self.sentinel / "mod.pyc").write_bytes(b"\x00" * 16)
        (self.sentinel / "outside-1.0.dist-info").mkdir()
        (self.sentinel / "outside-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: outside\n")
        (self.sentinel / "outside-1.0.dist-info" / "RECORD").write_text("mod.py,,\ntests/test_outside.py,,\n")
        self._sentinel_digest = tree_digest(self.sentinel)
        self._twins: list[tuple[Path, Digest]] = []

    def plant(self, site: Path) -> None:
        """Symlinks out of *site* to the sentinel: a package-like folder, a ``tests`` and a ``.so``."""
        (site / "outside_pkg").symlink_to(self.sentinel, target_is_directory=True)
        (site / "outside_lib.so").symlink_to(self.sentinel / "libsymbols.so")

    def twin(self, target: Path, where: Path | None = None) -> Path:
        """A hard-linked copy of *target* (``cp -al``) in *where* (its folder's by default); see :meth:`check`."""
        twin = (where or target.parent) / f"{target.name}-twin-{len(self._twins)}"
        subprocess.run(["cp", "-al", str(target), str(twin)], check=True)
        self._twins.append((twin, tree_digest(twin)))
        return twin

    @contextlib.contextmanager
    def twinned(self, target: Path) -> Iterator[Path]:
        """A twin for the length of one trial: checked, then removed."""
        twin = self.twin(target)
        yield twin
        digest = self._twins.pop()[1]
        assert tree_digest(twin) == digest, f"{twin}: the hard-linked twin changed"
        shutil.rmtree(twin)

    def check(self) -> None:
        assert tree_digest(self.sentinel) == self._sentinel_digest, f"{self.sentinel} changed"
        for twin, digest in self._twins:
            assert tree_digest(twin) == digest, f"{twin}: the hard-linked twin changed"


@pytest.fixture(scope="session")
def symbols_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real shared library with a symbol table and debug sections (gcc -g), for sentinels and fixtures."""
    return shared_library(tmp_path_factory.mktemp("elf"), "libsymbols.so")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount small tmpfs file systems (``size`` as mount(8) takes it) under *tmp_path*; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"tmpfs-{len(mounted)}"
        point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture
def guard(tmp_path: Path, symbols_library: Path) -> Guard:
    outside = tmp_path / "outside"
    outside.mkdir()
    return Guard(outside, symbols_library)


# -- a small venv of wheels built here (fast) ------------------------------------------------------------------------

DEMO_FILES: dict[str, str] = {
    "demo/__init__.py": "from importlib.metadata import version\n__version__ = version('demo')\n",
    "demo/core.py": "def answer():\n    return 42\n",
    "demo/tests/__init__.py": "",
    "demo/tests/test_core.py": "from demo.core import answer\n\ndef test_answer():\n    assert answer() == 42\n",
    "demo/testing/__init__.py": "def check(x):\n    assert x == 42\n",
    "demo/sub/__init__.py": "",
    "demo/sub/tests/__init__.py": "",
    "demo/sub/tests/test_sub.py": "def test():\n    pass\n",
    "demo/data.txt": "payload\n",
}
DEMO_CHECK = (
    "import demo, demo.core, demo.testing, demo._vpext as ext, importlib.metadata as md\n"
    "assert demo.__version__ == '1.0' and demo.core.answer() == 42 and ext.add(2, 3) == 5\n"
    "assert md.version('demo') == '1.0'\n"
    "print('ok')\n"
)


@pytest.fixture(scope="session")
def demo_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real venv (no pip) with one wheel: tests dirs, bytecode, a C extension with debug symbols, a RECORD."""
    work = tmp_path_factory.mktemp("demo")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    extension = extension_module(work)
    files: dict[str, Any] = dict(DEMO_FILES)
    files[f"demo/{extension.name}"] = extension.read_bytes()
    wheel = build_wheel(work, "demo", files, top_level="demo\n")
    pip_install(venv, wheel)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "pip", "setuptools"], check=True)
    subprocess.run([str(python), "-m", "compileall", "-q", str(venv / "lib")], check=True)
    return archive(venv, work / "demo-venv.tar")


def assert_demo_works(venv: Path) -> None:
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-B", "-c", DEMO_CHECK], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "ok", result.stderr


# -- a venv of real packages from PyPI (ELF files, tests dirs, bytecode), and its clean prune ------------------------

PYPI_PACKAGES = ("numpy", "pyyaml", "markupsafe", "psutil", "simplejson")
PYPI_CHECK = (
    "import numpy, numpy.linalg, yaml, _yaml, markupsafe._speedups, psutil, simplejson._speedups\n"
    "assert numpy.linalg.inv(numpy.eye(3) * 2)[0, 0] == 0.5\n"
    "assert yaml.load('a: [1, 2]', Loader=yaml.CSafeLoader) == {'a': [1, 2]}\n"
    "assert str(markupsafe.escape('<')) == '&lt;' and psutil.cpu_count() > 0\n"
    "assert simplejson.loads('[1]') == [1]\n"
    "import importlib.metadata as md\n"
    "assert all(md.version(d.metadata['Name']) for d in md.distributions())\n"
    "print('ok')\n"
)


@dataclass(frozen=True)
class RealVenv:
    """A venv from PyPI archived at its path, the digests before and after a clean prune, and that run's timings."""

    venv: Path
    archive: Path
    guard: Guard
    before: Digest
    pruned: Digest
    report: dict[str, Any]
    wall_seconds: float

    @property
    def phases(self) -> list[tuple[str, float]]:
        """``startup`` (interpreter, target query, report: the time outside the timed phases), then each phase."""
        timed = [(t["phase"], float(t["seconds"])) for t in self.report["timings"]]
        startup = max(self.wall_seconds - sum(s for _, s in timed), 0.0)
        return [("startup", startup), *timed]

    def reset(self) -> Path:
        return reset(self.archive, self.venv)


def assert_pypi_works(venv: Path) -> None:
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-B", "-c", PYPI_CHECK], capture_output=True, text=True, timeout=300
    )
    assert result.stdout.strip() == "ok", result.stderr


@pytest.fixture(scope="session")
def real_venv(tmp_path_factory: pytest.TempPathFactory, symbols_library: Path) -> RealVenv:
    work = tmp_path_factory.mktemp("pypi")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", *PYPI_PACKAGES], check=True, timeout=900)
    # pip and setuptools are big import checks of no interest here; leaving them out keeps each trial short.
    subprocess.run([python, "-m", "pip", "uninstall", "-q", "-y", "pip", "setuptools"], check=True)
    outside = work / "outside"
    outside.mkdir()
    guard = Guard(outside, symbols_library)
    guard.plant(site_packages(venv))
    tar = archive(venv, work / "venv.tar")
    before = venv_digest(venv)
    assert_pypi_works(venv)

    started = time.monotonic()
    result = run_venvprune("--json", "-", str(venv), cwd=work)
    wall = time.monotonic() - started
    report = report_of(result)
    assert result.returncode == 0 and report["status"] == "success", result.stderr
    assert not staging_left(venv)
    pruned = venv_digest(venv)
    assert pruned != before
    assert_pypi_works(venv)
    guard.check()
    # Deterministic: a second clean prune of the same bytes at the same path leaves the same bytes.
    reset(tar, venv)
    again = run_venvprune("-q", str(venv), cwd=work)
    assert again.returncode == 0, again.stderr
    assert venv_digest(venv) == pruned, "two clean prunes of the same venv differ"
    # And pruning a pruned venv changes nothing (the next run after a kill in the commit does exactly that).
    third = run_venvprune("-q", str(venv), cwd=work)
    assert third.returncode == 0, third.stderr
    assert venv_digest(venv) == pruned, "a prune of a pruned venv changed it"
    return RealVenv(venv, tar, guard, before, pruned, report, wall)


def phase_in_progress(ended: Sequence[str], order: Sequence[str]) -> str:
    """The phase running after the phases in *ended* finished (``startup`` before the first)."""
    if not ended:
        return "startup"
    index = order.index(ended[-1])
    return order[index + 1] if index + 1 < len(order) else "report"
