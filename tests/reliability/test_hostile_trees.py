"""Hostile trees inside a real venv: symlinks out and in loops, ``lib64 -> lib``, a ``cp -al`` twin, names that are
not UTF-8, a 300-level tree, a 0-byte ``.so``, text that starts with ``\\x7fELF``, a ``tests`` that is a file or a
symlink. Each is pruned for real (stripping and verification included); nothing outside the target changes, the
hostile entries are left as they were, and the venv still works."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.reliability.conftest import (
    Guard,
    assert_demo_works,
    assert_no_traceback,
    report_of,
    reset,
    run_venvprune,
    site_packages,
    staging_left,
)
from tests.site_builder import tree_digest

pytestmark = pytest.mark.integration

Digest = dict[str, tuple[str, str]]


def prune(venv: Path) -> dict[str, Any]:
    result = run_venvprune("--json", "-", str(venv), cwd=venv.parent)
    assert_no_traceback(result)
    report = report_of(result)
    assert result.returncode == 0 and report["status"] == "success", result.stderr
    assert not staging_left(venv)
    return report


def pruned_demo(venv: Path) -> None:
    """What a prune of the demo package always does, hostile neighbours or not."""
    site = site_packages(venv)
    assert not (site / "demo" / "tests").exists()
    assert not list(site.rglob("__pycache__"))
    assert (site / "demo" / "testing" / "__init__.py").is_file()
    assert_demo_works(venv)


def unchanged(before: Digest, after: Digest, prefix: str) -> None:
    """Every entry under *prefix* (relative to the venv) is as it was, byte for byte or link for link."""
    expected = {k: v for k, v in before.items() if k == prefix or k.startswith(prefix + "/")}
    assert expected, f"nothing under {prefix}"
    assert {k: after.get(k) for k in expected} == expected


@pytest.fixture
def venv(demo_archive: Path, tmp_path: Path, guard: Guard) -> Path:
    venv = reset(demo_archive, tmp_path / "venv")
    guard.plant(site_packages(venv))
    return venv


def test_symlinks_out_of_the_target_are_never_followed(venv: Path, guard: Guard) -> None:
    site = site_packages(venv)
    demo = site / "demo"
    # Out, to a folder with its own tests/, __pycache__/ and .so: as a package, as `tests`, as `test`, as a .so.
    (demo / "sub" / "test").symlink_to(guard.sentinel / "tests", target_is_directory=True)
    (demo / "vendored").symlink_to(guard.sentinel, target_is_directory=True)
    (demo / "_native.so").symlink_to(guard.sentinel / "libsymbols.so")
    outside_pyc = guard.sentinel / "__pycache__" / "mod.cpython-311.pyc"
    (demo / "__pycache__" / "outside.cpython-311.pyc").symlink_to(outside_pyc)
    guard.twin(venv)
    before = tree_digest(venv)
    prune(venv)
    after = tree_digest(venv)
    for name in ("sub/test", "vendored", "_native.so"):
        unchanged(before, after, f"{site.relative_to(venv)}/demo/{name}")
    pruned_demo_except_links(venv)
    guard.check()


def pruned_demo_except_links(venv: Path) -> None:
    site = site_packages(venv)
    assert not (site / "demo" / "tests").exists()
    assert_demo_works(venv)


def test_symlink_loops(venv: Path, guard: Guard) -> None:
    demo = site_packages(venv) / "demo"
    (demo / "loop_a").symlink_to("loop_b")
    (demo / "loop_b").symlink_to("loop_a")
    (demo / "itself").symlink_to("itself")
    (demo / "parent").symlink_to("..", target_is_directory=True)  # a directory loop: demo/parent/demo/parent/...
    (demo / "sub" / "tests" / "up").symlink_to("../..", target_is_directory=True)  # inside a tests dir that goes
    (demo / "testing" / "root").symlink_to("/", target_is_directory=True)
    guard.twin(venv)
    before = tree_digest(venv)
    prune(venv)
    after = tree_digest(venv)
    rel = site_packages(venv).relative_to(venv) / "demo"
    for name in ("loop_a", "loop_b", "itself", "parent", "testing/root"):
        unchanged(before, after, f"{rel}/{name}")
    pruned_demo(venv)
    guard.check()


def test_lib64_symlink_is_one_site_packages_not_two(venv: Path, guard: Guard) -> None:
    lib64 = venv / "lib64"
    if not lib64.is_symlink():
        lib64.symlink_to("lib", target_is_directory=True)
    guard.twin(venv)
    report = prune(venv)
    actions = [str(a["path"]) for a in report["actions"]]
    assert len(actions) == len(set(actions))
    assert not [a for a in actions if "/lib64/" in a]
    assert os.readlink(lib64) == "lib"
    pruned_demo(venv)
    guard.check()


def test_hard_linked_copy_made_with_cp_al_stays_byte_identical_and_working(venv: Path, guard: Guard) -> None:
    twin = guard.twin(venv)
    shared = [p for p in twin.rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_nlink > 1]
    assert len(shared) > 10
    prune(venv)
    pruned_demo(venv)
    guard.check()
    assert_demo_works(twin)  # the other venv still has everything, its RECORD and its unstripped extension


def test_names_that_are_not_utf8(venv: Path, guard: Guard) -> None:
    demo = os.fsencode(site_packages(venv) / "demo")
    odd = demo + b"/caf\xe9"
    os.makedirs(odd + b"/tests")
    os.makedirs(odd + b"/__pycache__")
    for path, content in {
        odd + b"/__init__.py": b"",
        odd + b"/mod\xff.py": b"x = 1\n",
        odd + b"/tests/__init__.py": b"",
        odd + b"/tests/test_\xfe.py": b"def test(): pass\n",
        odd + b"/__pycache__/mod\xff.cpython-311.pyc": b"\x00" * 16,
        demo + b"/data\x80.txt": b"kept\n",
    }.items():
        with open(path, "wb") as handle:
            handle.write(content)
    guard.twin(venv)
    result = run_venvprune(str(venv), cwd=venv.parent)  # the text report too, not only JSON
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    report = prune(venv)  # a second run: nothing left, and its JSON is valid
    json.dumps(report)
    assert not os.path.lexists(odd + b"/tests")
    assert not os.path.lexists(odd + b"/__pycache__")
    assert os.path.isfile(odd + b"/mod\xff.py")
    assert os.path.isfile(demo + b"/data\x80.txt")
    pruned_demo(venv)
    guard.check()


def test_a_300_level_tree(venv: Path, guard: Guard) -> None:
    deep = site_packages(venv) / "demo" / "deep"
    bottom = deep.joinpath(*["d"] * 300)
    (bottom / "tests").mkdir(parents=True)
    (bottom / "__pycache__").mkdir()
    (bottom / "tests" / "test_deep.py").write_text("def test(): pass\n")
    (bottom / "deep.py").write_text("X = 1\n")
    (bottom / "__pycache__" / "deep.cpython-311.pyc").write_bytes(b"\x00" * 16)
    guard.twin(venv)
    prune(venv)
    assert (bottom / "deep.py").read_text() == "X = 1\n"
    assert not (bottom / "__pycache__").exists()
    pruned_demo(venv)
    guard.check()


Maker = Callable[[Path], None]


def _empty_so(demo: Path) -> None:
    (demo / "empty.so").write_bytes(b"")


def _text_that_looks_like_elf(demo: Path) -> None:
    (demo / "fake.so").write_bytes(b"\x7fELF but this is a text file, not an ELF object\n" * 3)
    (demo / "notes.txt").write_bytes(b"\x7fELF" + b"\x02\x01\x01" + b"\x00" * 60)  # a header and nothing more


def _tests_is_a_file(demo: Path) -> None:
    (demo / "flat").mkdir()
    (demo / "flat" / "__init__.py").write_text("")
    (demo / "flat" / "tests").write_text("not a directory\n")
    (demo / "flat" / "test").write_bytes(b"\x7fELF")


def _tests_is_a_symlink(demo: Path) -> None:
    (demo / "linked").mkdir()
    (demo / "linked" / "__init__.py").write_text("")
    (demo / "linked" / "real_tests").mkdir()
    (demo / "linked" / "real_tests" / "test_real.py").write_text("def test(): pass\n")
    (demo / "linked" / "tests").symlink_to("real_tests", target_is_directory=True)  # inside the target
    (demo / "linked" / "test").symlink_to("/nonexistent/tests")  # dangling


@pytest.mark.parametrize(
    ("make", "paths"),
    [
        (_empty_so, ["empty.so"]),
        (_text_that_looks_like_elf, ["fake.so", "notes.txt"]),
        (_tests_is_a_file, ["flat"]),
        (_tests_is_a_symlink, ["linked"]),
    ],
    ids=["0-byte-so", "text-starting-with-ELF-magic", "tests-is-a-file", "tests-is-a-symlink"],
)
def test_odd_files_are_left_as_they_are(venv: Path, guard: Guard, make: Maker, paths: list[str]) -> None:
    demo = site_packages(venv) / "demo"
    make(demo)
    guard.twin(venv)
    before = tree_digest(venv)
    prune(venv)
    after = tree_digest(venv)
    for path in paths:
        unchanged(before, after, str((demo / path).relative_to(venv)))
    pruned_demo(venv)
    guard.check()
