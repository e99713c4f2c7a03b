"""The verdict on each check, the same in ``venvprune check``, the prune's verification and ``check.py``.

A check's result now is compared with what was recorded of it earlier -- the baseline before pruning, or the
manifest the prune wrote -- or, with no record, judged on its own:

* it passes: ``pass``;
* it could not run (a module it needs timed out in this run): ``not run`` -- never a pass;
* the user's own checks (``--check-module``, ``--smoke``) are assertions: failing is ``fail``, whatever the record;
* it needs a module that no installed distribution provides (an optional dependency, an extra): ``not run``,
  "needs X, not installed" -- unless it passed before: then what it needs went missing since, ``fail``;
* it failed before too: ``not blamed`` -- the change did not break it; reported, and a failure only with
  ``--strict``;
* it could not run before and times out now: ``not run`` again;
* otherwise: ``fail``. A hang judged on its own is a failure.

With ``--strict``, every check that is not a pass fails the run.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

PASS, FAIL, NOT_BLAMED, NOT_RUN = "pass", "fail", "not blamed", "not run"
NEEDS_OPTIONAL = "needs optional"  # a state, not a verdict: failed for want of a module nothing installed provides
Task = Dict[str, Any]
Result = Dict[str, Any]

MISSING_LIBRARY = re.compile(r"([\w.+-]+\.so[\w.]*): cannot open shared object file")


def state(result: Optional[Result]) -> str:
    """``pass``, ``fail``, ``timeout``, ``not run`` or ``needs optional``: what one run of a check said."""
    if result is None or result.get("not_run"):
        return NOT_RUN
    if result.get("ok"):
        return PASS
    if result.get("timed_out"):
        return "timeout"
    return NEEDS_OPTIONAL if result.get("optional_missing") else FAIL


def record(result: Optional[Result]) -> Dict[str, str]:
    """What a manifest keeps of a result, for the next judge: a timeout is a check that could not be run."""
    now = state(result)
    if now == PASS:
        return {"state": PASS}
    error = str((result or {}).get("error") or "no result")
    return {"state": NOT_RUN if now in (NOT_RUN, "timeout", NEEDS_OPTIONAL) else FAIL, "error": error}


def verdict(task: Task, result: Optional[Result], recorded: Optional[str]) -> str:
    """The verdict on *task* given its *result* now and the state *recorded* earlier (None: no record)."""
    now = state(result)
    if now in (PASS, NOT_RUN):
        return now
    if task.get("explicit") or task.get("kind") == "smoke":
        return FAIL
    if now == NEEDS_OPTIONAL:
        # Passed before: what it needs was there then (setuptools' pkg_resources, before --profile max).
        return FAIL if recorded == PASS else NOT_RUN
    if recorded == FAIL:
        return NOT_BLAMED
    if recorded == NOT_RUN and now == "timeout":
        return NOT_RUN
    return FAIL


def judge(
    tasks: Sequence[Task], results: Mapping[str, Result], recorded: Mapping[str, Optional[str]], strict: bool = False
) -> Dict[str, Any]:
    """The verification section of a report: counts, and ``id: error`` lines by verdict.

    The figures are those of ``venvprune check``'s report (:mod:`venvprune.verify.outcome`), so the two agree.
    """
    by_verdict: Dict[str, List[str]] = {PASS: [], FAIL: [], NOT_BLAMED: [], NOT_RUN: []}
    for task in tasks:
        result = results.get(task["id"])
        by_verdict[verdict(task, result, recorded.get(task["id"]))].append(describe(task, result))
    failed = bool(by_verdict[FAIL]) or (strict and bool(by_verdict[NOT_BLAMED] or by_verdict[NOT_RUN]))
    return {
        "ok": not failed,
        "strict": strict,
        "checks_total": len(tasks),
        "checks_passed": len(by_verdict[PASS]),
        "failures": by_verdict[FAIL],
        "pre_existing": by_verdict[NOT_BLAMED],
        "not_run": by_verdict[NOT_RUN],
    }


def describe(task: Task, result: Optional[Result]) -> str:
    """``check: error`` for the report and the command lines."""
    if result is None:
        return "%s: no result" % task["id"]
    if result.get("not_run"):
        return "%s: %s" % (task["id"], result["not_run"])
    return "%s: %s" % (task["id"], result.get("error") or "ok")


def mostly_failing(
    tasks: Sequence[Task], results: Mapping[str, Result], timeout: float, python: str, when: str = ""
) -> Optional[str]:
    """Why most checks fail, when more than half do not pass: the likely cause, else None.

    A venv in which most checks fail is not one to prune against, nor to judge one check at a time: the likely
    cause is the timeout, the system or the interpreter, not the packages.
    """
    failing = [results.get(t["id"]) for t in tasks if state(results.get(t["id"])) != PASS]
    if not tasks or 2 * len(failing) <= len(tasks):
        return None
    timeouts = sum(1 for r in failing if state(r) in ("timeout", NOT_RUN))
    missing = sorted({m for r in failing for m in MISSING_LIBRARY.findall(str((r or {}).get("error", "")))})
    head = "%d of %d checks do not pass%s" % (len(failing), len(tasks), when)
    if 2 * timeouts >= len(failing):
        return "%s: the timeout is likely too short (--timeout %g; %d timed out or could not run)" % (
            head,
            timeout,
            timeouts,
        )
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        return "%s: system libraries are likely missing (%s)" % (head, shown)
    return "%s: %s is likely the wrong interpreter for this venv, or the venv is broken" % (head, python)


def report_lines(section: Dict[str, Any], when: str, site_dirs: Sequence[str] = ()) -> List[str]:
    """The lines ``venvprune check`` and ``check.py`` print: each failure, what is not blamed, not run, unused.

    *when*: what "before" means here (``when the venv was pruned``); library paths are shown relative to the
    *site_dirs* that hold them, as ``--keep`` globs are written.
    """
    lines = ["FAILED %s" % failure for failure in section["failures"]]
    lines += ["not blamed: %s (failing already %s)" % (line, when) for line in section["pre_existing"]]
    lines += ["not run: %s" % line for line in section["not_run"]]
    for library in section.get("unused_libraries", ()):
        shown = _shown(library["path"], site_dirs)
        lines.append("unused bundled library: %s (%s)" % (shown, human_bytes(library["bytes"])))
    return lines


def summary(section: Dict[str, Any]) -> str:
    """``440/442 checks pass, 2 not blamed`` -- the figures of the last line."""
    parts = ["%d/%d checks pass" % (section["checks_passed"], section["checks_total"])]
    for key, words in (("failures", "failed"), ("pre_existing", "not blamed"), ("not_run", "not run")):
        if section.get(key):
            parts.append("%d %s" % (len(section[key]), words))
    unused = section.get("unused_libraries") or ()
    if unused:
        size = human_bytes(sum(int(u["bytes"]) for u in unused))
        parts.append("%d unused bundled librar%s (%s)" % (len(unused), "y" if len(unused) == 1 else "ies", size))
    if section.get("strict") and not section.get("ok"):
        parts.append("--strict")
    return ", ".join(parts)


def _shown(path: str, site_dirs: Sequence[str]) -> str:
    for site_dir in site_dirs:
        prefix = site_dir.rstrip("/") + "/"
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


def human_bytes(count: float) -> str:
    """Decimal units, as ``docker images`` shows them."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return "{:,.0f} {}".format(count, unit) if unit == "B" else "{:,.1f} {}".format(count, unit)
        count /= 1000
    raise AssertionError("unreachable")


def recorded_states(tasks: Iterable[Task]) -> Dict[str, Optional[str]]:
    """Each task's recorded state (from a manifest: its ``recorded``), None when it has none."""
    return {t["id"]: (t.get("recorded") or {}).get("state") for t in tasks}
