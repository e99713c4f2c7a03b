"""venvprune.elf on real ELF files compiled at test time, synthetic ones for other classes and byte orders,
broken ones, and a library patchelf'd the way auditwheel does it."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import elf_helpers as h
from tests.cli_runner import run_cli
from tests.site_builder import install_dist, make_site
from venvprune import elf

# -- real files, compiled now --------------------------------------------------------------------------------


def test_shared_library_is_stripped_and_still_loads(tmp_path: Path) -> None:
    library = h.shared_library(tmp_path)
    assert h.load_library(library, "vp_add").stdout.strip() == "42"

    facts = elf.inspect(library)
    assert facts.skip_reason is None
    assert {".symtab", ".strtab", ".comment", ".debug_info", ".debug_line"} <= set(facts.removed)
    assert facts.bytes_saved > 0
    assert facts.left_in_place == 0

    stripped = tmp_path / "stripped.so"
    elf.write_stripped(library, stripped, facts)
    h.check_invariant(library, stripped, facts)
    assert h.new_readelf_warnings(library, stripped) == []
    assert ".symtab" not in h.reparse_with_pyelftools(stripped)
    loaded = h.load_library(stripped, "vp_add")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "42"


@pytest.mark.parametrize("flags", [("-pie", "-fPIE"), ("-no-pie", "-fno-pie")], ids=["pie", "no-pie"])
def test_executable_is_stripped_and_still_runs(tmp_path: Path, flags: tuple[str, ...]) -> None:
    program = h.executable(tmp_path, "vp-program", *flags)
    expected = h.run_program(program)
    assert expected.returncode == 0 and expected.stdout == "squares 9 49\n"

    stripped = tmp_path / "vp-program-stripped"
    facts = h.strip_copy(program, stripped)
    h.check_invariant(program, stripped, facts)
    assert h.new_readelf_warnings(program, stripped) == []
    stripped.chmod(0o755)
    assert h.run_program(stripped).stdout == expected.stdout


def test_executable_type_is_reported(tmp_path: Path) -> None:
    program = h.executable(tmp_path, "vp-static-address", "-no-pie", "-fno-pie")
    with open(program, "rb") as handle:
        handle.seek(16)
        assert handle.read(1) == b"\x02"  # ET_EXEC, not a PIE: both kinds are stripped
    assert elf.inspect(program).skip_reason is None


def test_extension_module_is_stripped_and_still_imports(tmp_path: Path) -> None:
    module = h.extension_module(tmp_path)
    before = h.import_extension(tmp_path)
    assert before.returncode == 0, before.stderr
    assert before.stdout.strip() == "42"

    stripped = tmp_path / "stripped" / module.name
    stripped.parent.mkdir()
    facts = h.strip_copy(module, stripped)
    h.check_invariant(module, stripped, facts)
    assert h.new_readelf_warnings(module, stripped) == []
    after = h.import_extension(stripped.parent)
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "42"


def test_elf32_shared_library(tmp_path: Path) -> None:
    source = tmp_path / "lib32.c"
    source.write_text("int vp_add(int a, int b) { return a + b; }\n")
    library = tmp_path / "lib32.so"
    built = subprocess.run(
        ["gcc", "-m32", "-g", "-shared", "-fPIC", "-nostdlib", "-o", str(library), str(source)],
        capture_output=True,
        check=False,
    )
    # -nostdlib: no 32-bit C runtime is needed, so plain gcc on x86-64 links this; a failure here is a real one.
    assert built.returncode == 0, built.stderr.decode(errors="replace")
    stripped = tmp_path / "lib32-stripped.so"
    facts = h.strip_copy(library, stripped)
    h.check_invariant(library, stripped, facts)
    assert h.new_readelf_warnings(library, stripped) == []


def test_the_dry_run_figure_is_exact(tmp_path: Path) -> None:
    library = h.shared_library(tmp_path)
    facts = elf.inspect(library)
    stripped = tmp_path / "out.so"
    elf.write_stripped(library, stripped, facts)
    assert library.stat().st_size - stripped.stat().st_size == facts.bytes_saved


def test_stripping_twice_finds_nothing_more(tmp_path: Path) -> None:
    library = h.shared_library(tmp_path)
    once = tmp_path / "once.so"
    h.strip_copy(library, once)
    assert elf.inspect(once).skip_reason == "already stripped"


@pytest.mark.parametrize("mode", [(), ("--strip-debug",), ("--strip-unneeded",)], ids=["all", "debug", "unneeded"])
def test_files_gnu_strip_already_stripped(tmp_path: Path, mode: tuple[str, ...]) -> None:
    library = h.shared_library(tmp_path)
    h.gnu_strip(library, *mode)
    facts = elf.inspect(library)
    if mode == ("--strip-debug",):  # keeps .symtab, which can still go
        assert facts.skip_reason is None and ".symtab" in facts.removed
    else:
        assert facts.skip_reason == "already stripped"


def test_non_removable_section_after_the_cut_is_moved_not_lost(tmp_path: Path) -> None:
    library = h.shared_library(tmp_path)
    (tmp_path / "libvp.debug").write_bytes(b"debug file")
    subprocess.run(["objcopy", f"--add-gnu-debuglink={tmp_path / 'libvp.debug'}", str(library)], check=True)
    facts = elf.inspect(library)
    assert facts.skip_reason is None
    assert ".gnu_debuglink" not in facts.removed
    stripped = tmp_path / "stripped.so"
    elf.write_stripped(library, stripped, facts)
    h.check_invariant(library, stripped, facts)
    assert ".gnu_debuglink" in h.reparse_with_pyelftools(stripped)
    assert h.new_readelf_warnings(library, stripped) == []
    assert h.load_library(stripped, "vp_add").stdout.strip() == "42"


# -- auditwheel's patchelf layout ----------------------------------------------------------------------------


def test_patchelfd_library_gnu_strip_breaks_venvprune_does_not(tmp_path: Path) -> None:
    library = h.shared_library(tmp_path)
    h.patchelf_like_auditwheel(library)
    assert h.load_library(library, "vp_add").stdout.strip() == "42"

    # GNU strip relayouts the file and the loader refuses it (pypa/manylinux#119).
    gnu = tmp_path / "gnu-stripped.so"
    shutil.copy2(library, gnu)
    h.gnu_strip(gnu)
    refused = h.load_library(gnu, "vp_add")
    assert refused.returncode != 0
    assert "not page-aligned" in refused.stderr

    # Patchelf appended segments after the symbol table: every symbol/debug byte now lies between segments, so
    # there is nothing venvprune may cut. It says so, counts what stays, and writes nothing.
    facts = elf.inspect(library)
    assert facts.skip_reason == "nothing removable after the last segment"
    assert facts.left_in_place > 0
    assert facts.bytes_saved == 0
    with pytest.raises(ValueError, match="not strippable"):
        elf.write_stripped(library, tmp_path / "never.so", facts)
    assert not (tmp_path / "never.so").exists()
    assert h.load_library(library, "vp_add").stdout.strip() == "42"


def test_patchelf_set_rpath_before_the_symbol_table_is_stripped(tmp_path: Path) -> None:
    """A change that fits in place (no new segment) keeps ld's layout: venvprune cuts, the result loads."""
    library = h.shared_library(tmp_path, "libvp.so", "-Wl,-rpath,/a/long/enough/placeholder/path/for/the/test")
    subprocess.run([h.patchelf(), "--set-rpath", "$ORIGIN", str(library)], check=True)
    stripped = tmp_path / "stripped.so"
    facts = h.strip_copy(library, stripped)
    h.check_invariant(library, stripped, facts)
    assert h.new_readelf_warnings(library, stripped) == []
    assert h.load_library(stripped, "vp_add").stdout.strip() == "42"


# -- synthetic files: every class and byte order -------------------------------------------------------------

CLASSES = [
    pytest.param(True, True, h.EM_AARCH64, id="elf64-le-aarch64"),
    pytest.param(True, False, h.EM_PPC64, id="elf64-be-ppc64"),
    pytest.param(True, False, h.EM_S390, id="elf64-be-s390x"),
    pytest.param(False, True, h.EM_ARM, id="elf32-le-arm"),
    pytest.param(False, False, h.EM_PPC, id="elf32-be-ppc"),
    pytest.param(True, True, h.EM_RISCV, id="elf64-le-riscv"),
]


@pytest.mark.parametrize(("is64", "little", "machine"), CLASSES)
def test_synthetic_file_of_any_class_and_byte_order(tmp_path: Path, is64: bool, little: bool, machine: int) -> None:
    source = tmp_path / "synthetic.so"
    source.write_bytes(h.synthetic_elf(is64=is64, little=little, machine=machine))
    assert h.reparse_with_pyelftools(source)
    stripped = tmp_path / "stripped.so"
    facts = h.strip_copy(source, stripped)
    assert set(facts.removed) == {".comment", ".debug_info", ".rela.debug_info", ".symtab", ".strtab"}
    assert len(facts.moves) == 1  # .note.vp.keep: kept, copied right after the cut
    h.check_invariant(source, stripped, facts)
    assert h.new_readelf_warnings(source, stripped) == []
    assert h.reparse_with_pyelftools(stripped) == ["", ".text", ".note.vp.keep", ".shstrtab"]


def test_symbol_table_between_segments_is_left_in_place(tmp_path: Path) -> None:
    source = tmp_path / "between.so"
    source.write_bytes(h.synthetic_elf(is64=True, little=True, machine=h.EM_AARCH64, segment_after_symtab=True))
    facts = elf.inspect(source)
    assert facts.skip_reason == "nothing removable after the last segment"
    symbol_and_debug = (".comment", ".debug_info", ".rela.debug_info", ".symtab", ".strtab")
    raw = h.read_elf(source)
    assert facts.left_in_place == sum(s.size for s in raw.sections if s.name.decode() in symbol_and_debug)


def test_appended_data_is_never_cut(tmp_path: Path) -> None:
    source = tmp_path / "appended"
    source.write_bytes(h.synthetic_elf(is64=True, little=True, machine=h.EM_AARCH64, appended=b"PYZ archive" * 9))
    facts = elf.inspect(source)
    assert facts.skip_reason is not None
    assert "belong to no section" in facts.skip_reason


def test_zero_padding_after_the_section_headers_is_cut(tmp_path: Path) -> None:
    source = tmp_path / "padded.so"
    source.write_bytes(h.synthetic_elf(is64=True, little=True, machine=h.EM_AARCH64, appended=bytes(24)))
    stripped = tmp_path / "stripped.so"
    h.check_invariant(source, stripped, h.strip_copy(source, stripped))


def test_kept_section_linking_to_a_removable_one_skips_the_file(tmp_path: Path) -> None:
    # --emit-relocs leaves non-allocated relocation sections that point at .symtab: keeping them needs
    # .symtab.
    relocations = h.SyntheticSection(".rela.vp", h.SHT_RELA, 0, bytes(24), 8, 24, link=".symtab", info=".text")
    source = tmp_path / "links.so"
    source.write_bytes(h.synthetic_elf(is64=True, little=True, machine=h.EM_AARCH64, extra=[relocations]))
    facts = elf.inspect(source)
    assert facts.skip_reason == "a kept section links to a removable one (.rela.vp -> .symtab)"


# -- files that are not strippable ---------------------------------------------------------------------------


def test_relocatable_object_is_never_touched(tmp_path: Path) -> None:
    facts = elf.inspect(h.object_file(tmp_path))
    assert facts.skip_reason == "not a shared object or executable (ET_REL)"


def test_static_archive_is_not_elf(tmp_path: Path) -> None:
    archive = tmp_path / "libvp.a"
    subprocess.run(["ar", "rcs", str(archive), str(h.object_file(tmp_path))], check=True)
    assert elf.inspect(archive).skip_reason == "not an ELF file"


def test_empty_file_named_like_a_library(tmp_path: Path) -> None:
    empty = tmp_path / "libempty.so"
    empty.touch()
    assert elf.inspect(empty).skip_reason == "not an ELF file"


def test_text_file_with_the_elf_magic(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_bytes(b"\x7fELF is how ELF files start, and this one is text.\n" * 4)
    facts = elf.inspect(text)
    assert facts.skip_reason is not None and facts.skip_reason.startswith("corrupt ELF: ")


def test_unreadable_path_is_a_skip_reason_not_an_exception(tmp_path: Path) -> None:
    assert (elf.inspect(tmp_path / "missing.so").skip_reason or "").startswith("unreadable: ")
    assert elf.inspect(tmp_path).skip_reason is not None


def test_truncated_copies_are_skipped_with_a_reason(tmp_path: Path) -> None:
    library = h.shared_library(tmp_path)
    data = library.read_bytes()
    for length in (0, 3, 4, 20, 51, 52, 63, 64, 200, 4096, len(data) // 2, len(data) - 64, len(data) - 1):
        truncated = tmp_path / f"truncated-{length}.so"
        truncated.write_bytes(data[:length])
        facts = elf.inspect(truncated)
        assert facts.skip_reason is not None, length
        assert facts.skip_reason == "not an ELF file" or facts.skip_reason.startswith("corrupt ELF: "), (
            length,
            facts.skip_reason,
        )


# -- the writer refuses what it was not shown ----------------------------------------------------------------


def test_writer_refuses_a_source_that_changed_since_inspection(tmp_path: Path) -> None:
    library = h.shared_library(tmp_path)
    facts = elf.inspect(library)
    os.utime(library, ns=(facts.mtime_ns + 10**9, facts.mtime_ns + 10**9))
    destination = tmp_path / "out.so"
    with pytest.raises(elf.SourceChanged) as raised:
        elf.write_stripped(library, destination, facts)
    assert isinstance(raised.value, OSError)
    assert not destination.exists()


def test_writer_refuses_changed_headers_with_the_same_size_and_mtime(tmp_path: Path) -> None:
    library = h.shared_library(tmp_path)
    facts = elf.inspect(library)
    data = bytearray(library.read_bytes())
    data[facts.header_ranges[2][0] + 70] ^= 0xFF  # a byte in section header 1
    library.write_bytes(bytes(data))
    os.utime(library, ns=(facts.mtime_ns, facts.mtime_ns))
    with pytest.raises(OSError, match="changed since it was inspected"):
        elf.write_stripped(library, tmp_path / "out.so", facts)


def test_writer_never_overwrites_an_existing_destination(tmp_path: Path) -> None:
    library = h.shared_library(tmp_path)
    destination = tmp_path / "exists.so"
    destination.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        elf.write_stripped(library, destination, elf.inspect(library))
    assert destination.read_bytes() == b"keep me"


def test_writer_works_without_copy_file_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = h.shared_library(tmp_path)
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    stripped = tmp_path / "stripped.so"
    h.check_invariant(library, stripped, h.strip_copy(library, stripped))


def test_writer_reads_no_more_than_headers_and_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole file is never read into memory: reads go through pread in bounded chunks."""
    library = h.shared_library(tmp_path)
    facts = elf.inspect(library)
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    sizes: list[int] = []
    real_pread = os.pread

    def pread(fd: int, length: int, offset: int) -> bytes:
        sizes.append(length)
        return real_pread(fd, length, offset)

    monkeypatch.setattr(os, "pread", pread)
    elf.write_stripped(library, tmp_path / "out.so", facts)
    assert max(sizes) <= max(1 << 20, *(length for _, length in facts.header_ranges))


# -- property: broken input never escapes as an exception ----------------------------------------------------


@pytest.fixture(scope="module", params=["gcc-x86-64", "synthetic-elf32-big-endian"])
def seed(request: pytest.FixtureRequest) -> Iterator[tuple[bytes, Path]]:
    with tempfile.TemporaryDirectory() as directory:
        if request.param == "gcc-x86-64":
            data = h.shared_library(Path(directory)).read_bytes()
        else:
            data = h.synthetic_elf(is64=False, little=False, machine=h.EM_PPC)
        yield data, Path(directory)


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    # Edits go mostly where they matter: the ELF header and program headers at the start, the section-name
    # table and section-header table at the end (gcc and ld put them there). What is drawn does not depend on the
    # seed's length (it is scaled in build()): hypothesis shares examples between the parametrised seeds, and a
    # strategy shaped by the seed would replay differently on the other one (FlakyStrategyDefinition).
    length = len(seed)
    position = st.one_of(
        st.tuples(st.just("head"), st.integers(0, 64 + 13 * 56)),
        st.tuples(st.just("tail"), st.integers(1, 3000)),
        st.tuples(st.just("any"), st.integers(0, 2**31)),
    )
    edits = st.lists(st.tuples(position, st.integers(0, 255)), min_size=0, max_size=6)
    cut = st.one_of(
        st.tuples(st.just("whole"), st.just(0)),
        st.tuples(st.just("any"), st.integers(0, 2**31)),
        st.tuples(st.just("tail"), st.integers(0, 3000)),
    )

    def offset(where: tuple[str, int]) -> int:
        kind, value = where
        if kind == "head":
            return min(value, length - 1)
        if kind == "tail":
            return max(0, length - value)
        return value % length

    def build(parts: tuple[list[tuple[tuple[str, int], int]], tuple[str, int]]) -> bytes:
        changes, (cut_kind, cut_value) = parts
        data = bytearray(seed)
        for where, value in changes:
            data[offset(where)] = value
        keep = {"whole": length, "any": cut_value % (length + 1), "tail": max(0, length - cut_value)}[cut_kind]
        return bytes(data[:keep])

    return st.tuples(edits, cut).map(build)


# database=None: the seed is compiled in a fresh tmp dir each run (its path is in the debug info), so a saved
# example would replay against different bytes.
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(data=st.data())
def test_broken_files_never_raise_and_what_is_written_keeps_the_invariant(
    seed: tuple[bytes, Path], data: st.DataObject
) -> None:
    original, directory = seed
    mutated = data.draw(_mutations(original))
    source = directory / "case.so"
    destination = directory / "case-stripped.so"
    source.write_bytes(mutated)
    if destination.exists():
        destination.unlink()

    facts = elf.inspect(source)  # never raises
    if facts.skip_reason is not None:
        assert facts.bytes_saved == 0
        return
    elf.write_stripped(source, destination, facts)  # the source did not change: never raises
    h.check_invariant(source, destination, facts)
    try:
        h.reparse_with_pyelftools(source)
    except Exception:  # a mutated input pyelftools cannot walk: the output need not walk either
        return
    h.reparse_with_pyelftools(destination)  # but what parsed before must parse after


def test_writer_falls_back_when_the_kernel_copies_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = h.shared_library(tmp_path)
    facts = elf.inspect(library)

    def refuse(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    for fake in (refuse, lambda *args: 0):
        monkeypatch.setattr(os, "copy_file_range", fake, raising=False)
        stripped = tmp_path / f"stripped-{fake is refuse}.so"
        elf.write_stripped(library, stripped, facts)
        h.check_invariant(library, stripped, facts)


# -- through the category and the CLI ---------------------------------------------------------------------------


def test_debug_symbols_category_end_to_end(tmp_path: Path) -> None:
    """Found by magic whatever the name, stripped through the journalled apply, hard links left alone."""
    build = tmp_path / "build"
    build.mkdir()
    module = h.extension_module(build)
    library = h.shared_library(build, "libvp.so.1.2.3")  # not named *.so: found by its magic
    site = make_site(tmp_path / "prefix")
    install_dist(
        site,
        "vpext",
        {f"vpext/{module.name}": module.read_bytes(), "vpext.libs/libvp.so.1.2.3": library.read_bytes()},
        top_level="vpext\n",
    )
    shipped = site / "vpext" / module.name
    shipped.chmod(0o755)
    cache_link = tmp_path / "uv-cache-copy.so"  # uv installs hard links to its cache
    os.link(shipped, cache_link)
    expected = {path: elf.inspect(path).bytes_saved for path in (shipped, site / "vpext.libs" / "libvp.so.1.2.3")}
    assert all(expected.values())

    code, out, err = run_cli("--dry-run", "--only", "debug-symbols", "--json", "-", str(site))
    assert code == 0, err
    actions = json.loads(out)["actions"]
    planned = {a["path"]: a["bytes"] for a in actions if a["category"] == "debug-symbols"}
    assert planned == {path.relative_to(site).as_posix(): saved for path, saved in expected.items()}
    assert [a["path"] for a in actions if a["category"] == "record"] == ["vpext-1.0.dist-info/RECORD"]  # new hashes

    code, out, err = run_cli("--no-verify", "--no-manifest", "--only", "debug-symbols", "--json", "-", str(site))
    assert code == 0, err
    assert json.loads(out)["status"] == "success"
    assert shipped.stat().st_size == module.stat().st_size - expected[shipped]
    shipped_library = site / "vpext.libs" / "libvp.so.1.2.3"
    assert shipped_library.stat().st_size == library.stat().st_size - expected[shipped_library]
    assert shipped.stat().st_mode & 0o777 == 0o755
    h.check_invariant(module, shipped)
    assert cache_link.read_bytes() == module.read_bytes(), "the hard-linked original was changed"
    assert h.import_extension(shipped.parent).stdout.strip() == "42"
    assert h.load_library(shipped_library, "vp_add").stdout.strip() == "42"
