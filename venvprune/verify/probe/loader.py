"""How the dynamic loader meets the ELF objects of site-packages, read with ``struct`` (no pyelftools here: this
runs in the checked interpreter, standard library only).

A bundled library (``numpy.libs/libscipy_openblas64_-*.so``, ``scipy.libs/libgfortran-*.so.5``) is never loaded on
its own: the loader brings it in for an extension module that names it in ``DT_NEEDED``, finding it through that
module's ``RPATH`` or ``RUNPATH`` (``$ORIGIN/../numpy.libs``, as auditwheel writes it). Loaded alone it may fail
where it works for every program (a ``DT_RPATH`` is inherited by what its object loads, so ``libopenblas`` finds
``libgfortran`` only through the extension's), and a library that nothing needs may not load at all (scipy ships a
second libgfortran whose libquadmath it does not ship). So :func:`closure` follows the loader from each extension
module -- what it loads, in the order ld.so loads it -- and a library outside every closure is unused, not broken.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from typing import Any, Dict, Iterable, List, Optional, Tuple

ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29
_MAX_DYNAMIC = 1 << 20  # bytes of a PT_DYNAMIC segment read at most (real ones hold a few hundred entries)
_CHUNK = 1 << 20

ElfObject = Dict[str, Any]


def open_regular(path: str) -> Any:
    """*path* opened for reading when it is a regular file; OSError otherwise.

    Non-blocking, and checked on the descriptor: opening a FIFO (a named pipe left in a package) waits for a writer
    forever, and a device or socket is no file of a package.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def elf_identity(path: str) -> Optional[Tuple[int, int, int]]:
    """(class, byte order, machine) of an ELF file, None when it is not one."""
    try:
        with open_regular(path) as handle:
            header = handle.read(20)
    except OSError:
        return None
    if len(header) < 20 or header[:4] != b"\x7fELF" or header[5] not in (1, 2):
        return None
    order = "<" if header[5] == 1 else ">"
    return header[4], header[5], struct.unpack(order + "H", header[18:20])[0]


def read_object(path: str, wanted: Tuple[int, int, int], init_symbol: Optional[str] = None) -> Optional[ElfObject]:
    """What the loader reads of *path*, if it is a shared object or program of the *wanted* identity, else None.

    ``needed``, ``rpath``, ``runpath`` (lists), ``soname``, ``program`` (it has an interpreter: an executable),
    and, when *init_symbol* is given (``PyInit_foo``), ``exports_init``: whether its dynamic string table holds it.
    Malformed files are not objects: nothing here raises for the bytes of a file.
    """
    try:
        with open_regular(path) as handle:
            return _read_object(handle, wanted, init_symbol)
    except (OSError, struct.error, ValueError, OverflowError):
        return None


def _read_object(handle: Any, wanted: Tuple[int, int, int], init_symbol: Optional[str]) -> Optional[ElfObject]:
    header = handle.read(64)
    if len(header) < 52 or header[:4] != b"\x7fELF" or header[4] not in (1, 2) or header[5] not in (1, 2):
        return None
    elf_class, data = header[4], header[5]
    order = "<" if data == 1 else ">"
    e_type, e_machine = struct.unpack(order + "HH", header[16:20])
    if (elf_class, data, e_machine) != wanted or e_type not in (ET_DYN, ET_EXEC):
        return None
    if elf_class == 2:
        (phoff,) = struct.unpack(order + "Q", header[32:40])
        phentsize, phnum = struct.unpack(order + "HH", header[54:58])
        program_header, dynamic_entry = order + "IIQQQQQQ", order + "qQ"
    else:
        (phoff,) = struct.unpack(order + "I", header[28:32])
        phentsize, phnum = struct.unpack(order + "HH", header[42:46])
        program_header, dynamic_entry = order + "IIIIIIII", order + "iI"
    handle.seek(phoff)
    table = handle.read(phentsize * phnum)
    loads: List[Tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    dynamic: Optional[Tuple[int, int]] = None
    program = e_type == ET_EXEC
    size = struct.calcsize(program_header)
    for index in range(phnum):
        raw = table[index * phentsize : index * phentsize + size]
        if len(raw) < size or phentsize < size:
            break
        fields = struct.unpack(program_header, raw)
        if elf_class == 2:
            p_type, p_offset, p_vaddr, p_filesz = fields[0], fields[2], fields[3], fields[5]
        else:
            p_type, p_offset, p_vaddr, p_filesz = fields[0], fields[1], fields[2], fields[4]
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
        elif p_type == PT_INTERP:
            program = True
    found: ElfObject = {"needed": [], "rpath": [], "runpath": [], "soname": None, "program": program}
    if init_symbol is not None:
        found["exports_init"] = False
    if dynamic is None:
        return found
    handle.seek(dynamic[0])
    raw = handle.read(min(dynamic[1], _MAX_DYNAMIC))
    step = struct.calcsize(dynamic_entry)
    tags: List[Tuple[int, int]] = []
    for start in range(0, len(raw) - step + 1, step):
        tag, value = struct.unpack(dynamic_entry, raw[start : start + step])
        if tag == DT_NULL:
            break
        tags.append((tag, value))
    strtab = next((value for tag, value in tags if tag == DT_STRTAB), None)
    strsz = next((value for tag, value in tags if tag == DT_STRSZ), 0)
    offset = _file_offset(strtab, loads) if strtab is not None else None
    if offset is None:
        return found
    for tag, value in tags:
        if tag == DT_NEEDED:
            found["needed"].append(_string(handle, offset, value, strsz))
        elif tag == DT_SONAME:
            found["soname"] = _string(handle, offset, value, strsz)
        elif tag in (DT_RPATH, DT_RUNPATH):
            key = "rpath" if tag == DT_RPATH else "runpath"
            found[key].extend(p for p in _string(handle, offset, value, strsz).split(":") if p)
    if found["runpath"]:
        found["rpath"] = []  # ld.so ignores DT_RPATH when DT_RUNPATH is there
    if init_symbol is not None:
        found["exports_init"] = _holds(handle, offset, strsz, b"\0" + init_symbol.encode("ascii") + b"\0")
    return found


def _file_offset(vaddr: int, loads: Iterable[Tuple[int, int, int]]) -> Optional[int]:
    for start, offset, filesz in loads:
        if start <= vaddr < start + filesz:
            return vaddr - start + offset
    return None


def _string(handle: Any, table: int, index: int, size: int) -> str:
    handle.seek(table + index)
    raw: bytes = handle.read(max(0, min(4096, size - index)) if size else 4096)
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _holds(handle: Any, table: int, size: int, needle: bytes) -> bool:
    """Whether the string table holds *needle* (NUL-framed), read in chunks: torch's is tens of megabytes."""
    handle.seek(table)
    tail = b"\0"  # the table starts with a NUL; the first name follows it
    remaining = size
    while remaining > 0:
        chunk = handle.read(min(_CHUNK, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
        if needle in tail + chunk:
            return True
        tail = chunk[-len(needle) :]
    return False


def closure(root: str, objects: Dict[str, ElfObject]) -> List[str]:
    """The objects of *objects* (by real path) that loading *root* loads, in the loader's breadth-first order.

    A ``DT_NEEDED`` name is looked for as ld.so looks for it: an object already loaded under that name; the
    ``DT_RPATH`` of the object that needs it and of each object that loaded that one, unless the object has a
    ``DT_RUNPATH``; then its ``DT_RUNPATH``. ``$ORIGIN`` is the directory of the object the path belongs to. A
    name found nowhere in *objects* is the system's (``libc.so.6``, ``libpq.so.5``): the dlopen check meets it.
    """
    loaded: Dict[str, str] = {}  # soname or file name -> real path
    order: List[str] = []
    queue: List[Tuple[str, Tuple[str, ...]]] = [(root, ())]
    _note_loaded(root, objects[root], loaded)
    while queue:
        path, loaders = queue.pop(0)
        info = objects[path]
        for name in info.get("needed", ()):
            if name in loaded:
                continue
            found = _search(name, path, loaders, objects)
            if found is None or found in order or found == root:
                continue
            order.append(found)
            _note_loaded(found, objects[found], loaded)
            queue.append((found, (path, *loaders)))
    return order


def _note_loaded(path: str, info: ElfObject, loaded: Dict[str, str]) -> None:
    loaded[os.path.basename(path)] = path
    if info.get("soname"):
        loaded[info["soname"]] = path


def _search(name: str, needer: str, loaders: Tuple[str, ...], objects: Dict[str, ElfObject]) -> Optional[str]:
    if "/" in name:
        return _existing(name, objects)
    info = objects[needer]
    directories: List[str] = []
    if not info.get("runpath"):
        for owner in (needer, *loaders):
            directories += [_expand(d, owner) for d in objects[owner].get("rpath", ())]
    directories += [_expand(d, needer) for d in info.get("runpath", ())]
    for directory in directories:
        found = _existing(os.path.join(directory, name), objects)
        if found is not None:
            return found
    return None


def _existing(path: str, objects: Dict[str, ElfObject]) -> Optional[str]:
    if not os.path.exists(path):
        return None
    real = os.path.realpath(path)
    return real if real in objects else None


def _expand(entry: str, owner: str) -> str:
    origin = os.path.dirname(owner)
    for token in ("${ORIGIN}", "$ORIGIN"):
        entry = entry.replace(token, origin)
    for token in ("${LIB}", "$LIB"):
        entry = entry.replace(token, "lib64" if struct.calcsize("P") == 8 else "lib")
    return entry
