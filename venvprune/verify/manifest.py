"""The final-stage manifest and its checker, in ``<target>/.venvprune/``: always the venv as this run leaves it.

The manifest lists every check with what was recorded of it (``recorded``: passed, failed -- not blamed, or could
not run), the distributions' versions, and paths relative to the target root (the venv may be copied elsewhere).
After a verified prune the records are the verification's; when verification did not run (``--no-verify``, or
nothing to change) the manifest is written from a quick listing of the venv, keeping the records of an earlier
manifest for the distributions whose version did not change, the other checks to be judged on their own. With
``--no-manifest``, or without an interpreter to list the venv with, an earlier manifest is removed, never left
stale.

The checker is the probe itself (:mod:`venvprune.verify.probe`, standard library only, Python 3.8+, as one archive:
:mod:`venvprune.verify.archive`): it discovers the venv, joins the manifest, runs and judges as ``venvprune check``
does, so the import logic exists once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from venvprune import __version__
from venvprune.errors import UsageError
from venvprune.plan import Action, ActionKind
from venvprune.target import MANIFEST_DIR_NAME, Target
from venvprune.verify.archive import probe_archive
from venvprune.verify.changes import Transaction
from venvprune.verify.checks import Check, Discovery, Result
from venvprune.verify.outcome import Healed
from venvprune.verify.probe import MANIFEST_FORMAT, MANIFEST_NAME, judge
from venvprune.verify.probe.checker import ManifestError, ManifestFormatError, read_manifest
from venvprune.verify.probe.checklist import relative, unchanged

CHECKER_NAME = "check.py"
_KINDS = ("import", "entry_point", "dlopen", "metadata")
_TASK_KEYS = (
    *("id", "kind", "bundle", "distributions", "name", "value", "dist", "path", "needs", "explicit"),
    "unreadable",  # why a metadata check's distribution could not be read
)


def manifest_dir(target: Target) -> Path:
    return target.root / MANIFEST_DIR_NAME


def manifest_bytes(
    target: Target,
    discovery: Discovery,
    checks: Sequence[Check],
    results: Mapping[str, Result] | None,
    previous: Mapping[str, Any] | None = None,
    restored: Sequence[Healed] = (),
) -> bytes:
    """The manifest: each check with its record -- from *results*, else carried from the *previous* manifest --
    and what verification *restored* (now, or in an earlier prune: the next prune keeps it).

    Nothing in it depends on timing, so two prunes of the same venv write the same bytes.
    """
    root = str(target.root)
    previous = previous if previous is not None else previous_manifest(target)
    versions = discovery.versions
    carried = _carried_records(previous, versions) if results is None else {}
    entries: list[dict[str, Any]] = []
    for check in checks:
        if check.kind == "smoke":
            continue  # needs a shell and the user's context; the final image may have neither
        entry = {
            key: check.task[key] for key in _TASK_KEYS if key in check.task and check.task[key] not in (None, False)
        }
        if check.kind == "dlopen":
            entry["path"] = relative(str(check.task["path"]), root)
            entry["needs"] = [relative(str(p), root) for p in check.task.get("needs", ())]
        if results is not None:
            result = results.get(check.id)
            entry["recorded"] = judge.record(result.as_probe() if result is not None else None)
            if check.kind == "metadata" and result is not None and result.ok:
                entry["expect"] = result.value
        elif check.id in carried:
            entry.update(carried[check.id])
        entries.append(entry)
    interpreter = target.interpreter or Path("python3")
    manifest = {
        "format": MANIFEST_FORMAT,
        "written_by": f"venvprune {__version__}",
        "python": discovery.python,
        "interpreter": os.path.relpath(interpreter, target.root),
        "site_dirs": [os.path.relpath(p, target.root) for p in target.site_packages],
        "distributions": dict(sorted(versions.items())),
        "counts": {
            kind: sum(1 for c in entries if c["kind"] == kind)
            for kind in ("import", "entry_point", "dlopen", "metadata")
        },
        # Sorted: discovery follows directory-listing order, and a re-prune must write the same bytes.
        "checks": sorted(entries, key=lambda task: json.dumps(task, sort_keys=True)),
        "restored": _restorations(target, restored, previous, versions),
    }
    return (json.dumps(manifest, indent=1) + "\n").encode("utf-8")


def _restorations(
    target: Target, restored: Sequence[Healed], previous: Mapping[str, Any] | None, versions: Mapping[str, str | None]
) -> list[dict[str, Any]]:
    """What verification restored, relative to the target root: this run's, and an earlier run's that still hold."""
    entries = {
        os.path.relpath(h.path, target.root): {
            "category": h.category,
            "reason": h.reason,
            "distribution": h.distribution,
            "version": versions.get(h.distribution) if h.distribution else None,
        }
        for h in restored
    }
    for rel, entry in _earlier_restorations(target, previous, versions).items():
        entries.setdefault(rel, entry)
    return [{"path": rel, **entries[rel]} for rel in sorted(entries)]


def _earlier_restorations(
    target: Target, previous: Mapping[str, Any] | None, versions: Mapping[str, str | None]
) -> dict[str, dict[str, Any]]:
    """An earlier manifest's restorations whose path is still there and whose distribution has the same version."""
    held: dict[str, dict[str, Any]] = {}
    for entry in (previous or {}).get("restored", ()):
        rel, dist = entry.get("path"), entry.get("distribution")
        if not isinstance(rel, str) or not os.path.lexists(target.root / rel):
            continue
        if dist is not None and versions.get(dist) != entry.get("version"):
            continue
        held[rel] = {k: entry.get(k) for k in ("category", "reason", "distribution", "version")}
    return held


def restored_before(target: Target, versions: Mapping[str, str | None]) -> dict[Path, str]:
    """Paths an earlier prune's verification restored, still needed as far as can be told: path -> why."""
    held = _earlier_restorations(target, previous_manifest(target), versions)
    return {target.root / rel: str(entry["reason"]) for rel, entry in held.items()}


def _carried_records(
    previous: Mapping[str, Any] | None, versions: Mapping[str, str | None]
) -> dict[str, dict[str, Any]]:
    """The records of *previous* whose distributions all have the version they had then (the rule ``check`` and
    ``check.py`` apply: :func:`~venvprune.verify.probe.checklist.unchanged`)."""
    if not previous:
        return {}
    then = dict(previous.get("distributions", {}))
    carried: dict[str, dict[str, Any]] = {}
    for entry in previous.get("checks", ()):
        if "recorded" in entry and unchanged(entry.get("distributions", ()), then, dict(versions)):
            carried[entry["id"]] = {k: entry[k] for k in ("recorded", "expect") if k in entry}
    return carried


def unrecorded(content: bytes) -> int:
    """How many checks of a manifest carry no record (to be judged on their own)."""
    return sum(1 for entry in json.loads(content)["checks"] if "recorded" not in entry)


class UnreadableManifest(UsageError):
    """An earlier manifest that cannot be read: neither checked against nor replaced blindly (exit 2)."""


def previous_manifest(target: Target, *, other_format_ok: bool = True) -> dict[str, Any] | None:
    """The manifest an earlier prune wrote; None when there is none.

    One of another format (another venvprune's) is None for a prune, which replaces it (*other_format_ok*), and an
    error for ``check``, as for ``check.py``. One that cannot be read is an error for both, naming it: it records
    what an earlier verification restored, and ``check`` cannot say what it would have compared with.
    """
    path = manifest_dir(target) / MANIFEST_NAME
    if not os.path.lexists(path):
        return None
    try:
        return read_manifest(str(path))
    except ManifestFormatError as exc:
        if other_format_ok:
            return None
        raise UnreadableManifest(str(exc)) from exc
    except ManifestError as exc:
        raise UnreadableManifest(str(exc)) from exc


def checker_bytes(target: Target) -> bytes:
    checker = manifest_dir(target) / CHECKER_NAME
    python = target.interpreter or Path("python3")
    header = (
        f"# Written by venvprune {__version__}. In the final image run:\n"
        f'#     RUN ["{python}", "-B", "{checker}"]\n'
        "# It checks the venv as `venvprune check` does, against manifest.json beside it, and exits 1 naming each\n"
        "# check that fails. Standard library only (Python 3.8+); this file is a zip archive Python runs.\n"
        "# -B: a .pth file that imports a module at start-up would write bytecode.\n"
    )
    return probe_archive(header.encode("utf-8"))


def write(transaction: Transaction, target: Target, manifest: bytes) -> Path:
    """Write the manifest and the checker (recoverably, through the transaction); the manifest's path."""
    directory = manifest_dir(target)
    transaction.create(directory / MANIFEST_NAME, manifest)
    transaction.create(directory / CHECKER_NAME, checker_bytes(target))
    return directory / MANIFEST_NAME


def remove(transaction: Transaction, target: Target, why: str) -> str | None:
    """Remove an earlier manifest and checker, so none is left stale; a line for the report, None if there was none."""
    directory = manifest_dir(target)
    if not os.path.lexists(directory):
        return None
    action = Action(directory, ActionKind.REMOVE, "manifest", why, 0, 0, None, is_directory=True)
    errors = transaction.execute([action])
    if errors:
        return f"could not remove the earlier final-stage manifest {directory}: {errors[0].message}"
    return f"removed the earlier final-stage manifest {directory} ({why})"
