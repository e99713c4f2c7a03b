"""The probe: discovery from metadata and disk, error descriptions, and the worker pool on tiny modules.

The pool tests start real interpreters (this one), running the probe archive, on modules written to ``tmp_path``;
each takes well under a second except the hang, which waits for a one-second timeout.
"""

from __future__ import annotations

import importlib.machinery
import os
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.site_builder import install_dist, make_site
from venvprune.verify.archive import probe_archive
from venvprune.verify.checks import build_checks
from venvprune.verify.probe import discovery, judge, pool, tasks


def elf_header(e_type: int = 3, interp: bool = False, machine: int = 62) -> bytes:
    """A 64-bit little-endian ELF header with one program header (PT_INTERP or PT_LOAD)."""
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\x00" * 9
    header = ident + struct.pack("<HHIQQQIHHHHHH", e_type, machine, 1, 0, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    program = struct.pack("<IIQQQQQQ", 3 if interp else 1, 0, 0, 0, 0, 0, 0, 0)
    return header + program


def test_importable_modules_from_record_and_top_level(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    suffix = ".cpython-311-x86_64-linux-gnu.so"
    files: dict[str, str | bytes] = {
        "pkg/__init__.py": "",
        "pkg/sub/mod.py": "",
        "nspace/child/__init__.py": "",  # a namespace package: its regular child is the module
        "single.py": "",
        f"fast{suffix}": b"",
        "libs.libs/libx.so.1": b"",  # not an identifier
        "pkg-1.0.data/scripts/x.py": "",
        "__pycache__/single.cpython-311.pyc": b"",
        "other.cpython-39-x86_64-linux-gnu.so": b"",  # another interpreter's extension
        "shared/__init__.py": "",
    }
    install_dist(site, "pkg", files)
    found = discovery.importable_modules(str(site), list(files), ["pkg", "shared", "not-a-name", "missing"])
    expected = ["nspace.child", "pkg", "shared", "single"]
    if any(s == suffix for s in __import__("importlib.machinery").machinery.EXTENSION_SUFFIXES):
        expected.insert(0, "fast")
    assert found == sorted(expected)


def test_discover_lists_distributions_entry_points_and_libraries(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    extension = f"foo/_lib{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    install_dist(
        site,
        "Foo.Bar",
        {"foo/__init__.py": "", extension: elf_header(), "foo/tool": elf_header(interp=True)},
        version="2.0",
        entry_points="[console_scripts]\nfoo = foo.cli:main\n",
    )
    (site / "foo" / "arm.so").write_bytes(elf_header(machine=183))  # another machine: test data, not loadable here
    (site / "foo" / "object.o.bin").write_bytes(elf_header(e_type=1))
    (site / "foo" / "libbundled.so.1").write_bytes(elf_header())
    found = discovery.discover([str(site)])
    [dist] = found["distributions"]
    assert (dist["name"], dist["version"], dist["modules"]) == ("Foo.Bar", "2.0", ["foo"])
    assert dist["entry_points"] == [("console_scripts", "foo", "foo.cli:main")]
    roles = {Path(lib["path"]).name: (lib["role"], lib["owner"]) for lib in found["libraries"]}
    assert roles == {
        Path(extension).name: ("extension", "Foo.Bar"),
        "libbundled.so.1": ("library", None),
        "tool": ("program", "Foo.Bar"),
    }

    listed = build_checks(found, tmp_path)
    ids = [c.id for c in listed.checks]
    assert ids == [
        "metadata Foo.Bar",
        "import foo",
        "entry point console_scripts:foo = foo.cli:main",
        f"dlopen lib/python3.11/site-packages/{extension}",
    ]
    assert {c.task["bundle"] for c in listed.checks[1:]} == {"foo"}  # imported once, then its entry points
    assert all(c.distributions == ("foo-bar",) for c in listed.checks)


def test_describe_exception_names_files_libraries_and_modules(tmp_path: Path) -> None:
    try:
        try:
            raise OSError(2, "No such file or directory", "/venv/lib/site-packages/foo/data.json")
        except OSError as exc:
            raise ModuleNotFoundError("No module named 'foo.tests'", name="foo.tests") from exc
    except ModuleNotFoundError as exc:
        described = tasks.describe_exception(exc)
    assert described["error"] == "ModuleNotFoundError: No module named 'foo.tests'"
    assert "/venv/lib/site-packages/foo/data.json" in described["files"]
    assert described["modules"] == ["foo.tests"]
    assert described["frames"] == [__file__]
    files, libraries, modules = tasks.names_in_text("ImportError: libpq.so.5: cannot open shared object file")
    assert (files, libraries, modules) == ([], ["libpq.so.5"], [])


def test_entry_points_split_at_the_last_dot_and_skip_missing_optional_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tasks.run_task({"id": "a", "kind": "entry_point", "value": "json:dumps"})["ok"]
    assert tasks.run_task({"id": "b", "kind": "entry_point", "value": "json.JSONDecoder [extra]"})["ok"]
    missing = tasks.run_task({"id": "c", "kind": "entry_point", "value": "email.venvprune_no_such_plugin:x"})
    assert not missing["ok"]  # its package is installed: a missing submodule is a failure
    own = tasks.run_task({"id": "d", "kind": "entry_point", "value": "venvprune_absent_package.plugin:Plugin"})
    assert not own["ok"]  # its own package is missing: a failure
    attr = tasks.run_task({"id": "e", "kind": "entry_point", "value": "json:no_such_attribute"})
    assert not attr["ok"] and attr["error"].startswith("AttributeError")
    assert not own.get("optional_missing") and not missing.get("optional_missing")
    # A plugin for a host that is not installed (pytest11 without pytest) needs it: not a pass, and the judge
    # fails it only when it passed before.
    (tmp_path / "plugin_for_absent_host.py").write_text("import venvprune_absent_host\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    needs = tasks.run_task({"id": "f", "kind": "entry_point", "value": "plugin_for_absent_host:Plugin"})
    assert not needs["ok"] and needs["optional_missing"] == "venvprune_absent_host"
    assert needs["error"].startswith("needs venvprune_absent_host, not installed: ")
    task = {"id": "f", "kind": "entry_point"}
    assert judge.verdict(task, needs, None) == judge.verdict(task, needs, judge.NOT_RUN) == judge.NOT_RUN
    assert judge.verdict(task, needs, judge.PASS) == judge.FAIL
    assert judge.verdict({**task, "explicit": True}, needs, None) == judge.FAIL
    assert judge.record(needs)["state"] == judge.NOT_RUN


def test_an_entry_point_naming_a_submodule_imports_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pandas' ``matplotlib = pandas:plotting._matplotlib``: ``import pandas`` does not load that submodule."""
    package = tmp_path / "plotting_host"
    (package / "plotting").mkdir(parents=True)
    (package / "__init__.py").write_text("from plotting_host import plotting\n")
    (package / "plotting" / "__init__.py").write_text("")
    (package / "plotting" / "_backend.py").write_text("DRAWN = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = tasks.run_task({"id": "a", "kind": "entry_point", "value": "plotting_host:plotting._backend"})
    assert loaded["ok"], loaded
    missing = tasks.run_task({"id": "b", "kind": "entry_point", "value": "plotting_host:plotting._absent"})
    assert not missing["ok"] and missing["error"].startswith("AttributeError")


def test_metadata_check_compares_with_the_expectation(tmp_path: Path) -> None:
    ok = tasks.run_task({"id": "m", "kind": "metadata", "dist": "pytest"})
    assert ok["ok"] and "pytest" in ok["value"]["packages"]
    wrong = dict(ok["value"], version="0.0")
    changed = tasks.run_task({"id": "m", "kind": "metadata", "dist": "pytest", "expect": wrong})
    assert not changed["ok"] and "was '0.0'" in changed["error"]


# -- the pool --------------------------------------------------------------------------------------------------


@pytest.fixture
def modules(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "good.py").write_text("VALUE = 1\n")
    (site / "crash.py").write_text("import ctypes\nctypes.string_at(0)\n")
    (site / "hang.py").write_text("while True:\n    pass\n")
    (site / "exits.py").write_text("import os\nos._exit(3)\n")
    (site / "noisy.py").write_text("print('hello from an import')\nimport sys\nsys.stdout.flush()\n")
    # Fails only when `poison` was imported before it in the same process: an import-order clash.
    (site / "poison.py").write_text("import sys\nsys.modules['victim_guard'] = None\n")
    (site / "victim.py").write_text("import sys\nassert 'victim_guard' not in sys.modules\n")
    return site


def run(
    modules: Path, tmp_path: Path, names: list[str], jobs: int = 2, timeout: float = 30.0, pycache: str | None = None
) -> dict[str, dict[str, Any]]:
    work = [{"id": n, "kind": "import", "name": n, "bundle": "one"} for n in names]
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    archive = tmp_path / "probe.pyz"
    archive.write_bytes(probe_archive())
    return pool.run_tasks(
        sys.executable, str(archive), work, jobs, timeout, [str(modules)], str(scratch), pycache=pycache
    )


def test_a_crash_fails_that_import_only_and_the_rest_run_on(modules: Path, tmp_path: Path) -> None:
    results = run(modules, tmp_path, ["good", "crash", "noisy", "exits", "json"])
    assert results["good"]["ok"] and results["noisy"]["ok"] and results["json"]["ok"]
    assert results["crash"]["error"].startswith("the interpreter died of SIGSEGV while running it")
    assert str(modules / "crash.py") in results["crash"]["files"]  # from faulthandler's traceback
    assert results["exits"]["error"] == "the interpreter exited with status 3 while running it"


def test_a_hang_times_out(modules: Path, tmp_path: Path) -> None:
    results = run(modules, tmp_path, ["hang", "good"], timeout=1.0)
    assert results["hang"]["error"].startswith("timed out after 1 s")
    assert results["good"]["ok"]


def test_a_module_that_hangs_is_imported_once_and_what_needs_it_is_not_run(modules: Path, tmp_path: Path) -> None:
    counter = tmp_path / "imports.txt"
    (modules / "stalls.py").write_text(f"open({str(counter)!r}, 'a').write('x')\nwhile True:\n    pass\n")
    work = [{"id": "import stalls", "kind": "import", "name": "stalls", "bundle": "stalls"}]
    work += [{"id": f"ep {n}", "kind": "entry_point", "value": "stalls:main", "bundle": "stalls"} for n in range(3)]
    work += [{"id": "import good", "kind": "import", "name": "good", "bundle": "good"}]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    archive = tmp_path / "probe.pyz"
    archive.write_bytes(probe_archive())
    results = pool.run_tasks(sys.executable, str(archive), work, 2, 1.0, [str(modules)], str(scratch))
    assert results["import stalls"]["timed_out"] is True
    assert [results[f"ep {n}"]["not_run"] for n in range(3)] == ["import stalls timed out"] * 3
    assert results["import good"]["ok"]
    assert counter.read_text() == "x"  # not imported again, not retried


def test_a_failure_in_a_shared_process_is_retried_in_a_fresh_one(modules: Path, tmp_path: Path) -> None:
    results = run(modules, tmp_path, ["poison", "victim", "good"], jobs=1)
    assert results["victim"]["ok"] and results["victim"]["attempt"] == "fresh"
    assert results["good"]["attempt"] == "shared"


def test_workers_write_no_bytecode_into_the_tree(modules: Path, tmp_path: Path) -> None:
    assert run(modules, tmp_path, ["good"])["good"]["ok"]
    assert not list(modules.rglob("__pycache__"))
    # With a bytecode folder of its own, the compiled module goes there and only there.
    prefix = tmp_path / "pycache"
    result = run(modules, tmp_path, ["good", "noisy"], pycache=str(prefix))
    assert result["good"]["ok"] and str(modules / "good.py") in result["good"]["sources"]
    assert not list(modules.rglob("__pycache__"))
    assert list(prefix.rglob("good.*.pyc"))


def test_imports_run_isolated_with_no_ca_bundle_override_and_scratch_home(
    modules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in pool.CA_BUNDLE_VARIABLES:
        monkeypatch.setenv(name, "/etc/ssl/certs/ca-certificates.crt")  # would hide a deleted certifi/cacert.pem
    monkeypatch.setenv("HOME", str(tmp_path / "real-home"))
    (modules / "hygiene.py").write_text(
        "import os, sys\n"
        f"assert not [v for v in {pool.CA_BUNDLE_VARIABLES!r} if v in os.environ]\n"
        "assert sys.flags.isolated and sys.flags.no_user_site and sys.flags.dont_write_bytecode\n"
        "assert os.listdir(os.getcwd()) == [], os.listdir(os.getcwd())\n"
        f"assert os.environ['HOME'] != {str(tmp_path / 'real-home')!r}\n"
        "assert os.environ['TMPDIR'].startswith(os.path.dirname(os.getcwd()))\n"
    )
    result = run(modules, tmp_path, ["hygiene"])["hygiene"]
    assert result["ok"], result


def test_a_metadata_check_reads_the_metadata_again_before_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Healing restores a RECORD and checks again in the same worker: an answer read before the restore is stale
    (it once made healing restore every change of the venv for one distribution's metadata)."""
    site = make_site(tmp_path)
    dist_info = install_dist(site, "healme", {"healme/__init__.py": ""}, top_level="healme\n")
    top_level = dist_info / "top_level.txt"
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(tasks, "_PACKAGES", {})
    task = {"id": "m", "kind": "metadata", "dist": "healme"}
    top_level.write_text("other\n")  # a rewrite that lost the name
    assert tasks.run_task(task)["value"] == {"version": "1.0", "packages": ["other"]}
    top_level.write_text("healme\n")  # what the restore brings back
    again = tasks.run_task({**task, "expect": {"version": "1.0", "packages": ["healme"]}})
    assert again["ok"], again
    top_level.write_text("other\n")
    tasks._PACKAGES.clear()  # another worker: what it reads first is what is on disk
    lost = tasks.run_task({**task, "expect": {"version": "1.0", "packages": ["healme", "__pycache__", "gone"]}})
    assert not lost["ok"] and "no longer maps healme to healme" in lost["error"], lost


def test_an_entry_point_of_an_extra_that_is_not_installed_needs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path)
    module = "raise ImportError('the web server needs daemonx[d]')\n"
    install_dist(site, "daemonx", {"daemonx.py": module}, requires=("venvprune-absent-web>=1; extra == 'd'",))
    monkeypatch.syspath_prepend(str(site))
    task = {"id": "e", "kind": "entry_point", "value": "daemonx:main [d]", "distributions": ["daemonx"]}
    needs = tasks.run_task(task)
    assert needs["optional_missing"] == "venvprune-absent-web (its [d] extra)", needs
    plain = tasks.run_task({**task, "value": "daemonx:main"})
    assert not plain["ok"] and not plain.get("optional_missing")


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [
        ("max", "100000\n", None),  # cgroup v2 without a limit
        ("100000", "100000\n", 1),  # docker run --cpus 1
        ("150000", "100000\n", 2),  # --cpus 1.5: two workers, not one
        ("-1\n", "100000\n", None),  # cgroup v1 without a limit
        ("", "", None),
    ],
)
def test_a_cgroup_cpu_quota_caps_the_workers(quota: str, period: str, cpus: int | None) -> None:
    assert pool.quota_cpus(quota, period) == cpus
    assert 1 <= pool.usable_cpus() <= (os.cpu_count() or 1)
