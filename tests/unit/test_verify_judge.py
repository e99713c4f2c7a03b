"""The verdicts every judge shares (``venvprune check``, the prune, ``check.py``), on results made in memory."""

from __future__ import annotations

from typing import Any

import pytest

from venvprune.verify.probe import judge

PASSED: dict[str, Any] = {"ok": True}
FAILED: dict[str, Any] = {"ok": False, "error": "ImportError: broken"}
TIMED_OUT: dict[str, Any] = {"ok": False, "error": "timed out after 2 s", "timed_out": True}
NOT_RUN: dict[str, Any] = {"ok": False, "error": "not run", "not_run": "import hangs timed out"}


@pytest.mark.parametrize(
    ("result", "recorded", "explicit", "expected"),
    [
        (PASSED, None, False, judge.PASS),
        (PASSED, judge.FAIL, False, judge.PASS),
        (NOT_RUN, judge.PASS, False, judge.NOT_RUN),  # never a pass
        (None, judge.PASS, False, judge.NOT_RUN),  # no result at all: could not run
        (FAILED, None, False, judge.FAIL),  # no record: judged on its own
        (TIMED_OUT, None, False, judge.FAIL),  # a hang judged on its own fails
        (FAILED, judge.PASS, False, judge.FAIL),  # a regression
        (TIMED_OUT, judge.PASS, False, judge.FAIL),
        (FAILED, judge.FAIL, False, judge.NOT_BLAMED),  # failing before as well
        (TIMED_OUT, judge.FAIL, False, judge.NOT_BLAMED),
        (TIMED_OUT, judge.NOT_RUN, False, judge.NOT_RUN),  # could not run then, cannot now
        (FAILED, judge.NOT_RUN, False, judge.FAIL),  # it runs now, and fails
        (FAILED, judge.FAIL, True, judge.FAIL),  # the user's own check is an assertion
    ],
)
def test_verdicts(result: dict[str, Any] | None, recorded: str | None, explicit: bool, expected: str) -> None:
    task = {"id": "import x", "kind": "import", "explicit": explicit}
    assert judge.verdict(task, result, recorded) == expected


def test_a_smoke_command_is_always_an_assertion() -> None:
    assert judge.verdict({"id": "smoke false", "kind": "smoke"}, FAILED, judge.FAIL) == judge.FAIL


def test_strict_fails_on_anything_that_did_not_pass() -> None:
    tasks = [{"id": f"import {n}", "kind": "import"} for n in "abc"]
    results = {"import a": PASSED, "import b": FAILED, "import c": NOT_RUN}
    recorded = {"import a": judge.PASS, "import b": judge.FAIL, "import c": judge.PASS}
    forgiving = judge.judge(tasks, results, recorded)
    assert forgiving["ok"] is True
    assert (forgiving["checks_passed"], forgiving["checks_total"]) == (1, 3)
    assert forgiving["pre_existing"] == ["import b: ImportError: broken"]
    assert forgiving["not_run"] == ["import c: import hangs timed out"]
    assert judge.summary(forgiving) == "1/3 checks pass, 1 not blamed, 1 not run"
    assert judge.judge(tasks, results, recorded, strict=True)["ok"] is False


def test_a_record_keeps_a_timeout_as_a_check_that_could_not_run() -> None:
    assert judge.record(PASSED) == {"state": judge.PASS}
    assert judge.record(FAILED) == {"state": judge.FAIL, "error": "ImportError: broken"}
    assert judge.record(TIMED_OUT)["state"] == judge.NOT_RUN


def test_most_checks_failing_names_the_likely_cause() -> None:
    tasks = [{"id": f"import {n}", "kind": "import"} for n in "abcd"]
    half = {"import a": PASSED, "import b": PASSED, "import c": FAILED, "import d": FAILED}
    assert judge.mostly_failing(tasks, half, 120, "/venv/bin/python") is None
    hangs = {"import a": PASSED, "import b": TIMED_OUT, "import c": NOT_RUN, "import d": TIMED_OUT}
    cause = judge.mostly_failing(tasks, hangs, 1, "/venv/bin/python", " before pruning")
    assert cause == (
        "3 of 4 checks do not pass before pruning: the timeout is likely too short (--timeout 1; 3 timed out or "
        "could not run)"
    )
    missing = {
        t["id"]: {"ok": False, "error": "ImportError: libpq.so.5: cannot open shared object file"} for t in tasks
    }
    assert "system libraries are likely missing (libpq.so.5)" in str(judge.mostly_failing(tasks, missing, 120, "py"))
    broken = {t["id"]: FAILED for t in tasks}
    assert "/opt/py is likely the wrong interpreter" in str(judge.mostly_failing(tasks, broken, 120, "/opt/py"))
