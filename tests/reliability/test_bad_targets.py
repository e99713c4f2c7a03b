"""Bad targets get one line naming the path and what to do, exit 2 (5 when locked), and not a byte changes.

System folders are only ever tried with ``--dry-run``: if a refusal were broken, nothing would be deleted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import (
    PHASE_LINE,
    Guard,
    assert_demo_works,
    assert_one_line_error,
    prune_command,
    reset,
    run_venvprune,
    site_packages,
    staging_left,
    tool_env,
)
from tests.site_builder import tree_digest

pytestmark = pytest.mark.integration

REFUSED = "refusing to prune a system or home directory; name the venv inside it"
NOT_A_VENV = "not a venv (no pyvenv.cfg)"


@pytest.mark.parametrize("system", ["/", "/usr", "/root", "/home"])
def test_system_folders_are_refused(system: str, tmp_path: Path, guard: Guard) -> None:
    result = run_venvprune("--dry-run", system, cwd=tmp_path)
    assert_one_line_error(result, 2, f"{system}: ", REFUSED)
    guard.check()


def test_the_home_directory_is_refused_even_when_it_looks_like_a_venv(tmp_path: Path, guard: Guard) -> None:
    home = tmp_path / "home-of-someone"
    (home / "lib" / "python3.11" / "site-packages" / "pkg" / "tests").mkdir(parents=True)
    (home / "pyvenv.cfg").write_text("home = /usr/bin\n")
    guard.plant(home / "lib" / "python3.11" / "site-packages")
    guard.twin(home)
    before = tree_digest(home)
    for args in (["--dry-run", str(home)], [str(home)]):
        result = run_venvprune(*args, cwd=tmp_path, env=tool_env({"HOME": str(home)}))
        assert_one_line_error(result, 2, f"{home}: ", REFUSED)
    assert tree_digest(home) == before
    guard.check()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such file or directory; name an existing venv or site-packages directory"),
        ("file", "is a file, not a directory; name a venv, a Python prefix or a site-packages directory"),
        ("empty", NOT_A_VENV),
        ("plain-folder", NOT_A_VENV),
    ],
)
def test_paths_that_are_not_venvs(kind: str, message: str, tmp_path: Path, guard: Guard) -> None:
    target = tmp_path / kind
    if kind == "file":
        target.write_text("just a file\n")
    elif kind == "empty":
        target.mkdir()
    elif kind == "plain-folder":  # tests/ and __pycache__/ but no venv, prefix or dist-info: not ours to prune
        (target / "tests").mkdir(parents=True)
        (target / "__pycache__").mkdir()
        (target / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\x00")
        guard.plant(target)
    if target.exists():
        guard.twin(target)
    before = tree_digest(tmp_path / "outside")
    for args in (["--dry-run", str(target)], [str(target)]):
        result = run_venvprune(*args, cwd=tmp_path)
        assert_one_line_error(result, 2, str(target), message)
    if target.is_dir():
        assert not staging_left(target)
    assert tree_digest(tmp_path / "outside") == before
    guard.check()


def _broken(venv: Path) -> None:
    for name in ("python", "python3"):
        (venv / "bin" / name).unlink()
    (venv / "bin" / "python").write_text("#!/bin/sh\necho 'this interpreter is broken' >&2\nexit 3\n")
    (venv / "bin" / "python").chmod(0o755)


def _not_executable(venv: Path) -> None:
    (venv / "bin" / "python").unlink()
    (venv / "bin" / "python").write_bytes(b"\x7fELF truncated")
    (venv / "bin" / "python").chmod(0o644)


def _missing(venv: Path) -> None:
    for python in (venv / "bin").glob("python*"):
        python.unlink()


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (_broken, "the target's interpreter fails (this interpreter is broken); repair or recreate the venv"),
        (_not_executable, "the target's interpreter does not run"),
        (_missing, "venv has no bin/python; recreate the venv or name its site-packages directory"),
    ],
    ids=["exits-with-an-error", "not-executable", "missing"],
)
def test_venv_with_a_broken_or_missing_interpreter(
    breakage: object, message: str, demo_archive: Path, tmp_path: Path, guard: Guard
) -> None:
    venv = reset(demo_archive, tmp_path / "venv")
    guard.plant(site_packages(venv))
    breakage(venv)  # type: ignore[operator]
    guard.twin(venv)
    before = tree_digest(venv)
    for args in (["--dry-run", str(venv)], [str(venv)]):
        result = run_venvprune(*args, cwd=tmp_path)
        assert_one_line_error(result, 2, str(venv), message)
    assert tree_digest(venv) == before
    guard.check()


def _start(venv: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        prune_command(*args, str(venv)),
        cwd=venv.parent,
        env=tool_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=600)
    return process.returncode, stderr


def test_a_second_venvprune_on_the_same_target_refuses_while_the_first_works(
    demo_archive: Path, tmp_path: Path, guard: Guard
) -> None:
    venv = reset(demo_archive, tmp_path / "venv")
    guard.plant(site_packages(venv))
    assert run_venvprune("-q", str(venv), cwd=tmp_path).returncode == 0
    pruned = tree_digest(venv)
    reset(demo_archive, venv)
    guard.plant(site_packages(venv))
    guard.twin(venv)

    # The first holds the lock from before its first phase to its end; catch it in the middle (its first line).
    # Its smoke check (run before and after the changes) keeps it there for seconds.
    first = _start(venv, "--smoke", "sleep 3")
    try:
        assert first.stderr is not None
        line = first.stderr.readline()
        assert PHASE_LINE.match(line), line
        for args in ([str(venv)], ["--dry-run", str(venv)]):
            second = run_venvprune(*args, cwd=tmp_path)
            assert_one_line_error(second, 5, f"{venv}: another venvprune is working on it; wait for it to finish")
        assert first.poll() is None, "the first finished before the second was refused: nothing was proven"
    finally:
        code, stderr = _finish(first)
    assert code == 0, line + stderr
    assert tree_digest(venv) == pruned

    # Started together, again and again: one works, the other refuses (or, if the first was already done, finds
    # nothing to do); never two at once, so the venv always ends as one clean prune leaves it.
    outcomes = []
    for _ in range(4):
        reset(demo_archive, venv)
        guard.plant(site_packages(venv))
        pair = [_start(venv), _start(venv)]
        results = [_finish(p) for p in pair]
        codes = sorted(code for code, _ in results)
        outcomes.append(tuple(codes))
        assert codes in ([0, 5], [0, 0]), results
        for code, stderr in results:
            if code == 5:
                assert "another venvprune is working on it; wait for it to finish" in stderr
        assert tree_digest(venv) == pruned
        assert not staging_left(venv)
    assert (0, 5) in outcomes, outcomes
    assert_demo_works(venv)
    guard.check()


def test_a_stale_lock_does_not_exist(demo_archive: Path, tmp_path: Path, guard: Guard) -> None:
    """The lock is flock(2) on the target folder: a killed holder releases it; no lock file is left to clean."""
    venv = reset(demo_archive, tmp_path / "venv")
    guard.plant(site_packages(venv))
    guard.twin(venv)
    first = _start(venv)
    assert first.stderr is not None
    assert PHASE_LINE.match(first.stderr.readline())
    first.kill()
    first.wait()
    first.stderr.close()
    time.sleep(0.1)
    result = run_venvprune(str(venv), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not [p for p in os.listdir(venv) if "lock" in p.lower()]
    assert_demo_works(venv)
    shutil.rmtree(venv)
    guard.check()
