"""What may be pruned, found the way the target's own interpreter sees it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.site_builder import install_dist, make_site
from venvprune.errors import TargetError
from venvprune.target import TargetKind, resolve_target


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    return root


def test_a_venv_is_read_through_its_interpreter(bare_venv: Path) -> None:
    target = resolve_target(bare_venv)
    version = "{}.{}".format(*sys.version_info[:2])
    assert target.kind is TargetKind.VENV
    assert target.interpreter == bare_venv / "bin" / "python"
    assert target.python_version is not None and target.python_version.startswith(version)
    assert target.site_packages == ((bare_venv / "lib" / f"python{version}" / "site-packages").resolve(),)


def test_lib64_alias_is_counted_once(bare_venv: Path) -> None:
    # python -m venv makes lib64 -> lib on 64-bit Linux; make sure it exists for the test either way.
    if not (bare_venv / "lib64").exists():
        (bare_venv / "lib64").symlink_to("lib")
    assert len(resolve_target(bare_venv).site_packages) == 1


def test_virtual_env_is_the_default(bare_venv: Path) -> None:
    assert resolve_target(None, {"VIRTUAL_ENV": str(bare_venv)}).root == bare_venv.resolve()
    with pytest.raises(TargetError, match="no target given and VIRTUAL_ENV is not set"):
        resolve_target(None, {})


def test_prefix_without_interpreter_falls_back_to_the_layout(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    install_dist(site, "pkg", {"pkg/__init__.py": ""})
    target = resolve_target(tmp_path)
    assert target.kind is TargetKind.PREFIX
    assert target.interpreter is None
    assert target.site_packages == (site.resolve(),)


def test_site_packages_directory_and_pip_target(tmp_path: Path) -> None:
    site = make_site(tmp_path / "prefix")
    assert resolve_target(site).kind is TargetKind.SITE_PACKAGES
    deps = tmp_path / "deps"  # pip install --target deps
    deps.mkdir()
    install_dist(deps, "pkg", {"pkg/__init__.py": ""})
    target = resolve_target(deps)
    assert target.kind is TargetKind.SITE_PACKAGES
    assert target.site_packages == (deps.resolve(),)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "no such file or directory"),
        (lambda tmp: (tmp / "file.txt", (tmp / "file.txt").write_text("x"))[0], "is a file, not a directory"),
        (lambda tmp: tmp, "not a venv"),
        (lambda tmp: Path("/"), "refusing to prune a system or home directory"),
        (lambda tmp: Path("/usr"), "refusing to prune a system or home directory"),
        (lambda tmp: Path.home(), "refusing to prune a system or home directory"),
    ],
)
def test_bad_targets_are_refused_with_one_line(tmp_path: Path, make: object, message: str) -> None:
    with pytest.raises(TargetError, match=message) as info:
        resolve_target(make(tmp_path))  # type: ignore[operator]
    assert "\n" not in info.value.message


def test_a_venv_with_a_broken_interpreter_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "venv"
    (root / "bin").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text("home = /nowhere\n")
    (root / "bin" / "python").write_text("#!/bin/sh\necho broken >&2; exit 3\n")
    (root / "bin" / "python").chmod(0o755)
    with pytest.raises(TargetError, match=r"bin/python: the target's interpreter fails \(broken\); repair or recreate"):
        resolve_target(root)
    (root / "bin" / "python").unlink()
    with pytest.raises(TargetError, match="venv has no bin/python"):
        resolve_target(root)
