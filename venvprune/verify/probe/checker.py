"""``python check.py``: in the final image, repeat the checks that passed when venvprune pruned this venv.

It reads ``manifest.json`` beside it, runs every check listed there, and exits 1 naming each one that fails now --
in a final image that lacks a system library, say.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import List, Tuple

from . import MANIFEST_FORMAT, MANIFEST_NAME
from .pool import run_tasks


def check_manifest(manifest_path: str, jobs: int = 0, timeout: float = 120.0) -> Tuple[int, List[str]]:
    """Run the manifest's checks against this venv: (checks run, failures as ``check: error`` lines)."""
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    if manifest.get("format") != MANIFEST_FORMAT:
        return 0, ["%s: format %r is not one this checker reads" % (manifest_path, manifest.get("format"))]
    root = os.path.dirname(os.path.dirname(os.path.abspath(manifest_path)))
    site_dirs = [os.path.normpath(os.path.join(root, d)) for d in manifest["site_dirs"]]
    python = os.path.normpath(os.path.join(root, manifest["interpreter"]))
    if not os.path.exists(python):
        python = sys.executable  # e.g. another layout in the final image; the workers add site_dirs to sys.path
    tasks = []
    for task in manifest["checks"]:
        if task["kind"] == "dlopen":
            task = dict(task, path=os.path.normpath(os.path.join(root, task["path"])))
        tasks.append(task)
    scratch = tempfile.mkdtemp(prefix="venvprune-check-")
    try:
        # A pruned venv has no bytecode: compile each module once, into the scratch folder (never the venv).
        pycache = os.path.join(scratch, "pycache")
        probe = os.path.abspath(sys.argv[0])  # this archive: the workers run it too
        results = run_tasks(python, probe, tasks, jobs, timeout, site_dirs, scratch, pycache=pycache)
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    failures = [
        "%s: %s" % (task["id"], results.get(task["id"], {}).get("error", "no result"))
        for task in tasks
        if not results.get(task["id"], {}).get("ok")
    ]
    return len(tasks), failures


def check_main(argv: List[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="check.py",
        description="Repeat, in this image, the checks that passed when venvprune pruned this venv.",
    )
    parser.add_argument(
        "--manifest", default=os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), MANIFEST_NAME)
    )
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (default: one per CPU)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per check")
    args = parser.parse_args(argv)
    try:
        total, failures = check_manifest(args.manifest, args.jobs, args.timeout)
    except (OSError, ValueError, KeyError) as exc:
        print("venvprune check.py: cannot read %s: %s" % (args.manifest, exc), file=sys.stderr)
        return 2
    for failure in failures:
        print("FAILED %s" % failure)
    print("venvprune check.py: %d/%d checks pass" % (total - len(failures), total))
    return 1 if failures else 0
