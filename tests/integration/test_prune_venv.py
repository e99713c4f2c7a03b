"""``venvprune VENV`` on a real venv with real wheels built at test time: what goes, what stays, nothing breaks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.site_builder import tree_digest
from tests.wheel_builder import build_wheel, pip_install

pytestmark = pytest.mark.integration

DEMO_FILES = {
    "demo/__init__.py": "from importlib.metadata import version\n__version__ = version('demo')\n",
    "demo/cli.py": "def main():\n    print('demo ok')\n",
    "demo/plugins.py": "class Basic:\n    pass\n",
    "demo/core.py": "def answer():\n    return 42\n",
    "demo/tests/__init__.py": "",
    "demo/tests/test_core.py": "from demo.core import answer\n\ndef test_answer():\n    assert answer() == 42\n",
    "demo/testing/__init__.py": "def assert_answer(x):\n    assert x == 42\n",
    "demo/test.py": "def selftest():\n    return 'ran'\n",
    "demo/sub/__init__.py": "",
    "demo/sub/api.py": "from .tests import helpers\n\ndef helped():\n    return helpers.HELP\n",
    "demo/sub/tests/__init__.py": "",
    "demo/sub/tests/helpers.py": "HELP = 'help'\n",
    "demo/data.txt": "payload\n",
}
DEMO_ENTRY_POINTS = "[console_scripts]\ndemo = demo.cli:main\n\n[demo.plugins]\nbasic = demo.plugins:Basic\n"

CHECK_SCRIPT = """
import importlib.metadata as md, demo, demo.core, demo.testing, demo.test, demo.sub.api, sourceless
assert demo.__version__ == "1.0", demo.__version__
assert demo.sub.api.helped() == "help"
assert demo.test.selftest() == "ran"
assert sourceless.SOURCELESS == "yes"
[plugin] = md.entry_points(group="demo.plugins")
assert plugin.load().__name__ == "Basic"
for dist in md.distributions():
    assert md.version(dist.metadata["Name"])
print("all good")
"""


def venvprune(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "venvprune", *args], capture_output=True, text=True, check=check)


def assert_works(venv: Path) -> None:
    python = venv / "bin" / "python"
    result = subprocess.run([str(python), "-I", "-B", "-c", CHECK_SCRIPT], capture_output=True, text=True)
    assert result.stdout.strip() == "all good", result.stderr
    ran = subprocess.run(
        [str(python), "-I", "-B", "-c", "from demo.cli import main; main()"], capture_output=True, text=True
    )
    assert ran.stdout == "demo ok\n"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with pip and the demo wheels, archived so every test starts from the same bytes at the same path."""
    work = tmp_path_factory.mktemp("pristine")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    source = work / "sourceless_src.py"
    source.write_text("SOURCELESS = 'yes'\n")
    compiled = work / "sourceless.pyc"
    # A sourceless distribution: the .pyc, compiled by the venv's own Python, is the module.
    subprocess.run(
        [str(python), "-c", f"import py_compile; py_compile.compile({str(source)!r}, cfile={str(compiled)!r})"],
        check=True,
    )
    wheels = [
        build_wheel(work, "demo", DEMO_FILES, entry_points=DEMO_ENTRY_POINTS, top_level="demo\n"),
        build_wheel(work, "sourceless", {"sourceless/__init__.pyc": compiled.read_bytes()}),
    ]
    pip_install(venv, *wheels)
    subprocess.run([str(python), "-m", "compileall", "-q", str(venv / "lib")], check=True)
    archive = work / "venv.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(venv, arcname="venv")
    shutil.rmtree(venv)
    return archive


def unpack(archive: Path, where: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(where, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(where)
    return where / "venv"


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def test_dry_run_changes_nothing_then_prune_removes_the_plan(pristine: Path, tmp_path: Path) -> None:
    venv = unpack(pristine, tmp_path)
    site = site_packages(venv)
    # A symlink out of the target, to a folder with its own tests/, and a hard link shared with another place.
    sentinel = tmp_path / "sentinel"
    (sentinel / "tests").mkdir(parents=True)
    (sentinel / "tests" / "keep_me.py").write_text("x = 1\n")
    (sentinel / "__pycache__").mkdir()
    (sentinel / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\x00")
    (site / "demo" / "outside").symlink_to(sentinel)
    (site / "demo" / "sub" / "test").symlink_to(sentinel / "tests")  # a `test` that is a symlink
    twin = tmp_path / "uv-cache-twin-RECORD"
    os.link(site / "demo-1.0.dist-info" / "RECORD", twin)
    twin_before = twin.read_bytes()
    sentinel_before = tree_digest(sentinel)
    before = tree_digest(venv)

    dry = venvprune("--dry-run", "--json", str(tmp_path / "plan.json"), str(venv))
    assert tree_digest(venv) == before
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["dry_run"] is True
    planned = {a["path"] for a in plan["actions"]}
    assert "demo/tests" in planned  # paths relative to site-packages
    assert dry.stdout.rstrip().splitlines()[-1].endswith("dry run, nothing changed")

    done = venvprune("--json", str(tmp_path / "done.json"), str(venv))
    report = json.loads((tmp_path / "done.json").read_text())
    assert report["status"] == "success", done.stderr
    assert not (site / "demo" / "tests").exists()
    assert not list(site.rglob("__pycache__"))
    for kept in ("demo/testing/__init__.py", "demo/test.py", "demo/sub/tests/helpers.py", "sourceless/__init__.pyc"):
        assert (site / kept).exists(), kept
    reasons = {k["path"].split("site-packages/")[-1]: k["reason"] for k in report["kept"]}
    assert reasons["demo/sub/tests"] == "demo/sub/api.py imports it at runtime"
    assert reasons["sourceless/__init__.pyc"] == "sourceless module: this .pyc is the code"
    record = (site / "demo-1.0.dist-info" / "RECORD").read_text()
    assert "demo/tests/" not in record and "demo/sub/tests/helpers.py" in record
    assert_works(venv)
    assert tree_digest(sentinel) == sentinel_before
    assert twin.read_bytes() == twin_before
    assert not (venv / ".venvprune-staging").exists()
    # Prune again: nothing left to do, nothing breaks.
    again = json.loads(venvprune("--json", "-", str(venv)).stdout)
    assert again["totals"]["files_removed"] == 0
    assert_works(venv)


def test_killed_prune_is_restored_or_completed_by_the_next_run(pristine: Path, tmp_path: Path) -> None:
    """SIGKILL at points spread over a measured run; the next run must leave the venv as before or as pruned."""
    venv = unpack(pristine, tmp_path)
    before = tree_digest(venv)
    started = time.monotonic()
    report = json.loads(venvprune("--json", "-", str(venv)).stdout)
    total = time.monotonic() - started
    pruned = tree_digest(venv)
    assert pruned != before
    # The interpreter starts before the first phase; spread the kills over the phases the report timed.
    phases = sum(t["seconds"] for t in report["timings"])
    startup = max(total - phases, 0.0)
    outcomes = {"before": 0, "pruned": 0}
    for fraction in (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97):
        shutil.rmtree(venv)
        venv = unpack(pristine, tmp_path)
        process = subprocess.Popen(
            [sys.executable, "-m", "venvprune", "-q", str(venv)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(startup + phases * fraction)
        process.send_signal(signal.SIGKILL)
        process.wait()
        venvprune("-q", str(venv))  # recovers first, then prunes
        assert tree_digest(venv) == pruned, f"killed at {fraction:.0%}"
        assert_works(venv)
        # And a recovery alone (dry run refuses while a prune is pending) leaves before-or-pruned.
        shutil.rmtree(venv)
        venv = unpack(pristine, tmp_path)
        process = subprocess.Popen([sys.executable, "-m", "venvprune", "-q", str(venv)], stdout=subprocess.DEVNULL)
        time.sleep(startup + phases * fraction)
        process.send_signal(signal.SIGKILL)
        process.wait()
        from venvprune.apply import recover
        from venvprune.target import resolve_target

        recover(resolve_target(venv))
        state = tree_digest(venv)
        assert state in (before, pruned), f"killed at {fraction:.0%}: neither as before nor as pruned"
        outcomes["before" if state == before else "pruned"] += 1
        assert_works(venv)
    assert outcomes["before"] + outcomes["pruned"] == 8
