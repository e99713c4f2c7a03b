"""venvprune.elf on real wheels from PyPI: numpy for this interpreter (stripped in a real venv, then loaded
and used), and shared objects built for aarch64 and for musl.

The wheels are downloaded at test time; without PyPI these tests fail, they do not skip (CI has PyPI).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests import elf_helpers as h
from venvprune import elf

pytestmark = pytest.mark.integration

EXPECTED_SKIPS = ("already stripped", "nothing removable after the last segment")


def download(directory: Path, requirement: str, *platform: str) -> Path:
    """``pip download`` one binary wheel; a failure (offline, no such wheel) fails the test loudly."""
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(directory),
    ]
    result = subprocess.run([*command, *platform, requirement], capture_output=True, text=True, check=False)
    assert result.returncode == 0, (
        f"pip download {requirement} {platform} failed (is PyPI reachable?):\n{result.stderr}"
    )
    wheels = sorted(directory.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def strip_in_place(path: Path) -> elf.ElfFacts:
    """Strip *path* the way the apply step does: a new file renamed over the old one, mode preserved."""
    facts = elf.inspect(path)
    if facts.skip_reason is None:
        new = path.with_name(path.name + ".new")
        elf.write_stripped(path, new, facts)
        os.chmod(new, path.stat().st_mode & 0o7777)
        os.replace(new, path)
    return facts


def strip_and_check_copies(root: Path, scratch: Path) -> dict[str, int]:
    """Strip a copy of every ELF file under *root*; check the invariant and readelf. Returns reason counts."""
    outcomes: dict[str, int] = {}
    scratch.mkdir(parents=True, exist_ok=True)
    for number, path in enumerate(h.elf_files(root)):
        facts = elf.inspect(path)
        reason = facts.skip_reason or "stripped"
        outcomes[reason] = outcomes.get(reason, 0) + 1
        if facts.skip_reason is not None:
            assert facts.skip_reason in EXPECTED_SKIPS, (path, facts.skip_reason)
            continue
        stripped = scratch / f"{number}-{path.name}"
        elf.write_stripped(path, stripped, facts)
        h.check_invariant(path, stripped, facts)
        assert h.new_readelf_warnings(path, stripped) == [], path
        h.reparse_with_pyelftools(stripped)
    return outcomes


def unpack(wheel: Path, destination: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(destination)
    return destination


def test_numpy_still_loads_and_computes_after_stripping_its_venv(tmp_path: Path) -> None:
    wheel = download(tmp_path / "wheels", "numpy")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], check=True)
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    numpy_files = [p for p in h.elf_files(site_packages) if p.relative_to(site_packages).parts[0].startswith("numpy")]
    assert any(p.parent.name == "numpy.libs" for p in numpy_files), "the manylinux wheel vendors numpy.libs"

    # Check every file against a pristine copy first, then strip the venv's files in place.
    pristine = unpack(wheel, tmp_path / "pristine")
    outcomes = strip_and_check_copies(pristine, tmp_path / "checked")
    assert outcomes.get("stripped", 0) > 0, outcomes
    stripped = [p for p in numpy_files if strip_in_place(p).skip_reason is None]
    assert stripped, "numpy ships symbol tables after its segments"

    check = (
        "import ctypes, pathlib, sys\n"
        "libs = pathlib.Path(sys.argv[1]) / 'numpy.libs'\n"
        "for library in sorted(libs.iterdir(), key=lambda p: 'openblas' in p.name):\n"
        "    ctypes.CDLL(str(library))\n"
        "import numpy\n"
        "a = numpy.arange(12.0).reshape(3, 4)\n"
        "assert numpy.dot(a, a.T)[2, 2] == 8*8 + 9*9 + 10*10 + 11*11\n"
        "m = numpy.array([[4.0, 7.0], [2.0, 6.0]])\n"
        "assert numpy.allclose(numpy.linalg.inv(m) @ m, numpy.eye(2))\n"
        "print('ok', numpy.__version__)\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [str(python), "-c", check, str(site_packages)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")


@pytest.mark.parametrize(
    "platform",
    ["manylinux2014_aarch64", "musllinux_1_2_x86_64"],
)
def test_foreign_shared_objects_keep_the_invariant(tmp_path: Path, platform: str) -> None:
    wheel = download(tmp_path / "wheels", "numpy", "--platform", platform)
    outcomes = strip_and_check_copies(unpack(wheel, tmp_path / "unpacked"), tmp_path / "stripped")
    assert outcomes.get("stripped", 0) > 0, outcomes


def test_musllinux_extension_without_vendored_libraries(tmp_path: Path) -> None:
    # A small musl wheel that auditwheel did not need to patch: its extension keeps ld's layout.
    wheel = download(tmp_path / "wheels", "markupsafe", "--platform", "musllinux_1_2_x86_64")
    outcomes = strip_and_check_copies(unpack(wheel, tmp_path / "unpacked"), tmp_path / "stripped")
    assert outcomes == {"stripped": 1}, outcomes
