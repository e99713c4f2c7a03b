"""Advice for the final image: what the venv needs from the system, and what it carries for GPUs.

- **System libraries.** Every ELF file that stays after the plan names the libraries it needs (``DT_NEEDED``, read at
  scan time). Those that no file of site-packages provides (by file name or ``DT_SONAME``) and that are not the C
  library itself (``libc``, ``libm``, ``libpthread``, ``libdl``, ``librt``, the loader) must be installed in the
  final stage. Each is looked up in the builder's own package database (``dpkg -S`` on Debian and Ubuntu,
  ``apk info --who-owns`` on Alpine), else in a small built-in table of Debian 12 names; on Alpine
  ``apk add so:NAME`` installs whichever package provides it, so that line never needs a guess.
- **GPU payload.** CUDA and ROCm distributions (``nvidia-*``, torch built ``+cu…``/``+rocm…``, triton's CUDA parts) and
  libraries (``libcudart``, ``libcublas``, ``libcudnn``, ``libnccl``, ``libamdhip64``, ...) with their size as the plan
  leaves them: an image that runs on CPU can install CPU wheels instead.

Reading the package database runs ``dpkg``/``apk`` queries: read-only, and only here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from venvprune.plan import ActionKind, Plan
from venvprune.scan import FileEntry

# The C library and its loader: every base image has them, and they are never installed on their own.
C_LIBRARY = re.compile(r"^(libc|libm|libpthread|libdl|librt|libresolv|libutil|ld-linux[-\w.]*|ld64|ld-musl-\w+)\.so")
C_LIBRARY_PACKAGES = frozenset({"libc6", "libc6-i386", "libc6-amd64", "musl"})

# soname -> Debian 12 (bookworm) package, each checked with dpkg -S and apt-cache on a bookworm builder.
DEBIAN_PACKAGES: Mapping[str, str] = {
    "libz.so.1": "zlib1g",
    "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1",
    "libgomp.so.1": "libgomp1",
    "libgfortran.so.5": "libgfortran5",
    "libquadmath.so.0": "libquadmath0",
    "libpq.so.5": "libpq5",
    "libffi.so.8": "libffi8",
    "libssl.so.3": "libssl3",
    "libcrypto.so.3": "libssl3",
    "libxml2.so.2": "libxml2",
    "libxslt.so.1": "libxslt1.1",
    "libjpeg.so.62": "libjpeg62-turbo",
    "libpng16.so.16": "libpng16-16",
    "libsqlite3.so.0": "libsqlite3-0",
    "libbz2.so.1.0": "libbz2-1.0",
    "liblzma.so.5": "liblzma5",
    "libexpat.so.1": "libexpat1",
    "libuuid.so.1": "libuuid1",
    "libcrypt.so.1": "libcrypt1",
    "libGL.so.1": "libgl1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libX11.so.6": "libx11-6",
}

GPU_DISTRIBUTION = re.compile(r"^(nvidia-.+|cupy-cuda.*|jax-cuda.+|pytorch-triton-rocm|onnxruntime-gpu|tensorrt.*)$")
GPU_LOCAL_VERSION = re.compile(r"\+(cu\d+|rocm[\d.]+)")
GPU_LIBRARY = re.compile(
    r"^lib(cudart|cublas|cublasLt|cudnn\w*|cufft\w*|curand|cusparse\w*|cusolver\w*|nvrtc\w*|nvJitLink|nccl|cupti|"
    r"nvToolsExt|cufile\w*|nvshmem\w*|amdhip64|rocblas|rocsolver|rocfft|rocrand|rocsparse|hipblas\w*|hipfft|"
    r"hiprand|hipsparse|hipsolver|MIOpen|rccl|hsa-runtime64|roctracer64|roctx64|torch_cuda\w*|c10_cuda|torch_hip|"
    r"c10_hip|caffe2_nvrtc)[.-]"
)
GPU_FOLDERS = ("triton/backends/nvidia", "triton/backends/amd")
CPU_HINT = (
    "the image carries CUDA/ROCm libraries: if it runs on CPU, install CPU wheels instead "
    "(torch: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
)
EXAMPLES = 3


@dataclass(frozen=True)
class SystemLibrary:
    """A library the venv needs and does not bundle, and the package that provides it."""

    soname: str
    needed_by: tuple[str, ...]  # paths relative to site-packages (the first few)
    needed_by_count: int
    debian: str | None  # the Debian/Ubuntu package, or None when unknown
    alpine: str  # an Alpine package, or so:NAME, which apk resolves itself
    source: str  # where the Debian name came from: dpkg -S, apk info --who-owns, the built-in table, or nowhere


@dataclass(frozen=True)
class GpuPayload:
    """A distribution's CUDA/ROCm part, as the plan leaves it."""

    distribution: str
    version: str
    bytes: int
    libraries: tuple[str, ...]  # the GPU libraries among its files (the first few)


@dataclass(frozen=True)
class Advice:
    system_libraries: tuple[SystemLibrary, ...] = ()
    package_database: str | None = None  # the builder's: "dpkg", "apk", or None
    gpu: tuple[GpuPayload, ...] = ()

    @property
    def apt_line(self) -> str | None:
        packages = sorted({lib.debian for lib in self.system_libraries if lib.debian})
        return f"apt-get install --no-install-recommends {' '.join(packages)}" if packages else None

    @property
    def apk_line(self) -> str | None:
        packages = sorted({lib.alpine for lib in self.system_libraries})
        return f"apk add {' '.join(packages)}" if packages else None

    @property
    def gpu_bytes(self) -> int:
        return sum(payload.bytes for payload in self.gpu)

    @property
    def cpu_hint(self) -> str | None:
        return CPU_HINT if self.gpu else None


class PackageDatabase(Protocol):
    """The builder's package database: which package provides each of these libraries."""

    name: str

    def owners(self, sonames: Sequence[str]) -> dict[str, str]: ...


def advise(plan: Plan, database: PackageDatabase | None) -> Advice:
    """The advice for the image that *plan* leaves."""
    remaining = _remaining_files(plan)
    linked = [f for f in remaining if f.links is not None]  # the ELF files: a few hundred of the venv's files
    needed = {name for f in linked if f.links for name in f.links.needed}
    provided = {f.links.soname for f in linked if f.links and f.links.soname}
    provided |= {name for f in remaining if (name := f.rel.rpartition("/")[2]) in needed} if needed else set()
    needers: dict[str, list[str]] = {}
    for entry in linked:
        for name in entry.links.needed if entry.links else ():
            if name not in provided and not C_LIBRARY.match(name):
                needers.setdefault(name, []).append(entry.rel)
    owners = database.owners(sorted(needers)) if database is not None and needers else {}
    libraries = []
    for soname, paths in sorted(needers.items()):
        owner = owners.get(soname)
        if owner in C_LIBRARY_PACKAGES:
            continue  # the builder says it is part of the C library (libresolv, libutil, ...)
        debian, source = _debian_name(soname, owner, database)
        alpine = owner if database is not None and database.name == "apk" and owner else f"so:{soname}"
        libraries.append(SystemLibrary(soname, tuple(sorted(paths)[:EXAMPLES]), len(paths), debian, alpine, source))
    return Advice(tuple(libraries), database.name if database is not None else None, _gpu(plan, remaining))


def _debian_name(soname: str, owner: str | None, database: PackageDatabase | None) -> tuple[str | None, str]:
    if owner is not None and database is not None and database.name == "dpkg":
        return owner, "dpkg -S"
    if soname in DEBIAN_PACKAGES:
        return DEBIAN_PACKAGES[soname], "built-in table"
    if owner is not None and database is not None:
        return None, "apk info --who-owns"
    return None, "not found: install it by hand"


def _remaining_files(plan: Plan) -> list[FileEntry]:
    """The files of site-packages that the plan does not remove, with their size after it (stripped or not)."""
    index = plan.inventory.index
    gone: set[str] = set()  # path strings: the index has made them already
    for action in plan.actions:
        if action.kind is ActionKind.REMOVE:
            entries = index.under(action.path) if action.is_directory else index.exact(action.path)
            gone.update(f.path_str for f in entries)
    return [f for f in plan.inventory.files if f.path_str not in gone]


def _gpu(plan: Plan, remaining: Iterable[FileEntry]) -> tuple[GpuPayload, ...]:
    """Per distribution, the CUDA/ROCm files that stay: all of a GPU distribution, else its GPU libraries and
    folders; a distribution built for a GPU (torch ``+cu121``) is named even when nothing of it matched."""
    inventory = plan.inventory
    saved = {a.path: a.bytes_saved for a in plan.actions if a.kind is ActionKind.REWRITE}
    sizes: dict[str, int] = {}
    libraries: dict[str, list[str]] = {}
    any_gpu_distribution = any(GPU_DISTRIBUTION.match(d.name) for d in inventory.distributions)
    for entry in remaining:
        is_library = GPU_LIBRARY.match(entry.rel.rpartition("/")[2]) is not None
        in_folder = entry.rel.startswith(GPU_FOLDERS)
        if not (is_library or in_folder or any_gpu_distribution):
            continue  # its owner cannot make it a GPU file: no need to look it up
        owner = inventory.owner_of(entry.path) or ""
        if is_library or in_folder or GPU_DISTRIBUTION.match(owner):
            sizes[owner] = sizes.get(owner, 0) + entry.size - saved.get(entry.path, 0)
            if is_library:
                libraries.setdefault(owner, []).append(entry.rel)
    for built in inventory.distributions:
        if GPU_LOCAL_VERSION.search(built.version):
            sizes.setdefault(built.name, 0)
    payloads = []
    for name, size in sorted(sizes.items(), key=lambda item: (-item[1], item[0])):
        dist = inventory.distribution(name)
        payloads.append(
            GpuPayload(
                name or "(no distribution)",
                dist.version if dist else "",
                size,
                tuple(sorted(libraries.get(name, []))[:EXAMPLES]),
            )
        )
    return tuple(payloads)


class Dpkg:
    """Debian and Ubuntu: ``dpkg -S */NAME`` names the package that installed a library."""

    name = "dpkg"

    def owners(self, sonames: Sequence[str]) -> dict[str, str]:
        output = _query(["dpkg", "-S", *(f"*/{soname}" for soname in sonames)])
        found: dict[str, str] = {}
        for line in output.splitlines():
            package, sep, path = line.partition(": ")
            if not sep or line.startswith("diversion "):
                continue
            soname = Path(path.strip()).name
            if soname in sonames:
                # "libssl3:amd64" -> "libssl3"; "pkg1, pkg2: path" (shared) -> the first
                found.setdefault(soname, package.split(",")[0].split(":")[0].strip())
        return found


class Apk:
    """Alpine: ``apk info --who-owns PATH`` names the package of a library found in the usual folders."""

    name = "apk"
    folders = (Path("/lib"), Path("/usr/lib"), Path("/usr/local/lib"))

    def owners(self, sonames: Sequence[str]) -> dict[str, str]:
        paths = {
            str(folder / soname): soname for soname in sonames for folder in self.folders if (folder / soname).exists()
        }
        if not paths:
            return {}
        found: dict[str, str] = {}
        for line in _query(["apk", "info", "--who-owns", *paths]).splitlines():
            path, sep, package = line.partition(" is owned by ")
            if sep and path.strip() in paths:
                # "zlib-1.3.1-r2" -> "zlib": the version and the release are the last two fields
                found.setdefault(paths[path.strip()], package.strip().rsplit("-", 2)[0])
        return found


def builder_database() -> PackageDatabase | None:
    """The package database of the machine venvprune runs on (the builder), when it has one."""
    if shutil.which("dpkg") and Path("/var/lib/dpkg/status").is_file():
        return Dpkg()
    if shutil.which("apk") and Path("/lib/apk/db/installed").is_file():
        return Apk()
    return None


def _query(command: list[str]) -> str:
    """The output of a read-only package query; empty when it cannot run (the table is the fallback)."""
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",  # a file name in another encoding must not stop the run
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
            start_new_session=True,  # a Ctrl-C during the commit, which lets the prune finish, leaves the query be
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return completed.stdout
