"""The gate lists what the venv holds as it is now (issue 9): distributions changed since the prune, code deep under
namespace packages, unreadable metadata, unreadable manifests, files that are not regular files, bad options.

Each test builds a real venv from wheels made at test time and runs ``venvprune check`` and ``check.py`` as a user
would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.venv_builder import final_stage_check, make_venv, prune_json, run, site_packages
from tests.wheel_builder import build_wheel

pytestmark = pytest.mark.integration

APP = {"app/__init__.py": "import helper\n", "app/tests/__init__.py": "", "app/tests/test_it.py": ""}
HELPER = {"helper/__init__.py": "VALUE = 1\n"}


def pip(venv: Path, *args: str) -> None:
    command = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "--disable-pip-version-check"]
    subprocess.run([*command, *args, "-q"], check=True)


def last_line(text: str) -> str:
    return text.rstrip().splitlines()[-1]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("wheels")
    return {
        "app": build_wheel(work, "app", APP),
        "helper": build_wheel(work, "helper", HELPER),
        "six": build_wheel(work, "sixish", {"sixish.py": "VERSION = 1\n"}, version="1.16.0"),
        "six-new": build_wheel(work, "sixish", {"sixish.py": "VERSION = 2\n"}, version="1.17.0"),
        "extra": build_wheel(work, "extra", {"extra/__init__.py": ""}),
        "broken-new": build_wheel(work, "newbroken", {"newbroken/__init__.py": "raise ImportError('broken')\n"}),
    }


# -- the manifest's records apply to the same distribution at the same version only ------------------------------


def test_distributions_changed_since_the_prune_are_judged_on_their_own(tmp_path: Path, wheels: dict[str, Path]) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels[n] for n in ("app", "helper", "six", "extra")])
    code, _, err = prune_json(str(venv))
    assert code == 0, err
    pip(venv, "install", "--no-index", "--no-deps", str(wheels["six-new"]))  # upgraded since the prune
    pip(venv, "uninstall", "-y", "extra")  # removed since the prune
    code, out, _ = run("check", str(venv))
    assert code == 0, out
    assert "changed since the prune: 2 distributions" in out
    final = final_stage_check(venv)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "changed since the prune: 2 distributions" in final.stdout
    assert "extra" not in last_line(final.stdout)

    # A distribution installed since is judged on its own; one removed that others import still breaks them.
    pip(venv, "install", "--no-index", "--no-deps", str(wheels["broken-new"]))
    pip(venv, "uninstall", "-y", "helper")
    code, out, _ = run("check", str(venv))
    assert code == 1, out
    failed = sorted(line.split(":")[0] for line in out.splitlines() if line.startswith("FAILED"))
    assert failed == ["FAILED import app", "FAILED import newbroken"], out
    final = final_stage_check(venv)
    assert final.returncode == 1
    assert sorted(line.split(":")[0] for line in final.stdout.splitlines() if line.startswith("FAILED")) == failed


# -- a distribution's own code is checked however deep its namespace ----------------------------------------------


def test_a_package_deep_under_namespace_packages_is_import_checked(tmp_path: Path) -> None:
    work = tmp_path / "wheels"
    work.mkdir()
    deep = {"org/exporter/otlp/proto/common/__init__.py": "raise ImportError('this package is broken')\n"}
    module = {"org/a/b/c/d/e/plain.py": "raise ImportError('this module is broken')\n"}
    built = [
        build_wheel(work, "org-exporter-otlp-proto-common", deep),
        build_wheel(work, "org-deep-module", module),
        build_wheel(work, "org-api", {"org/api/__init__.py": "x = 1\n"}),
    ]
    venv = make_venv(Path(sys.executable), tmp_path / "venv", built)
    code, out, _ = run("check", str(venv))
    assert code == 1, out
    failed = sorted(line.split(":")[0] for line in out.splitlines() if line.startswith("FAILED"))
    assert failed == ["FAILED import org.a.b.c.d.e.plain", "FAILED import org.exporter.otlp.proto.common"], out


# -- unreadable metadata is a failure of that distribution, and of no other ---------------------------------------


@pytest.mark.parametrize("damage", ["missing", "empty"])
def test_a_distribution_with_unreadable_metadata_fails_by_its_own_name(
    tmp_path: Path, wheels: dict[str, Path], damage: str
) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["helper"], wheels["six"]])
    dist_info = site_packages(venv) / "helper-1.0.dist-info"
    if damage == "missing":
        (dist_info / "METADATA").unlink()
    else:
        (dist_info / "METADATA").write_text("")
    code, out, _ = run("check", str(venv))
    assert code == 1, out
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1, out
    assert failed[0].startswith("FAILED metadata helper:"), out
    assert str(dist_info) in failed[0]
    assert "import helper" not in "".join(failed)  # its code still imports, and is still checked
    assert "TypeError" not in out


# -- an unreadable manifest: the same clear error from check and check.py, and the prune --------------------------


def test_an_unreadable_manifest_is_the_same_error_in_check_check_py_and_the_prune(
    tmp_path: Path, wheels: dict[str, Path]
) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["app"], wheels["helper"]])
    code, _, err = prune_json(str(venv))
    assert code == 0, err
    manifest = venv / ".venvprune" / "manifest.json"
    manifest.write_text('{"format": 2, "checks": [')  # truncated by a failed copy
    final = final_stage_check(venv)
    assert final.returncode == 2
    code, out, err = run("check", str(venv))
    assert code == 2, out + err
    [line] = err.strip().splitlines()
    assert str(manifest) in line and "remove" in line
    assert last_line(final.stderr) == f"venvprune check.py: {line.removeprefix('venvprune: error: ')}"
    assert "Traceback" not in err
    before = manifest.read_bytes()
    code, out, err = run("--json", "-", str(venv))
    assert code == 2, out + err
    line = last_line(err)  # after the phases that ran: nothing was changed
    assert str(manifest) in line and "remove" in line
    assert manifest.read_bytes() == before  # nothing changed
    manifest.unlink()
    code, out, err = run("check", str(venv))
    assert code == 0, out + err


# -- the probe opens only regular files: a FIFO cannot hang discovery ---------------------------------------------


def test_a_fifo_in_site_packages_does_not_hang_check_or_check_py(tmp_path: Path, wheels: dict[str, Path]) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["app"], wheels["helper"]])
    code, _, err = prune_json(str(venv))
    assert code == 0, err
    os.mkfifo(site_packages(venv) / "helper" / "control")
    os.mkfifo(site_packages(venv) / "control.so")
    final = final_stage_check(venv, "--timeout", "5", timeout=60)
    assert final.returncode == 0, final.stdout + final.stderr
    code, out, err = run("check", "--timeout", "5", str(venv))
    assert code == 0, out + err


# -- check.py's options are validated as the command line's -------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0.5", "forever"])
def test_check_py_refuses_a_timeout_that_is_not_a_finite_number_of_seconds(
    tmp_path: Path, wheels: dict[str, Path], value: str
) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [wheels["helper"]])
    code, _, err = prune_json(str(venv))
    assert code == 0, err
    final = final_stage_check(venv, "--timeout", value, timeout=60)
    assert final.returncode == 2, final.stdout + final.stderr
    error = last_line(final.stderr)  # after argparse's usage
    assert error.startswith("check.py: error:") and "--timeout" in error, final.stderr
    assert "Traceback" not in final.stderr
    code, _, _ = run("check", "--timeout", value, str(venv))
    assert code == 2
