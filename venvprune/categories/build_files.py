"""``build-files`` (opt-in): what compiling against a package needs and running it does not.

C and C++ headers and ``include/`` folders, static archives and object files, C/C++ and Cython sources
(``.c``, ``.cpp``, ``.pyx``, ``.pxd``, ...) shipped inside packages. Never by extension alone:

- a file whose name its package's code names is read at run time and stays (cffi inlines ``_cffi_include.h`` into
  the C it compiles; f2py compiles ``fortranobject.c``);
- a ``.pyx`` with no extension module beside it may be compiled on import by pyximport, and stays;
- a ``.a`` that is not an ar archive and a ``.o`` that is not an ELF object are not what their names say, and stay;
- the knowledge base keeps what runtime compilers read (Cython's Utility code, numpy's headers) and says what stops
  working without the rest (``torch/include``: torch.compile's C++ code generation and ``torch.utils.cpp_extension``).

An ``include`` folder goes whole or not at all: a compiler needs all of its headers or none of them helps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from venvprune.categories._guards import Mentions, in_package, mentions
from venvprune.plan import Action, ActionKind, CategoryResult, Kept
from venvprune.scan import FileEntry, Inventory

HEADER_SUFFIXES = (".h", ".hh", ".hpp", ".hxx", ".h++", ".cuh", ".inl", ".tcc", ".ipp")
SOURCE_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".c++", ".cu", ".pyx", ".pxd", ".pxi")
ARCHIVE_MAGIC = {".a": b"!<arch>\n", ".o": b"\x7fELF"}
INCLUDE_DIR = "include"
EXTENSION_SUFFIXES = (".so", ".pyd")

REASONS = {
    "header": "C/C++ header: read by a compiler building against the package, never imported",
    "source": "C/C++/Cython source of a compiled module: the compiled module is what is imported",
    "archive": "static archive or object file: read by a linker building against the package, never loaded",
    "include": "folder of C/C++ headers to compile against the package: nothing imports it; a build against it in "
    "the image needs it",
}


class BuildFiles:
    name = "build-files"
    default = False
    summary = "C/C++ headers and include/ folders, .a/.o, .c/.cpp/.pyx/.pxd sources shipped in packages"

    def plan(self, inventory: Inventory, planned: Sequence[Action]) -> CategoryResult:
        index = inventory.index
        named = mentions(inventory)
        actions: list[Action] = []
        kept: list[Kept] = []
        include_dirs = sorted(
            (d for d in inventory.directories if d.name == INCLUDE_DIR and in_package(inventory.target.relative(d))),
            key=lambda d: len(d.parts),
        )
        extension_modules = {
            (f.path.parent, f.name.split(".")[0]) for f in inventory.files if f.name.endswith(EXTENSION_SUFFIXES)
        }
        whole: list[Path] = []
        for directory in include_dirs:
            if any(directory.is_relative_to(outer) for outer in whole):
                continue
            contents = index.under(directory)
            if contents and all(not f.is_symlink and _is_header(f) for f in contents):
                whole.append(directory)
                actions.append(self._action(inventory, directory, contents, "include"))
        for entry in inventory.files:
            kind = _kind(entry)
            if kind is None or not in_package(entry.rel) or entry.is_symlink:
                continue
            if any(entry.path.is_relative_to(directory) for directory in whole):
                continue
            why = _why_kept(entry, kind, named, extension_modules)
            if why is not None:
                kept.append(Kept(entry.path, self.name, why, entry.size))
                continue
            actions.append(self._action(inventory, entry.path, [entry], kind))
        return CategoryResult(tuple(actions), tuple(kept))

    def _action(self, inventory: Inventory, path: Path, contents: Sequence[FileEntry], kind: str) -> Action:
        return Action(
            path=path,
            kind=ActionKind.REMOVE,
            category=self.name,
            reason=REASONS[kind],
            bytes_saved=sum(f.size for f in contents),
            files=len(contents),
            distribution=inventory.owner_of(contents[0].path),
            is_directory=kind == INCLUDE_DIR,
        )


def _is_header(entry: FileEntry) -> bool:
    """A header by name, or a file without a suffix in an include folder (C++ headers such as ``Eigen/Core``)."""
    return entry.suffix in HEADER_SUFFIXES or not entry.suffix


def _kind(entry: FileEntry) -> str | None:
    suffix = entry.suffix
    if suffix in HEADER_SUFFIXES:
        return "header"
    if suffix in SOURCE_SUFFIXES:
        return "source"
    if suffix in ARCHIVE_MAGIC:
        return "archive"
    return None


def _why_kept(entry: FileEntry, kind: str, named: Mentions, extension_modules: set[tuple[Path, str]]) -> str | None:
    reader = named.naming(entry.path)
    if reader is not None:
        return f"{reader} names it: read at run time"
    stem = entry.path.name[: -len(entry.path.suffix)]
    if entry.path.suffix == ".pyx" and (entry.path.parent, stem) not in extension_modules:
        return "no extension module beside it: pyximport may compile it on import"
    magic = ARCHIVE_MAGIC.get(entry.path.suffix)
    if kind == "archive" and magic is not None and not _starts_with(entry.path, magic):
        return f"not an {'ar archive' if entry.path.suffix == '.a' else 'ELF object'}: {entry.path.suffix} by name only"
    return None


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(magic)) == magic
    except OSError:
        return False


CATEGORY = BuildFiles()
