"""Baseline against after, and healing, with in-memory fakes: which executed actions a failure is blamed on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from venvprune.apply import FileError
from venvprune.plan import Action, ActionKind, Phase
from venvprune.verify.checks import Check, Result
from venvprune.verify.compare import baseline_states, checks_after, compare
from venvprune.verify.heal import DISTRIBUTION, EVERYTHING, NAMED, TRACEBACK, Attribution, heal

SITE = Path("/venv/lib/python3.11/site-packages")


def remove(rel: str, dist: str, category: str = "tests", directory: bool = True) -> Action:
    return Action(SITE / rel, ActionKind.REMOVE, category, "why", 10, 1, dist, is_directory=directory)


def record(dist: str) -> Action:
    return Action(
        SITE / f"{dist}-1.0.dist-info/RECORD", ActionKind.REWRITE, "record", "why", 1, 0, dist, phase=Phase.METADATA
    )


def import_check(module: str, dist: str) -> Check:
    return Check(f"import {module}", "import", {"id": f"import {module}", "kind": "import", "name": module}, (dist,))


def failed(error: str, **names: Sequence[str]) -> Result:
    return Result(False, error, **{k: tuple(v) for k, v in names.items()})  # type: ignore[arg-type]


OWNERS = {"foo": "foo", "bar": "bar", "baz": "baz"}


def attribution(files: Mapping[Path, set[str]] | None = None) -> Attribution:
    def owner_of(path: Path) -> str | None:
        try:
            return OWNERS.get(path.relative_to(SITE).parts[0])
        except ValueError:
            return None

    return Attribution(
        (SITE,),
        owner_of,
        lambda directory, name: name in (files or {}).get(directory, set()),
        {"foo": ("foo",), "bar": ("bar",), "baz": ("baz",)},
    )


class FakeTransaction:
    def __init__(self, actions: Iterable[Action]) -> None:
        self.live = list(actions)
        self.restored: list[list[Action]] = []
        self.redone: list[list[Action]] = []

    def executed(self) -> tuple[Action, ...]:
        return tuple(self.live)

    def restore(self, actions: Iterable[Action]) -> list[FileError]:
        batch = [a for a in actions if a in self.live]
        self.live = [a for a in self.live if a not in batch]
        self.restored.append(batch)
        return []

    def redo(self, actions: Iterable[Action]) -> list[FileError]:
        self.redone.append([a for a in actions if a in self.live])
        return []


# -- compare ---------------------------------------------------------------------------------------------------


def test_only_what_passed_before_and_fails_now_is_a_regression() -> None:
    checks = [import_check(m, m) for m in ("a", "b", "c", "d", "e")]
    before = {
        "import a": Result(True),
        "import b": Result(False, "broken"),
        "import c": Result(True),
        "import e": Result(False, "timed out", timed_out=True),
    }
    after = {
        "import a": Result(False, "now broken"),
        "import b": Result(False, "still"),
        "import c": Result(True),
        "import d": Result(False, "new"),
        "import e": Result.skipped("timed out before pruning"),
    }
    comparison = compare(checks, baseline_states(before), after)
    assert [c.id for c in comparison.failures] == ["import a", "import d"]  # no record: judged on its own
    assert [c.id for c in comparison.pre_existing] == ["import b"]
    assert [c.id for c in comparison.not_run] == ["import e"]
    assert [c.id for c in comparison.passed] == ["import c"]


def test_checks_after_skip_removed_libraries_and_expect_the_baseline_metadata() -> None:
    library = SITE / "foo/tests/_helper.so"
    dlopen = Check("dlopen foo/tests/_helper.so", "dlopen", {"id": "x", "kind": "dlopen"}, ("foo",), library)
    kept_library = Check(
        "dlopen foo/_core.so", "dlopen", {"id": "y", "kind": "dlopen"}, ("foo",), SITE / "foo/_core.so"
    )
    metadata = Check("metadata foo", "metadata", {"id": "metadata foo", "kind": "metadata", "dist": "foo"}, ("foo",))
    retried = import_check("setuptools", "setuptools")
    baseline = {
        metadata.id: Result(True, value={"version": "1.0", "packages": ["foo"]}),
        retried.id: Result(True, attempt="fresh"),
    }
    selected = checks_after([dlopen, kept_library, metadata, retried], baseline, [SITE / "foo/tests"])
    assert [c.id for c in selected] == ["dlopen foo/_core.so", "metadata foo", "import setuptools"]
    assert selected[1].task["expect"] == {"version": "1.0", "packages": ["foo"]}
    assert selected[2].task["fresh"] is True


# -- attribution -----------------------------------------------------------------------------------------------


def test_a_missing_module_names_the_removed_package_directory() -> None:
    tests_dir = remove("foo/tests", "foo")
    other = remove("foo/other_tests", "foo")
    result = failed(
        "ModuleNotFoundError: No module named 'foo.tests'",
        modules=["foo.tests.helpers", "foo.tests"],
        frames=[str(SITE / "foo/__init__.py")],
    )
    check = import_check("foo", "foo")
    assert attribution().suspects(check, result, [tests_dir, other], NAMED) == [tests_dir]
    assert attribution().needed_by(result, tests_dir) == "foo/__init__.py"


def test_a_path_in_the_error_names_a_rewritten_file_or_the_directory_holding_it() -> None:
    stripped = Action(SITE / "foo/_core.so", ActionKind.REWRITE, "debug-symbols", "why", 5, 0, "foo")
    data_dir = remove("bar/data", "bar")
    result = failed(
        "OSError: /venv/lib/python3.11/site-packages/foo/_core.so: ELF load command address/offset not page-aligned",
        files=[str(SITE / "foo/_core.so"), str(SITE / "bar/data/words.txt")],
    )
    found = attribution().suspects(import_check("foo", "foo"), result, [stripped, data_dir], NAMED)
    assert found == [stripped, data_dir]


def test_a_shared_object_name_finds_the_removed_directory_that_held_it() -> None:
    libs = remove("baz/vendored", "baz")
    unrelated = remove("baz/tests", "baz")
    result = failed("ImportError: libvendor.so.3: cannot open shared object file", libraries=["libvendor.so.3"])
    lookup = attribution({SITE / "baz/vendored": {"libvendor.so.3"}})
    assert lookup.suspects(import_check("baz", "baz"), result, [libs, unrelated], NAMED) == [libs]


def test_the_ladder_widens_from_named_to_distribution_to_traceback_to_everything() -> None:
    foo_tests, bar_tests, baz_tests = remove("foo/tests", "foo"), remove("bar/tests", "bar"), remove("baz/tests", "baz")
    executed = [foo_tests, bar_tests, baz_tests, record("foo")]
    result = failed("ValueError: odd", files=[str(SITE / "bar/util.py")])
    check = import_check("foo", "foo")
    blame = attribution()
    assert blame.suspects(check, result, executed, NAMED) == []
    assert blame.suspects(check, result, executed, DISTRIBUTION) == [foo_tests]  # never its RECORD rewrite
    assert blame.suspects(check, result, executed, TRACEBACK) == [bar_tests]
    assert blame.suspects(check, result, executed, EVERYTHING) == executed


def test_a_metadata_regression_names_the_record_rewrite() -> None:
    check = Check("metadata foo", "metadata", {"id": "metadata foo"}, ("foo",))
    executed = [remove("foo/tests", "foo"), record("foo"), record("bar")]
    assert attribution().suspects(check, failed("LookupError: x"), executed, NAMED) == [record("foo")]


# -- the healing loop ------------------------------------------------------------------------------------------


def test_heal_restores_the_named_action_redoes_the_record_and_says_why() -> None:
    foo_tests, bar_tests = remove("foo/tests", "foo"), remove("bar/tests", "bar")
    transaction = FakeTransaction([foo_tests, bar_tests, record("foo"), record("bar")])
    check = import_check("foo", "foo")
    broken = failed(
        "ModuleNotFoundError: No module named 'foo.tests'", modules=["foo.tests"], frames=[str(SITE / "foo/core.py")]
    )
    runs: list[list[str]] = []

    def run(checks: Sequence[Check]) -> dict[str, Result]:
        runs.append([c.id for c in checks])
        return {c.id: Result(foo_tests not in transaction.live) for c in checks}

    metadata = [record("foo"), record("bar")]
    outcome = heal(transaction, metadata, attribution(), run, [check], {check.id: broken})
    assert outcome.unhealed == () and outcome.results[check.id].ok
    assert transaction.restored == [[foo_tests]]
    assert transaction.redone == [[record("foo")]]  # only the affected distribution's RECORD
    [restored] = outcome.restored
    assert restored.reason == "foo/core.py needed it: ModuleNotFoundError: No module named 'foo.tests'"
    assert runs == [["import foo"]]


def test_two_checks_failing_for_one_cause_restore_it_once_and_nothing_more() -> None:
    core = Action(SITE / "foo/_core.so", ActionKind.REWRITE, "debug-symbols", "why", 5, 0, "foo")
    transaction = FakeTransaction([core, remove("foo/tests", "foo"), record("foo")])
    error = failed("OSError: bad ELF", files=[str(SITE / "foo/_core.so")])
    checks = [import_check("foo", "foo"), Check("dlopen foo/_core.so", "dlopen", {}, ("foo",), SITE / "foo/_core.so")]
    outcome = heal(
        transaction,
        [record("foo")],
        attribution(),
        lambda cs: {c.id: Result(True) for c in cs},
        checks,
        {c.id: error for c in checks},
    )
    assert [r.action for r in outcome.restored] == [core]


def test_heal_widens_when_restoring_what_was_named_is_not_enough() -> None:
    foo_tests, foo_data, bar_tests = remove("foo/tests", "foo"), remove("foo/data", "foo"), remove("bar/tests", "bar")
    transaction = FakeTransaction([foo_tests, foo_data, bar_tests])
    check = import_check("foo", "foo")
    error = failed("ModuleNotFoundError: No module named 'foo.tests'", modules=["foo.tests"])

    def run(checks: Sequence[Check]) -> dict[str, Result]:
        ok = foo_tests not in transaction.live and foo_data not in transaction.live
        return {c.id: Result(True) if ok else error for c in checks}

    outcome = heal(transaction, [], attribution(), run, [check], {check.id: error})
    assert transaction.restored == [[foo_tests], [foo_data]]
    assert outcome.unhealed == ()
    assert outcome.restored[1].reason.startswith("restored with the rest of its distribution")
    assert bar_tests in transaction.live


def test_heal_gives_up_when_everything_is_restored_and_the_check_still_fails() -> None:
    actions = [remove("foo/tests", "foo"), remove("bar/tests", "bar")]
    transaction = FakeTransaction(actions)
    check = Check("smoke false", "smoke", {"command": "false"})
    error = failed("exit status 1: ")
    outcome = heal(transaction, [], attribution(), lambda cs: {c.id: error for c in cs}, [check], {check.id: error})
    assert outcome.unhealed == (check,)
    assert transaction.live == []  # everything was tried before giving up
