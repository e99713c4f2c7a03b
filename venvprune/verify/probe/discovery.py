"""What there is to check in site-packages, as this interpreter sees it: read from metadata and the disk.

``python ARCHIVE discover OUT SITE_DIR...`` writes :func:`discover`'s answer to OUT as JSON; no package is imported.
"""

from __future__ import annotations

import os
import re
import struct
import sys
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

# Files that are never ELF: skipped before their first bytes are read (a venv has tens of thousands of them).
# (A string split, not a literal: formatted, a literal takes a line per suffix.)
_NOT_ELF_SUFFIXES = tuple(
    ".py .pyc .pyi .pyx .pxd .pxi .h .hpp .cuh .c .cc .cpp .txt .json .md .rst .html .js .css .yaml .yml .toml .cfg"  # noqa: SIM905
    " .ini .typed .pem .csv .png .svg .jinja .j2 .tmpl .xml .a .o .pkl .npz .npy".split()
)
_ET_DYN = 3
_PT_INTERP = 3
_SKIPPED_TOP_DIRS = (".venvprune", ".venvprune-staging", ".venvprune-unrestored", "__pycache__")


def canonical_name(name: str) -> str:
    """PEP 503 normalisation (``packaging.utils.canonicalize_name`` without the dependency)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def discover(site_dirs: List[str]) -> Dict[str, Any]:
    """What there is to check in *site_dirs*: read from metadata and the disk; no package is imported."""
    import importlib.metadata
    import pathlib

    distributions = []
    owners: Dict[str, str] = {}  # path relative to its site dir -> distribution name
    for site_dir in site_dirs:
        try:
            entries = sorted(os.listdir(site_dir))
        except OSError:
            continue
        for entry in entries:
            meta_dir = os.path.join(site_dir, entry)
            if not entry.endswith((".dist-info", ".egg-info")) or not os.path.isdir(meta_dir):
                continue
            dist = importlib.metadata.PathDistribution(pathlib.Path(meta_dir))
            name = dist.metadata["Name"]
            if not name:
                continue
            files = _installed_files(dist)
            for rel in files:
                owners.setdefault(os.path.normpath(rel), name)
            top_level = (dist.read_text("top_level.txt") or "").split()
            distributions.append(
                {
                    "name": name,
                    "version": dist.version,
                    "metadata_dir": meta_dir,
                    "modules": importable_modules(site_dir, files, top_level),
                    "entry_points": sorted({(ep.group, ep.name, ep.value) for ep in dist.entry_points}),
                    "files": len(files),
                }
            )
    libraries: List[List[Optional[str]]] = []
    for path in shared_libraries(site_dirs):
        relative = _relative_to_any(path, site_dirs)
        libraries.append([path, owners.get(relative) if relative is not None else None])
    return {
        "python": "%d.%d.%d" % sys.version_info[:3],
        "executable": sys.executable,
        "cache_tag": sys.implementation.cache_tag,
        "distributions": distributions,
        "libraries": libraries,
    }


def _installed_files(dist: Any) -> List[str]:
    """RECORD's paths, read directly: ``Distribution.files`` builds a PackagePath for each of torch's 15,000."""
    import csv

    text = dist.read_text("RECORD")
    if text is not None:
        return [row[0] for row in csv.reader(text.splitlines()) if row and row[0]]
    return [str(f) for f in (dist.files or [])]


def importable_modules(site_dir: str, files: Iterable[str], top_level: Iterable[str]) -> List[str]:
    """The top-level modules a distribution installs, from its RECORD and top_level.txt.

    A namespace package (a directory without ``__init__``) is not a module worth importing -- it imports even when
    empty -- so the search goes down to the first regular package or module below it: ``opentelemetry.trace``,
    not ``opentelemetry``. Names that are not identifiers (``numpy.libs``, ``foo-1.0.data``) are not modules, nor
    are files this interpreter would not import (``foo.cpython-310-x86_64-linux-gnu.so`` under 3.11, ``libbar.so.1``).
    """
    import importlib.machinery

    suffixes = tuple(importlib.machinery.all_suffixes())
    found: Set[str] = set()
    packages: Dict[str, bool] = {}  # directory -> regular package? (torch lists 15,000 files in one package)

    def is_package(directory: str) -> bool:
        if directory not in packages:
            packages[directory] = _is_regular_package(directory, suffixes)
        return packages[directory]

    for rel in files:
        parts = os.path.normpath(rel).split(os.sep)
        if parts[0] in ("..", "") or not parts[-1].endswith(suffixes):
            continue
        module = _module_root(site_dir, parts, suffixes, is_package)
        if module is not None:
            found.add(module)
    for name in top_level:
        if not name.isidentifier() or name in found or any(m.startswith(name + ".") for m in found):
            continue
        if _is_regular_package(os.path.join(site_dir, name), suffixes) or _module_file(site_dir, name, suffixes):
            found.add(name)
    return sorted(found)


def _module_root(
    site_dir: str, parts: List[str], suffixes: Tuple[str, ...], is_package: Callable[[str], bool]
) -> Optional[str]:
    """The shortest dotted name that imports the file *parts*: its first regular package, else the module itself."""
    dotted: List[str] = []
    for part in parts[:-1]:
        if not part.isidentifier() or part == "__pycache__" or len(dotted) >= 3:
            return None
        dotted.append(part)
        if is_package(os.path.join(site_dir, *dotted)):
            return ".".join(dotted)
    stem = next((parts[-1][: -len(s)] for s in suffixes if parts[-1].endswith(s)), "")
    if not stem.isidentifier() or stem == "__init__":
        return None
    return ".".join([*dotted, stem])


def _is_regular_package(directory: str, suffixes: Tuple[str, ...]) -> bool:
    return _module_file(directory, "__init__", suffixes)


def _module_file(directory: str, name: str, suffixes: Tuple[str, ...]) -> bool:
    return any(os.path.isfile(os.path.join(directory, name + suffix)) for suffix in suffixes)


def _relative_to_any(path: str, directories: Iterable[str]) -> Optional[str]:
    for directory in directories:
        prefix = directory.rstrip(os.sep) + os.sep
        if path.startswith(prefix):
            return path[len(prefix) :]
    return None


def shared_libraries(site_dirs: Iterable[str]) -> Iterator[str]:
    """ELF shared objects this interpreter could load, found by their header, not by a ``.so`` name.

    Executables (a PT_INTERP segment: ``torch/bin/*``), objects of another class or machine (test data) and
    relocatable objects are not libraries to dlopen.
    """
    wanted = _elf_identity(os.path.realpath(sys.executable))
    for site_dir in site_dirs:
        for directory, dirnames, filenames in os.walk(site_dir):
            if directory == site_dir:
                dirnames[:] = [d for d in dirnames if d not in _SKIPPED_TOP_DIRS]
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            dirnames.sort()
            for filename in sorted(filenames):
                if filename.endswith(_NOT_ELF_SUFFIXES):
                    continue
                path = os.path.join(directory, filename)
                if os.path.islink(path):
                    continue  # its target is checked under its own name
                if wanted is not None and _is_loadable_library(path, wanted):
                    yield path


def _elf_identity(path: str) -> Optional[Tuple[int, int, int]]:
    """(class, byte order, machine) of an ELF file, None when it is not one."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return None
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    order = "<" if header[5] == 1 else ">"
    return header[4], header[5], struct.unpack(order + "H", header[18:20])[0]


def _is_loadable_library(path: str, wanted: Tuple[int, int, int]) -> bool:
    try:
        with open(path, "rb") as handle:
            header = handle.read(64)
            if len(header) < 52 or header[:4] != b"\x7fELF":
                return False
            elf_class, data = header[4], header[5]
            order = "<" if data == 1 else ">"
            e_type, e_machine = struct.unpack(order + "HH", header[16:20])
            if (elf_class, data, e_machine) != wanted or e_type != _ET_DYN:
                return False
            if elf_class == 2:
                (phoff,) = struct.unpack(order + "Q", header[32:40])
                phentsize, phnum = struct.unpack(order + "HH", header[54:58])
            else:
                (phoff,) = struct.unpack(order + "I", header[28:32])
                phentsize, phnum = struct.unpack(order + "HH", header[42:46])
            handle.seek(phoff)
            table = handle.read(phentsize * phnum)
    except (OSError, struct.error):
        return False
    for index in range(min(phnum, len(table) // max(phentsize, 1))):
        (p_type,) = struct.unpack(order + "I", table[index * phentsize : index * phentsize + 4])
        if p_type == _PT_INTERP:
            return False
    return True
