"""The real Docker engine for the docker tests: started once per session by start-engine.sh.

Without an engine (not root, no docker.io, dockerd would not start) the tests are skipped on a developer's
machine and fail in CI (CI=true): a CI run that silently skipped the Docker tests would prove nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
START_ENGINE = HERE / "start-engine.sh"

BASE_IMAGE = "venvprune-base:bookworm"  # builder: minbase + python3, python3-venv, libpq5
FINAL_IMAGE = "venvprune-final:bookworm"  # final: minbase + python3 only (no pip, no venv, no libpq5)

# Debian's client has BuildKit built in; the one in /usr/local/bin wants a buildx plugin (shared/DOCKER.md).
DOCKER = "/usr/bin/docker"
ENGINE_START_TIMEOUT = 1800  # a first run installs packages and debootstraps two images (about 3 min here)
BUILD_TIMEOUT = 1800
BUILD_CACHE_KEEP = "6GB"  # the pandas builder layers are about 1.5 GB

_FIGURES: list[str] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """No engine: skip on a developer's machine, fail in CI."""
    if in_ci():
        pytest.fail(f"Docker engine unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"Docker engine unavailable: {reason}")


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


@dataclass
class Result:
    args: Sequence[str]
    returncode: int
    output: str  # stdout and stderr, interleaved

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    def describe(self, lines: int = 60) -> str:
        return f"`{' '.join(self.args)}` exited {self.returncode}; last lines:\n{self.tail(lines)}"


@dataclass
class Docker:
    """The Docker client, with the few commands the tests use."""

    executable: str = DOCKER
    created: list[str] = field(default_factory=list)

    def run_client(self, *args: str, timeout: float = 600, input: bytes | None = None) -> Result:
        env = dict(os.environ, DOCKER_BUILDKIT="1")
        proc = subprocess.run(
            [self.executable, *args],
            input=input,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            env=env,
            check=False,
        )
        return Result([self.executable, *args], proc.returncode, proc.stdout.decode("utf-8", "replace"))

    def bytes_of(self, *args: str, timeout: float = 600) -> bytes:
        proc = subprocess.run([self.executable, *args], capture_output=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout

    def build(
        self,
        context: Path,
        tag: str,
        build_args: dict[str, str] | None = None,
        *,
        dockerfile: Path | None = None,
        target: str | None = None,
    ) -> Result:
        args = ["build", "--progress=plain", "-t", tag]
        for name, value in (build_args or {}).items():
            args += ["--build-arg", f"{name}={value}"]
        if dockerfile is not None:
            args += ["-f", str(dockerfile)]
        if target is not None:
            args += ["--target", target]
        args.append(str(context))
        result = self.run_client(*args, timeout=BUILD_TIMEOUT)
        if result.ok:
            self.created.append(tag)
        return result

    def run(self, image: str, *command: str, timeout: float = 600) -> Result:
        return self.run_client("run", "--rm", "--network=none", image, *command, timeout=timeout)

    def image_size(self, image: str) -> int:
        return int(self.bytes_of("image", "inspect", "-f", "{{.Size}}", image).decode().strip())


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    """A running engine with the base images, or a skip (a failure in CI)."""
    if sys.platform != "linux":
        unavailable("the engine is started on Linux only")
    if os.geteuid() != 0:
        unavailable(f"{START_ENGINE.name} must run as root (apt-get, dockerd, debootstrap)")
    try:
        proc = subprocess.run(
            ["bash", str(START_ENGINE)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=ENGINE_START_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        unavailable(f"{START_ENGINE.name} did not finish within {ENGINE_START_TIMEOUT} s")
    if proc.returncode != 0:
        unavailable(f"{START_ENGINE.name} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
    client = Docker()
    yield client
    for tag in reversed(client.created):
        client.run_client("image", "rm", "--force", tag)
    # Each change to venvprune makes new builder layers: keep the build cache from growing run after run.
    client.run_client("builder", "prune", "--force", f"--keep-storage={BUILD_CACHE_KEEP}")
