"""``python -B check.py``: in the final image, the checks of the builder again, judged as the builder judged them.

It reads ``manifest.json`` beside it (what the prune recorded of each check), lists what this venv holds as
``venvprune check`` does (:mod:`.discovery`, :mod:`.checklist`), runs the checks in this interpreter's workers and
judges them with :mod:`.judge`: the same code, so ``check.py`` and ``venvprune check`` agree. It exits 1 naming
each check that fails -- in a final image that lacks a system library, say -- and 2 when it cannot read the
manifest.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, List

from . import MANIFEST_FORMAT, MANIFEST_NAME
from .checklist import Task, changed_line, changed_since, checklist, unused_libraries, with_records
from .discovery import discover
from .judge import judge, recorded_states, report_lines, summary
from .loader import open_regular
from .pool import run_tasks

MAX_TIMEOUT = 24 * 3600  # seconds; as venvprune's own --timeout


class ManifestError(Exception):
    """The manifest cannot be read: the checker cannot say anything about this venv."""


class ManifestFormatError(ManifestError):
    """The manifest is another venvprune's, of another format: a prune replaces it."""


def read_manifest(path: str) -> Dict[str, Any]:
    """The manifest at *path*; ManifestError, one line naming it and what to do, when it cannot be read."""
    try:
        with open_regular(path) as handle:  # a FIFO would block the checker forever
            manifest = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: JSON or UTF-8 (truncated by a failed COPY, edited)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ManifestError(
            "cannot read %s (%s): remove it and prune the venv again to write a new one" % (path, reason)
        ) from exc
    if not isinstance(manifest, dict):
        raise ManifestError("%s is not a venvprune manifest: remove it and prune the venv again" % path)
    if manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format")
        raise ManifestFormatError(
            "%s: format %r is not one this checker reads (%r); prune again with this venvprune"
            % (path, found, MANIFEST_FORMAT)
        )
    return manifest


def check_venv(manifest_path: str, jobs: int = 0, timeout: float = 120.0, strict: bool = False) -> Dict[str, Any]:
    """Discover, join with the manifest, run, judge: the verification section (see :func:`.judge.judge`)."""
    manifest = read_manifest(manifest_path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(manifest_path)))
    site_dirs = [os.path.normpath(os.path.join(root, d)) for d in manifest["site_dirs"]]
    python = os.path.normpath(os.path.join(root, manifest["interpreter"]))
    if not os.path.exists(python):
        python = sys.executable  # e.g. another layout in the final image; the workers add site_dirs to sys.path
    found = discover(site_dirs)
    tasks = with_records(checklist(found, root), manifest, root, found)
    requires = {d["name"]: d.get("requires", []) for d in found["distributions"]}
    for task in tasks:  # what a distribution requires: the pool does not wait for a hang once per dependant
        if task["kind"] == "metadata":
            task.setdefault("requires", requires.get(task["dist"], []))
    results = _run(python, tasks, jobs, timeout, site_dirs)
    section = judge(tasks, results, recorded_states(tasks), strict)
    mapped = [p for r in results.values() for p in r.get("mapped", ())]
    section["unused_libraries"] = unused_libraries(found, mapped)
    section["unrecorded"] = sum(1 for t in tasks if not t.get("recorded"))
    section["changed_since_prune"] = changed_since(manifest, found)
    section["site_dirs"] = site_dirs
    return section


def _run(python: str, tasks: List[Task], jobs: int, timeout: float, site_dirs: List[str]) -> Dict[str, Any]:
    scratch = tempfile.mkdtemp(prefix="venvprune-check-")
    try:
        # A pruned venv has no bytecode: compile each module once, into the scratch folder (never the venv).
        pycache = os.path.join(scratch, "pycache")
        archive = os.path.abspath(sys.argv[0])  # this file: the workers run it too
        return run_tasks(python, archive, tasks, jobs, timeout, site_dirs, scratch, pycache=pycache)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_main(argv: List[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="check.py",
        description="Check, in this image, what venvprune checked when it pruned this venv, and judge it alike.",
    )
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), MANIFEST_NAME)
    parser.add_argument("--manifest", default=beside)
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (default: one per usable CPU)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds allowed per check (from 1 to %d)" % MAX_TIMEOUT
    )
    parser.add_argument("--strict", action="store_true", help="fail on checks not blamed or not run, too")
    args = parser.parse_args(argv)
    if not 1 <= args.timeout <= MAX_TIMEOUT:  # false for nan too; inf would never time out
        parser.error("--timeout must be a number of seconds from 1 to %d, not %r" % (MAX_TIMEOUT, args.timeout))
    try:
        section = check_venv(args.manifest, args.jobs, args.timeout, args.strict)
    except ManifestError as exc:
        print("venvprune check.py: %s" % exc, file=sys.stderr)
        return 2
    print_section(section, "venvprune check.py")
    return 0 if section["ok"] else 1


def print_section(section: Dict[str, Any], program: str) -> None:
    if section.get("changed_since_prune"):
        print(changed_line(section["changed_since_prune"]))
    unrecorded = section.get("unrecorded", 0)
    if unrecorded:
        print(
            "%d checks were not verified when the venv was pruned (--no-verify, or added since): "
            "each is judged on its own" % unrecorded
        )
    for line in report_lines(section, "when the venv was pruned", section["site_dirs"]):
        print(line)
    print("%s: %s" % (program, summary(section)))
