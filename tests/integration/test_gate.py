"""A gate you can put in CI (issue 9): ``venvprune check``, the prune's verification and the final-stage ``check.py``
judge alike, never fail a venv in which every program works, and never pass one silently.

Each test builds a real venv from wheels made at test time (extensions and bundled libraries compiled with gcc) and
runs venvprune and ``check.py`` as a user would.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from tests.site_builder import install_dist, tree_digest
from tests.venv_builder import (
    NO_ELF,
    compile_extension,
    compile_library,
    describe_python,
    final_stage_check,
    make_venv,
    prune_json,
    run,
    site_packages,
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


def test_an_entry_point_naming_a_submodule_loads_as_consumers_load_it(tmp_path: Path, wheels: dict[str, Path]) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["plotpkg"]])
    code, out, _ = run("check", str(venv))
    assert code == 0, out
    assert "FAILED" not in out


@pytest.fixture
def bundled_venv(tmp_path: Path) -> Path:
    """An extension that finds its bundled library through its RPATH ($ORIGIN), as auditwheel lays it out.

    ``libneeded`` has no RPATH of its own: the loader finds its ``libdep`` through the extension's RPATH, so loaded
    alone it fails (numpy's libopenblas and libgfortran on Python 3.8). ``libunused`` needs a library that is not
    shipped and nothing needs it (scipy.libs' second libgfortran).
    """
    python = describe_python(Path(sys.executable).resolve())
    work = tmp_path / "build"
    work.mkdir()
    compile_library(work, "libdep-3c4d.so", "int dep_value(void) { return 7; }\n", "-Wl,-soname,libdep-3c4d.so")
    compile_library(
        work,
        "libneeded-1a2b.so",
        "int dep_value(void);\nint needed_value(void) { return dep_value() + 1; }\n",
        "-Wl,-soname,libneeded-1a2b.so",
        f"-L{work}",
        "-l:libdep-3c4d.so",
    )
    compile_library(
        work, "libabsent-7a8b.so", "int absent_value(void) { return 0; }\n", "-Wl,-soname,libabsent-7a8b.so"
    )
    compile_library(
        work,
        "libunused-5e6f.so",
        "int absent_value(void);\nint (*keep_absent)(void) = absent_value;\n",
        "-Wl,-soname,libunused-5e6f.so",
        f"-L{work}",
        "-l:libabsent-7a8b.so",
    )
    extension = compile_extension(
        python,
        work,
        "_bext",
        "int needed_value(void);\nint (*keep_needed)(void) = needed_value;\n",
        (f"-L{work}", "-l:libneeded-1a2b.so", "-Wl,--disable-new-dtags,-rpath,$ORIGIN/../bpkg.libs"),
    )
    files: dict[str, str | bytes] = {
        "bpkg/__init__.py": "from bpkg import _bext\n",
        f"bpkg/_bext{python.extension_suffix}": extension,
    }
    for name in ("libneeded-1a2b.so", "libdep-3c4d.so", "libunused-5e6f.so"):
        files[f"bpkg.libs/{name}"] = (work / name).read_bytes()
    wheel = build_wheel(work, "bpkg", files)
    return make_venv(python.executable, tmp_path / "venv", [wheel])


def test_bundled_libraries_are_checked_through_the_extensions_that_need_them(bundled_venv: Path) -> None:
    libs = site_packages(bundled_venv) / "bpkg.libs"
    code, out, _ = run("check", str(bundled_venv))
    assert code == 0, out
    assert "FAILED" not in out
    [unused] = [line for line in out.splitlines() if line.startswith("unused bundled library:")]
    assert "bpkg.libs/libunused-5e6f.so" in unused and "kB" in unused
    checked = pass_figure(last_line(out))

    code, report, err = prune_json(str(bundled_venv))
    assert code == 0, err
    verification = report["verification"]
    assert isinstance(verification, dict)
    assert verification["failures"] == [] and verification["pre_existing"] == []
    assert [u["path"].split("site-packages/")[-1] for u in verification["unused_libraries"]] == [
        "bpkg.libs/libunused-5e6f.so"
    ]
    # The three judges agree: venvprune check before and after, and the final-stage checker.
    final = final_stage_check(bundled_venv)
    assert final.returncode == 0, final.stdout + final.stderr
    assert pass_figure(last_line(final.stdout)) == checked
    assert "bpkg.libs/libunused-5e6f.so" in final.stdout
    code, out, _ = run("check", str(bundled_venv))
    assert code == 0 and pass_figure(last_line(out)) == checked

    # A library the extension needs goes missing: both fail, naming it.
    (libs / "libdep-3c4d.so").unlink()
    code, out, _ = run("check", str(bundled_venv))
    assert code == 1
    assert any(line.startswith("FAILED import bpkg") and "libdep-3c4d.so" in line for line in out.splitlines()), out
    final = final_stage_check(bundled_venv)
    assert final.returncode == 1
    assert "libdep-3c4d.so" in final.stdout


def test_check_without_a_manifest_says_so_and_with_one_compares(tmp_path: Path, wheels: dict[str, Path]) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["okpkg"], wheels["prebroken"]])
    code, out, _ = run("check", str(venv))
    assert code == 1
    assert "no manifest" in out
    assert any(line.startswith("FAILED import prebroken: RuntimeError") for line in out.splitlines()), out

    code, _, err = prune_json(str(venv))
    assert code == 0, err
    code, out, _ = run("check", str(venv))
    assert code == 0, out
    assert "no manifest" not in out
    [line] = [line for line in out.splitlines() if "import prebroken" in line]
    assert "not blamed" in line and not line.startswith("FAILED")
    final = final_stage_check(venv)
    assert final.returncode == 0, final.stdout
    [line] = [line for line in final.stdout.splitlines() if "import prebroken" in line]
    assert "not blamed" in line
    assert pass_figure(last_line(final.stdout)) == pass_figure(last_line(out))


# -- 2. no verification of what the change cannot affect -------------------------------------------------------


def test_a_second_prune_with_nothing_to_change_skips_verification(tmp_path: Path) -> None:
    counter = tmp_path / "imports.txt"
    work = tmp_path / "wheels"
    work.mkdir()
    wheel = build_wheel(work, "countme", counting("countme", counter))
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheel])
    code, _, err = prune_json(str(venv))
    assert code == 0, err
    counter.unlink()
    code, report, err = prune_json(str(venv))
    assert code == 0, err
    assert report["actions"] == []
    assert report["verification"] == {"skipped": "nothing to change"}
    assert "baseline" not in {t["phase"] for t in report["timings"]}
    assert not counter.exists(), "nothing was imported"
    assert final_stage_check(venv).returncode == 0


def test_a_small_change_verifies_only_what_it_can_affect(tmp_path: Path) -> None:
    counter = tmp_path / "imports.txt"
    work = tmp_path / "wheels"
    work.mkdir()
    core = build_wheel(work, "core", counting("core", counter))
    user = build_wheel(work, "user", counting("user", counter, "import core\n"))  # no Requires-Dist: seen at import
    bystander = build_wheel(work, "bystander", counting("bystander", counter))
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [core, user, bystander])
    code, _, err = prune_json(str(venv))
    assert code == 0, err
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "--disable-pip-version-check"]
    reinstall = [*pip, "install", "-q", "--no-index", "--no-deps", "--force-reinstall", str(core)]
    subprocess.run(reinstall, check=True)  # core has its tests and bytecode again; the others stay pruned

    counter.unlink()
    one_worker = ("--jobs", "1")  # so that each phase imports each package once, whatever the scheduling
    code, report, err = prune_json(*one_worker, str(venv))
    assert code == 0, err
    assert {a["distribution"] for a in report["actions"]} == {"core"}
    # Baseline and after for core and for user, which imports it; the bystander only at baseline.
    assert imports_counted(counter) == {"bystander": 1, "core": 2, "user": 2}

    subprocess.run(reinstall, check=True)
    counter.unlink()
    code, report, err = prune_json(*one_worker, "--verify", "all", str(venv))
    assert code == 0, err
    assert imports_counted(counter) == {"bystander": 2, "core": 2, "user": 2}


def test_what_verification_restored_is_kept_by_the_next_prune(tmp_path: Path) -> None:
    """networkx/classes/tests on the ML venv: restored once, not planned, verified and restored again every time."""
    work = tmp_path / "wheels"
    work.mkdir()
    runtime_tests = {
        "rtpkg/__init__.py": 'import importlib\nhelpers = importlib.import_module("rtpkg." + "te" + "sts.helpers")\n',
        "rtpkg/tests/__init__.py": "",
        "rtpkg/tests/helpers.py": "HELP = 'help'\n",
    }
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [build_wheel(work, "rtpkg", runtime_tests)])
    code, report, err = prune_json(str(venv))
    assert code == 0, err
    assert [h["path"] for h in report["verification"]["healed"]] == ["rtpkg/tests"]
    # The next prune keeps it (it came back with its bytecode cache, which goes now), and restores nothing.
    code, report, err = prune_json(str(venv))
    assert code == 0, err
    assert [a["path"] for a in report["actions"]] == ["rtpkg/tests/__pycache__", "rtpkg-1.0.dist-info/RECORD"]
    assert report["verification"]["healed"] == []
    kept = {k["path"]: k["reason"] for k in report["kept"]}
    assert kept["rtpkg/tests"].startswith("restored by verification in an earlier prune: rtpkg/__init__.py needed it")
    code, report, err = prune_json(str(venv))
    assert code == 0, err
    assert report["verification"] == {"skipped": "nothing to change"}
    assert final_stage_check(venv).returncode == 0


# -- 3, 4, 6. no silent passes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("check", [("--check-module", "okpkg.nonexistent"), ("--smoke", "false")])
def test_an_explicit_check_failing_before_pruning_fails_the_run(healthy_venv: Path, check: tuple[str, str]) -> None:
    before = tree_digest(healthy_venv)
    code, report, err = prune_json(*check, str(healthy_venv))
    assert code == 1, err
    assert tree_digest(healthy_venv) == before
    verification = report["verification"]
    assert isinstance(verification, dict)
    assert verification["ok"] is False
    assert [f.split(":")[0] for f in verification["failures"]] == [
        f"{'import' if check[0] == '--check-module' else 'smoke'} {check[1]}"
    ]
    assert "before pruning" in last_line(err) and check[1] in err
    code, out, _ = run("check", *check, str(healthy_venv))
    assert code == 1
    assert f"FAILED {'import' if check[0] == '--check-module' else 'smoke'} {check[1]}" in out


def test_checks_that_could_not_run_are_counted_and_never_passed(tmp_path: Path, wheels: dict[str, Path]) -> None:
    work = tmp_path / "wheels"
    work.mkdir()
    hangs = build_wheel(work, "hangs", {"hangs/__init__.py": "while True:\n    pass\n"})
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["okpkg"], wheels["plotpkg"], hangs])
    code, report, err = prune_json("--timeout", "2", str(venv))
    assert code == 0, err
    verification = report["verification"]
    assert isinstance(verification, dict)
    assert [n.split(":")[0] for n in verification["not_run"]] == ["import hangs"]
    assert verification["checks_passed"] == verification["checks_total"] - 1
    assert "1 not run" in last_line(err)
    # The manifest keeps it as a check that could not run: check judges it alike, and --strict fails on it.
    code, out, _ = run("check", "--timeout", "2", str(venv))
    assert code == 0, out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("not run")] == ["not run"]
    assert "import hangs" in out
    code, out, _ = run("check", "--strict", "--timeout", "2", str(venv))
    assert code == 1, out


def test_what_could_not_be_checked_before_pruning_is_not_pruned(tmp_path: Path, wheels: dict[str, Path]) -> None:
    """A package whose import timed out at baseline cannot be verified after: its changes are undone, not committed
    unverified (this one needs its tests folder at run time, through a name the plan cannot read)."""
    work = tmp_path / "wheels"
    work.mkdir()
    slow = build_wheel(
        work,
        "slowpkg",
        {
            "slowpkg/__init__.py": "import importlib, time\ntime.sleep(4)\n"
            "helpers = importlib.import_module('slowpkg.' + 'te' + 'sts.helpers')\n",
            "slowpkg/tests/__init__.py": "",
            "slowpkg/tests/helpers.py": "HELP = 1\n",
        },
    )
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["okpkg"], slow])
    site = site_packages(venv)
    code, report, err = prune_json("--timeout", "2", str(venv))
    assert code == 0, err
    assert (site / "slowpkg" / "tests" / "helpers.py").is_file(), "an unverified change was committed"
    assert not (site / "okpkg" / "tests").exists(), "what was verified is pruned"
    kept = {row["path"]: row["reason"] for row in report["kept"]}
    assert "not verified" in kept.get("slowpkg/tests", ""), kept
    imported = subprocess.run([str(venv / "bin" / "python"), "-c", "import slowpkg"], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr


def test_a_baseline_in_which_most_checks_fail_is_an_error_naming_the_likely_cause(tmp_path: Path) -> None:
    work = tmp_path / "wheels"
    work.mkdir()
    hangs = build_wheel(
        work,
        "hangs",
        {"hangs/__init__.py": "while True:\n    pass\n", "hangs/tests/__init__.py": ""},
        entry_points=console_scripts("hangs", 3),
    )
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [hangs])
    before = tree_digest(venv)
    code, out, err = run(*NO_ELF, "--timeout", "2", str(venv))
    assert code == 1, err
    assert tree_digest(venv) == before
    assert "the timeout is likely too short (--timeout 2" in out
    assert last_line(out).endswith("verification failed, before pruning, nothing changed")


def test_strict_fails_on_every_pre_existing_failure(tmp_path: Path, wheels: dict[str, Path]) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["okpkg"], wheels["prebroken"]])
    before = tree_digest(venv)
    code, report, err = prune_json("--strict", str(venv))
    assert code == 1, err
    assert tree_digest(venv) == before
    assert "import prebroken" in err
    # The default stays forgiving, and says so in the report and the JSON.
    code, report, err = prune_json(str(venv))
    assert code == 0, err
    verification = report["verification"]
    assert isinstance(verification, dict)
    assert [p.split(":")[0] for p in verification["pre_existing"]] == ["import prebroken"]
    assert "not blamed" in err
    code, out, _ = run("check", "--strict", str(venv))
    assert code == 1, out
    assert final_stage_check(venv).returncode == 0
    assert final_stage_check(venv, "--strict").returncode == 1


# -- 5. the manifest describes the venv as it is -----------------------------------------------------------------


def test_no_verify_on_a_never_pruned_venv_still_writes_the_final_stage_checker(healthy_venv: Path) -> None:
    code, _, err = prune_json("--no-verify", str(healthy_venv))
    assert code == 0, err
    final = final_stage_check(healthy_venv)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "not verified" in final.stdout or "judged on its own" in final.stdout


def test_no_verify_after_an_uninstall_leaves_no_stale_manifest(tmp_path: Path, wheels: dict[str, Path]) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["okpkg"], wheels["plotpkg"]])
    code, _, err = prune_json(str(venv))
    assert code == 0, err
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "--disable-pip-version-check"]
    subprocess.run([*pip, "uninstall", "-q", "-y", "plotpkg"], check=True)
    code, _, err = prune_json("--no-verify", str(venv))
    assert code == 0, err
    final = final_stage_check(venv)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "plotpkg" not in final.stdout


def test_no_manifest_removes_an_old_one_and_says_so(healthy_venv: Path) -> None:
    code, _, err = prune_json(str(healthy_venv))
    assert code == 0, err
    assert (healthy_venv / ".venvprune" / "manifest.json").exists()
    code, _, err = prune_json("--no-manifest", str(healthy_venv))
    assert code == 0, err
    assert not (healthy_venv / ".venvprune").exists()
    assert "removed" in err and ".venvprune" in err


# -- 7, 8. no hangs ----------------------------------------------------------------------------------------------


def test_a_module_that_hangs_is_imported_once_and_its_entry_points_are_not_run(tmp_path: Path) -> None:
    counter = tmp_path / "imports.txt"
    work = tmp_path / "wheels"
    work.mkdir()
    hangs = build_wheel(
        work, "hangs", counting("hangs", counter, "while True:\n    pass\n"), entry_points=console_scripts("hangs", 8)
    )
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [hangs])
    code, out, _ = run("check", "--timeout", "2", "--jobs", "2", str(venv))
    assert code == 1
    assert imports_counted(counter) == {"hangs": 1}
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert [line.split(":")[0] for line in failed] == ["FAILED import hangs"]
    not_run = [line for line in out.splitlines() if line.startswith("not run")]
    assert len(not_run) == 8 and all("import hangs timed out" in line for line in not_run), out


def processes_running(command_line: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip().decode() == command_line:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_smoke_command_is_timed_by_its_exit_not_by_its_pipes(healthy_venv: Path) -> None:
    detached = "sleep 20.25"
    try:
        code, out, _ = run("check", "--smoke", f"setsid {detached} &", "--timeout", "3", str(healthy_venv))
        assert code == 0, out  # the command exits 0 at once; what it left running is not waited for
    finally:
        for pid in processes_running(detached):
            os.kill(pid, signal.SIGKILL)
    grouped = "sleep 31.75"
    code, out, _ = run("check", "--smoke", f"{grouped} & {grouped}", "--timeout", "1", str(healthy_venv))
    assert code == 1
    assert f"FAILED smoke {grouped} & {grouped}: timed out after 1 s" in out
    time.sleep(0.2)
    assert processes_running(grouped) == [], "the timeout kills the command's whole process group"


# -- 9, 10. targets without an interpreter, and old Pythons ------------------------------------------------------


def test_a_pip_target_directory_is_checked_with_the_python_named(tmp_path: Path, wheels: dict[str, Path]) -> None:
    target = tmp_path / "target"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "-q", "--no-index", "--no-deps"]
    subprocess.run([*pip, "--target", str(target), str(wheels["okpkg"])], check=True)
    code, _, err = run("check", str(target))
    assert code == 2
    assert "--python" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run("check", "--python", sys.executable, str(target))
    assert code == 0, out
    before = tree_digest(target)
    code, _, err = run(*NO_ELF, str(target))
    assert code == 2 and "--python" in err
    assert tree_digest(target) == before
    code, report, err = prune_json("--python", sys.executable, str(target))
    assert code == 0, err
    verification = report["verification"]
    assert isinstance(verification, dict) and verification["ok"] is True and verification["checks_total"] >= 3


def test_a_target_comes_before_the_interpreters_own_packages(tmp_path: Path) -> None:
    """The program runs with PYTHONPATH=target, which puts the target before the interpreter's own site-packages;
    the checks see the same copy of a distribution that both hold (a CI runner's python, Debian's python3-*)."""
    interpreter = tmp_path / "interp"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(interpreter)], check=True)
    own_site = next(interpreter.glob("lib/python3*/site-packages"))
    install_dist(own_site, "shadowpkg", {"shadowpkg/__init__.py": "VERSION = 'interpreter copy'\n"})
    target = tmp_path / "target"
    target.mkdir()
    install_dist(
        target,
        "shadowpkg",
        {"shadowpkg/__init__.py": "VERSION = 'target copy'\n", "shadowpkg/cli.py": "def main():\n    pass\n"},
        version="2.0",
        entry_points="[console_scripts]\nshadowpkg = shadowpkg.cli:main\n",
    )
    python = str(interpreter / "bin" / "python")
    code, out, _ = run("check", "--python", python, str(target))
    assert code == 0, out
    (target / "shadowpkg" / "__init__.py").write_text("raise ImportError('the target copy is broken')\n")
    code, out, _ = run("check", "--python", python, str(target))
    assert code == 1, out
    assert any(line.startswith("FAILED import shadowpkg:") for line in out.splitlines()), out


@pytest.mark.skipif(not PYTHON37.exists(), reason="needs pyenv's Python 3.7")
def test_a_python_37_venv_is_refused_up_front(tmp_path: Path) -> None:
    venv = tmp_path / "venv37"
    subprocess.run([str(PYTHON37), "-m", "venv", "--without-pip", str(venv)], check=True)
    for args in (("--dry-run",), (), ("check",)):
        code, _, err = run(*args, str(venv))
        assert code == 2, err
        assert "3.7" in err and "3.8" in err and len(err.strip().splitlines()) == 1


# -- 11. check speaks JSON and shows progress --------------------------------------------------------------------


def test_check_json_has_the_verification_section_of_the_prune_report(tmp_path: Path, wheels: dict[str, Path]) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["okpkg"], wheels["prebroken"]])
    code, out, err = run("check", "--json", "-", str(venv))
    assert code == 1
    document = json.loads(out)
    jsonschema.validate(document, SCHEMA)
    assert [f.split(":")[0] for f in document["verification"]["failures"]] == ["import prebroken"]
    assert "venvprune: check " in err  # one line per phase in a build log, as the prune prints
    code, report, _ = prune_json(str(venv))
    assert code == 0
    assert set(document["verification"]) == set(report["verification"])


def test_check_shows_live_progress_on_a_terminal(healthy_venv: Path) -> None:
    main, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    process = subprocess.Popen(
        [sys.executable, "-m", "venvprune", "check", str(healthy_venv)],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    assert process.wait(timeout=60) == 0, output
    assert b"\r\x1b[K" in output, output  # the live line is rewritten in place


# -- 12. tests: keep what is code --------------------------------------------------------------------------------


def test_a_distribution_whose_code_is_a_test_directory_keeps_it(tmp_path: Path) -> None:
    """jaraco.test from PyPI: ``jaraco/test/`` under the ``jaraco`` namespace is all of its code."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "jaraco.test"], check=True)
    code, _, err = run(*NO_ELF, "--no-verify", str(venv))
    assert code == 0, err
    assert (site_packages(venv) / "jaraco" / "test" / "__init__.py").exists()
    subprocess.run([str(venv / "bin" / "python"), "-c", "import jaraco.test"], check=True)
