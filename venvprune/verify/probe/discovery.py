"""What there is to check in site-packages, as this interpreter sees it: read from metadata and the disk.

``python ARCHIVE discover OUT SITE_DIR...`` writes :func:`discover`'s answer to OUT as JSON; no package is imported.
"""

from __future__ import annotations

import importlib.machinery
import os
import re
import stat
import sys
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from . import loader

# Files that are never ELF: skipped before their first bytes are read (a venv has tens of thousands of them).
# (A string split, not a literal: formatted, a literal takes a line per suffix.)
_NOT_ELF_SUFFIXES = tuple(
    ".py .pyc .pyi .pyx .pxd .pxi .h .hpp .cuh .c .cc .cpp .txt .json .md .rst .html .js .css .yaml .yml .toml .cfg"  # noqa: SIM905
    " .ini .typed .pem .csv .png .svg .jinja .j2 .tmpl .xml .a .o .pkl .npz .npy".split()
)
_SKIPPED_TOP_DIRS = (".venvprune", ".venvprune-staging", ".venvprune-unrestored", "__pycache__")
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


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
            problem = _unreadable_metadata(meta_dir)
            name = None
            if problem is None:
                try:
                    name = dist.metadata["Name"]
                except Exception as exc:  # whatever a damaged file makes importlib.metadata raise
                    problem = "%s: %s: %s" % (meta_dir, type(exc).__name__, exc)
                else:
                    if not name:
                        problem = "%s: %s is missing or names no distribution; reinstall it" % (
                            meta_dir,
                            "PKG-INFO" if entry.endswith(".egg-info") else "METADATA",
                        )
            readable = problem is None or not problem.endswith(_NOT_REGULAR)
            files = _installed_files(dist) if readable else []
            for rel in files:
                owners.setdefault(os.path.normpath(rel), name or entry)
            top_level = (dist.read_text("top_level.txt") or "").split() if readable else []
            described: Dict[str, Any] = {
                # A distribution whose metadata cannot be read is still listed, by its folder's name, so that its
                # metadata check fails under its own name and its code is still checked.
                "name": name or _name_of_folder(entry),
                "version": dist.version if problem is None else None,
                "metadata_dir": meta_dir,
                "modules": importable_modules(site_dir, files, top_level),
                "entry_points": _entry_points(dist) if readable else [],
                "requires": sorted({canonical_name(r) for r in map(_required_name, _requires(dist, readable)) if r}),
                "files": len(files),
            }
            if problem is not None:
                described["unreadable"] = problem
            distributions.append(described)
    return {
        "python": "%d.%d.%d" % sys.version_info[:3],
        "executable": sys.executable,
        "cache_tag": sys.implementation.cache_tag,
        "distributions": distributions,
        "libraries": _libraries(site_dirs, owners),
    }


_NOT_REGULAR = "is not a regular file"
# What importlib.metadata reads of a distribution: a FIFO among them would block it forever.
_METADATA_FILES = ("METADATA", "PKG-INFO", "RECORD", "entry_points.txt", "top_level.txt", "requires.txt")


def _unreadable_metadata(meta_dir: str) -> Optional[str]:
    """Why the files importlib.metadata reads in *meta_dir* cannot be read safely, None when they can."""
    for name in _METADATA_FILES:
        path = os.path.join(meta_dir, name)
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            return "%s: %s" % (path, exc.strerror or exc)
        if not stat.S_ISREG(mode):
            return "%s %s" % (path, _NOT_REGULAR)
    return None


def _name_of_folder(entry: str) -> str:
    """``tqdm`` from ``tqdm-4.66.1.dist-info``: the name a wheel's metadata folder carries (escaped, PEP 427)."""
    return entry.rsplit(".", 1)[0].split("-")[0]


def _entry_points(dist: Any) -> List[Tuple[str, str, str]]:
    try:
        return sorted({(ep.group, ep.name, ep.value) for ep in dist.entry_points})
    except Exception:  # a damaged entry_points.txt: its metadata check says so
        return []


def _requires(dist: Any, readable: bool) -> List[str]:
    if not readable:
        return []
    try:
        return list(dist.requires or ())
    except Exception:  # damaged metadata: its metadata check says so
        return []


def _required_name(requirement: str) -> str:
    """The distribution a ``Requires-Dist`` line names, whatever its markers say (a superset is safe)."""
    match = _REQUIREMENT_NAME.match(requirement)
    return match.group(1) if match else ""


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
        if not part.isidentifier() or part == "__pycache__":  # however deep the namespace (opentelemetry.a.b.c.d)
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


def elf_objects(site_dirs: Iterable[str]) -> Iterator[Tuple[str, loader.ElfObject]]:
    """ELF shared objects and programs this interpreter could load, found by their header, not by a ``.so`` name.

    Objects of another class or machine (test data) and relocatable objects are not loadable here and not listed.
    An extension module (``foo.cpython-311-x86_64-linux-gnu.so``; a bare ``foo.so`` only when it exports
    ``PyInit_foo``) is marked ``extension``; one with a program interpreter (``torch/bin/*``) ``program``.
    """
    wanted = loader.elf_identity(os.path.realpath(sys.executable))
    if wanted is None:
        return
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
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
                try:
                    if not stat.S_ISREG(os.lstat(path).st_mode):
                        continue  # a symlink is listed under its own name; a FIFO or socket is no object
                except OSError:
                    continue
                stem = next((filename[: -len(s)] for s in suffixes if filename.endswith(s)), None)
                module = stem is not None and stem.isidentifier()
                bare = module and not any(filename.endswith(s) for s in suffixes if s != ".so")
                info = loader.read_object(path, wanted, "PyInit_" + str(stem) if bare else None)
                if info is None:
                    continue
                info["extension"] = module and not info["program"] and info.pop("exports_init", True)
                yield path, info


def _libraries(site_dirs: List[str], owners: Dict[str, str]) -> List[Dict[str, Any]]:
    """Every loadable ELF object with its owner, size and role; extensions and programs with their closure."""
    objects: Dict[str, loader.ElfObject] = {}
    listed: List[Tuple[str, loader.ElfObject]] = []
    for path, info in elf_objects(site_dirs):
        objects[os.path.realpath(path)] = info
        listed.append((path, info))
    libraries = []
    for path, info in listed:
        relative = _relative_to_any(path, site_dirs)
        role = "extension" if info["extension"] else "program" if info["program"] else "library"
        entry: Dict[str, Any] = {
            "path": path,
            "owner": owners.get(relative) if relative is not None else None,
            "size": os.path.getsize(path),
            "role": role,
        }
        if role != "library":
            entry["closure"] = loader.closure(os.path.realpath(path), objects)
        libraries.append(entry)
    return libraries
