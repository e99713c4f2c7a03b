"""The final-stage manifest (what passed in the builder) and its checker, written into ``<target>/.venvprune/``.

The checker is the probe itself (:mod:`venvprune.verify.probe`, standard library only, Python 3.8+, as one archive:
:mod:`venvprune.verify.archive`): run with no arguments it reads ``manifest.json`` beside it and repeats those
checks, so the import logic exists once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from venvprune import __version__
from venvprune.target import MANIFEST_DIR_NAME, Target
from venvprune.verify import probe
from venvprune.verify.archive import probe_archive
from venvprune.verify.checks import Check, Result

CHECKER_NAME = "check.py"
MANIFEST_NAME = probe.MANIFEST_NAME


def manifest_dir(target: Target) -> Path:
    return target.root / MANIFEST_DIR_NAME


def manifest_bytes(
    target: Target,
    interpreter: Path,
    python: str,
    passed: Sequence[Check],
    results: Mapping[str, Result],
) -> bytes:
    """The checks that passed, with paths relative to the target root (the venv may be copied elsewhere).

    Nothing in it depends on timing, so two prunes of the same venv write the same bytes.
    """
    root = target.root
    checks: list[dict[str, Any]] = []
    for check in passed:
        if check.kind == "smoke":
            continue  # needs a shell and the user's context; the final image may have neither
        task = dict(check.task)
        if check.kind == "dlopen":
            task["path"] = os.path.relpath(task["path"], root)
        if check.kind == "metadata":
            task["expect"] = results[check.id].value
        checks.append(task)
    manifest = {
        "format": probe.MANIFEST_FORMAT,
        "written_by": f"venvprune {__version__}",
        "python": python,
        "interpreter": os.path.relpath(interpreter, root),
        "site_dirs": [os.path.relpath(p, root) for p in target.site_packages],
        "counts": {
            kind: sum(1 for c in checks if c["kind"] == kind)
            for kind in ("import", "entry_point", "dlopen", "metadata")
        },
        # Sorted: discovery follows directory-listing order, and a re-prune must write the same bytes.
        "checks": sorted(checks, key=lambda task: json.dumps(task, sort_keys=True)),
    }
    return (json.dumps(manifest, indent=1) + "\n").encode("utf-8")


def checker_bytes(target: Target) -> bytes:
    checker = manifest_dir(target) / CHECKER_NAME
    python = target.interpreter or Path("python3")
    header = (
        f"# Written by venvprune {__version__}. In the final image run:\n"
        f'#     RUN ["{python}", "-B", "{checker}"]\n'
        "# It repeats the checks of manifest.json beside it and exits 1 naming each one that fails. Standard\n"
        "# library only (Python 3.8+). -B: a .pth file that imports a module at start-up would write bytecode.\n"
    )
    return probe_archive(header.encode("utf-8"))
