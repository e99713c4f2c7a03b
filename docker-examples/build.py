#!/usr/bin/env python3
"""Build the examples of this folder in variants, measure the final images, and print the table.

    python3 docker-examples/build.py                      # every example, every variant
    python3 docker-examples/build.py pandas uv            # some examples
    python3 docker-examples/build.py --update-readmes     # also write the table into the READMEs

Each example's Dockerfile is built as it is ("venvprune") and with its `venvprune ${VENVPRUNE_ARGS} PATH` command
replaced: by nothing ("unpruned", and the final stage's check.py line goes too: there is no manifest), or by the
find/strip chain of the optimisation guides ("find-chain", likewise without check.py). A "venvprune --profile max"
variant joins when this checkout's `venvprune --help` lists --profile. For every image it prints the size the
engine reports, the size of the layers that hold /opt/venv (from `docker history`) and whether the image's own smoke
check passed.

It builds the way this project's machines and CI can: with the local images that tests/docker/start-engine.sh makes
(no registry here) and an offline wheelhouse downloaded on the host (containers cannot reach PyPI), through the
Dockerfiles' build arguments; venvprune itself is a wheel of this checkout. Run start-engine.sh first, as root.
Standard library only; needs Debian's docker client (/usr/bin/docker: BuildKit built in).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

EXAMPLES_DIR = Path(__file__).resolve().parent
REPO = EXAMPLES_DIR.parent

# Debian's client: BuildKit built in (the one in /usr/local/bin here wants a buildx plugin that is not installed).
DOCKER = "/usr/bin/docker"
BASE_IMAGE = "venvprune-base:bookworm"  # builder: Debian 12 minbase + python3, python3-venv, libpq5, binutils
FINAL_IMAGE = "venvprune-final:bookworm"  # final: Debian 12 minbase + python3 (no pip, no venv, no libpq5)
DISTROLESS_IMAGE = "venvprune-distroless:bookworm"  # final: Debian's python3 and its libraries, no shell
LOCAL_IMAGES = (BASE_IMAGE, FINAL_IMAGE, DISTROLESS_IMAGE)
OFFLINE_INSTALL = "--no-index --find-links /context/wheels"
TAG_PREFIX = "venvprune-example"
VENV_PYTHON = "/opt/venv/bin/python"

# The local images' interpreter (bookworm: CPython 3.11 on x86_64, glibc 2.36): the wheelhouse is for it.
PYTHON_VERSION = "3.11"
ABI = "cp311"
# pip does not expand manylinux_2_X to older tags (it does for manylinux2014/2010): list them, newest first.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
REPRODUCIBLE_EPOCH = "315532800"  # 1980-01-01: an unchanged venvprune gives the same wheel, and hits the build cache
BUILD_TIMEOUT = 3600
RUN_TIMEOUT = 600

README_START = "<!-- build.py table: start -->"
README_END = "<!-- build.py table: end -->"


class BuildError(Exception):
    """Something build.py needs is missing or broken; the message says what to do."""


# -- the examples and the variants ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    name: str  # its folder in docker-examples/
    smoke: tuple[str, ...]  # arguments to /opt/venv/bin/python in the final image: the image's own smoke check
    dockerfile: str = "Dockerfile"
    installer: str = "pip"  # what fills the venv: "pip" or "uv" (a host copy of the venv is made the same way)
    # Build arguments for this project's local images, on top of LOCAL_BUILD_ARGS.
    local_build_args: Mapping[str, str] = field(default_factory=dict)
    in_ci: bool = True  # built by the docker tests; the others only by this script

    @property
    def key(self) -> str:
        """The example's name in the table: its folder, and the Dockerfile when it is not the default one."""
        suffix = self.dockerfile.removeprefix("Dockerfile").lstrip(".")
        return f"{self.name}/{suffix}" if suffix else self.name

    @property
    def directory(self) -> Path:
        return EXAMPLES_DIR / self.name

    def source_of(self, image_path: str) -> Path:
        """The file of the example folder that the image holds at IMAGE_PATH (every example copies to /app)."""
        return self.directory / image_path.removeprefix("/app/")

    def tag(self, variant: str) -> str:
        return f"{TAG_PREFIX}/{self.key.replace('/', '-')}:{variant}"


EXAMPLES: tuple[Example, ...] = (
    Example("pandas", smoke=("/app/analyze.py",)),
    Example("fastapi", smoke=("/app/smoke.py",)),
    # Debian's python3 has its headers in python3-dev (python:3.12-slim has them). About 6 minutes, a 1 GB venv,
    # and apt-get in both stages (its containers must reach Debian's mirror): the docker tests leave it to build.py.
    Example(
        "api",
        smoke=("/app/smoke.py",),
        local_build_args={"BUILD_PACKAGES": "gcc libc6-dev libpq-dev python3-dev"},
        in_ci=False,
    ),
    Example("distroless", smoke=("/app/app.py",), local_build_args={"FINAL_IMAGE": DISTROLESS_IMAGE}),
    Example("uv", smoke=("/app/app.py",), installer="uv"),
    Example("single-stage", smoke=("/app/scripts/main.py",)),
    Example("single-stage", smoke=("/app/scripts/main.py",), dockerfile="Dockerfile.later-run"),
)

LOCAL_BUILD_ARGS = {"BASE_IMAGE": BASE_IMAGE, "FINAL_IMAGE": FINAL_IMAGE, "PIP_INSTALL_ARGS": OFFLINE_INSTALL}


def example(key: str) -> Example:
    for candidate in EXAMPLES:
        if candidate.key == key:
            return candidate
    raise KeyError(key)


# The chain of the optimisation guides, as they paste it into the builder in place of venvprune. GNU strip comes
# from binutils, which python:3.12-slim lacks: installed first when missing, as a user of the chain must.
FIND_CHAIN = (
    'find {path} -name "*.pyc" -delete'
    ' && find {path} -name "tests" -type d -exec rm -rf {{}} +'
    ' && find {path} -name "test" -type d -exec rm -rf {{}} +'
    ' && find {path} -name "__pycache__" -type d -exec rm -rf {{}} +'
    ' && find {path} -name "*.so" -exec strip {{}} +'
    ' && find {path} -name "*.dist-info" -type d -exec rm -rf {{}} +'
    ' && find {path} -name "*.egg-info" -type d -exec rm -rf {{}} +'
)
INSTALL_STRIP = (
    "(command -v strip >/dev/null"
    " || (apt-get update -qq && apt-get install -y -qq --no-install-recommends binutils >/dev/null))"
)


def find_chain(path: str) -> str:
    return f"{INSTALL_STRIP} && {FIND_CHAIN.format(path=path)}"


@dataclass(frozen=True)
class Variant:
    name: str
    prune: Callable[[str], str]  # the shell command that replaces `venvprune ${VENVPRUNE_ARGS} PATH`, given PATH
    final_check: bool  # keeps the final stage's check.py line (it needs the manifest venvprune writes)
    requires_option: str | None = None  # offered only when `venvprune --help` lists this option


VARIANTS: tuple[Variant, ...] = (
    Variant("unpruned", lambda path: "true", final_check=False),
    Variant("find-chain", find_chain, final_check=False),
    Variant("venvprune", lambda path: f"venvprune ${{VENVPRUNE_ARGS}} {path}", final_check=True),
    Variant("venvprune-max", lambda path: f"venvprune --profile max ${{VENVPRUNE_ARGS}} {path}", True, "--profile"),
)

PRUNE_COMMAND = re.compile(r"venvprune \$\{VENVPRUNE_ARGS\} (?P<path>/\S+)")
# A cache mount's id, a literal: the Dockerfile frontend of Docker 20.10 does not expand ${ARG}s in --mount options.
CACHE_MOUNT_ID = re.compile(r"(?P<option>--mount=type=cache,(?:\S*,)?id=)(?P<id>[\w.-]+)")
CHECK_LINE = re.compile(r'^RUN \["[^"\n]*", "-B", "[^"\n]*/\.venvprune/check\.py"\]\n', re.MULTILINE)


def variant(name: str) -> Variant:
    for candidate in VARIANTS:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def available_variants(venvprune_help: str) -> tuple[Variant, ...]:
    """The variants this venvprune can build: those whose option its --help lists."""
    return tuple(
        v for v in VARIANTS if v.requires_option is None or re.search(rf"(^|\s){v.requires_option}\b", venvprune_help)
    )


def venvprune_help() -> str:
    """`venvprune --help` of this checkout (the one the wheelhouse's wheel is built from)."""
    proc = subprocess.run(
        [sys.executable, "-m", "venvprune", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    if proc.returncode != 0:
        raise BuildError(
            f"cannot run `{sys.executable} -m venvprune --help` in {REPO} ({proc.stderr.strip()[-300:]}): "
            "run build.py with a Python that has venvprune's dependencies (click, packaging, pyelftools)"
        )
    return proc.stdout


def derive_dockerfile(
    dockerfile: str, chosen: Variant, *, prune: Callable[[str], str] | None = None, cache_suffix: str | None = None
) -> str:
    """DOCKERFILE with its venvprune command replaced as CHOSEN says (or by PRUNE, a test's own command), and
    CACHE_SUFFIX appended to the id of each cache mount."""
    commands = PRUNE_COMMAND.findall(dockerfile)
    if len(commands) != 1:
        raise BuildError(
            f"the Dockerfile has {len(commands)} `venvprune ${{VENVPRUNE_ARGS}} PATH` commands, build.py needs one"
        )
    replace = prune or chosen.prune
    derived = PRUNE_COMMAND.sub(lambda match: replace(match["path"]), dockerfile)
    if not chosen.final_check:
        derived = CHECK_LINE.sub("", derived)
    if cache_suffix:
        derived = CACHE_MOUNT_ID.sub(lambda match: f"{match['option']}{match['id']}-{cache_suffix}", derived)
    return derived


def cache_mount_ids(dockerfile: str) -> list[str]:
    return [match["id"] for match in CACHE_MOUNT_ID.finditer(dockerfile)]


# -- the engine ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completed:
    args: tuple[str, ...]
    returncode: int
    output: str  # stdout and stderr, interleaved
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    def describe(self, lines: int = 60) -> str:
        return f"`{' '.join(self.args)}` exited {self.returncode}; last lines:\n{self.tail(lines)}"


@dataclass(frozen=True)
class Layer:
    created_by: str
    size: int


class Engine:
    """The Docker client, with the few commands build.py and the docker tests use."""

    def __init__(self, executable: str = DOCKER) -> None:
        self.executable = executable
        self.tags_built: list[str] = []  # every tag a build was asked for, so that a caller can remove them

    def run_client(self, *args: str, timeout: float = RUN_TIMEOUT) -> Completed:
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [self.executable, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                env=dict(os.environ, DOCKER_BUILDKIT="1"),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            output = (exc.output or b"").decode("utf-8", "replace")
            return Completed((self.executable, *args), -1, f"{output}\ntimed out after {timeout} s", timeout)
        output = proc.stdout.decode("utf-8", "replace")
        return Completed((self.executable, *args), proc.returncode, output, time.monotonic() - started)

    def checked(self, *args: str, timeout: float = RUN_TIMEOUT) -> str:
        result = self.run_client(*args, timeout=timeout)
        if not result.ok:
            raise BuildError(result.describe(20))
        return result.output

    def build(
        self,
        context: Path,
        tag: str,
        build_args: Mapping[str, str],
        *,
        dockerfile: Path | None = None,
        target: str | None = None,
    ) -> Completed:
        args = ["build", "--progress=plain", "-t", tag]
        for name, value in build_args.items():
            args += ["--build-arg", f"{name}={value}"]
        if dockerfile is not None:
            args += ["-f", str(dockerfile)]
        if target is not None:
            args += ["--target", target]
        self.tags_built.append(tag)
        return self.run_client(*args, str(context), timeout=BUILD_TIMEOUT)

    def run(self, image: str, *command: str, entrypoint: str | None = None, timeout: float = RUN_TIMEOUT) -> Completed:
        options = ["run", "--rm", "--network=none"]
        if entrypoint is not None:
            options += ["--entrypoint", entrypoint]
        return self.run_client(*options, image, *command, timeout=timeout)

    def image_exists(self, image: str) -> bool:
        return self.run_client("image", "inspect", "-f", "{{.Id}}", image).ok

    def image_bytes(self, image: str) -> int:
        return int(self.checked("image", "inspect", "-f", "{{.Size}}", image).strip())

    def layers(self, image: str) -> list[Layer]:
        """The image's layers, newest first, with their sizes in bytes (`docker history`)."""
        output = self.checked("history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", image)
        layers = []
        for line in output.splitlines():
            size, _, created_by = line.partition("\t")
            if size.strip().isdigit():
                layers.append(Layer(created_by, int(size)))
        return layers

    def remove_images(self, *images: str) -> None:
        if images:
            self.run_client("image", "rm", "--force", *images)

    def version(self) -> str:
        result = self.run_client("version", "--format", "{{.Server.Version}}")
        return result.output.strip() if result.ok else "unknown"


VENV_PATH = re.compile(r"/opt/venv(?![\w-])")  # not /opt/venvprune


def venv_layer_bytes(layers: Iterable[Layer]) -> int:
    """The bytes of the layers made by an instruction that names /opt/venv: the venv's layers."""
    return sum(layer.size for layer in layers if VENV_PATH.search(layer.created_by))


def require_engine(engine: Engine, images: Iterable[str] = LOCAL_IMAGES) -> None:
    if not Path(engine.executable).exists():
        raise BuildError(f"{engine.executable}: no Docker client here; run tests/docker/start-engine.sh as root")
    info = engine.run_client("info", "--format", "{{.ServerVersion}}", timeout=60)
    if not info.ok:
        raise BuildError(f"no Docker engine answers ({info.tail(1)}); run tests/docker/start-engine.sh as root")
    missing = [image for image in images if not engine.image_exists(image)]
    if missing:
        raise BuildError(f"{', '.join(missing)}: not in the image store; run tests/docker/start-engine.sh as root")


# -- the wheelhouse and the build contexts -------------------------------------------------------------------


def requirement_files(examples: Iterable[Example]) -> list[Path]:
    return sorted({path for ex in examples for path in ex.directory.glob("requirements*.txt")})


def _pip(*args: str, log: Callable[[str], None]) -> None:
    log(f"pip {' '.join(args[:2])} ...")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
        env=dict(os.environ, SOURCE_DATE_EPOCH=REPRODUCIBLE_EPOCH),
    )
    if proc.returncode != 0:
        raise BuildError(f"pip {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def make_wheelhouse(destination: Path, examples: Sequence[Example], log: Callable[[str], None] = print) -> Path:
    """Wheels for the local images' Python: the examples' requirements, venvprune from this checkout, and uv and
    setuptools where an example needs them. pip skips what DESTINATION already holds."""
    destination.mkdir(parents=True, exist_ok=True)
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    requirements = [arg for path in requirement_files(examples) for arg in ("-r", str(path))]
    extra = []
    if any(ex.installer == "uv" for ex in examples):
        extra.append("uv")
    if any("--no-binary" in path.read_text() for path in requirement_files(examples)):
        extra += ["setuptools", "wheel"]  # what pip needs to build an sdist, offline, in the builder
    # An sdist (a --no-binary line) is downloaded as it is: the builder compiles it.
    _pip(
        "download", "--quiet", "--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp",
        "--abi", ABI, *platforms, "--dest", str(destination), *requirements, *extra,
        log=log,
    )  # fmt: skip
    # Built from a copy: pip builds in the source tree, and a stale build/ there could put deleted modules in it.
    with tempfile.TemporaryDirectory(prefix="venvprune-source-") as scratch:
        source = Path(scratch)
        for name in ("pyproject.toml", "README.md", "LICENSE", "venvprune"):
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif (REPO / name).exists():
                shutil.copy2(REPO / name, source / name)
        for old in destination.glob("venvprune-*.whl"):
            old.unlink()
        _pip("wheel", "--quiet", "--wheel-dir", str(destination), str(source), log=log)
    return destination


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def make_context(destination: Path, chosen: Example, wheelhouse: Path) -> Path:
    """A copy of the example's folder with the wheelhouse in wheels/ (hard links where the file system allows)."""
    context = destination / chosen.name
    if context.exists():
        shutil.rmtree(context)
    shutil.copytree(chosen.directory, context, ignore=shutil.ignore_patterns("__pycache__", "wheels"))
    shutil.copytree(wheelhouse, context / "wheels", copy_function=_link_or_copy)
    return context


def write_dockerfile(directory: Path, chosen: Example, text: str, name: str) -> Path:
    """TEXT as a Dockerfile outside the build context (the context, and so the build cache, stays the same)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{chosen.key.replace('/', '-')}.{name}.Dockerfile"
    path.write_text(text)
    return path


# -- one build, measured -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    example: str
    variant: str
    tag: str
    built: bool
    image_bytes: int | None
    venv_layer_bytes: int | None
    smoke_passed: bool | None  # None: not run (the build failed)
    build_seconds: float
    problem: str  # the first lines of what failed, empty when nothing did

    @property
    def smoke(self) -> str:
        if not self.built:
            return "build failed"
        return "passed" if self.smoke_passed else "FAILED"


def first_error(output: str) -> str:
    """The most telling line of a failed build or run (an exception, an error), for the table's notes."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for pattern in (r"^(#\d+ [\d.]+ )?\w+(Error|Exception): ", r"(?i)\berror\b", r"FAILED|failed"):
        hits = [line for line in lines if re.search(pattern, line)]
        if hits:
            return re.sub(r"^#\d+ [\d.]+ ", "", hits[-1 if pattern.startswith("^") else 0])[:200]
    return lines[-1][:200] if lines else ""


@dataclass(frozen=True)
class Build:
    example: Example
    variant: Variant
    tag: str
    dockerfile: Path  # the derived Dockerfile that was built
    result: Completed


def build_variant(
    engine: Engine,
    chosen: Example,
    chosen_variant: Variant,
    context: Path,
    dockerfiles: Path,
    *,
    build_args: Mapping[str, str],
    prune: Callable[[str], str] | None = None,
    target: str | None = None,
    tag: str | None = None,
    cache_suffix: str | None = None,
) -> Build:
    """Build CHOSEN's Dockerfile as CHOSEN_VARIANT says (PRUNE, TARGET, TAG, CACHE_SUFFIX: a test's own).

    Each variant gets cache mounts of its own: the find chain's `strip` writes through uv's hard links into uv's
    cache, and a shared cache would hand the stripped files to the next variant's build.
    """
    cache_suffix = cache_suffix or chosen_variant.name
    text = (chosen.directory / chosen.dockerfile).read_text()
    text = derive_dockerfile(text, chosen_variant, prune=prune, cache_suffix=cache_suffix)
    name = chosen_variant.name if prune is None else f"{chosen_variant.name}-{cache_suffix}"
    dockerfile = write_dockerfile(dockerfiles, chosen, text, name)
    tag = tag or chosen.tag(chosen_variant.name)
    result = engine.build(context, tag, build_args, dockerfile=dockerfile, target=target)
    return Build(chosen, chosen_variant, tag, dockerfile, result)


def smoke(engine: Engine, built: Build) -> Completed:
    """The image's own smoke check: its example's script, run by the venv's Python (whatever the entry point)."""
    return engine.run(built.tag, *built.example.smoke, entrypoint=VENV_PYTHON)


def measure(engine: Engine, built: Build) -> Measurement:
    key, name, seconds = built.example.key, built.variant.name, built.result.seconds
    if not built.result.ok:
        return Measurement(key, name, built.tag, False, None, None, None, seconds, first_error(built.result.output))
    checked = smoke(engine, built)
    return Measurement(
        key,
        name,
        built.tag,
        True,
        engine.image_bytes(built.tag),
        venv_layer_bytes(engine.layers(built.tag)),
        checked.ok,
        seconds,
        "" if checked.ok else first_error(checked.output),
    )


def build_args_for(chosen: Example) -> dict[str, str]:
    return {**LOCAL_BUILD_ARGS, **chosen.local_build_args}


# -- the table -----------------------------------------------------------------------------------------------


def megabytes(size: int | None) -> str:
    return "—" if size is None else f"{size / 1e6:,.1f} MB"


def versus(row: Measurement, baseline: Measurement | None) -> str:
    if baseline is None or row is baseline or row.image_bytes is None or not baseline.image_bytes:
        return "—"
    change = row.image_bytes - baseline.image_bytes
    return f"{change / 1e6:+,.1f} MB ({100 * change / baseline.image_bytes:+.0f}%)"


def table_rows(rows: Sequence[Measurement]) -> list[list[str]]:
    unpruned = {row.example: row for row in rows if row.variant == "unpruned"}
    return [
        [
            row.example,
            row.variant,
            megabytes(row.image_bytes),
            megabytes(row.venv_layer_bytes),
            versus(row, unpruned.get(row.example)),
            row.smoke,
        ]
        for row in rows
    ]


HEADER = ["example", "variant", "final image", "venv layers", "vs unpruned", "smoke check"]


def render_text(rows: Sequence[Measurement]) -> str:
    cells = [HEADER, *table_rows(rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    right = {2, 3, 4}
    lines = [
        "  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(line))
        for line in cells
    ]
    return "\n".join([lines[0], "  ".join("-" * width for width in widths), *lines[1:], *notes(rows)])


def notes(rows: Sequence[Measurement]) -> list[str]:
    return [f"{row.example} {row.variant}: {row.problem}" for row in rows if row.problem]


def render_markdown(rows: Sequence[Measurement], caption: str) -> str:
    lines = [caption, "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * 2 + "---:|" * 3 + "---|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(rows)]
    problems = notes(rows)
    if problems:
        lines += ["", *(f"- {line}" for line in problems)]
    return "\n".join(lines) + "\n"


def caption(engine: Engine) -> str:
    today = datetime.date.today().isoformat()
    return (
        f"Measured {today} by `docker-examples/build.py` (Docker {engine.version()}, this project's local Debian 12"
        " images with Python 3.11, wheels from PyPI; MB = 10^6 bytes). *final image*: `docker image inspect`'s size;"
        " *venv layers*: the layers `docker history` lists for the instructions naming `/opt/venv`."
    )


def replace_between_markers(path: Path, block: str) -> None:
    text = path.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise BuildError(f"{path}: no `{README_START}` ... `{README_END}` section to write the table into")
    path.write_text(text[: start + len(README_START)] + "\n" + block + text[end:])


def update_readmes(rows: Sequence[Measurement], title: str) -> list[Path]:
    written = [EXAMPLES_DIR / "README.md"]
    replace_between_markers(written[0], render_markdown(rows, title))
    for name in dict.fromkeys(row.example.split("/")[0] for row in rows):
        readme = EXAMPLES_DIR / name / "README.md"
        mine = [row for row in rows if row.example.split("/")[0] == name]
        replace_between_markers(readme, render_markdown(mine, title))
        written.append(readme)
    return written


# -- the command line ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    names = list(dict.fromkeys(ex.name for ex in EXAMPLES))
    parser = argparse.ArgumentParser(
        prog="build.py", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("examples", nargs="*", metavar="EXAMPLE", help=f"some of: {', '.join(names)} (default: all)")
    parser.add_argument(
        "--variant", action="append", dest="variants", metavar="NAME",
        help=f"only these variants (repeatable): {', '.join(v.name for v in VARIANTS)}",
    )  # fmt: skip
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "venvprune-docker-examples",
        help="wheelhouse, build contexts and Dockerfiles; kept between runs (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--docker", default=DOCKER, help="the Docker client (default: %(default)s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every figure as JSON to PATH")
    parser.add_argument("--update-readmes", action="store_true", help="write the table into the examples' READMEs")
    parser.add_argument("--remove-images", action="store_true", help="remove the images once measured")
    args = parser.parse_args(argv)
    unknown = [name for name in args.examples if name not in names]
    if unknown:
        parser.error(f"unknown example {', '.join(unknown)}; choose from {', '.join(names)}")
    if args.update_readmes and (args.examples or args.variants):
        parser.error("--update-readmes writes the whole table: give no EXAMPLE and no --variant")
    known = {v.name for v in VARIANTS}
    if args.variants and not set(args.variants) <= known:
        parser.error(f"unknown variant {', '.join(set(args.variants) - known)}; choose from {', '.join(known)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [ex for ex in EXAMPLES if not args.examples or ex.name in args.examples]

    def log(message: str) -> None:
        print(f"build.py: {message}", file=sys.stderr, flush=True)

    try:
        engine = Engine(args.docker)
        require_engine(engine)
        offered = available_variants(venvprune_help())
        unavailable = [v for v in VARIANTS if v not in offered and v.name in (args.variants or ())]
        if unavailable:
            raise BuildError(
                f"variant {unavailable[0].name} needs `venvprune {unavailable[0].requires_option}`, which this "
                "checkout's venvprune --help does not list"
            )
        variants = [v for v in offered if not args.variants or v.name in args.variants]
        wheelhouse = make_wheelhouse(args.workdir / "wheels", chosen, log)
        rows: list[Measurement] = []
        for ex in chosen:
            context = make_context(args.workdir / "contexts", ex, wheelhouse)
            for each in variants:
                log(f"building {ex.key} ({each.name})")
                built = build_variant(
                    engine, ex, each, context, args.workdir / "dockerfiles", build_args=build_args_for(ex)
                )
                row = measure(engine, built)
                size = megabytes(row.image_bytes)
                log(f"{ex.key} ({each.name}): {size}, smoke {row.smoke}, built in {row.build_seconds:.0f} s")
                rows.append(row)
                if args.remove_images:
                    engine.remove_images(row.tag)
        title = caption(engine)
    except BuildError as error:
        print(f"build.py: error: {error}", file=sys.stderr)
        return 2
    print(title)
    print()
    print(render_text(rows))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(row) for row in rows], indent=1) + "\n")
    if args.update_readmes:
        for path in update_readmes(rows, title):
            log(f"wrote the table into {path.relative_to(REPO)}")
    # The find chain is expected to break images; a venvprune or unpruned image that fails is a regression.
    failed = [row for row in rows if row.variant != "find-chain" and row.smoke != "passed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
