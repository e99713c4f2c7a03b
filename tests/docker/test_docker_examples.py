"""Build the Dockerfiles of docker-examples/ on a real engine and check what ships.

The builder and final images are local (start-engine.sh debootstraps them: Python 3.11 at /usr/bin/python3),
and the wheels come from a wheelhouse made on the host at test time: containers cannot reach PyPI here.
The Dockerfiles are the users' files, unchanged: only their build arguments differ.

- pandas: the build succeeds (venvprune prunes and verifies in the builder, check.py passes in the final
  stage), the final image's venv is smaller than an unpruned build's, and the stack imports in the final.
- fastapi: the build succeeds and the API answers in the final image.
- a system library missing from the final image (libpq.so.5 is in the builder, not in the final image): the
  final stage's check.py step fails the build and names the module and the library.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import BASE_IMAGE, FINAL_IMAGE, REPO, Docker, Result, in_ci, report_figure

pytestmark = pytest.mark.docker

EXAMPLES = REPO / "docker-examples"
BUILD_ARGS = {
    "BASE_IMAGE": BASE_IMAGE,
    "FINAL_IMAGE": FINAL_IMAGE,
    "PIP_INSTALL_ARGS": "--no-index --find-links /context/wheels",
}
TAG = "venvprune-test"
REPRODUCIBLE_EPOCH = "315532800"  # 1980-01-01, the earliest date a zip file can hold
PANDAS_IMPORTS = "import pandas, numpy, scipy, sklearn, matplotlib, pyarrow"

# The builder's interpreter (bookworm: CPython 3.11 on x86_64, glibc 2.36): pip download picks wheels for it.
PYTHON_VERSION = "3.11"
ABI = "cp311"
# pip does not expand manylinux_2_X to older tags (it does for manylinux2014/2010): list them, newest first.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]

VENV_SIZE = """
import os, sys
total = files = 0
for root, dirs, names in os.walk(sys.argv[1]):
    for name in names:
        total += os.lstat(os.path.join(root, name)).st_size
        files += 1
print(total, files)
"""

SERVE_API = """
import json, sys, threading, time, urllib.request
sys.path.insert(0, "/app")
import uvicorn
from app import app
server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=8000, log_level="warning"))
thread = threading.Thread(target=server.run, daemon=True)
thread.start()
for _ in range(300):
    if server.started:
        break
    time.sleep(0.1)
base = "http://127.0.0.1:8000"
put = urllib.request.Request(base + "/items/1", data=json.dumps({"name": "tea", "price": 2.5}).encode(),
                             headers={"Content-Type": "application/json"}, method="PUT")
print(urllib.request.urlopen(put, timeout=10).read().decode())
print(urllib.request.urlopen(base + "/items/1", timeout=10).read().decode())
print(urllib.request.urlopen(base + "/health", timeout=10).read().decode())
server.should_exit = True
thread.join(10)
"""


# -- the wheelhouse ------------------------------------------------------------------------------------------


def _pip(*args: str) -> None:
    env = dict(os.environ, SOURCE_DATE_EPOCH=REPRODUCIBLE_EPOCH)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=1800, check=False, env=env
    )
    if proc.returncode != 0:
        message = f"pip {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)  # no PyPI on a developer's machine


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory, docker: Docker) -> Path:
    """The examples' requirements for the builder's Python, venvprune and its dependencies, and pqlink."""
    wheels = tmp_path_factory.mktemp("wheelhouse")
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    requirements = [arg for path in sorted(EXAMPLES.glob("*/requirements.txt")) for arg in ("-r", str(path))]
    _pip(
        "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
        "--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", ABI, *platforms,
        "--dest", str(wheels), *requirements,
    )  # fmt: skip
    # Built from a copy: pip builds in the source tree, and a stale build/ there could put deleted modules in the
    # wheel. SOURCE_DATE_EPOCH makes the wheel reproducible, so an unchanged venvprune hits the build cache.
    source = tmp_path_factory.mktemp("venvprune-source")
    for name in ("pyproject.toml", "README.md", "LICENSE", "venvprune"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif (REPO / name).exists():
            shutil.copy2(REPO / name, source / name)
    _pip("wheel", "--quiet", "--disable-pip-version-check", "--wheel-dir", str(wheels), str(source))
    _make_pqlink_wheel(docker, wheels)
    return wheels


def _make_pqlink_wheel(docker: Docker, wheels: Path) -> None:
    """A tiny package whose extension module needs libpq.so.5, a system library of the builder image only.

    No compiler in the images, none needed on the host: take the standard library's `xxlimited` extension
    from the builder image (as `pqlink.xxlimited` it still finds PyInit_xxlimited) and add a DT_NEEDED
    entry for libpq.so.5 with patchelf, as a wheel built against the system's libpq (psycopg2 built from
    source) has. psycopg2-binary would not do: it bundles its own libpq in psycopg2_binary.libs.
    """
    patchelf = shutil.which("patchelf")
    if patchelf is None:
        pytest.fail("patchelf is missing (start-engine.sh installs it)", pytrace=False)
    suffix = docker.bytes_of(
        "run", "--rm", "--network=none", BASE_IMAGE,
        "python3", "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))",
    ).decode().strip()  # fmt: skip
    extension = docker.bytes_of(
        "run", "--rm", "--network=none", BASE_IMAGE, "python3", "-c",
        "import os, sys, sysconfig; sys.stdout.buffer.write(open(os.path.join("
        f"sysconfig.get_path('platstdlib'), 'lib-dynload', 'xxlimited{suffix}'), 'rb').read())",
    )  # fmt: skip
    work = wheels.parent / "pqlink-build"
    work.mkdir()
    so = work / f"xxlimited{suffix}"
    so.write_bytes(extension)
    subprocess.run([patchelf, "--add-needed", "libpq.so.5", str(so)], check=True, timeout=60)

    dist_info = "pqlink-1.0.dist-info"
    tag = f"{ABI}-{ABI}-linux_x86_64"
    files = {
        "pqlink/__init__.py": b'"""Needs libpq.so.5 through its extension."""\n\nfrom . import xxlimited\n',
        f"pqlink/xxlimited{suffix}": so.read_bytes(),
        f"{dist_info}/METADATA": b"Metadata-Version: 2.1\nName: pqlink\nVersion: 1.0\n",
        f"{dist_info}/WHEEL": "\n".join(
            ["Wheel-Version: 1.0", "Generator: venvprune-tests", "Root-Is-Purelib: false", f"Tag: {tag}", ""]
        ).encode(),
        f"{dist_info}/top_level.txt": b"pqlink\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel_path = wheels / f"pqlink-1.0-{tag}.whl"
    with zipfile.ZipFile(wheel_path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            wheel.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)


# -- build contexts and builds -------------------------------------------------------------------------------


def make_context(
    destination: Path,
    example: str,
    wheelhouse: Path,
    *,
    name: str | None = None,
    requirements: str | None = None,
    pruned: bool = True,
) -> Path:
    """A copy of docker-examples/EXAMPLE with the wheelhouse in wheels/ (hard links where possible)."""
    context = destination / (name or f"{example}-{'pruned' if pruned else 'unpruned'}")
    shutil.copytree(EXAMPLES / example, context, ignore=shutil.ignore_patterns("__pycache__", "wheels"))
    shutil.copytree(wheelhouse, context / "wheels", copy_function=_link_or_copy)
    if requirements is not None:
        (context / "requirements.txt").write_text(requirements)
    if not pruned:
        dockerfile = context / "Dockerfile"
        dockerfile.write_text(without_venvprune(dockerfile.read_text()))
    return context


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def without_venvprune(dockerfile: str) -> str:
    """The Dockerfile without the prune step and the final-stage check: the baseline to compare with."""
    patterns = [r"^RUN venvprune\b.*\n", r"^RUN .*/\.venvprune/check\.py.*\n"]
    for pattern in patterns:
        dockerfile, count = re.subn(pattern, "", dockerfile, flags=re.MULTILINE)
        assert count == 1, f"the example Dockerfile has changed shape: {pattern!r} matched {count} lines"
    return dockerfile


def step_output(result: Result, instruction: str) -> str:
    """The log lines of the build step whose instruction contains INSTRUCTION (BuildKit --progress=plain)."""
    steps = re.findall(r"^(#\d+) \[.*?\] (.*)$", result.output, flags=re.MULTILINE)
    ids = {step for step, text in steps if instruction in text}
    return "\n".join(line for line in result.output.splitlines() if line.split(" ", 1)[0] in ids)


def require(result: Result, what: str, lines: int = 60) -> None:
    if not result.ok:
        pytest.fail(f"{what}: {result.describe(lines)}", pytrace=False)


def venv_size(docker: Docker, image: str) -> tuple[int, int]:
    """Bytes (apparent sizes) and files under /opt/venv, counted by the image's own Python."""
    result = docker.run(image, "/opt/venv/bin/python", "-c", VENV_SIZE, "/opt/venv")
    require(result, f"measuring /opt/venv in {image}")
    total, files = result.output.split()[-2:]
    return int(total), int(files)


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@dataclass
class Build:
    tag: str
    result: Result


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("contexts")


@pytest.fixture(scope="module")
def pandas_pruned(docker: Docker, wheelhouse: Path, contexts: Path) -> Iterator[Build]:
    tag = f"{TAG}/pandas:pruned"
    result = docker.build(make_context(contexts, "pandas", wheelhouse), tag, BUILD_ARGS)
    yield Build(tag, result)


@pytest.fixture(scope="module")
def pandas_unpruned(docker: Docker, wheelhouse: Path, contexts: Path) -> Build:
    tag = f"{TAG}/pandas:unpruned"
    result = docker.build(make_context(contexts, "pandas", wheelhouse, pruned=False), tag, BUILD_ARGS)
    require(result, "the unpruned pandas build (no venvprune in it)")
    return Build(tag, result)


# -- pandas --------------------------------------------------------------------------------------------------


def test_pandas_example_builds(pandas_pruned: Build) -> None:
    prune_log = step_output(pandas_pruned.result, "RUN venvprune")
    summary = [line for line in prune_log.splitlines() if "venvprune:" in line and "->" in line]
    if summary:
        report_figure(f"pandas builder: {summary[-1].split('venvprune:', 1)[1].strip()}")
    require(pandas_pruned.result, "the pandas example build (prune in the builder, check.py in the final)")


def test_pandas_final_image_imports(docker: Docker, pandas_pruned: Build) -> None:
    require(pandas_pruned.result, "the pandas example build", lines=3)
    result = docker.run(pandas_pruned.tag, "/opt/venv/bin/python", "-c", PANDAS_IMPORTS)
    assert result.ok, result.describe()
    analysis = docker.run(pandas_pruned.tag)  # the image's CMD: analyze.py uses every library once
    assert analysis.ok, analysis.describe()
    assert "parquet rows 200" in analysis.output


def test_pandas_pruned_venv_is_smaller(docker: Docker, pandas_pruned: Build, pandas_unpruned: Build) -> None:
    require(pandas_pruned.result, "the pandas example build", lines=3)
    before, before_files = venv_size(docker, pandas_unpruned.tag)
    after, after_files = venv_size(docker, pandas_pruned.tag)
    image_before = docker.image_size(pandas_unpruned.tag)
    image_after = docker.image_size(pandas_pruned.tag)
    report_figure(
        f"pandas /opt/venv: unpruned {mb(before)} ({before_files} files), "
        f"pruned {mb(after)} ({after_files} files), -{100 * (before - after) / before:.0f}%"
    )
    report_figure(
        f"pandas final image: unpruned {mb(image_before)}, pruned {mb(image_after)}, "
        f"-{100 * (image_before - image_after) / image_before:.0f}%"
    )
    assert after < before
    assert image_after < image_before


# -- fastapi -------------------------------------------------------------------------------------------------


def test_fastapi_example_builds_and_serves(docker: Docker, wheelhouse: Path, contexts: Path) -> None:
    tag = f"{TAG}/fastapi:pruned"
    result = docker.build(make_context(contexts, "fastapi", wheelhouse), tag, BUILD_ARGS)
    require(result, "the fastapi example build")
    served = docker.run(tag, "/opt/venv/bin/python", "-c", SERVE_API)
    assert served.ok, served.describe()
    answers = [json.loads(line) for line in served.output.splitlines() if line.startswith("{")]
    assert answers == [{"name": "tea", "price": 2.5}, {"name": "tea", "price": 2.5}, {"status": "ok"}]


# -- a system library the final image lacks ------------------------------------------------------------------


def test_missing_system_library_fails_final_stage(docker: Docker, wheelhouse: Path, contexts: Path) -> None:
    """libpq.so.5 is in the builder image, not in the final one: check.py must stop the build and say why."""
    context = make_context(contexts, "pandas", wheelhouse, name="pqlink", requirements="pqlink\n")

    builder = docker.build(context, f"{TAG}/pqlink:builder", BUILD_ARGS, target="builder")
    require(builder, "the pqlink builder stage (libpq5 is there: import, prune and verification must pass)")
    imported = docker.run(f"{TAG}/pqlink:builder", "/opt/venv/bin/python", "-c", "import pqlink.xxlimited")
    assert imported.ok, f"pqlink must import in the builder: {imported.describe()}"

    final = docker.build(context, f"{TAG}/pqlink:final", BUILD_ARGS)
    assert not final.ok, "the final stage lacks libpq.so.5, yet the build succeeded: check.py missed it"
    failed_step = step_output(final, ".venvprune/check.py")
    assert failed_step, f"the build failed before the final-stage check:\n{final.tail()}"
    assert re.search(r"(ERROR|executor failed|did not complete).*check\.py", final.output), final.tail()
    assert "pqlink" in failed_step, f"check.py's message does not name the module:\n{failed_step}"
    assert "libpq.so.5" in failed_step, f"check.py's message does not name the library:\n{failed_step}"
    report_figure("pqlink final stage: " + " | ".join(failed_step.splitlines()[-6:]))
