"""Everything ELF: detect ELF files, measure what can be cut, write the stripped copy, read what the loader needs.

Headers are unpacked with struct; pyelftools (imported only when needed) reads the rare file whose dynamic string
table lies in no loaded segment.

The one rule: never move or change a byte the dynamic loader maps (docs/why.md, rule 6). GNU strip relayouts
the whole file, and on libraries that auditwheel's patchelf extended with extra PT_LOAD segments the loader
then refuses the result with "ELF load command address/offset not page-aligned" (pypa/manylinux#119,
NixOS/patchelf#10, pypa/auditwheel#716). Here the file is cut instead:

- ``seg_end`` is the end of the last byte any program segment maps from the file (and of the ELF header and
  program header table). Every byte before it is copied unchanged, except three fields of the ELF header
  (``e_shoff``, ``e_shnum``, ``e_shstrndx``) that no loader reads.
- Any section that starts before the cut stays where it is, and the cut moves past its end; symbol and debug
  sections that stay that way are reported as "left in place".
- After the cut, symbol and debug sections (``.symtab`` and its ``.strtab``, ``.debug*``, ``.zdebug*``, their
  ``.rel(a).debug*``, ``.comment``) are dropped. Other non-allocated sections found there
  (``.gnu_debuglink``, ``.ARM.attributes``, ``.note.stapsdt``, ...) are kept and copied right after the cut:
  they are not loaded, so moving them moves no loaded byte, and dropping them could lose data.
- A new section-name table (when the old one lay after the cut) and a new section-header table end the file.

Section indexes of kept sections are renumbered (``sh_link``, ``sh_info``), but never those of allocated
sections: ``.dynsym`` entries name their section by index and lie in loaded bytes, which are not rewritten.
Files where that, or a kept section pointing at a dropped one, would be needed are skipped with a reason.

:func:`inspect` reads headers only and computes the whole new layout (so the dry run knows the exact saving);
:func:`write_stripped` only copies byte ranges and writes the precomputed tail.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MIN_HEADER_SIZE = 52  # an ELF32 header
ET_EXEC, ET_DYN = 2, 3
_E_TYPES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
ELF_MAGIC = b"\x7fELF"

SHF_ALLOC = 0x2
SHF_INFO_LINK = 0x40
SHN_LORESERVE = 0xFF00
SHN_XINDEX = 0xFFFF
PN_XNUM = 0xFFFF

# Section types whose meaning matters here (gABI numbers: the same for every machine).
SHT_SYMTAB, SHT_RELA, SHT_NOBITS, SHT_REL, SHT_GROUP, SHT_SYMTAB_SHNDX = 2, 4, 8, 9, 17, 18
_RELOCATIONS = (SHT_REL, SHT_RELA)
# Sections whose *content* names other sections by index: dropping or renumbering sections would make it lie.
_HOLDS_SECTION_INDEXES = (SHT_SYMTAB, SHT_GROUP, SHT_SYMTAB_SHNDX)

_SYMBOL_AND_DEBUG_NAMES = frozenset({b".symtab", b".comment", b".debug"})
_DEBUG_PREFIXES = (b".debug_", b".zdebug_")
_DEBUG_RELOCATION_PREFIXES = (b".rela.debug_", b".rel.debug_", b".rela.zdebug_", b".rel.zdebug_")

_MAX_NAME_TABLE = 16 << 20  # a section-name table is a few hundred bytes; more is a corrupt size field
_MAX_GAP = 64 << 10  # zero padding after the cut larger than this is not padding
_MAX_ALIGN = 1 << 16  # sh_addralign of a non-allocated section we move
_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Layout:
    """Field offsets and struct formats of one ELF class."""

    ehdr_size: int
    phdr_size: int
    shdr_size: int
    e_shoff: tuple[int, str]
    e_shnum: tuple[int, str]
    e_shstrndx: tuple[int, str]
    sh_name: tuple[int, str]
    sh_offset: tuple[int, str]
    sh_size: tuple[int, str]
    sh_link: tuple[int, str]
    sh_info: tuple[int, str]
    table_align: int
    phdr_format: str  # p_type, then (in file order) the fields up to p_filesz
    shdr_format: str  # all ten section header fields
    ehdr_format: str  # the ELF header's fields after e_ident


_ELF32 = _Layout(
    52,
    32,
    40,
    (32, "I"),
    (48, "H"),
    (50, "H"),
    (0, "I"),
    (16, "I"),
    (20, "I"),
    (24, "I"),
    (28, "I"),
    4,
    "IIIII",
    "IIIIIIIIII",
    "HHIIIIIHHHHHH",
)
_ELF64 = _Layout(
    64,
    56,
    64,
    (40, "Q"),
    (60, "H"),
    (62, "H"),
    (0, "I"),
    (24, "Q"),
    (32, "Q"),
    (40, "I"),
    (44, "I"),
    8,
    "IIQQQQ",
    "IIQQQQIIQQ",
    "HHIQQQIHHHHHH",
)


@dataclass(frozen=True)
class Move:
    """A kept non-allocated section that lay after the cut, copied to a new offset."""

    source_offset: int
    size: int
    offset: int


@dataclass(frozen=True)
class ElfFacts:
    """What :func:`inspect` found, and for a strippable file the complete recipe for the stripped copy."""

    bytes_saved: int
    left_in_place: int  # bytes of symbol/debug sections that stay because they lie before the cut
    skip_reason: str | None  # None when strippable
    size: int = 0  # file size and mtime at inspection: the writer refuses a file that changed since
    mtime_ns: int = 0
    fingerprint: bytes = b""  # digest of the ELF header, program header and section header tables
    header_ranges: tuple[tuple[int, int], ...] = ()  # (offset, length) of what the fingerprint covers
    cut: int = 0  # bytes [0, cut) are copied unchanged, except the patches in header_fields
    moves: tuple[Move, ...] = ()
    tail_offset: int = 0  # where tail (new section-name table, padding, section-header table) starts
    tail: bytes = field(default=b"", repr=False)
    header_fields: tuple[tuple[int, bytes], ...] = ()  # (offset, bytes): new e_shoff, e_shnum, e_shstrndx
    removed: tuple[str, ...] = ()  # names of the sections dropped, for the report and the tests

    @property
    def new_size(self) -> int:
        return self.size - self.bytes_saved


class SourceChanged(OSError):
    """The file no longer matches what :func:`inspect` saw; nothing was written in its place."""


class _Corrupt(ValueError):
    """The file's headers contradict each other or the file size."""


class _Skip(Exception):
    """A well-formed file this module will not change, with why."""

    def __init__(self, reason: str, left_in_place: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.left_in_place = left_in_place


def _skip(reason: str, left_in_place: int = 0) -> ElfFacts:
    return ElfFacts(bytes_saved=0, left_in_place=left_in_place, skip_reason=reason)


# Errors the parsing raises on bad content: they are caught around the whole inspection, never around single calls
# (docs/why.md, "Stripping").
_BAD_CONTENT = (struct.error, ValueError, EOFError, IndexError, KeyError, OverflowError)


def inspect(path: Path) -> ElfFacts:
    """Measure what stripping *path* would save, reading headers only.

    Never raises: unreadable, foreign and corrupt files come back with a ``skip_reason``.
    """
    try:
        with open(path, "rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                return _skip("not a regular file")
            # The magic first: an ELFFile for every file is twice as slow on a large tree (docs/why.md).
            if st.st_size < MIN_HEADER_SIZE or handle.read(4) != ELF_MAGIC:
                return _skip("not an ELF file")
            return _measure(handle, st)
    except _Skip as skip:
        return _skip(skip.reason, skip.left_in_place)
    except OSError as exc:
        return _skip(f"unreadable: {exc.strerror or exc}")
    except _BAD_CONTENT as exc:
        return _skip(f"corrupt ELF: {exc or type(exc).__name__}")


@dataclass(frozen=True)
class DynamicLinks:
    """What the dynamic loader reads of a file to link it: its own name and the libraries it needs."""

    soname: str | None
    needed: tuple[str, ...]  # DT_NEEDED, in order


def dynamic_links(path: Path) -> DynamicLinks | None:
    """``DT_SONAME`` and ``DT_NEEDED`` of *path*, from its ``PT_DYNAMIC`` segment (what the loader reads, so a file
    without section headers answers too); None for a file that is not a dynamically linked ELF file, or unreadable.

    Read with struct, as the loader does (the string table found through ``DT_STRTAB`` and the ``PT_LOAD`` segments):
    pyelftools built an object for every section of every library to find it, most of the scan's time on a venv with
    hundreds of libraries. It is asked only when ``DT_STRTAB`` lies in no loaded segment.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        links = _read_dynamic_links(fd, os.fstat(fd).st_size)
        return _dynamic_links_by_sections(path) if links is _ASK_PYELFTOOLS else links
    except OSError:
        return None
    except _BAD_CONTENT:
        return None  # a corrupt dynamic section links nothing we can name
    finally:
        os.close(fd)


PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME = 0, 1, 5, 14
_ASK_PYELFTOOLS = DynamicLinks("", ())  # a marker: the string table is not where the loader would find it


def _read_dynamic_links(fd: int, size: int) -> DynamicLinks | None:
    ident = os.pread(fd, 16, 0)
    if len(ident) < 16 or ident[:4] != ELF_MAGIC or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        return None
    is_64 = ident[4] == 2
    layout = _ELF64 if is_64 else _ELF32
    endian = "<" if ident[5] == 1 else ">"
    header = _read_exact(fd, 0, layout.ehdr_size, size, "the ELF header")
    phoff, phentsize, phnum = (
        struct.unpack_from(endian + "Q", header, 32) + struct.unpack_from(endian + "HH", header, 54)
        if is_64
        else struct.unpack_from(endian + "I", header, 28) + struct.unpack_from(endian + "HH", header, 42)
    )
    if phnum == PN_XNUM:  # the real count is in section 0's sh_info
        shoff = struct.unpack_from(endian + layout.e_shoff[1], header, layout.e_shoff[0])[0]
        section0 = _read_exact(fd, shoff, layout.shdr_size, size, "section 0")
        phnum = struct.unpack_from(endian + layout.sh_info[1], section0, layout.sh_info[0])[0]
    if phnum and phentsize < layout.phdr_size:
        raise _Corrupt(f"program header entry size {phentsize} is too small")
    table = _read_exact(fd, phoff, phnum * phentsize, size, "the program header table")
    phdr = struct.Struct(endian + layout.phdr_format)
    loads: list[tuple[int, int, int]] = []  # (p_vaddr, p_filesz, p_offset)
    dynamic: tuple[int, int] | None = None  # (p_offset, p_filesz) of the first PT_DYNAMIC
    for index in range(phnum):
        fields = phdr.unpack_from(table, index * phentsize)
        p_type = fields[0]
        p_offset, p_vaddr, p_filesz = (fields[2], fields[3], fields[5]) if is_64 else (fields[1], fields[2], fields[4])
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_filesz, p_offset))
        elif p_type == PT_DYNAMIC and dynamic is None:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return None  # statically linked, or an object file: it links nothing
    entry = struct.Struct(endian + ("qQ" if is_64 else "iI"))
    raw = _read_exact(fd, dynamic[0], dynamic[1], size, "the dynamic segment")
    needed: list[int] = []
    soname: int | None = None
    strtab: int | None = None
    for tag, value in entry.iter_unpack(raw[: len(raw) - len(raw) % entry.size]):
        if tag == DT_NULL:
            break
        if tag == DT_NEEDED:
            needed.append(value)
        elif tag == DT_SONAME:
            soname = value
        elif tag == DT_STRTAB:
            strtab = value
    if soname is None and not needed:
        return DynamicLinks(None, ())
    table_offset = (
        next((strtab - vaddr + offset for vaddr, filesz, offset in loads if vaddr <= strtab < vaddr + filesz), None)
        if strtab is not None
        else None
    )
    if table_offset is None:
        return _ASK_PYELFTOOLS

    def string(at: int) -> str:
        data = b""
        position = table_offset + at
        while b"\0" not in data and position < size:
            chunk = os.pread(fd, 256, position)
            if not chunk:
                break
            data += chunk
            position += len(chunk)
        return data.split(b"\0", 1)[0].decode("utf-8", errors="replace")

    return DynamicLinks(None if soname is None else string(soname), tuple(string(at) for at in needed))


def _dynamic_links_by_sections(path: Path) -> DynamicLinks | None:
    """pyelftools' answer, for a file whose string table the loaded segments do not hold (the section headers do).

    Imported here: no other file needs it, and importing it cost every run about a tenth of a second.
    """
    from elftools.common.exceptions import ELFError
    from elftools.construct import ConstructError
    from elftools.elf.dynamic import DynamicSegment
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as handle:
            for segment in ELFFile(handle).iter_segments():
                if not isinstance(segment, DynamicSegment):
                    continue
                soname = None
                needed = []
                for tag in segment.iter_tags():
                    # pyelftools sets .needed and .soname on the tags of those kinds only.
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.append(str(tag.needed))  # type: ignore[attr-defined]
                    elif tag.entry.d_tag == "DT_SONAME":
                        soname = str(tag.soname)  # type: ignore[attr-defined]
                return DynamicLinks(soname, tuple(needed))
    except (ELFError, ConstructError):
        return None
    return None


@dataclass(frozen=True)
class _Parsed:
    """The headers of one file, as :func:`_measure` read them."""

    fd: int
    st: os.stat_result
    layout: _Layout
    endian: str
    sections: list[_Section]
    names: list[bytes]
    shstrndx: int
    shentsize: int
    shdr_raw: bytes
    fingerprint: bytes
    header_ranges: tuple[tuple[int, int], ...]
    occupied: list[tuple[int, int]]  # (start, end) of every section with file bytes and of the header table

    @property
    def size(self) -> int:
        return self.st.st_size


def _measure(handle: BinaryIO, st: os.stat_result) -> ElfFacts:
    fd = handle.fileno()
    size = st.st_size
    # The header unpacked with struct, not pyelftools' construct (an ELFFile also parses a section header and the
    # section names on creation): inspect() on 2,251 libraries went from 8.6 s to 1.6 s, with the same answers.
    ident = _read_exact(fd, 0, 16, size, "the ELF identification")
    if ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise _Corrupt(f"invalid class {ident[4]} or byte order {ident[5]}")
    layout = _ELF64 if ident[4] == 2 else _ELF32
    endian = "<" if ident[5] == 1 else ">"
    ehdr = _read_exact(fd, 0, layout.ehdr_size, size, "the ELF header")
    fields = struct.unpack_from(endian + layout.ehdr_format, ehdr, 16)
    e_type, (phoff, shoff), (phentsize, phnum, shentsize, shnum, shstrndx) = fields[0], fields[4:6], fields[8:13]
    if e_type not in (ET_EXEC, ET_DYN):
        raise _Skip(f"not a shared object or executable ({_E_TYPES.get(e_type, hex(e_type))})")

    if shoff == 0:
        raise _Skip("already stripped (no section header table)")
    if shnum == 0 or shstrndx == SHN_XINDEX or phnum == PN_XNUM:
        raise _Skip("extended section or segment numbering (65280 or more) is not supported")
    if shstrndx == 0:
        raise _Skip("sections have no names (e_shstrndx is 0)")
    if shnum >= SHN_LORESERVE or shstrndx >= shnum:
        raise _Corrupt(f"e_shnum {shnum}, e_shstrndx {shstrndx}")
    if shentsize < layout.shdr_size or (phnum and phentsize < layout.phdr_size):
        raise _Corrupt(f"header entry sizes {phentsize}/{shentsize} are too small")

    phdr_raw = _read_exact(fd, phoff, phnum * phentsize, size, "the program header table")
    shdr_raw = _read_exact(fd, shoff, shnum * shentsize, size, "the section header table")

    # The cut starts at the end of what the loader reads from the file. Every segment counts, whatever its
    # type, not just PT_LOAD: nothing that any program header describes is dropped.
    seg_end = layout.ehdr_size
    if phnum:
        seg_end = max(seg_end, phoff + phnum * phentsize)
    # The tables are unpacked with struct too, not pyelftools' construct: that was half of the inspection time on
    # a venv with hundreds of libraries.
    phdr = struct.Struct(endian + layout.phdr_format)
    for index in range(phnum):
        fields = phdr.unpack_from(phdr_raw, index * phentsize)
        p_offset, p_filesz = (fields[1], fields[4]) if layout is _ELF32 else (fields[2], fields[5])
        if p_filesz > 0:
            end = p_offset + p_filesz
            if end > size:
                raise _Corrupt(f"segment {index} extends past the end of the file")
            seg_end = max(seg_end, end)

    shdr = struct.Struct(endian + layout.shdr_format)
    sections = [_Section.parse(shdr, index, shdr_raw, shentsize, size) for index in range(shnum)]
    name_table = sections[shstrndx]
    if name_table.type == SHT_NOBITS or name_table.size > _MAX_NAME_TABLE:
        raise _Corrupt("the section-name table has no usable bytes")
    names_raw = _read_exact(fd, name_table.offset, name_table.size, size, "the section-name table")
    names = [_name(names_raw, s.name_offset, s.index) for s in sections]

    removable = _removable(sections, names)
    # GNU strip keeps .comment (compiler version strings, ~100 bytes): a file with nothing else is already
    # stripped, not worth a rewrite (a staged copy, a new RECORD hash). .comment only goes along with the
    # rest.
    if not any(names[i] != b".comment" for i in removable):
        raise _Skip("already stripped")

    # Anything that starts before the cut stays where it is, so the cut moves past its end.
    occupied = [(s.offset, s.end) for s in sections if s.file_bytes] + [(shoff, shoff + shnum * shentsize)]
    cut = seg_end
    for start, end in sorted(occupied):
        if start < cut:
            cut = max(cut, end)
    left_in_place = sum(s.size for s in sections if s.index in removable and s.file_bytes and s.offset < cut)

    dropped = {s.index for s in sections if s.index in removable and s.offset >= cut}
    if not any(names[i] != b".comment" for i in dropped):
        raise _Skip("nothing removable after the last segment", left_in_place)
    parsed = _Parsed(
        fd=fd,
        st=st,
        layout=layout,
        endian=endian,
        sections=sections,
        names=names,
        shstrndx=shstrndx,
        shentsize=shentsize,
        shdr_raw=shdr_raw,
        fingerprint=_digest(ehdr + phdr_raw + shdr_raw),
        header_ranges=((0, layout.ehdr_size), (phoff, phnum * phentsize), (shoff, shnum * shentsize)),
        occupied=occupied,
    )
    try:
        return _plan(parsed, cut, dropped, left_in_place)
    except _Skip as skip:
        raise _Skip(skip.reason, left_in_place) from None


def _plan(parsed: _Parsed, cut: int, dropped: set[int], left_in_place: int) -> ElfFacts:
    """The stripped file's layout: everything the writer needs, so that the dry run knows the exact saving."""
    sections, names, shstrndx, layout, endian = (
        parsed.sections,
        parsed.names,
        parsed.shstrndx,
        parsed.layout,
        parsed.endian,
    )
    # An old section-name table after the cut is replaced by a new one in its place in the table, holding only
    # the names of the sections that remain (it may be the symbol table's .strtab, which some linkers share).
    replace_names = sections[shstrndx].offset >= cut
    dropped = dropped - {shstrndx}
    kept = [s for s in sections if s.index not in dropped]
    new_index = {s.index: position for position, s in enumerate(kept)}

    for s in kept[1:]:
        if s.allocated and s.file_bytes and s.offset >= cut:
            raise _Skip(f"allocated section {_text(names[s.index])} lies outside every segment")
        if s.allocated and new_index[s.index] != s.index:
            raise _Skip("dropping them would renumber allocated sections, which .dynsym refers to by index")
        if s.type in _HOLDS_SECTION_INDEXES:
            raise _Skip(f"{_text(names[s.index])} is left in place and refers to sections by index")
        for target in _links(s):
            if target >= len(sections):
                raise _Corrupt(f"section {s.index} links to section {target}, past the end of the table")
            if target in dropped or (replace_names and target == shstrndx):
                link = f"{_text(names[s.index])} -> {_text(names[target])}"
                raise _Skip(f"a kept section links to a removable one ({link})")

    _check_gaps(parsed.fd, cut, parsed.size, parsed.occupied)

    # New layout after the cut: moved sections, the new section-name table, the section-header table.
    position = cut
    moves: list[Move] = []
    new_offset: dict[int, int] = {}
    for s in sorted((s for s in kept[1:] if s.offset >= cut and s.file_bytes), key=lambda s: s.offset):
        if s.index == shstrndx and replace_names:
            continue
        align = max(s.addralign, 1)
        if align & (align - 1) or align > _MAX_ALIGN:
            raise _Corrupt(f"section {_text(names[s.index])} has alignment {s.addralign}")
        position = _align(position, align)
        moves.append(Move(s.offset, s.size, position))
        new_offset[s.index] = position
        position += s.size
    for s in kept[1:]:
        if not s.allocated and not s.file_bytes and s.offset >= cut:
            new_offset[s.index] = position  # empty or NOBITS: an offset inside the file, no bytes
    tail_offset = position

    name_offsets: dict[int, int] = {}
    table = b""
    if replace_names:
        table, name_offsets = _name_table(kept[1:], names)
        new_offset[shstrndx] = position
        position += len(table)
    shoff = _align(position, layout.table_align)
    new_size = shoff + len(kept) * parsed.shentsize
    if new_size >= parsed.size:
        raise _Skip("stripping would not make it smaller")

    entries = bytearray()
    for s in kept:
        entry = bytearray(parsed.shdr_raw[s.index * parsed.shentsize : (s.index + 1) * parsed.shentsize])
        if s.index != 0:  # section 0 holds the extended-numbering fields: left as it was
            if replace_names:
                _put(entry, layout.sh_name, endian, name_offsets[s.index])
            if s.index in new_offset:
                _put(entry, layout.sh_offset, endian, new_offset[s.index])
            if replace_names and s.index == shstrndx:
                _put(entry, layout.sh_size, endian, len(table))
            if s.link:
                _put(entry, layout.sh_link, endian, new_index[s.link])
            if s.info_is_link and s.info:
                _put(entry, layout.sh_info, endian, new_index[s.info])
        entries += entry

    header_fields = tuple(
        (offset, struct.pack(endian + fmt, value))
        for (offset, fmt), value in (
            (layout.e_shoff, shoff),
            (layout.e_shnum, len(kept)),
            (layout.e_shstrndx, new_index[shstrndx]),
        )
    )
    return ElfFacts(
        bytes_saved=parsed.size - new_size,
        left_in_place=left_in_place,
        skip_reason=None,
        size=parsed.size,
        mtime_ns=parsed.st.st_mtime_ns,
        fingerprint=parsed.fingerprint,
        header_ranges=parsed.header_ranges,
        cut=cut,
        moves=tuple(moves),
        tail_offset=tail_offset,
        tail=table + bytes(shoff - position) + bytes(entries),
        header_fields=header_fields,
        removed=tuple(_text(names[i]) for i in sorted(dropped)),
    )


@dataclass(frozen=True)
class _Section:
    index: int
    name_offset: int
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int

    @classmethod
    def parse(cls, shdr: struct.Struct, index: int, table: bytes, entsize: int, file_size: int) -> _Section:
        name, type_, flags, _addr, offset, size, link, info, addralign, _entsize = shdr.unpack_from(
            table, index * entsize
        )
        section = cls(index, name, type_, flags, offset, size, link, info, addralign)
        if section.file_bytes and section.end > file_size:
            raise _Corrupt(f"section {index} extends past the end of the file")
        return section

    @property
    def allocated(self) -> bool:
        return bool(self.flags & SHF_ALLOC)

    @property
    def file_bytes(self) -> bool:
        return self.type != SHT_NOBITS and self.size > 0

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def info_is_link(self) -> bool:
        # sh_info is a section index for relocation sections and whenever SHF_INFO_LINK says so.
        return bool(self.flags & SHF_INFO_LINK) or self.type in _RELOCATIONS


def _links(section: _Section) -> Iterable[int]:
    if section.link:
        yield section.link
    if section.info_is_link and section.info:
        yield section.info


def _removable(sections: list[_Section], names: list[bytes]) -> set[int]:
    """Non-allocated sections that carry only symbols and debug data.

    Recognised by name, not by has_dwarf_info(), which stays true after ``strip --strip-debug``.
    """
    removable: set[int] = set()
    for s in sections[1:]:
        if s.allocated:
            continue
        name = names[s.index]
        debug_relocations = name.startswith(_DEBUG_RELOCATION_PREFIXES) and s.type in _RELOCATIONS
        if name in _SYMBOL_AND_DEBUG_NAMES or name.startswith(_DEBUG_PREFIXES) or debug_relocations:
            removable.add(s.index)
    # The symbol table's own string table and extended-index table go with it, and only those: never .dynstr.
    for s in sections[1:]:
        if s.allocated or s.index in removable:
            continue
        link_is_symtab = 0 < s.link < len(sections) and names[s.link] == b".symtab" and s.link in removable
        if names[s.index] == b".symtab_shndx" and link_is_symtab:
            removable.add(s.index)
        if names[s.index] == b".strtab" and any(
            names[t.index] == b".symtab" and t.index in removable and t.link == s.index for t in sections
        ):
            removable.add(s.index)
    return removable


def _name(table: bytes, offset: int, index: int) -> bytes:
    if offset >= len(table) and not (offset == 0 and index == 0):
        raise _Corrupt(f"section {index} has a name outside the section-name table")
    end = table.find(b"\0", offset)
    return table[offset:] if end < 0 else table[offset:end]


def _name_table(kept: list[_Section], names: list[bytes]) -> tuple[bytes, dict[int, int]]:
    table = bytearray(b"\0")
    seen: dict[bytes, int] = {b"": 0}
    offsets: dict[int, int] = {}
    for s in kept:
        name = names[s.index]
        if name not in seen:
            seen[name] = len(table)
            table += name + b"\0"
        offsets[s.index] = seen[name]
    return bytes(table), offsets


def _check_gaps(fd: int, cut: int, size: int, occupied: list[tuple[int, int]]) -> None:
    """Bytes after the cut that belong to no section must be padding.

    Appended data (an installer's payload, a PyInstaller archive) is in no section; cutting would lose it.
    """
    position = cut
    for start, end in [*sorted(occupied), (size, size)]:
        if end <= position:
            continue
        if start > position:
            gap = start - position
            if gap > _MAX_GAP or _read_exact(fd, position, gap, size, "padding").count(0) != gap:
                raise _Skip(f"{gap} bytes after the last segment belong to no section (appended data?)")
        position = max(position, end)


def _read_exact(fd: int, offset: int, length: int, size: int, what: str) -> bytes:
    if offset < 0 or length < 0 or offset + length > size:
        raise _Corrupt(f"{what} extends past the end of the file")
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise _Corrupt(f"{what} is truncated")
    return data


def _put(entry: bytearray, where: tuple[int, str], endian: str, value: int) -> None:
    offset, fmt = where
    struct.pack_into(endian + fmt, entry, offset, value)


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) & ~(alignment - 1)


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _text(name: bytes) -> str:
    return name.decode("utf-8", "replace") or "(unnamed)"


# -- writing ------------------------------------------------------------------------------------------------


def write_stripped(source: Path, destination: Path, facts: ElfFacts) -> None:
    """Create *destination* (a new file) as the stripped copy of *source* described by *facts*.

    Raises :class:`SourceChanged` (an ``OSError``) when *source* is no longer the file :func:`inspect`
    measured, and ``ValueError`` for facts of a file that is not strippable.
    *destination* is removed on failure.
    """
    with open(source, "rb") as src, open(destination, "xb") as dst:
        try:
            copy_stripped(src.fileno(), dst.fileno(), facts, source)
        except BaseException:
            dst.close()
            destination.unlink()
            raise


def copy_stripped(src: int, dst: int, facts: ElfFacts, source: Path) -> None:
    """Write the stripped copy of the open file *src* into the open, empty file *dst* (*source* names it in errors)."""
    if facts.skip_reason is not None:
        raise ValueError(f"{source}: not strippable: {facts.skip_reason}")
    _check_unchanged(src, facts, source)
    _write(src, dst, facts, source)
    _check_unchanged(src, facts, source)  # nothing changed it while we copied


def _write(src: int, dst: int, facts: ElfFacts, source: Path) -> None:
    _copy(src, dst, 0, facts.cut, 0, source)
    position = facts.cut
    for move in facts.moves:
        _zeros(dst, position, move.offset)
        _copy(src, dst, move.source_offset, move.size, move.offset, source)
        position = move.offset + move.size
    _zeros(dst, position, facts.tail_offset)
    _pwrite_all(dst, facts.tail, facts.tail_offset)
    for offset, data in facts.header_fields:
        _pwrite_all(dst, data, offset)


def _check_unchanged(fd: int, facts: ElfFacts, source: Path) -> None:
    st = os.fstat(fd)
    same = st.st_size == facts.size and st.st_mtime_ns == facts.mtime_ns
    if same:
        headers = b"".join(os.pread(fd, length, offset) for offset, length in facts.header_ranges)
        same = _digest(headers) == facts.fingerprint
    if not same:
        raise SourceChanged(errno.ESTALE, "changed since it was inspected; run venvprune again", str(source))


def _copy(src: int, dst: int, offset: int, length: int, dst_offset: int, source: Path) -> None:
    """Copy a byte range in the kernel when it can (and as a reflink on file systems that share extents)."""
    done = 0
    if hasattr(os, "copy_file_range"):
        try:
            while done < length:
                copied = os.copy_file_range(src, dst, length - done, offset + done, dst_offset + done)
                if copied == 0:
                    break  # end of file, or a file system that copies nothing: the plain loop tells which
                done += copied
        except OSError as exc:
            # Not supported across these file systems or on this kernel: fall back to plain reads and writes.
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                raise
    while done < length:
        chunk = os.pread(src, min(_CHUNK, length - done), offset + done)
        if not chunk:
            raise SourceChanged(errno.ESTALE, "shorter than when it was inspected", str(source))
        _pwrite_all(dst, chunk, dst_offset + done)
        done += len(chunk)


def _zeros(dst: int, start: int, end: int) -> None:
    if end > start:
        _pwrite_all(dst, bytes(end - start), start)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
