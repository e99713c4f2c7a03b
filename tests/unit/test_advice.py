"""Advice for the final image, from real ELF files compiled at test time: the system libraries a venv needs and does
not bundle, with their packages (this builder's dpkg, or the built-in table), and the GPU payload it carries."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import jsonschema
import pytest

from tests.cli_runner import run_cli
from tests.elf_helpers import shared_library, unmapped_string_table
from tests.site_builder import install_dist, make_site
from venvprune import advice, categories, elf
from venvprune.advice import Advice, advise
from venvprune.knowledge import KnowledgeBase
from venvprune.pipeline import Outcome, Status
from venvprune.plan import Plan, build_plan
from venvprune.report import build_report, render_json, render_markdown, render_text
from venvprune.scan import scan
from venvprune.target import resolve_target

SCHEMA = json.loads((Path(advice.__file__).parent / "report" / "schema.json").read_text())
NEEDS = "-Wl,--no-as-needed"  # DT_NEEDED even for a library whose symbols the test library does not call


class Recorded:
    """A package database that answers from a dictionary, as dpkg would."""

    name = "dpkg"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def owners(self, sonames: Sequence[str]) -> dict[str, str]:
        self.asked += sonames
        return {s: self.answers[s] for s in sonames if s in self.answers}


@pytest.fixture
def venv_site(tmp_path: Path) -> Path:
    """An extension that links zlib, the C library, libresolv, a bundled library and one from nowhere."""
    build = tmp_path / "build"
    build.mkdir()
    bundled = shared_library(build, "libbundled-1a2b3c.so.1", "-Wl,-soname,libbundled-1a2b3c.so.1")
    nowhere = shared_library(build, "libnowhere.so.3", "-Wl,-soname,libnowhere.so.3")
    extension = shared_library(
        build,
        "_ext.cpython-311-x86_64-linux-gnu.so",
        NEEDS,
        str(bundled),
        str(nowhere),
        "-lz",
        "-lresolv",
        "-lm",
    )
    site = make_site(tmp_path / "prefix")
    install_dist(
        site,
        "pkg",
        {
            "pkg/__init__.py": "",
            "pkg/_ext.cpython-311-x86_64-linux-gnu.so": extension.read_bytes(),
            "pkg.libs/libbundled-1a2b3c.so.1": bundled.read_bytes(),
            "pkg/tests/_helper.so": extension.read_bytes(),  # removed with the tests: needs nothing afterwards
        },
    )
    return site


def plan_for(site: Path, *only: str) -> Plan:
    inventory = scan(resolve_target(site), inspect_elf=False)
    return build_plan(inventory, categories.select(only=only or ("tests",)), knowledge=KnowledgeBase())


def test_dynamic_links_reads_what_the_loader_needs(venv_site: Path) -> None:
    links = elf.dynamic_links(venv_site / "pkg/_ext.cpython-311-x86_64-linux-gnu.so")
    assert links is not None
    assert {"libbundled-1a2b3c.so.1", "libnowhere.so.3", "libz.so.1", "libresolv.so.2", "libc.so.6"} <= set(
        links.needed
    )
    bundled = elf.dynamic_links(venv_site / "pkg.libs/libbundled-1a2b3c.so.1")
    assert bundled is not None and bundled.soname == "libbundled-1a2b3c.so.1"
    assert elf.dynamic_links(venv_site / "pkg/__init__.py") is None


def _read_by_segments(path: Path) -> elf.DynamicLinks | None:
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        return elf._read_dynamic_links(fd, path.stat().st_size)
    finally:
        os.close(fd)


def test_dynamic_links_agree_with_pyelftools_on_this_machines_libraries(venv_site: Path) -> None:
    """The struct reader against pyelftools' section-based answer, on the test's libraries and the system's own
    (the interpreter, its shared libraries: real files of every kind a venv carries, built by another toolchain)."""
    import sys

    libraries = sorted(venv_site.rglob("*.so*"))
    # One whose DT_STRTAB lies in no loaded segment: read through the section headers, by pyelftools itself.
    unmapped = unmapped_string_table(venv_site / "pkg/_ext.cpython-311-x86_64-linux-gnu.so", venv_site.parent / "u.so")
    assert _read_by_segments(unmapped) is elf._ASK_PYELFTOOLS
    assert "libz.so.1" in (elf.dynamic_links(unmapped) or elf.DynamicLinks(None, ())).needed
    candidates = [*libraries, unmapped, Path(sys.executable).resolve()]
    for folder in (Path(sys.executable).resolve().parent.parent / "lib", Path("/usr/lib/x86_64-linux-gnu")):
        candidates += sorted(folder.glob("*.so*"))[:40] if folder.is_dir() else []
    compared = 0
    for path in candidates:
        if path.is_symlink() or not path.is_file() or path.read_bytes()[:4] != elf.ELF_MAGIC:
            continue
        assert elf.dynamic_links(path) == elf._dynamic_links_by_sections(path), path
        compared += 1
    assert compared >= 3


def test_the_table_names_what_the_builder_does_not_know(venv_site: Path) -> None:
    found = advise(plan_for(venv_site), None)
    by_name = {lib.soname: lib for lib in found.system_libraries}
    # Bundled (pkg.libs), the C library (libc, libm, libresolv) and its loader are never advice.
    assert set(by_name) == {"libz.so.1", "libnowhere.so.3"}
    assert (by_name["libz.so.1"].debian, by_name["libz.so.1"].source) == ("zlib1g", "built-in table")
    assert by_name["libz.so.1"].needed_by == ("pkg/_ext.cpython-311-x86_64-linux-gnu.so",)  # not the removed test
    assert by_name["libnowhere.so.3"].debian is None
    assert by_name["libnowhere.so.3"].source == "not found: install it by hand"
    assert found.apt_line == "apt-get install --no-install-recommends zlib1g"
    assert found.apk_line == "apk add so:libnowhere.so.3 so:libz.so.1"


def test_the_builders_database_wins_and_its_c_library_is_left_out(venv_site: Path) -> None:
    database = Recorded({"libz.so.1": "zlib1g-custom", "libnowhere.so.3": "libc6"})
    found = advise(plan_for(venv_site), database)
    assert sorted(database.asked) == ["libnowhere.so.3", "libz.so.1"]  # libc, libm, libresolv: never asked
    assert [(lib.soname, lib.debian, lib.source) for lib in found.system_libraries] == [
        ("libz.so.1", "zlib1g-custom", "dpkg -S"),
    ]


@pytest.mark.skipif(not shutil.which("dpkg"), reason="needs a Debian or Ubuntu builder")
def test_dpkg_on_this_builder_names_zlib(venv_site: Path) -> None:
    found = advise(plan_for(venv_site), advice.Dpkg())
    zlib = next(lib for lib in found.system_libraries if lib.soname == "libz.so.1")
    assert (zlib.debian, zlib.source) == ("zlib1g", "dpkg -S")
    assert "libresolv.so.2" not in {lib.soname for lib in found.system_libraries}  # dpkg says: libc6


def test_a_cuda_distribution_is_flagged_with_its_size(tmp_path: Path) -> None:
    build = tmp_path / "build"
    build.mkdir()
    cublas = shared_library(build, "libcublas.so.12", "-Wl,-soname,libcublas.so.12").read_bytes()
    torch_cuda = shared_library(build, "libtorch_cuda.so").read_bytes()
    site = make_site(tmp_path / "prefix")
    install_dist(
        site,
        "nvidia-cublas-cu12",
        {"nvidia/cublas/__init__.py": "", "nvidia/cublas/lib/libcublas.so.12": cublas},
        version="12.4.5.8",
    )
    install_dist(
        site,
        "torch",
        {"torch/__init__.py": "x = 1\n", "torch/lib/libtorch_cuda.so": torch_cuda},
        version="2.5.1+cu121",
    )
    install_dist(site, "numpy", {"numpy/__init__.py": ""}, version="2.0.0")
    found = advise(plan_for(site), None)
    # All of an nvidia-* distribution is GPU payload; of torch, its CUDA libraries.
    nvidia = sum(f.stat().st_size for f in [*site.glob("nvidia/**/*"), *site.glob("nvidia_cublas*/*")] if f.is_file())
    assert {(g.distribution, g.version, g.bytes) for g in found.gpu} == {
        ("torch", "2.5.1+cu121", len(torch_cuda)),
        ("nvidia-cublas-cu12", "12.4.5.8", nvidia),
    }
    assert found.gpu_bytes == nvidia + len(torch_cuda)
    assert found.cpu_hint is not None and "https://download.pytorch.org/whl/cpu" in found.cpu_hint
    assert {g.distribution: g.libraries for g in found.gpu}["nvidia-cublas-cu12"] == (
        "nvidia/cublas/lib/libcublas.so.12",
    )


def test_a_cpu_venv_carries_no_gpu_payload(venv_site: Path) -> None:
    found = advise(plan_for(venv_site), None)
    assert found.gpu == () and found.cpu_hint is None


def test_every_rendering_carries_the_advice(venv_site: Path) -> None:
    plan = plan_for(venv_site)
    outcome = Outcome(plan, True, Status.SUCCESS, advice=advise(plan, None))
    report = build_report(outcome)
    text = render_text(report)
    assert "RUN apt-get install --no-install-recommends zlib1g" in text
    assert "RUN apk add so:libnowhere.so.3 so:libz.so.1" in text
    assert "libnowhere.so.3" in text and "not found: install it by hand" in text
    markdown = render_markdown(report)
    assert "```dockerfile\nRUN apt-get install --no-install-recommends zlib1g\n" in markdown
    document = json.loads(render_json(report))
    jsonschema.validate(document, SCHEMA)
    assert document["advice"]["apt"] == "apt-get install --no-install-recommends zlib1g"
    assert {lib["soname"]: lib["debian"] for lib in document["advice"]["system_libraries"]} == {
        "libnowhere.so.3": None,
        "libz.so.1": "zlib1g",
    }


def test_advice_is_empty_when_nothing_is_needed(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    install_dist(site, "pure", {"pure/__init__.py": ""})
    found = advise(plan_for(site), None)
    assert found == Advice()
    report = build_report(Outcome(plan_for(site), True, Status.SUCCESS, advice=found))
    assert "for the final image" not in render_text(report)


def test_a_safe_dry_run_shows_what_max_would_save_in_addition(venv_site: Path) -> None:
    (venv_site / "pkg/include").mkdir()
    (venv_site / "pkg/include/pkg.h").write_text("#pragma once\n" * 10)
    (venv_site / "pkg/__init__.pyi").write_text("x: int\n")
    code, out, err = run_cli("--dry-run", "--json", "-", str(venv_site))
    assert code == 0, err
    document = json.loads(out)
    jsonschema.validate(document, SCHEMA)
    assert document["profile"] == "safe"
    more = {row["category"]: (row["files"], row["bytes"]) for row in document["more_with_max"]}
    assert more == {"build-files": (1, 130), "stubs": (1, 7)}
    assert "--profile max would also remove" in err  # the human report, on stderr beside JSON on stdout
    code, out, _ = run_cli("--dry-run", "--profile", "max", "--json", "-", str(venv_site))
    document = json.loads(out)
    assert document["more_with_max"] == [] and document["profile"] == "max"
    assert {c["name"] for c in document["categories"]} >= {"build-files", "stubs"}


def test_a_package_query_that_prints_bytes_not_utf8_still_answers() -> None:
    """The advice finishes after the commit: a query's odd output must not stop the run with a pruned venv and
    no report (a file name in another encoding in dpkg's database)."""
    assert advice._query(["printf", "libz.so.1 \\377: zlib1g\\n"]) == "libz.so.1 \ufffd: zlib1g\n"
