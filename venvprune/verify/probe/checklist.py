"""What to check, as tasks: built from a discovery, and joined with what a manifest recorded.

One function makes the checks for ``venvprune check``, for the prune's baseline and for the final-stage checker,
so the three check the same things under the same names. A task is a JSON object: ``id`` (what the report names),
``kind``, ``bundle`` (tasks of a bundle run in one worker, a module before its entry points), ``distributions``
(canonical names of the distributions it belongs to), and what its kind needs:

* ``metadata``: ``dist``, and after a prune ``expect`` (the version and import names it answered then); when
  discovery could not read the distribution's metadata, ``unreadable`` says why (the check fails with it);
* ``import``: ``name``; ``explicit`` when the user asked for it (``--check-module``): an assertion;
* ``entry_point``: ``value`` (``module:attr``);
* ``dlopen``: ``path`` of an extension module, and ``needs``, the bundled libraries the loader brings in for it.

A bundled library is not a check of its own: it is loaded by the extension modules that need it, as the loader
meets it. A library that no extension module or program needs, and that no import loaded, is unused
(:func:`unused_libraries`): reported with its size, never a failure.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Optional, Sequence

from .discovery import canonical_name

Task = Dict[str, Any]

METADATA_BUNDLE = "(metadata)"
LIBRARIES_BUNDLE = "(libraries)"


def checklist(found: Dict[str, Any], root: str, check_modules: Sequence[str] = ()) -> List[Task]:
    """The tasks for a discovery (:func:`.discovery.discover`); *check_modules* are the user's own imports."""
    tasks: Dict[str, Task] = {}
    owners = module_owners(found)
    first_module: Dict[str, str] = {}  # distribution -> the bundle its extension modules join
    distributions = sorted(found["distributions"], key=lambda d: -int(d.get("files", 0)))  # heaviest first
    for dist in distributions:
        for module in dist["modules"]:
            first_module.setdefault(canonical_name(dist["name"]), module.split(".")[0])

    def add(task: Task) -> None:
        existing = tasks.get(task["id"])
        if existing is None:
            tasks[task["id"]] = task
        else:  # one module or entry point from two distributions (a namespace package): both own it
            existing["distributions"] = list(dict.fromkeys(existing["distributions"] + task["distributions"]))
            if task.get("explicit"):  # the user asked for it too: an assertion
                existing["explicit"] = True

    for dist in distributions:
        check_id = "metadata %s" % dist["name"]
        unreadable = {"unreadable": dist["unreadable"]} if dist.get("unreadable") else {}
        add(_task(check_id, "metadata", METADATA_BUNDLE, [dist["name"]], dist=dist["name"], **unreadable))
    for dist in distributions:
        for module in dist["modules"]:
            add(_task("import %s" % module, "import", module.split(".")[0], [dist["name"]], name=module))
    for module in check_modules:
        owned = list(owners.get(module.split(".")[0], ()))
        add(_task("import %s" % module, "import", module.split(".")[0], owned, name=module, explicit=True))
    for dist in distributions:
        name = canonical_name(dist["name"])
        for group, ep_name, value in dist["entry_points"]:
            top = value.split(":")[0].strip().split(".")[0]
            bundle = top if top in owners else "(entry points of %s)" % name
            add(_task("entry point %s:%s = %s" % (group, ep_name, value), "entry_point", bundle, [name], value=value))
    for library in found["libraries"]:
        if library["role"] != "extension":
            continue
        owner = canonical_name(library["owner"]) if library["owner"] else None
        bundle = first_module.get(owner, LIBRARIES_BUNDLE) if owner else LIBRARIES_BUNDLE
        check_id = "dlopen %s" % relative(library["path"], root)
        needs = list(library.get("closure", ()))
        add(_task(check_id, "dlopen", bundle, [owner] if owner else [], path=library["path"], needs=needs))
    return list(tasks.values())


def _task(check_id: str, kind: str, bundle: str, distributions: Iterable[str], **fields: Any) -> Task:
    task: Task = {"id": check_id, "kind": kind, "bundle": bundle}
    task["distributions"] = list(dict.fromkeys(canonical_name(d) for d in distributions))
    task.update(fields)
    return task


def module_owners(found: Dict[str, Any]) -> Dict[str, List[str]]:
    """Top-level import name -> canonical names of the distributions that install it."""
    owners: Dict[str, List[str]] = {}
    for dist in found["distributions"]:
        for module in dist["modules"]:
            names = owners.setdefault(module.split(".")[0], [])
            if canonical_name(dist["name"]) not in names:
                names.append(canonical_name(dist["name"]))
    return owners


def relative(path: str, root: str) -> str:
    """*path* relative to the target root, as check ids and the manifest name it; absolute when outside."""
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else rel.replace(os.sep, "/")


def unused_libraries(found: Dict[str, Any], mapped: Iterable[str]) -> List[Dict[str, Any]]:
    """Bundled libraries nothing needs (no extension module's or program's closure) and no import loaded."""
    used = {os.path.realpath(p) for p in mapped}
    for library in found["libraries"]:
        used.update(library.get("closure", ()))
    return [
        {"path": library["path"], "bytes": library["size"], "owner": library["owner"]}
        for library in found["libraries"]
        if library["role"] == "library" and os.path.realpath(library["path"]) not in used
    ]


def installed_versions(found: Dict[str, Any]) -> Dict[str, Optional[str]]:
    """Canonical distribution name -> version (None: its metadata cannot be read), as the manifest keeps them."""
    return {canonical_name(d["name"]): d["version"] for d in found["distributions"]}


def unchanged(owners: Iterable[str], then: Dict[str, Any], now: Dict[str, Any]) -> bool:
    """Whether each of *owners* is installed *now* at the version it had *then* (the prune): only then does what
    the prune recorded of a check of theirs still say something about it."""
    return all(d in then and d in now and then[d] == now[d] for d in owners)


def changed_since(manifest: Optional[Dict[str, Any]], found: Dict[str, Any]) -> List[str]:
    """The distributions installed, upgraded or removed since *manifest* was written: ``six 1.16.0 -> 1.17.0``."""
    if manifest is None:
        return []
    then, now = manifest.get("distributions") or {}, installed_versions(found)
    lines = []
    for name in sorted(set(then) | set(now)):
        if name not in now:
            lines.append("%s %s removed" % (name, then[name]))
        elif name not in then:
            lines.append("%s %s installed" % (name, now[name]))
        elif then[name] != now[name]:
            lines.append("%s %s -> %s" % (name, then[name], now[name]))
    return lines


def changed_line(changed: Sequence[str]) -> str:
    """``changed since the prune: 2 distributions (six 1.16.0 -> 1.17.0, pip 24.0 removed): ...``."""
    shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
    return "changed since the prune: %d distribution%s (%s): their checks are judged on their own" % (
        len(changed),
        "" if len(changed) == 1 else "s",
        shown,
    )


def with_records(tasks: List[Task], manifest: Optional[Dict[str, Any]], root: str, found: Dict[str, Any]) -> List[Task]:
    """*tasks*, each with what *manifest* recorded of it (``recorded``, a metadata check's ``expect``), followed by
    the manifest's checks that were not discovered now (a module deleted since: they must still pass).

    What the prune recorded applies only to the same distributions at the same versions: a check of a distribution
    installed, upgraded or removed since is judged on its own, and the checks of one removed since are gone with it
    (what needed it fails its own checks).
    """
    if manifest is None:
        return tasks
    then, now = manifest.get("distributions") or {}, installed_versions(found)
    recorded: Dict[str, Task] = {}
    for entry in manifest.get("checks", ()):
        if not unchanged(entry.get("distributions", ()), then, now):
            continue
        task = dict(entry)
        if task["kind"] == "dlopen":
            task["path"] = os.path.normpath(os.path.join(root, task["path"]))
            task["needs"] = [os.path.normpath(os.path.join(root, p)) for p in task.get("needs", ())]
        recorded[task["id"]] = task
    joined = []
    for task in tasks:
        entry = recorded.pop(task["id"], None)
        if entry is not None:
            task = dict(task)
            for key in ("recorded", "expect"):
                if key in entry:
                    task[key] = entry[key]
        joined.append(task)
    return joined + list(recorded.values())
