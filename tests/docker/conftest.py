"""The real Docker engine for the docker tests: started once per session by start-engine.sh.

Without an engine (not root, no docker.io, dockerd would not start) the tests are skipped on a developer's
machine and fail in CI (CI=true): a CI run that silently skipped the Docker tests would prove nothing.

The tests build docker-examples/ through docker-examples/build.py, the script that prints the image-level table, so
the table and the tests measure the same builds the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# docker-examples/build.py is a script, not a package module: first on the path, so that no other `build` wins.
sys.path.insert(0, str(REPO / "docker-examples"))

import build  # noqa: E402

START_ENGINE = HERE / "start-engine.sh"
ENGINE_START_TIMEOUT = 1800  # a first run installs packages and debootstraps two images (about 5 min here)
BUILD_CACHE_KEEP = "8GB"  # the pandas builder layers are about 1.5 GB, a uv cache per variant a few hundred MB


_FIGURES: list[str] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """No engine (or no PyPI): skip on a developer's machine, fail in CI."""
    if in_ci():
        pytest.fail(f"unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def report_figure(line: str) -> None:
    """A measurement to show in the terminal summary (sizes, times)."""
    _FIGURES.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("venvprune docker figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.docker)


def _start_engine() -> None:
    try:
        proc = subprocess.run(
            ["bash", str(START_ENGINE)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=ENGINE_START_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        unavailable(f"Docker engine unavailable: {START_ENGINE.name} did not finish within {ENGINE_START_TIMEOUT} s")
    if proc.returncode != 0:
        unavailable(
            f"Docker engine unavailable: {START_ENGINE.name} exited {proc.returncode}:\n"
            f"{proc.stderr.decode(errors='replace')}"
        )


@pytest.fixture(scope="session")
def docker() -> Iterator[build.Engine]:
    """A running engine with the local images (started by start-engine.sh when needed), or a skip (CI: a failure)."""
    client = build.Engine()
    # As root, always: start-engine.sh is quick when all is ready, and rebuilds an image whose recipe changed.
    # Otherwise an engine someone else started (.ci/run through sudo) will do, if this user may use it.
    if sys.platform == "linux" and os.geteuid() == 0:
        _start_engine()
    try:
        build.require_engine(client)
    except build.BuildError as error:
        unavailable(f"Docker engine unavailable: {error}")
    yield client
    client.remove_images(*dict.fromkeys(reversed(client.tags_built)))
    # Each change to venvprune makes new builder layers: keep the build cache from growing run after run.
    client.run_client("builder", "prune", "--force", f"--keep-storage={BUILD_CACHE_KEEP}")
