"""The probe's view of ELF objects as the loader meets them: DT_NEEDED through RPATH/RUNPATH, with real libraries
compiled by gcc at test time (well under a second each)."""

from __future__ import annotations

import importlib.machinery
import os
import sys
from pathlib import Path

import pytest

from tests.elf_helpers import gcc
from tests.site_builder import make_site
from venvprune.verify.probe import discovery, loader
from venvprune.verify.probe.checklist import checklist, unused_libraries

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # .cpython-311-x86_64-linux-gnu.so
NEEDS_DEP = "int dep(void);\nint needed(void) { return dep(); }\n"
MALFORMED = [b"", b"\x7fELF", b"\x7fELF" + b"\xff" * 60, b"\x7fELF\x02\x01\x01" + b"\x00" * 200]


def library(directory: Path, name: str, source: str, *flags: str) -> Path:
    # --no-as-needed: a -l given before the source still becomes a DT_NEEDED entry (gcc puts flags first).
    return gcc(directory, source, name, "-shared", "-fPIC", "-Wl,--no-as-needed", f"-Wl,-soname,{name}", *flags)


@pytest.fixture
def bundled(tmp_path: Path) -> Path:
    """site-packages with pkg/_ext (RPATH $ORIGIN/../pkg.libs) -> libneeded -> libdep, and an unused library."""
    site = make_site(tmp_path)
    libs = site / "pkg.libs"
    libs.mkdir()
    (site / "pkg").mkdir()
    library(libs, "libdep-1.so", "int dep(void) { return 1; }\n")
    library(
        libs, "libneeded-2.so", "int dep(void);\nint needed(void) { return dep(); }\n", f"-L{libs}", "-l:libdep-1.so"
    )
    library(libs, "libunused-3.so", "int unused(void) { return 3; }\n")
    ext = "int needed(void);\nint (*keep)(void) = needed;\n"
    flags = (
        "-Wl,--no-as-needed",
        f"-L{libs}",
        "-l:libneeded-2.so",
        "-Wl,--disable-new-dtags,-rpath,$ORIGIN/../pkg.libs",
    )
    gcc(site / "pkg", ext, f"_ext{SUFFIX}", "-shared", "-fPIC", *flags)
    for leftover in [*libs.glob("*.c"), *(site / "pkg").glob("*.c")]:
        leftover.unlink()
    return site


def by_name(found: dict[str, object]) -> dict[str, dict[str, object]]:
    return {Path(str(lib["path"])).name: lib for lib in found["libraries"]}  # type: ignore[attr-defined]


def test_an_extension_loads_its_bundled_libraries_through_its_rpath(bundled: Path) -> None:
    libraries = by_name(discovery.discover([str(bundled)]))
    ext = libraries[f"_ext{SUFFIX}"]
    assert ext["role"] == "extension"
    # libdep has no RPATH of its own: the loader finds it through the extension's DT_RPATH, as ld.so does.
    assert [Path(p).name for p in ext["closure"]] == ["libneeded-2.so", "libdep-1.so"]  # type: ignore[attr-defined]
    assert {name: lib["role"] for name, lib in libraries.items() if name.startswith("lib")} == {
        "libdep-1.so": "library",
        "libneeded-2.so": "library",
        "libunused-3.so": "library",
    }


def test_a_runpath_is_not_inherited_by_what_the_object_loads(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    libs = site / "pkg.libs"
    libs.mkdir()
    (site / "pkg").mkdir()
    library(libs, "libdep-1.so", "int dep(void) { return 1; }\n")
    library(
        libs, "libneeded-2.so", "int dep(void);\nint needed(void) { return dep(); }\n", f"-L{libs}", "-l:libdep-1.so"
    )
    flags = (
        "-Wl,--no-as-needed",
        f"-L{libs}",
        "-l:libneeded-2.so",
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../pkg.libs",
    )
    gcc(site / "pkg", "int needed(void);\nint (*keep)(void) = needed;\n", f"_ext{SUFFIX}", "-shared", "-fPIC", *flags)
    ext = by_name(discovery.discover([str(site)]))[f"_ext{SUFFIX}"]
    # DT_RUNPATH serves the object's own DT_NEEDED only: libdep is not found through it (ld.so agrees).
    assert [Path(p).name for p in ext["closure"]] == ["libneeded-2.so"]  # type: ignore[attr-defined]


def test_libraries_nothing_needs_or_loads_are_unused_not_checked(bundled: Path) -> None:
    found = discovery.discover([str(bundled)])
    tasks = checklist(found, str(bundled.parents[2]))
    assert [t["id"] for t in tasks if t["kind"] == "dlopen"] == [
        f"dlopen lib/python3.11/site-packages/pkg/_ext{SUFFIX}"
    ]
    unused = unused_libraries(found, mapped=[])
    assert [Path(u["path"]).name for u in unused] == ["libunused-3.so"]
    assert unused[0]["bytes"] == (bundled / "pkg.libs" / "libunused-3.so").stat().st_size
    # A library an import loaded at run time (ctypes) is used, whatever DT_NEEDED says.
    assert unused_libraries(found, mapped=[str(bundled / "pkg.libs" / "libunused-3.so")]) == []


def test_a_bare_so_is_an_extension_only_when_it_exports_its_init_function(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    (site / "pkg").mkdir()
    gcc(site / "pkg", "int PyInit_plain(void) { return 0; }\n", "plain.so", "-shared", "-fPIC")
    gcc(site / "pkg", "int helper(void) { return 0; }\n", "helper.so", "-shared", "-fPIC")
    roles = {name: lib["role"] for name, lib in by_name(discovery.discover([str(site)])).items()}
    assert roles == {"plain.so": "extension", "helper.so": "library"}


@pytest.mark.parametrize(
    "content", [b"", b"\x7fELF", b"\x7fELF" + b"\xff" * 60, b"\x7fELF\x02\x01\x01" + b"\x00" * 200]
)
def test_malformed_files_are_not_objects(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.so"
    path.write_bytes(content)
    identity = loader.elf_identity(os.path.realpath(sys.executable))
    assert identity is not None
    found = loader.read_object(str(path), identity, "PyInit_bad")
    assert found is None or found["needed"] == []
