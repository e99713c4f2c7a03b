"""What a check loaded, and the user's own commands (issue 9): ``--verify affected`` re-checks a host whose plugin
changed however it loads the plugin; ``--smoke`` and ``--check-module`` see the user's folder and PYTHONPATH; what a
smoke command leaves running never answers the next phase; dependants of a hanging import cost no timeout each.

Real venvs, distributions built at test time, venvprune run as a user runs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.site_builder import install_dist
from tests.venv_builder import final_stage_check, make_venv, prune_json, run, site_packages

pytestmark = pytest.mark.integration

# The plugin loads its optional part by a name made at run time: no guard sees it, only the import check does.
PLUGIN = {
    "plug/__init__.py": "",
    "plug/hook.py": "import importlib\n\ndef activate():\n    return importlib.import_module(__package__ + '.tests')\n",
    "plug/tests/__init__.py": "FIXTURE = 1\n",
    "plug/tests/test_plug.py": "def test():\n    pass\n",
}


def plugin_host(name: str) -> dict[str, str]:
    """A host that loads its plugins at import through entry points, as pluggy or a plotting backend does."""
    return {
        f"{name}/__init__.py": "from importlib.metadata import entry_points\n"
        "found = entry_points()\n"
        "found = found.select(group='host.plugins') if hasattr(found, 'select') else found.get('host.plugins', [])\n"
        "for plugin in [ep.load() for ep in found]:\n    plugin.activate()\n"
    }


# "apphost" runs before the plugin's own checks, "zhost" after them (with one worker, in the same process: the
# plugin is already loaded when the host asks for it again).
@pytest.mark.parametrize("host", ["apphost", "zhost"])
def test_a_host_loading_a_changed_plugin_by_entry_point_is_checked_again(tmp_path: Path, host: str) -> None:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [])
    # Installed without bytecode: the prune changes the plugin's files only, never the host's.
    install_dist(site_packages(venv), host, plugin_host(host))
    install_dist(site_packages(venv), "plug", PLUGIN, entry_points="[host.plugins]\np = plug.hook\n")
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-c", f"import {host}"], check=True)
    code, report, err = prune_json("--jobs", "1", str(venv))
    assert code == 0, err
    assert "plug/tests" in [h["path"] for h in report["verification"]["healed"]]
    assert subprocess.run([python, "-c", f"import {host}"]).returncode == 0
    assert final_stage_check(venv).returncode == 0


@pytest.fixture
def six_like_venv(tmp_path: Path) -> Path:
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [])
    install_dist(site_packages(venv), "lib", {"lib/__init__.py": "VERSION = '1'\n", "lib/tests/__init__.py": ""})
    return venv


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A project folder as a Dockerfile's ``WORKDIR /app`` holds it: a script and a package of its own."""
    folder = tmp_path / "app"
    (folder / "myapp").mkdir(parents=True)
    (folder / "manage.py").write_text("import lib\nimport myapp\nprint('ok', lib.VERSION)\n")
    (folder / "myapp" / "__init__.py").write_text("import lib\n")
    return folder


def test_a_smoke_command_runs_where_venvprune_was_started(
    six_like_venv: Path, app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(app)
    code, _, err = prune_json("--smoke", "python manage.py", str(six_like_venv))
    assert code == 0, err
    assert final_stage_check(six_like_venv, cwd=app).returncode == 0


@pytest.mark.parametrize("check", [("--check-module", "myapp"), ("--smoke", "python -c 'import myapp'")])
def test_the_users_own_checks_see_their_pythonpath(
    six_like_venv: Path, app: Path, monkeypatch: pytest.MonkeyPatch, check: tuple[str, str]
) -> None:
    code, out, _ = run("check", *check, str(six_like_venv))
    assert code == 1 and "FAILED" in out, "without PYTHONPATH, myapp is not found: the check fails"
    monkeypatch.setenv("PYTHONPATH", str(app))
    code, _, err = prune_json(*check, str(six_like_venv))
    assert code == 0, err
    assert final_stage_check(six_like_venv).returncode == 0  # the final stage has its PYTHONPATH too
    code, out, _ = run("check", *check, str(six_like_venv))
    assert code == 0, out


# A server that loads a helper by a name made at run time (no guard sees it) and answers on a unix socket.
SERVER = {
    "srv/__init__.py": "",
    "srv/tests/__init__.py": "GREETING = b'ok'\n",
    "srv/__main__.py": """import importlib, os, socket, sys
helper = importlib.import_module(__package__ + "." + os.environ.get("SRV_HELPER", "tests"))
with open(sys.argv[2], "a") as pids:
    pids.write("%d\\n" % os.getpid())
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen()
while True:
    connection, _ = server.accept()
    connection.sendall(helper.GREETING)
    connection.close()
""",
}
ASK_SERVER = """import socket, sys, time
for _ in range(100):
    try:
        client = socket.socket(socket.AF_UNIX)
        client.connect(sys.argv[1])
        sys.exit(client.recv(10) != b'ok')
    except OSError:
        time.sleep(0.05)
sys.exit('no server')
"""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


def test_what_a_smoke_command_started_never_answers_the_next_phase(tmp_path: Path) -> None:
    """A server the baseline's smoke command detached (``setsid``) would run the unpruned code after pruning and
    answer the second smoke; everything a smoke command started ends with it."""
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [])
    install_dist(site_packages(venv), "srv", SERVER)
    (tmp_path / "ask.py").write_text(ASK_SERVER)
    socket_path, pids = tmp_path / "s", tmp_path / "pids"
    server = f"setsid python -m srv {socket_path} {pids} >/dev/null 2>&1"
    smoke = f"rm -f {socket_path}; {server} & python {tmp_path}/ask.py {socket_path}"
    try:
        code, _, _ = prune_json("--timeout", "20", "--smoke", smoke, str(venv))
        started = [int(pid) for pid in pids.read_text().split()]
        assert [pid for pid in started if alive(pid)] == [], "nothing a smoke command started outlives venvprune"
        broken = subprocess.run([str(venv / "bin" / "python"), "-c", "import srv.__main__"], capture_output=True)
        assert code == 1 or b"No module named 'srv.tests'" not in broken.stderr, "a broken server passed"
    finally:
        for pid in map(int, pids.read_text().split() if pids.exists() else ()):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_dependants_of_a_hanging_import_are_not_run_even_on_a_first_run(tmp_path: Path) -> None:
    """Twelve distributions that Require-Dist a package whose import hangs: with nothing learnt from an earlier run,
    the declared requirement says they need it; they are not run, rather than each waiting for the timeout."""
    venv = make_venv(Path(sys.executable), tmp_path / "venv", [])
    site = site_packages(venv)
    install_dist(site, "hang", {"hang/__init__.py": "import time\nwhile True:\n    time.sleep(0.1)\n"})
    for k in range(12):
        install_dist(site, f"user{k}", {f"user{k}/__init__.py": "import hang\n"}, requires=("hang>=1",))
        install_dist(site, f"fine{k}", {f"fine{k}/__init__.py": "VALUE = 1\n"})
    code, out, _ = run("check", "--jobs", "2", "--timeout", "2", str(venv))
    assert code == 1
    timed_out = [line for line in out.splitlines() if "timed out after" in line]
    assert len(timed_out) <= 2, "at most the checks already running when hang timed out wait for the timeout"
    not_run = [line for line in out.splitlines() if line.startswith("not run") and "import hang timed out" in line]
    assert len(not_run) + len(timed_out) >= 13, out
    assert "FAILED import fine" not in out
    # The final-stage checker knows the same.
    code, _, err = run("--no-verify", str(venv))
    assert code == 0, err
    checker = final_stage_check(venv, "--jobs", "2", "--timeout", "2")
    assert checker.returncode == 1
    assert len([line for line in checker.stdout.splitlines() if "timed out after" in line]) <= 2, checker.stdout
