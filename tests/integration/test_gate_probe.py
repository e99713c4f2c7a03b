"""The probe's checks judge what a prune can change, and what the venv lacks on purpose (issue 9).

* The metadata check compares import names a prune cannot change: never ``__pycache__``, which Python 3.12+'s
  ``packages_distributions()`` infers from RECORD for a distribution without ``top_level.txt``.
* A check that fails only because it needs a module no installed distribution provides (an optional dependency, an
  extra) is "needs X, not installed": reported, not a failure, a failure with ``--strict`` -- unless it passed before
  pruning, in the baseline or the manifest: then it is a regression.

Real venvs, real wheels built at test time; ``venvprune check``, the prune and ``check.py`` as a user runs them.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests import elf_helpers
from tests.venv_builder import final_stage_check, make_venv, prune_json, run, site_packages
from tests.wheel_builder import build_wheel

pytestmark = pytest.mark.integration

PYTHON312 = next(iter(sorted(Path("/root/.pyenv/versions").glob("3.1[23]*/bin/python"))), None)
PYTHON38 = next(iter(sorted(Path("/root/.pyenv/versions").glob("3.8*/bin/python"))), None)

# Optional dependencies, as real packages use them: none of the modules named ``missing*`` is installed.
# pandas' plotting backend entry point names a submodule that needs matplotlib.
PLOTTER = {
    "plotter/__init__.py": "",
    "plotter/plotting/__init__.py": "",
    "plotter/plotting/_drawing.py": "import missingdraw\n",
}
PLOTTER_ENTRY_POINTS = "[plotter_backends]\ndrawing = plotter:plotting._drawing\n"
# matplotlib_inline imports matplotlib; google.longrunning.operations_grpc imports grpc (the [grpc] extra).
INLINE = {"inlinepkg/__init__.py": "import missinghost\n"}
# (google/ and google/longrunning/ are namespace packages: each module is a check of its own.)
PROTOS = {
    "gapis/longrunning/operations_pb2.py": "MESSAGE = 1\n",
    "gapis/longrunning/operations_grpc.py": "import missingrpc.aio\n",
}
# blackd: re-raises a plain ImportError with advice; its console script names the [d] extra.
DAEMON = {
    "daemonpkg.py": "try:\n    import missingweb\nexcept ImportError as ie:\n"
    "    raise ImportError('missingweb is not installed: %s; install daemonpkg[d]' % ie) from None\n"
    "def main():\n    pass\n",
}
DAEMON_ENTRY_POINTS = "[console_scripts]\ndaemonpkg = daemonpkg:main [d]\n"
# A console script importing a module of another distribution without declaring it (pkg_resources).
UNDECLARED = {"epdemo/__init__.py": "", "epdemo/cli.py": "import helperdep\n\ndef main():\n    pass\n"}
UNDECLARED_ENTRY_POINTS = "[console_scripts]\nepdemo = epdemo.cli:main\n"


@pytest.fixture(scope="module")
def optional_wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    work = tmp_path_factory.mktemp("wheels")
    return [
        build_wheel(work, "plotter", PLOTTER, entry_points=PLOTTER_ENTRY_POINTS),
        build_wheel(work, "inlinepkg", INLINE),
        build_wheel(work, "gapis", PROTOS),
        build_wheel(work, "daemonpkg", DAEMON, entry_points=DAEMON_ENTRY_POINTS),
    ]


def lines_starting(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


# -- the metadata check ----------------------------------------------------------------------------------------


def single_module_venv(python: Path, where: Path) -> Path:
    """Two single-module distributions without top_level.txt (typing_extensions, mccabe): pip compiles their
    bytecode into the shared ``site-packages/__pycache__`` and lists it in RECORD."""
    work = where.parent / "wheels"
    work.mkdir()
    wheels = [
        build_wheel(work, "solo", {"solo.py": "SOLO = 1\n"}),
        build_wheel(work, "duo", {"duo.py": "DUO = 2\n"}),
    ]
    return make_venv(python, where, wheels)


@pytest.mark.skipif(PYTHON312 is None, reason="needs Python 3.12 or 3.13 (pyenv)")
def test_pruning_bytecode_is_no_metadata_change_on_python_312(tmp_path: Path) -> None:
    assert PYTHON312 is not None
    venv = single_module_venv(PYTHON312, tmp_path / "venv")
    site = site_packages(venv)
    assert any((site / "__pycache__").glob("solo.*.pyc")), "pip compiled no bytecode: the test would prove nothing"
    code, report, err = prune_json(str(venv))
    assert code == 0, err
    assert report["kept"] == [] or all("needed it" not in row["reason"] for row in report["kept"]), report["kept"]
    assert not (site / "__pycache__").exists(), "the bytecode prune was undone"
    verification = report["verification"]
    assert verification["failures"] == [] and verification["checks_passed"] == verification["checks_total"]
    code, out, _ = run("check", str(venv))
    assert code == 0, out
    assert final_stage_check(venv).returncode == 0


@pytest.mark.skipif(PYTHON38 is None, reason="needs Python 3.8 (pyenv)")
def test_the_record_rewrite_is_kept_on_python_38(tmp_path: Path) -> None:
    assert PYTHON38 is not None
    venv = single_module_venv(PYTHON38, tmp_path / "venv")
    site = site_packages(venv)
    code, _, err = prune_json(str(venv))
    assert code == 0, err
    assert not (site / "__pycache__").exists(), "the bytecode prune was undone"
    for record in site.glob("*.dist-info/RECORD"):
        listed = [line.split(",")[0] for line in record.read_text().splitlines() if line]
        assert [p for p in listed if not (site / p).exists()] == [], f"{record} names deleted files"


# -- optional dependencies -------------------------------------------------------------------------------------


def test_checks_needing_an_uninstalled_optional_dependency_are_reported_not_failed(
    tmp_path: Path, optional_wheels: list[Path]
) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", optional_wheels)
    code, out, _ = run("check", str(venv))
    assert code == 0, out
    assert lines_starting(out, "FAILED") == []
    needs = "\n".join(lines_starting(out, "not run"))
    for check, module in (
        ("entry point plotter_backends:drawing", "missingdraw"),
        ("import inlinepkg", "missinghost"),
        ("import gapis.longrunning.operations_grpc", "missingrpc"),
        ("import daemonpkg", "missingweb"),
        ("entry point console_scripts:daemonpkg", "missingweb"),
    ):
        assert f"{check}" in needs and f"needs {module}, not installed" in needs, (check, out)
    code, out, _ = run("check", "--strict", str(venv))
    assert code == 1, out

    # The prune does not blame them, prunes the rest, and the final stage agrees.
    code, report, err = prune_json(str(venv))
    assert code == 0, err
    assert report["verification"]["failures"] == []
    assert len(report["verification"]["not_run"]) == 5, report["verification"]
    assert report["kept"] == [], report["kept"]
    code, out, _ = run("check", str(venv))
    assert code == 0, out
    final = final_stage_check(venv)
    assert final.returncode == 0, final.stdout
    assert len(lines_starting(final.stdout, "not run")) == 5, final.stdout


def test_a_check_that_passed_before_is_failed_when_it_needs_what_is_gone_now(tmp_path: Path) -> None:
    """A console script imports a module that no distribution declares (copied into site-packages by hand, as
    Dockerfiles do); when it is gone after the prune, its check passed when the venv was pruned: a failure."""
    work = tmp_path / "wheels"
    work.mkdir()
    wheel = build_wheel(work, "epdemo", UNDECLARED, entry_points=UNDECLARED_ENTRY_POINTS)
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheel])
    helper = site_packages(venv) / "helperdep.py"
    helper.write_text("HELP = 1\n")
    code, report, err = prune_json(str(venv))
    assert code == 0, err
    assert report["verification"]["not_run"] == [], report["verification"]
    helper.unlink()
    code, out, _ = run("check", str(venv))
    assert code == 1, out
    assert any("entry point console_scripts:epdemo" in line for line in lines_starting(out, "FAILED")), out
    final = final_stage_check(venv)
    assert final.returncode == 1, final.stdout
    assert any("entry point console_scripts:epdemo" in line for line in lines_starting(final.stdout, "FAILED"))


def test_the_prune_heals_a_console_script_needing_an_uninstalled_installer(tmp_path: Path) -> None:
    """The installers category uninstalls setuptools, which nothing declares; a console script imports its
    pkg_resources: the prune must restore it (or fail), never pass."""
    work = tmp_path / "wheels"
    work.mkdir()
    script = {"epdemo/__init__.py": "", "epdemo/cli.py": "import pkg_resources\n\ndef main():\n    pass\n"}
    wheels = [
        build_wheel(work, "epdemo", script, entry_points=UNDECLARED_ENTRY_POINTS),
        build_wheel(
            work,
            "setuptools",
            {"pkg_resources/__init__.py": "def require(*a):\n    pass\n", "setuptools/__init__.py": ""},
            version="69.0",
        ),
    ]
    venv = make_venv(Path(sys.executable), tmp_path / "venv", wheels)
    code, _, err = prune_json("--profile", "max", str(venv))
    assert code == 0, err
    script_runs = subprocess.run([str(venv / "bin" / "python"), "-c", "import epdemo.cli"], capture_output=True)
    assert script_runs.returncode == 0, "the prune broke the console script and passed"
    assert (site_packages(venv) / "pkg_resources" / "__init__.py").is_file()
    assert final_stage_check(venv).returncode == 0


def test_an_extension_loaded_only_when_its_system_library_is_there_is_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """numba's ``tbbpool`` (libtbb.so.12), cupy's CUDA modules: an extension module the package loads only when an
    optional system library is installed. Without the library every program works, so a venv never pruned is not
    failed; once a prune recorded that the extension loaded, losing its library is a failure (the final image
    that lacks what the builder had)."""
    build = tmp_path / "build"
    build.mkdir()
    library = elf_helpers.shared_library(build, "libvpmissing.so")
    include = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    extension = elf_helpers.gcc(
        build,
        elf_helpers.EXTENSION_SOURCE,
        "_vpext" + suffix,
        "-shared",
        "-fPIC",
        f"-I{include}",
        f"-L{build}",
        "-Wl,--no-as-needed",
        "-lvpmissing",
    )
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    files: dict[str, str | bytes] = {"lazyext/__init__.py": "", f"lazyext/_vpext{suffix}": extension.read_bytes()}
    wheel = build_wheel(wheels, "lazyext", files)

    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheel])
    code, out, _ = run("check", str(venv))
    assert code == 0, out
    assert lines_starting(out, "FAILED") == [], out
    assert any("needs libvpmissing.so, not installed" in line for line in lines_starting(out, "not run")), out

    # The builder had the library (here: in a folder on LD_LIBRARY_PATH); the final image has not.
    monkeypatch.setenv("LD_LIBRARY_PATH", str(library.parent))
    code, report, err = prune_json(str(venv))
    monkeypatch.delenv("LD_LIBRARY_PATH")
    assert code == 0, err
    assert report["verification"]["not_run"] == [], report["verification"]
    code, out, _ = run("check", str(venv))
    assert code == 1, out
    assert any("libvpmissing.so" in line for line in lines_starting(out, "FAILED")), out
    final = final_stage_check(venv)
    assert final.returncode == 1, final.stdout
