"""The default categories, planned over small real site-packages trees laid out at test time."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.site_builder import install_dist, make_site
from venvprune import categories
from venvprune.categories.tests import import_snippets, imported_names
from venvprune.errors import UsageError
from venvprune.plan import Action, ActionKind, Plan, build_plan
from venvprune.scan import scan
from venvprune.target import resolve_target


def plan_for(site_packages: Path, *, only: tuple[str, ...] = (), keep: tuple[str, ...] = ()) -> Plan:
    target = resolve_target(site_packages)
    selected = categories.select(only=only or ("bytecode", "tests", "record"))
    return build_plan(scan(target, inspect_elf=False), selected, keep)


def actions_of(plan: Plan, category: str) -> list[Action]:
    return [a for a in plan.actions if a.category == category]


def removed(plan: Plan) -> set[str]:
    return {plan.inventory.target.relative(a.path) for a in plan.actions if a.kind is ActionKind.REMOVE}


def kept_reasons(plan: Plan) -> dict[str, str]:
    return {plan.inventory.target.relative(k.path): k.reason for k in plan.kept}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path)


def test_pycache_goes_whole_and_sourceless_pyc_stays(site: Path) -> None:
    install_dist(
        site,
        "pkg",
        {
            "pkg/__init__.py": "",
            "pkg/__pycache__/__init__.cpython-311.pyc": b"\x00" * 100,
            "pkg/legacy.py": "x = 1\n",
            "pkg/legacy.pyc": b"\x00" * 10,
            "pkg/compiled_only.pyc": b"\x00" * 20,
        },
    )
    plan = plan_for(site, only=("bytecode",))
    assert removed(plan) == {"pkg/__pycache__", "pkg/legacy.pyc"}
    assert kept_reasons(plan) == {"pkg/compiled_only.pyc": "sourceless module: this .pyc is the code"}
    assert sum(a.bytes_saved for a in actions_of(plan, "bytecode")) == 110
    assert plan.files_removed == 2


def test_pycache_with_other_files_loses_only_bytecode(site: Path) -> None:
    install_dist(
        site, "pkg", {"pkg/__init__.py": "", "pkg/__pycache__/a.cpython-311.pyc": "x", "pkg/__pycache__/notes.txt": "y"}
    )
    assert removed(plan_for(site, only=("bytecode",))) == {"pkg/__pycache__/a.cpython-311.pyc"}


def test_tests_dirs_go_but_testing_and_test_modules_stay(site: Path) -> None:
    install_dist(
        site,
        "pkg",
        {
            "pkg/__init__.py": "",
            "pkg/core.py": "import os\n",
            "pkg/tests/__init__.py": "",
            "pkg/tests/test_core.py": "from pkg import core\n",
            "pkg/sub/test/__init__.py": "",
            "pkg/testing/__init__.py": "def assert_ok(): pass\n",
            "pkg/_testing.py": "",
            "pkg/test.py": "def main(): pass\n",
            "pkg/tests.py": "",
        },
    )
    install_dist(site, "toplevel-tests", {"tests/__init__.py": ""})  # a distribution's top-level package
    plan = plan_for(site, only=("tests",))
    assert removed(plan) == {"pkg/tests", "pkg/sub/test"}
    assert all(a.reason == categories.tests.REASON for a in actions_of(plan, "tests"))
    assert {a.distribution for a in plan.actions} == {"pkg"}


@pytest.mark.parametrize(
    ("importer", "source"),
    [
        ("pkg/core.py", "from pkg.tests import helpers\n"),
        ("pkg/core.py", "import pkg.tests.helpers as h\n"),
        ("pkg/core.py", "from . import tests\n"),
        ("pkg/core.py", "from .tests.helpers import make\n"),
        ("pkg/sub/mod.py", "from ..tests import helpers\n"),
        ("pkg/core.py", "from pkg import (\n    core,\n    tests,\n)\n"),
        ("pkg/core.py", "import importlib\nm = importlib.import_module('pkg.tests.helpers')\n"),
        ("pkg/core.py", "from importlib import import_module\nm = import_module(\n    '.tests', package='pkg')\n"),
        ("pkg/core.py", "def lazy():\n    from pkg.tests import helpers\n    return helpers\n"),
    ],
)
def test_tests_dir_imported_by_runtime_code_is_kept(site: Path, importer: str, source: str) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/mod.py": "",
        "pkg/core.py": "",
        "pkg/tests/__init__.py": "",
        "pkg/tests/helpers.py": "def make(): pass\n",
    }
    files[importer] = source
    install_dist(site, "pkg", files)
    plan = plan_for(site, only=("tests",))
    assert removed(plan) == set()
    assert kept_reasons(plan) == {"pkg/tests": f"{importer} imports it at runtime"}


def test_imports_from_inside_the_tests_dir_or_of_other_names_do_not_keep_it(site: Path) -> None:
    install_dist(
        site,
        "pkg",
        {
            "pkg/__init__.py": '"""Run the tests with pytest; import this package."""\n',
            "pkg/core.py": "import pkg.testing\nfrom pkg import contest\n# tests import nothing here\n",
            "pkg/testing.py": "",
            "pkg/contest.py": "",
            "pkg/tests/__init__.py": "from pkg.tests import helpers\n",
            "pkg/tests/helpers.py": "",
        },
    )
    assert removed(plan_for(site, only=("tests",))) == {"pkg/tests"}


def test_a_test_directory_that_is_a_distributions_own_code_stays(site: Path) -> None:
    """jaraco.test (PyPI) installs jaraco/test/ under the jaraco namespace: it is all of that distribution's code."""
    install_dist(
        site, "jaraco.test", {"jaraco/test/__init__.py": "", "jaraco/test/http.py": "", "jaraco/test/cpython.py": ""}
    )
    install_dist(
        site, "jaraco.functools", {"jaraco/functools/__init__.py": "", "jaraco/functools/tests/__init__.py": ""}
    )
    # A distribution whose only package is a test package inside another's package: its code, not its tests.
    install_dist(site, "host", {"host/__init__.py": "", "host/tests/__init__.py": "", "host/tests/test_it.py": ""})
    install_dist(site, "host-fixtures", {"host/test/__init__.py": "", "host/test/fixtures.py": ""})
    # Named in top_level.txt: a top-level package of its distribution.
    install_dist(site, "nsplugin", {"ns/test/__init__.py": "", "nsplugin.py": ""}, top_level="ns/test\nnsplugin\n")
    plan = plan_for(site, only=("tests",))
    assert removed(plan) == {"jaraco/functools/tests", "host/tests"}
    reasons = kept_reasons(plan)
    assert reasons["jaraco/test"] == "the code of distribution jaraco-test, not a test suite: its only package"
    assert reasons["host/test"] == "the code of distribution host-fixtures, not a test suite: its only package"
    assert reasons["ns/test"] == "the code of distribution nsplugin, not a test suite: top_level.txt names it"


def test_a_tests_dir_an_entry_point_names_is_kept_with_what_it_imports(site: Path) -> None:
    """networkx 3.6 registers ``networkx.backends: nx_loopback = networkx.classes.tests.dispatch_interface:...``:
    removing the folder broke that entry point, and verification had to heal it."""
    install_dist(
        site,
        "graphs",
        {
            "graphs/__init__.py": "",
            "graphs/classes/__init__.py": "",
            "graphs/classes/tests/__init__.py": "",
            "graphs/classes/tests/dispatch.py": "from graphs.utils.tests import helpers\n",
            "graphs/utils/__init__.py": "",
            "graphs/utils/tests/__init__.py": "",
            "graphs/utils/tests/helpers.py": "",
            "graphs/other/tests/__init__.py": "",
        },
        entry_points="[graphs.backends]\nloopback = graphs.classes.tests.dispatch:backend [extra]\n",
    )
    plan = plan_for(site, only=("tests",))
    assert removed(plan) == {"graphs/other/tests"}
    reasons = kept_reasons(plan)
    assert reasons["graphs/classes/tests"] == "entry point graphs.backends:loopback of graphs names it"
    assert (
        reasons["graphs/utils/tests"] == "graphs/classes/tests/dispatch.py imports it and graphs.classes.tests is kept"
    )


def test_snippets_are_cut_around_import_statements_only() -> None:
    source = b'"""tests are nice"""\nimport os\nx = "tests"\nfrom a import (\n  b,\n  tests)\ny = 1\n'
    assert list(import_snippets(source)) == [b"from a import (\n  b,\n  tests)"]
    assert set(imported_names(b"from .. import tests", "pkg.sub.mod", False)) == {"pkg", "pkg.tests"}
    assert set(imported_names(b"from . import tests", "pkg", True)) == {"pkg", "pkg.tests"}


@pytest.mark.parametrize(
    "source",
    [
        # The word on a later line of a statement that began with an earlier import: the whole statement is cut.
        b"from a import (b,\n    c); import pkg.tests\n",
        b"import os, \\\n    pkg.tests as t\n",
        b"from importlib import import_module\nm = [import_module(\n    'pkg.tests')]\n",
        # A bracket that never closes, after "import" in a docstring, does not hide the real imports after it.
        b'"""Why import (the lazy way\n"""\nfrom pkg import tests\n',
    ],
)
def test_snippets_hold_the_whole_statement_around_a_test_word(source: bytes) -> None:
    names = {n for snippet in import_snippets(source) for n in imported_names(snippet, "pkg.core", False)}
    assert "pkg.tests" in names


def _test_imports_by_whole_parse(source: bytes, module: str, is_package: bool) -> set[str]:
    return {n for n in imported_names(source, module, is_package) if {"test", "tests"} & set(n.split("."))}


def test_snippets_find_every_test_import_a_whole_file_parse_finds() -> None:
    """On real code with many test words and imports: the standard library's unittest package and its tests."""
    import unittest

    checked = 0
    root = Path(str(unittest.__file__)).parent
    for path in sorted(root.rglob("*.py")):
        source = path.read_bytes()
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        is_package = path.name == "__init__.py"
        expected = _test_imports_by_whole_parse(source, module, is_package)
        found = {
            n for snippet in import_snippets(source) for n in _test_imports_by_whole_parse(snippet, module, is_package)
        }
        assert expected <= found, path
        checked += bool(expected)
    assert checked >= 10  # the corpus does import test modules


def test_record_rewrite_is_planned_for_changed_distributions_only(site: Path) -> None:
    install_dist(site, "pkg", {"pkg/__init__.py": "", "pkg/tests/__init__.py": "", "pkg/tests/t.py": "x = 1\n"})
    install_dist(site, "untouched", {"untouched/__init__.py": ""})
    plan = plan_for(site)
    records = [a for a in plan.actions if a.category == "record"]
    assert [plan.inventory.target.relative(a.path) for a in records] == ["pkg-1.0.dist-info/RECORD"]
    transform = records[0].transform
    assert transform is not None
    assert transform.dropped == frozenset({"pkg/tests/__init__.py", "pkg/tests/t.py"})  # type: ignore[attr-defined]
    assert records[0].bytes_saved > 0


def test_keep_glob_protects_a_directory_and_anything_under_it(site: Path) -> None:
    install_dist(
        site,
        "pkg",
        {
            "pkg/__init__.py": "",
            "pkg/tests/__init__.py": "",
            "pkg/tests/data/x.json": "{}",
            "other/tests/__init__.py": "",
        },
    )
    plan = plan_for(site, only=("tests",), keep=("pkg/tests/data/*",))
    assert removed(plan) == {"other/tests"}
    assert kept_reasons(plan)["pkg/tests"] == "--keep pkg/tests/data/*"


def test_bytecode_inside_a_removed_tests_dir_is_counted_once(site: Path) -> None:
    install_dist(
        site,
        "pkg",
        {
            "pkg/__init__.py": "",
            "pkg/tests/__init__.py": "",
            "pkg/tests/__pycache__/__init__.cpython-311.pyc": b"\x00" * 50,
        },
    )
    plan = plan_for(site, only=("bytecode", "tests"))
    assert removed(plan) == {"pkg/tests"}
    assert sum(a.bytes_saved for a in plan.actions if a.category != "record") == 50


def test_selection_names_unknown_categories() -> None:
    with pytest.raises(Exception, match="unknown category 'bogus'; choose from"):
        categories.select(only=["bogus"])
    assert [c.name for c in categories.select(exclude=["tests"])] == [
        "bytecode",
        "package-extras",
        "debug-symbols",
        "record",
    ]


def test_record_runs_with_any_selection_and_cannot_be_left_out() -> None:
    assert [c.name for c in categories.select(only=["tests"])] == ["tests", "record"]
    with pytest.raises(UsageError, match="record cannot be excluded"):
        categories.select(exclude=["record"])
    with pytest.raises(UsageError, match="no category is left to run"):
        categories.select(only=["record"])


def test_a_kept_folder_is_kept_whole(site: Path) -> None:
    install_dist(
        site,
        "numpy",
        {
            "numpy/__init__.py": "",
            "numpy/__pycache__/__init__.cpython-311.pyc": b"\x00",
            "numpy/_core/tests/__init__.py": "",
            "numpy/_core/tests/__pycache__/__init__.cpython-311.pyc": b"\x00",
            "numpy/linalg/tests/__init__.py": "",
        },
    )
    plan = plan_for(site, only=("bytecode", "tests"), keep=("numpy/_core/tests",))
    assert removed(plan) == {"numpy/__pycache__", "numpy/linalg/tests"}
    assert plan.unmatched_keep == ()
    plan = plan_for(site, only=("bytecode", "tests"), keep=("numpy",))  # a top-level package, every file in it
    assert removed(plan) == set()


def test_keep_takes_absolute_paths_inside_the_target_and_names_globs_that_match_nothing(site: Path) -> None:
    install_dist(site, "pkg", {"pkg/__init__.py": "", "pkg/tests/__init__.py": "", "other/tests/__init__.py": ""})
    globs = (
        str(site / "pkg" / "tests"),  # absolute, inside site-packages
        "lib/python3.11/site-packages/other/tests",  # relative to the target's root
        "nmupy/*",  # a typo
        "/elsewhere/pkg",  # outside the target
    )
    prefix = resolve_target(site.parents[2])  # a Python prefix: paths may be relative to its root
    plan = build_plan(scan(prefix, inspect_elf=False), categories.select(only=["tests"]), globs)
    assert removed(plan) == set()
    assert plan.unmatched_keep == ("nmupy/*", "/elsewhere/pkg")


def test_a_prefix_with_two_site_packages_plans_and_owns_the_files_of_each(tmp_path: Path) -> None:
    """A prefix with purelib and platlib apart (``lib/`` and ``lib64/``): each file is found under its own folder."""
    purelib = make_site(tmp_path)
    platlib = tmp_path / "lib64" / "python3.11" / "site-packages"
    platlib.mkdir(parents=True)
    install_dist(purelib, "pure", {"pure/__init__.py": "", "pure/tests/__init__.py": "", "pure/tests/t.py": ""})
    install_dist(platlib, "plat", {"plat/__init__.py": "", "plat/tests/__init__.py": ""})
    plan = plan_for(tmp_path, only=("tests", "record"))
    assert removed(plan) == {"pure/tests", "plat/tests"}
    assert {a.distribution for a in actions_of(plan, "tests")} == {"pure", "plat"}
    index = plan.inventory.index
    assert {f.rel for f in index.under(tmp_path)} == {f.rel for f in plan.inventory.files}
    assert [f.rel for f in index.under(platlib / "plat")] == ["plat/__init__.py", "plat/tests/__init__.py"]
    assert [f.path for f in index.exact(purelib / "pure/tests/t.py")] == [purelib / "pure/tests/t.py"]
    assert index.exact(platlib / "pure/tests/t.py") == []
