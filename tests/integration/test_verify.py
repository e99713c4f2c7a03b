"""Verification on real venvs with real wheels built at test time: caught, healed, reported; check and check.py.

Each case is a small wheel whose breakage a static planner cannot see or a pruner must not be blamed for: a package
that imports its tests through a name built at run time, an entry point into a removed directory, an extension
module that does not load, a module that segfaults, one that hangs, an extension that needs a system library that
goes missing, a module broken before pruning -- and a venv of another Python than the tool's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.site_builder import tree_digest
from tests.venv_builder import (
    NO_ELF,
    Python,
    compile_extension,
    describe_python,
    make_venv,
    prune_json,
    run,
    site_packages,
)
from tests.wheel_builder import build_wheel

pytestmark = pytest.mark.integration

PYTHON38 = Path("/root/.pyenv/versions/3.8.18/bin/python")

RUNTIME_TESTS = {
    # The name is built at run time: the tests category cannot see this import, verification must.
    "rtpkg/__init__.py": 'import importlib\nhelpers = importlib.import_module("rtpkg." + "te" + "sts.helpers")\n',
    "rtpkg/tests/__init__.py": "",
    "rtpkg/tests/helpers.py": "HELP = 'help'\n",
}
PLUGIN_IN_TESTS = {
    "eppkg/__init__.py": "",
    "eppkg/tests/__init__.py": "",
    "eppkg/tests/plugin.py": "class Plugin:\n    pass\n",
}
PLUGIN_ENTRY_POINTS = "[eppkg.plugins]\nfixture = eppkg.tests.plugin:Plugin\n"
HEALTHY = {
    "okpkg/__init__.py": "VALUE = 1\n",
    "okpkg/cli.py": "def main():\n    print('okpkg runs')\n",
    "okpkg/tests/__init__.py": "",
    "okpkg/tests/test_it.py": "def test_it():\n    pass\n",
}
HEALTHY_ENTRY_POINTS = "[console_scripts]\nokpkg-cli = okpkg.cli:main\n"
PRE_BROKEN = {"prebroken/__init__.py": "raise RuntimeError('broken since it was installed')\n"}
SEGFAULT = {"crashy/__init__.py": "import ctypes\nctypes.string_at(0)\n"}
HANG = {"hangs/__init__.py": "while True:\n    pass\n"}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("wheels")
    return {
        "rtpkg": build_wheel(work, "rtpkg", RUNTIME_TESTS),
        "eppkg": build_wheel(work, "eppkg", PLUGIN_IN_TESTS, entry_points=PLUGIN_ENTRY_POINTS),
        "okpkg": build_wheel(work, "okpkg", HEALTHY, entry_points=HEALTHY_ENTRY_POINTS),
        "prebroken": build_wheel(work, "prebroken", PRE_BROKEN),
        "crashy": build_wheel(work, "crashy", SEGFAULT),
        "hangs": build_wheel(work, "hangs", HANG),
    }


@pytest.fixture(scope="module")
def python311() -> Python:
    return describe_python(Path(sys.executable).resolve())


@pytest.fixture
def healthy_venv(tmp_path: Path, wheels: dict[str, Path], python311: Python) -> Path:
    return make_venv(python311.executable, tmp_path / "venv", [wheels["okpkg"]])


def test_runtime_import_of_tests_is_caught_healed_and_reported(tmp_path: Path, wheels: dict[str, Path]) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["rtpkg"], wheels["okpkg"], wheels["eppkg"]])
    site = site_packages(venv)
    code, report, err = prune_json(str(venv))
    assert code == 0, err
    assert report["status"] == "success"
    verification = report["verification"]
    assert isinstance(verification, dict)
    assert verification["ok"] is True and verification["failures"] == []
    healed = {h["path"].split("site-packages/")[-1]: h["reason"] for h in verification["healed"]}
    assert set(healed) == {"rtpkg/tests"}, healed
    assert healed["rtpkg/tests"].startswith(
        "rtpkg/__init__.py needed it: ModuleNotFoundError: No module named 'rtpkg.tests'"
    )
    # Kept, listed among what was kept and why; the rest of the plan stands. The entry point into eppkg.tests is
    # read by the plan, which keeps that folder (without its bytecode): verification has nothing to heal there.
    assert (site / "rtpkg/tests/helpers.py").exists() and (site / "eppkg/tests/plugin.py").exists()
    assert not (site / "okpkg/tests").exists()
    # A restored directory comes back as it was, its own bytecode cache included; no other cache is left.
    caches = {p.relative_to(site).as_posix() for p in site.rglob("__pycache__")}
    assert caches <= {"rtpkg/tests/__pycache__"}
    kept = {k["path"].split("site-packages/")[-1]: k["reason"] for k in report["kept"]}
    assert kept["rtpkg/tests"].startswith("restored by verification: rtpkg/__init__.py needed it")
    assert kept["eppkg/tests"] == "entry point eppkg.plugins:fixture of eppkg names it"
    # RECORD lists the restored files again, and not the removed ones.
    record = next(site.glob("rtpkg-*.dist-info")).joinpath("RECORD").read_text()
    assert "rtpkg/tests/helpers.py" in record
    assert "okpkg/tests/test_it.py" not in next(site.glob("okpkg-*.dist-info")).joinpath("RECORD").read_text()
    # The restored package works, and the check did not write bytecode back.
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-I", "-B", "-c", "import rtpkg; assert rtpkg.helpers.HELP == 'help'"], check=True)
    assert {p.relative_to(site).as_posix() for p in site.rglob("__pycache__")} == caches
    assert isinstance(verification["import_seconds_before"], float)
    _, text, _ = run(*NO_ELF, "--dry-run", str(venv))
    assert "Traceback" not in text


def test_no_heal_fails_at_the_first_regression_and_restores_everything(tmp_path: Path, wheels: dict[str, Path]) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["rtpkg"]])
    before = tree_digest(venv)
    code, report, _ = prune_json("--no-heal", str(venv))
    assert code == 1
    assert report["status"] == "check-failed"
    verification = report["verification"]
    assert isinstance(verification, dict)
    assert verification["failures"] == ["import rtpkg: ModuleNotFoundError: No module named 'rtpkg.tests'"]
    assert tree_digest(venv) == before


def test_unhealable_regression_restores_everything_and_exits_1(tmp_path: Path, wheels: dict[str, Path]) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["okpkg"]])
    marker = tmp_path / "ran-once"
    before = tree_digest(venv)
    # Healthy at baseline, failing on every later run whatever is restored: nothing can heal it.
    code, report, err = prune_json("--smoke", f"test ! -e {marker} && touch {marker}", str(venv))
    assert code == 1, err
    verification = report["verification"]
    assert isinstance(verification, dict)
    assert verification["ok"] is False
    assert [r.split(":")[0] for r in verification["failures"]] == [f"smoke test ! -e {marker} && touch {marker}"]
    assert tree_digest(venv) == before
    assert "verification failed, everything restored" in err


def test_pre_existing_failures_are_reported_never_blamed(tmp_path: Path, wheels: dict[str, Path]) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["okpkg"], wheels["prebroken"], wheels["crashy"]])
    code, report, err = prune_json(str(venv))
    assert code == 0, err
    verification = report["verification"]
    assert isinstance(verification, dict)
    assert verification["healed"] == [] and verification["failures"] == []
    pre = verification["pre_existing"]
    assert any(p.startswith("import prebroken: RuntimeError: broken since it was installed") for p in pre), pre
    assert any(p.startswith("import crashy: the interpreter died of SIGSEGV") for p in pre), pre
    assert not (site_packages(venv) / "okpkg" / "tests").exists()
    assert "already failing before pruning (not blamed): import prebroken" in err
    assert f"final-stage check: run {venv}/.venvprune/check.py" in err


def test_check_exits_0_on_a_healthy_venv_and_writes_nothing(healthy_venv: Path) -> None:
    before = tree_digest(healthy_venv)
    code, out, _ = run("check", "--smoke", "okpkg-cli", "--check-module", "json", str(healthy_venv))
    assert code == 0, out
    assert out.rstrip().splitlines()[-1].startswith("venvprune check: 5/5 checks pass")
    assert tree_digest(healthy_venv) == before


def test_check_names_each_failure_segfault_hang_and_entry_point(tmp_path: Path, wheels: dict[str, Path]) -> None:
    venv = make_venv(
        Path(sys.executable),
        tmp_path / "venv",
        [wheels["okpkg"], wheels["crashy"], wheels["hangs"], wheels["eppkg"]],
    )
    shutil.rmtree(site_packages(venv) / "eppkg" / "tests")  # an entry point whose target is gone
    code, out, _ = run("check", "--timeout", "3", "--smoke", "false", str(venv))
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("FAILED ")]
    assert any(line.startswith("FAILED import crashy: the interpreter died of SIGSEGV") for line in failed), failed
    assert any(line.startswith("FAILED import hangs: timed out after 3 s") for line in failed), failed
    assert any(
        "entry point eppkg.plugins:fixture = eppkg.tests.plugin:Plugin: ModuleNotFoundError" in x for x in failed
    )
    assert any(line.startswith("FAILED smoke false: exit status 1") for line in failed), failed
    assert len(failed) == 4, failed  # okpkg, its entry point and every metadata check pass, in spite of the rest


@pytest.fixture
def extension_venv(tmp_path: Path, python311: Python) -> Iterator[tuple[Path, Path]]:
    """A venv with an extension that links a system library (libvpsys.so.1) outside the venv, and a broken one."""
    syslib = tmp_path / "syslib"
    syslib.mkdir()
    (syslib / "vpsys.c").write_text("int vpsys_answer(void) { return 42; }\n")
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-Wl,-soname,libvpsys.so.1",
            str(syslib / "vpsys.c"),
            "-o",
            str(syslib / "libvpsys.so.1"),
        ],
        check=True,
    )
    (syslib / "libvpsys.so").symlink_to("libvpsys.so.1")
    work = tmp_path / "build"
    work.mkdir()
    sysdep = compile_extension(
        python311,
        work,
        "sysdep",
        "int vpsys_answer(void);\nint (*keep)(void) = vpsys_answer;\n",
        (f"-L{syslib}", "-lvpsys", f"-Wl,-rpath,{syslib}"),
    )
    suffix = python311.extension_suffix
    wheel = build_wheel(work, "sysdep", {f"sysdep{suffix}": sysdep, "sysdep_users/__init__.py": "import sysdep\n"})
    venv = make_venv(python311.executable, tmp_path / "venv", [wheel])
    yield venv, syslib


def test_missing_system_library_fails_check_and_the_final_stage_checker(
    extension_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    venv, syslib = extension_venv
    code, _, err = prune_json(str(venv))
    assert code == 0, err
    checker = venv / ".venvprune" / "check.py"
    manifest = json.loads((venv / ".venvprune" / "manifest.json").read_text())
    kinds = {c["kind"] for c in manifest["checks"]}
    assert kinds == {"import", "dlopen", "metadata"}
    python = str(venv / "bin" / "python")
    # In the builder the final-stage checker passes, standard library only, with -I.
    ok = subprocess.run([python, "-I", str(checker)], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert not list(site_packages(venv).rglob("__pycache__"))
    # The final image lacks the system library: both the checker and `venvprune check` name what breaks.
    shutil.rmtree(syslib)
    broken = subprocess.run([python, "-I", str(checker)], capture_output=True, text=True, cwd=tmp_path)
    assert broken.returncode == 1
    assert "FAILED import sysdep: ImportError: libvpsys.so.1: cannot open shared object file" in broken.stdout
    assert "FAILED import sysdep_users:" in broken.stdout
    assert "FAILED dlopen lib/python" in broken.stdout and "libvpsys.so.1" in broken.stdout
    code, out, _ = run("check", str(venv))
    assert code == 1
    assert "FAILED import sysdep: ImportError: libvpsys.so.1" in out


def test_broken_extension_is_pre_existing_and_a_corrupted_one_is_healed(
    tmp_path: Path, python311: Python, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule that corrupts extension modules: the OSError names the file, which is restored."""
    from venvprune import categories, plan

    work = tmp_path / "build"
    work.mkdir()
    good = compile_extension(python311, work, "goodext")
    bad = compile_extension(
        python311, work, "badext", "extern int vp_no_such_symbol;\nint *keep = &vp_no_such_symbol;\n"
    )
    suffix = python311.extension_suffix
    wheel = build_wheel(work, "exts", {f"goodext{suffix}": good, f"badext{suffix}": bad})
    venv = make_venv(python311.executable, tmp_path / "venv", [wheel])
    site = site_packages(venv)

    @dataclass(frozen=True)
    class Garble:
        def write(self, source: BinaryIO, destination: BinaryIO) -> None:
            destination.write(b"\x7fELF" + b"\x00" * 60)

    class Corrupting:
        name = "corrupt"
        default = True
        summary = "a deliberately breaking rule"

        def plan(self, inventory: object, planned: object) -> plan.CategoryResult:
            path = site / f"goodext{suffix}"
            action = plan.Action(path, plan.ActionKind.REWRITE, self.name, "garble", 0, 0, "exts", transform=Garble())
            return plan.CategoryResult((action,))

    chosen = categories.select(exclude=("debug-symbols",))
    monkeypatch.setattr("venvprune.pipeline.categories.select", lambda *a, **k: (Corrupting(), *chosen))
    code, report, err = prune_json(str(venv))
    assert code == 0, err
    verification = report["verification"]
    assert isinstance(verification, dict)
    assert len(verification["healed"]) == 1, "\n".join(
        h["path"] + " " + h["reason"][-200:] for h in verification["healed"]
    )
    [healed] = verification["healed"]
    assert healed["path"].endswith(f"goodext{suffix}") and healed["category"] == "corrupt"
    assert (site / f"goodext{suffix}").read_bytes() == good
    assert any(
        p.startswith("import badext: ImportError:") and "vp_no_such_symbol" in p for p in verification["pre_existing"]
    )


@pytest.mark.skipif(not PYTHON38.exists(), reason="needs pyenv's Python 3.8")
def test_a_venv_of_another_python_is_checked_in_its_own_interpreter(tmp_path: Path, wheels: dict[str, Path]) -> None:
    venv = make_venv(PYTHON38, tmp_path / "venv38", [wheels["rtpkg"], wheels["okpkg"]])
    code, report, err = prune_json(str(venv))
    assert code == 0, err
    assert report["python"].startswith("3.8.")
    verification = report["verification"]
    assert isinstance(verification, dict)
    assert [h["path"].split("site-packages/")[-1] for h in verification["healed"]] == ["rtpkg/tests"]
    checker = subprocess.run(
        [str(venv / "bin" / "python"), "-I", str(venv / ".venvprune" / "check.py")], capture_output=True, text=True
    )
    assert checker.returncode == 0, checker.stdout + checker.stderr
    assert checker.stdout.rstrip().endswith("checks pass")


def test_checker_runs_under_a_plain_interpreter_without_venvprune(healthy_venv: Path, tmp_path: Path) -> None:
    """``python -I check.py`` by an interpreter that knows nothing of venvprune -- nor of the venv, once its
    ``bin/`` is gone (a final stage that copies only the library folder)."""
    code, _, err = run(*NO_ELF, str(healthy_venv))
    assert code == 0, err
    checker = str(healthy_venv / ".venvprune" / "check.py")
    base = str(Path(os.path.realpath(healthy_venv / "bin" / "python")))
    env = {"PATH": "/usr/bin:/bin"}

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([base, "-I", checker], capture_output=True, text=True, env=env, cwd=tmp_path)

    assert check().returncode == 0
    shutil.rmtree(healthy_venv / "bin")
    done = check()
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(site_packages(healthy_venv) / "okpkg")
    done = check()
    assert done.returncode == 1
    assert "FAILED import okpkg: ModuleNotFoundError: No module named 'okpkg'" in done.stdout
