"""Build the Dockerfiles of docker-examples/ on a real engine and check what a user of them would check.

The images build through docker-examples/build.py (the script that prints the image-level table), with this
project's local Debian 12 images (Python 3.11) and a wheelhouse downloaded on the host at test time: containers
cannot reach PyPI here. The Dockerfiles are the users' files; build.py only swaps their `venvprune` command for a
variant's and passes build arguments.

For pandas, fastapi, distroless, uv and single-stage:
- the venvprune image runs its app (the image's smoke check) and passes check.py;
- it is smaller than the unpruned image by what venvprune saves on a copy of the same venv on the host;
- the find-chain image fails its smoke check exactly where the same chain breaks the app on the host.
And: the single-stage image pruned in a later RUN is no smaller than not pruning; the distroless image has no
shell; uv's cache, hard-linked into the venv, is byte-identical after the prune (and the chain's strip changes it);
a system library missing from the final image fails the final stage's check.py, naming module and library.
The `api` example (CPU torch, psycopg2 from source: about 6 minutes and apt-get in both stages) is left to
build.py, which prints it in the table.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import build  # docker-examples/build.py, put on the path by conftest
import pytest

from .conftest import report_figure, unavailable

pytestmark = pytest.mark.docker

Engine = build.Engine
VARIANT_EXAMPLES = ["pandas", "fastapi", "distroless", "uv", "single-stage"]
CHECK = ("-B", "/opt/venv/.venvprune/check.py")

# The image saves what the host copy saves, give or take: .venvprune/ (manifest and check.py, a few hundred kB)
# ships in the image, and bytecode differs by the venv's path compiled into it.
MARGIN_RELATIVE = 0.02
MARGIN_ABSOLUTE = 2_000_000


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def require(result: build.Completed, what: str, lines: int = 60) -> None:
    if not result.ok:
        pytest.fail(f"{what}: {result.describe(lines)}", pytrace=False)


def step_output(result: build.Completed, instruction: str) -> str:
    """The log lines of the build step whose instruction contains INSTRUCTION (BuildKit --progress=plain)."""
    steps = re.findall(r"^(#\d+) \[.*?\] (.*)$", result.output, flags=re.MULTILINE)
    ids = {step for step, text in steps if instruction in text}
    return "\n".join(line for line in result.output.splitlines() if line.split(" ", 1)[0] in ids)


# -- the wheelhouse, the contexts, the builds ----------------------------------------------------------------


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docker-examples")


@pytest.fixture(scope="session")
def wheelhouse(workdir: Path, docker: build.Engine) -> Path:
    """The examples' requirements for the images' Python, venvprune from this checkout, and uv (as build.py's)."""
    try:
        wheels = build.make_wheelhouse(
            workdir / "wheels", [ex for ex in build.EXAMPLES if ex.in_ci], log=lambda message: None
        )
    except build.BuildError as error:
        unavailable(f"no wheelhouse (is PyPI reachable?): {error}")
    return wheels


class Images:
    """Each (example, variant) image built once per session, on demand."""

    def __init__(self, engine: build.Engine, workdir: Path, wheelhouse: Path) -> None:
        self.engine = engine
        self.workdir = workdir
        self.wheelhouse = wheelhouse
        self._builds: dict[tuple[str, str], build.Build] = {}
        self._measurements: dict[tuple[str, str], build.Measurement] = {}
        self._contexts: dict[str, Path] = {}

    def context(self, example: build.Example) -> Path:
        if example.name not in self._contexts:
            self._contexts[example.name] = build.make_context(self.workdir / "contexts", example, self.wheelhouse)
        return self._contexts[example.name]

    def get(self, key: str, variant: str) -> build.Build:
        if (key, variant) not in self._builds:
            example, chosen = build.example(key), build.variant(variant)
            self._builds[key, variant] = build.build_variant(
                self.engine,
                example,
                chosen,
                self.context(example),
                self.workdir / "dockerfiles",
                build_args=build.build_args_for(example),
            )
        return self._builds[key, variant]

    def built(self, key: str, variant: str) -> build.Build:
        """The build, failing the test (with the log's end) when it did not succeed."""
        result = self.get(key, variant)
        require(result.result, f"the {key} example's {variant} build")
        return result

    def measured(self, key: str, variant: str) -> build.Measurement:
        if (key, variant) not in self._measurements:
            self._measurements[key, variant] = build.measure(self.engine, self.built(key, variant))
        return self._measurements[key, variant]


@pytest.fixture(scope="session")
def images(docker: build.Engine, workdir: Path, wheelhouse: Path) -> Images:
    return Images(docker, workdir, wheelhouse)


# -- the same venv on the host -------------------------------------------------------------------------------


def host_python() -> str:
    """A CPython of the images' version (the wheelhouse is for it), to make the host copies of the venvs."""
    wanted = tuple(int(part) for part in build.PYTHON_VERSION.split("."))
    if sys.version_info[:2] == wanted:
        return sys.executable
    candidates = [shutil.which(f"python{build.PYTHON_VERSION}")]
    candidates += sorted(str(p) for p in Path("/root/.pyenv/versions").glob(f"{build.PYTHON_VERSION}.*/bin/python"))
    for candidate in filter(None, candidates):
        return candidate
    unavailable(f"no Python {build.PYTHON_VERSION} on the host to build the examples' venvs with")
    raise AssertionError("unreachable")


def tree_bytes(root: Path) -> int:
    """Apparent size of the files under ROOT, each inode once (as a layer stores them)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            info = os.lstat(os.path.join(directory, name))
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


def run(args: list[str], what: str, *, env: dict[str, str] | None = None, timeout: float = 1800) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if proc.returncode != 0:
        pytest.fail(
            f"{what}: `{' '.join(args)}` exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )


@dataclass(frozen=True)
class HostFigures:
    unpruned_bytes: int
    pruned_bytes: int  # after venvprune
    smoke_passes: bool  # the example's smoke script, with the unpruned venv
    chain_smoke_passes: bool  # the same after the find chain
    chain_output: str

    @property
    def saving(self) -> int:
        return self.unpruned_bytes - self.pruned_bytes


class Host:
    """Each example's venv made on the host from the same wheels, measured unpruned, pruned and chained."""

    def __init__(self, workdir: Path, wheelhouse: Path) -> None:
        self.workdir = workdir
        self.wheelhouse = wheelhouse
        self._figures: dict[str, HostFigures] = {}

    def _install(self, example: build.Example, venv: Path) -> None:
        requirements = [arg for path in build.requirement_files([example]) for arg in ("-r", str(path))]
        offline = ["--no-index", "--find-links", str(self.wheelhouse)]
        python = host_python()
        if example.installer == "uv":
            tools = self.workdir / "host-uv"
            if not tools.exists():
                run([python, "-m", "venv", str(tools)], "a venv for uv")
                run([str(tools / "bin/pip"), "install", "--quiet", *offline, "uv"], "installing uv")
            # A cache of its own: the chain's strip writes through uv's hard links into it.
            env = dict(os.environ, UV_CACHE_DIR=str(venv.parent / "uv-cache"), UV_PYTHON_DOWNLOADS="never")
            run([str(tools / "bin/uv"), "venv", "--quiet", "--python", python, str(venv)], "uv venv", env=env)
            run([str(tools / "bin/uv"), "pip", "install", "--quiet", "--python", str(venv), *offline, *requirements],
                f"uv pip install for {example.key}", env=env)  # fmt: skip
        else:
            run([python, "-m", "venv", str(venv)], "python -m venv")
            run([str(venv / "bin/pip"), "install", "--quiet", "--disable-pip-version-check", *offline, *requirements],
                f"pip install for {example.key}")  # fmt: skip

    def _smoke(self, example: build.Example, venv: Path) -> subprocess.CompletedProcess[str]:
        script = example.source_of(example.smoke[0])
        return subprocess.run(
            [str(venv / "bin/python"), str(script), *example.smoke[1:]],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=script.parent,
        )

    def figures(self, key: str) -> HostFigures:
        if key not in self._figures:
            example = build.example(key)
            root = self.workdir / "host" / key.replace("/", "-")
            venv = root / "venv"
            self._install(example, venv)
            pruned, chained = root / "pruned", root / "chained"
            # Copies, not links: neither change may reach the unpruned venv or uv's cache.
            for copy in (pruned, chained):
                run(["cp", "-a", str(venv), str(copy)], "copying the host venv")
            # A TMPDIR of its own for the scratch folders: other venvprune runs on this machine sweep /tmp's.
            private_tmp = root / "tmp"
            private_tmp.mkdir()
            run([sys.executable, "-m", "venvprune", "--quiet", str(pruned)], f"venvprune on the host copy of {key}",
                env=dict(os.environ, TMPDIR=str(private_tmp)))  # fmt: skip
            run(["bash", "-c", build.FIND_CHAIN.format(path=chained)], f"the find chain on the host copy of {key}")
            chain = self._smoke(example, chained)
            self._figures[key] = HostFigures(
                unpruned_bytes=tree_bytes(venv),
                pruned_bytes=tree_bytes(pruned),
                smoke_passes=self._smoke(example, venv).returncode == 0,
                chain_smoke_passes=chain.returncode == 0,
                chain_output=(chain.stdout + chain.stderr)[-1500:],
            )
        return self._figures[key]


@pytest.fixture(scope="session")
def host(workdir: Path, wheelhouse: Path) -> Host:
    return Host(workdir, wheelhouse)


# -- what every example promises -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", VARIANT_EXAMPLES)
def test_venvprune_image_runs_its_app_and_passes_check(key: str, images: Images, docker: build.Engine) -> None:
    built = images.built(key, "venvprune")
    prune_log = step_output(built.result, "venvprune ${VENVPRUNE_ARGS}")
    summary = [line for line in prune_log.splitlines() if "venvprune:" in line and "->" in line]
    if summary:
        report_figure(f"{key} builder: {summary[-1].split('venvprune:', 1)[1].strip()}")
    app = build.smoke(docker, built)
    assert app.ok, f"the {key} image's smoke check failed: {app.describe()}"
    check = docker.run(built.tag, *CHECK, entrypoint=build.VENV_PYTHON)
    assert check.ok, f"check.py failed in the {key} image: {check.describe()}"


@pytest.mark.parametrize("key", VARIANT_EXAMPLES)
def test_venvprune_image_is_smaller_by_the_host_margin(key: str, images: Images, host: Host) -> None:
    unpruned, pruned = images.measured(key, "unpruned"), images.measured(key, "venvprune")
    assert unpruned.image_bytes is not None and pruned.image_bytes is not None
    expected = host.figures(key).saving
    saved = unpruned.image_bytes - pruned.image_bytes
    report_figure(
        f"{key} final image: unpruned {mb(unpruned.image_bytes)}, venvprune {mb(pruned.image_bytes)} "
        f"(-{mb(saved)}, -{100 * saved / unpruned.image_bytes:.0f}%); the host copy of the venv saves {mb(expected)}"
    )
    assert expected > 0, f"venvprune saved nothing on the host copy of {key}'s venv"
    assert abs(saved - expected) <= MARGIN_RELATIVE * expected + MARGIN_ABSOLUTE, (
        f"the {key} image saves {saved} bytes, the same venv on the host {expected}"
    )


@pytest.mark.parametrize("key", VARIANT_EXAMPLES)
def test_find_chain_image_fails_where_the_chain_breaks_the_host_venv(
    key: str, images: Images, host: Host, docker: build.Engine
) -> None:
    figures = host.figures(key)
    assert figures.smoke_passes, f"the {key} app fails on the host before any pruning: the comparison means nothing"
    chained = images.measured(key, "find-chain")
    on_host = "breaks" if not figures.chain_smoke_passes else "keeps"
    report_figure(f"{key} find chain: {on_host} the app on the host; image smoke check {chained.smoke}")
    assert chained.smoke_passed == figures.chain_smoke_passes, (
        f"the find chain {on_host} {key} on the host, but the image's smoke check {chained.smoke}: "
        f"{chained.problem or '(no error)'}\nhost: {figures.chain_output}"
    )


def test_find_chain_breaks_an_example(host: Host) -> None:
    """The comparison above must see both outcomes: the data stack is where the chain breaks imports."""
    figures = host.figures("pandas")
    assert not figures.chain_smoke_passes
    assert "not page-aligned" in figures.chain_output, figures.chain_output


# -- single-stage: pruning in a later RUN saves nothing ------------------------------------------------------


def test_single_stage_pruned_in_a_later_run_is_no_smaller(images: Images) -> None:
    unpruned = images.measured("single-stage/later-run", "unpruned")
    assert unpruned.image_bytes is not None
    for variant in ("venvprune", "find-chain"):
        later = images.measured("single-stage/later-run", variant)
        assert later.image_bytes is not None
        report_figure(
            f"single-stage, {variant} in a later RUN: {mb(later.image_bytes)} vs {mb(unpruned.image_bytes)} unpruned"
        )
        assert later.image_bytes >= unpruned.image_bytes, (variant, later, unpruned)
    right, right_unpruned = images.measured("single-stage", "venvprune"), images.measured("single-stage", "unpruned")
    assert right.image_bytes is not None and right_unpruned.image_bytes is not None
    assert right.image_bytes < right_unpruned.image_bytes


# -- distroless ----------------------------------------------------------------------------------------------


def test_distroless_image_has_no_shell_and_ran_check_in_exec_form(images: Images, docker: build.Engine) -> None:
    built = images.built("distroless", "venvprune")
    assert step_output(built.result, '/opt/venv/bin/python", "-B", "/opt/venv/.venvprune/check.py'), (
        "the final stage has no check.py step:\n" + built.result.tail()
    )
    shell = docker.run(built.tag, "-c", "true", entrypoint="/bin/sh")
    assert not shell.ok and "no such file" in shell.output.lower(), shell.describe()
    pip = docker.run(built.tag, "-m", "pip", "--version", entrypoint="/usr/bin/python3")
    assert not pip.ok and "No module named pip" in pip.output, pip.describe()


# -- uv: the cache is byte-identical after the prune ---------------------------------------------------------

COUNT_LINKS = "find {path} -type f -links +1 | wc -l > /opt/hardlinked-files && "


@dataclass(frozen=True)
class CacheCheck:
    hardlinked_files: int  # files of the venv that were hard links (into uv's cache) just before the prune
    entries: list[str]  # the cache's unpacked wheels (their dist-info names)
    changed: list[str]  # files of the cache that differ from their wheel


def _uv_cache_after(
    images: Images, docker: build.Engine, variant: str, prune: Callable[[str], str], workdir: Path
) -> CacheCheck:
    """Build the uv example's builder stage with PRUNE, in a cache of its own; compare that cache with the wheels."""
    example, chosen = build.example("uv"), build.variant(variant)
    suffix = f"test-{variant}-{uuid.uuid4().hex[:12]}"  # a cache of its own, empty at first
    tag = f"{build.TAG_PREFIX}-test/uv-builder:{variant}"
    built = build.build_variant(
        docker, example, chosen, images.context(example), workdir / "dockerfiles",
        build_args=build.build_args_for(example), prune=lambda path: COUNT_LINKS.format(path=path) + prune(path),
        target="builder", tag=tag, cache_suffix=suffix,
    )  # fmt: skip
    require(built.result, f"the uv builder stage ({variant})")
    (cache_id,) = build.cache_mount_ids(built.dockerfile.read_text())
    counted = docker.run(tag, "/opt/hardlinked-files", entrypoint="/bin/cat")
    require(counted, "reading the hard-link count")
    snapshot = _snapshot_cache(docker, cache_id, workdir / f"uv-cache-{variant}")
    entries, changed = compare_with_wheels(snapshot / "archive-v0", images.wheelhouse)
    return CacheCheck(int(counted.output.split()[-1]), entries, changed)


def _snapshot_cache(docker: build.Engine, cache_id: str, destination: Path) -> Path:
    """A copy of the cache mount CACHE_ID's uv cache on the host (a cache mount is only visible to a RUN)."""
    context = destination.with_name(destination.name + "-context")
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(
        f"FROM {build.BASE_IMAGE}\n"
        "ARG NONCE\n"
        f"RUN --mount=type=cache,id={cache_id},target=/build,sharing=locked \\\n"
        "    echo ${NONCE} && cp -a /build/uv-cache /uv-cache\n"
    )
    tag = f"{build.TAG_PREFIX}-test/uv-cache:{cache_id}"
    # A new NONCE re-runs the copy; --no-cache would not do: it gives the step an empty cache mount as well.
    result = docker.build(context, tag, {"NONCE": uuid.uuid4().hex})
    require(result, "copying the uv cache out of its cache mount")
    container = docker.checked("create", tag).strip()
    try:
        docker.checked("cp", f"{container}:/uv-cache", str(destination))
    finally:
        docker.run_client("rm", "--force", container)
    return destination


def compare_with_wheels(archive: Path, wheelhouse: Path) -> tuple[list[str], list[str]]:
    """Each unpacked wheel in uv's cache against its wheel: the same files with the same bytes."""
    wheels: dict[str, Path] = {}
    for wheel in wheelhouse.glob("*.whl"):
        with zipfile.ZipFile(wheel) as contents:
            for name in contents.namelist():
                top = name.split("/", 1)[0]
                if top.endswith(".dist-info"):
                    wheels[top] = wheel
    entries: list[str] = []
    changed: list[str] = []
    for entry in sorted(path for path in archive.iterdir() if path.is_dir()):
        dist_infos = [path.name for path in entry.iterdir() if path.name.endswith(".dist-info")]
        assert len(dist_infos) == 1 and dist_infos[0] in wheels, f"{entry}: which wheel is this? {dist_infos}"
        entries.append(dist_infos[0])
        on_disk = {str(path.relative_to(entry)) for path in entry.rglob("*") if not path.is_dir()}
        with zipfile.ZipFile(wheels[dist_infos[0]]) as unpacked:
            members = {name for name in unpacked.namelist() if not name.endswith("/")}
            changed += [f"{dist_infos[0]}: {name} is missing" for name in sorted(members - on_disk)]
            changed += [f"{dist_infos[0]}: {name} was added" for name in sorted(on_disk - members)]
            changed += [
                f"{dist_infos[0]}: {name} differs"
                for name in sorted(members & on_disk)
                if _digest((entry / name).read_bytes()) != _digest(unpacked.read(name))
            ]
    return entries, changed


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_uv_cache_is_byte_identical_after_the_prune(images: Images, docker: build.Engine, workdir: Path) -> None:
    checked = _uv_cache_after(images, docker, "venvprune", build.variant("venvprune").prune, workdir)
    report_figure(
        f"uv builder: {checked.hardlinked_files} venv files hard-linked into uv's cache at the prune; "
        f"{len(checked.entries)} cached wheels, {len(checked.changed)} files changed after venvprune"
    )
    assert checked.hardlinked_files > 100, "uv did not hard-link: the test would prove nothing"
    assert any(entry.startswith("numpy-") for entry in checked.entries), checked.entries
    assert checked.changed == []


def test_find_chain_strip_changes_the_uv_cache(images: Images, docker: build.Engine, workdir: Path) -> None:
    """The reason the example exists: GNU strip rewrites a file in place when it has other links."""
    checked = _uv_cache_after(images, docker, "find-chain", build.find_chain, workdir)
    report_figure(
        f"uv builder, find chain: {len(checked.changed)} files of uv's cache changed, e.g. {checked.changed[:2]}"
    )
    assert checked.hardlinked_files > 100
    assert any(".so" in change and "differs" in change for change in checked.changed), checked.changed


# -- a system library the final image lacks ------------------------------------------------------------------


def _make_pqlink_wheel(docker: build.Engine, wheels: Path) -> None:
    """A tiny package whose extension module needs libpq.so.5, a system library of the builder image only.

    No compiler in the images, none needed on the host: take the standard library's `xxlimited` extension
    from the builder image (as `pqlink.xxlimited` it still finds PyInit_xxlimited) and add a DT_NEEDED
    entry for libpq.so.5 with patchelf, as a wheel built against the system's libpq (psycopg2 built from
    source) has. psycopg2-binary would not do: it bundles its own libpq in psycopg2_binary.libs.
    """
    patchelf = shutil.which("patchelf")
    if patchelf is None:
        pytest.fail("patchelf is missing (start-engine.sh installs it)", pytrace=False)
    find_extension = (
        "import os, sysconfig; print(os.path.join(sysconfig.get_path('platstdlib'), 'lib-dynload',"
        " 'xxlimited' + sysconfig.get_config_var('EXT_SUFFIX')))"
    )
    extension = docker.checked("run", "--rm", "--network=none", build.BASE_IMAGE, "python3", "-c", find_extension)
    work = wheels.parent.parent / "pqlink-build"
    work.mkdir(exist_ok=True)
    so = work / Path(extension.strip()).name
    suffix = so.name.removeprefix("xxlimited")
    container = docker.checked("create", build.BASE_IMAGE).strip()
    try:
        docker.checked("cp", f"{container}:{extension.strip()}", str(so))
    finally:
        docker.run_client("rm", "--force", container)
    subprocess.run([patchelf, "--add-needed", "libpq.so.5", str(so)], check=True, timeout=60)

    dist_info = "pqlink-1.0.dist-info"
    tag = f"{build.ABI}-{build.ABI}-linux_x86_64"
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
    with zipfile.ZipFile(wheels / f"pqlink-1.0-{tag}.whl", "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            wheel.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)


@pytest.fixture(scope="module")
def pqlink_context(images: Images, workdir: Path, docker: build.Engine) -> Path:
    """The pandas example with requirements.txt replaced by pqlink, and its wheel."""
    context = build.make_context(workdir / "pqlink", build.example("pandas"), images.wheelhouse)
    (context / "requirements.txt").write_text("pqlink\n")
    _make_pqlink_wheel(docker, context / "wheels")
    return context


def test_missing_system_library_fails_final_stage(
    docker: build.Engine, images: Images, pqlink_context: Path, workdir: Path
) -> None:
    """libpq.so.5 is in the builder image, not in the final one: check.py must stop the build and say why."""
    example, chosen = build.example("pandas"), build.variant("venvprune")
    args = build.build_args_for(example)
    builder = build.build_variant(
        docker, example, chosen, pqlink_context, workdir / "pqlink-dockerfiles",
        build_args=args, target="builder", tag=f"{build.TAG_PREFIX}-test/pqlink:builder",
    )  # fmt: skip
    require(builder.result, "the pqlink builder stage (libpq5 is there: import, prune and verification must pass)")
    imported = docker.run(builder.tag, "/opt/venv/bin/python", "-c", "import pqlink.xxlimited")
    assert imported.ok, f"pqlink must import in the builder: {imported.describe()}"

    final = build.build_variant(
        docker, example, chosen, pqlink_context, workdir / "pqlink-dockerfiles",
        build_args=args, tag=f"{build.TAG_PREFIX}-test/pqlink:final",
    ).result  # fmt: skip
    assert not final.ok, "the final stage lacks libpq.so.5, yet the build succeeded: check.py missed it"
    failed_step = step_output(final, ".venvprune/check.py")
    assert failed_step, f"the build failed before the final-stage check:\n{final.tail()}"
    assert re.search(r"(ERROR|executor failed|did not complete).*check\.py", final.output), final.tail()
    assert "pqlink" in failed_step, f"check.py's message does not name the module:\n{failed_step}"
    assert "libpq.so.5" in failed_step, f"check.py's message does not name the library:\n{failed_step}"
    report_figure("pqlink final stage: " + " | ".join(failed_step.splitlines()[-6:]))
