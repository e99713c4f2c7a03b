"""What a user of a venv checks after pruning it, before and after: a survey to compare.

Asked of the venv's own interpreter (``-I -B``: no user site, no bytecode written):

- every distribution's version, and a digest of its metadata (``METADATA``, ``entry_points.txt``,
  ``top_level.txt``) and of ``importlib.metadata.packages_distributions()``'s view of it;
- every top-level module of every distribution (``top_level.txt``, else the first component of its RECORD's
  ``.py``/extension/package paths), each imported in a process of its own, so that no module passes because
  another one was imported first;
- every entry point, each loaded (never run) in a process of its own.

A regression is a module or entry point that worked before and fails after, a version or metadata digest that
changed, or a distribution that is gone. A distribution the prune uninstalled on purpose (``installers``) is
passed in *uninstalled* and its absence is not a regression.

As a script, for measuring real venvs::

    python -m tests.venv_survey VENV --out before.json
    python -m tests.venv_survey VENV --out after.json --compare before.json [--uninstalled pip ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

OK = "ok"

# Runs in the target's interpreter (Python 3.8+, standard library only); prints one JSON object.
_DISCOVER = r"""
import hashlib, importlib.metadata as md, json, sys

def digest(dist):
    h = hashlib.sha256()
    for name in ("METADATA", "PKG-INFO", "entry_points.txt", "top_level.txt"):
        h.update(name.encode() + b"\0" + (dist.read_text(name) or "").encode() + b"\0")
    return h.hexdigest()

def tops(dist):
    listed = (dist.read_text("top_level.txt") or "").split()
    if listed:
        return sorted(set(listed))
    found = set()
    for f in dist.files or ():
        parts = f.parts
        if not parts or parts[0].endswith((".dist-info", ".egg-info", ".data", ".pth")) or parts[0] == "..":
            continue
        first = parts[0]
        if len(parts) == 1:
            if first.endswith(".py"):
                found.add(first[:-3])
            elif ".cpython-" in first or first.endswith(".abi3.so"):
                found.add(first.split(".")[0])
        elif first != "__pycache__":
            found.add(first)
    return sorted(found)

distributions, entry_points, modules = {}, {}, {}
try:
    owners = md.packages_distributions()
except Exception:
    owners = {}
for dist in md.distributions():
    name = (dist.metadata["Name"] or "").lower().replace("_", "-").replace(".", "-")
    if not name or name in distributions:
        continue
    top = [t for t in tops(dist) if t.isidentifier()]
    distributions[name] = {
        "version": dist.version,
        "metadata": digest(dist),
        "import_names": sorted(m for m, ds in owners.items() if dist.metadata["Name"] in ds),
    }
    for t in top:
        modules.setdefault(t, name)
    for ep in dist.entry_points:
        entry_points["%s:%s:%s" % (name, ep.group, ep.name)] = ep.value
json.dump({"distributions": distributions, "modules": modules, "entry_points": entry_points}, sys.stdout)
"""

_LOAD_ENTRY_POINT = r"""
import importlib.metadata as md, sys
dist, group, name = sys.argv[1].split(":", 2)
for d in md.distributions():
    if (d.metadata["Name"] or "").lower().replace("_", "-").replace(".", "-") == dist:
        next(ep for ep in d.entry_points if ep.group == group and ep.name == name).load()
        break
"""


@dataclass(frozen=True)
class Survey:
    distributions: Mapping[str, Mapping[str, object]]  # name -> version, metadata digest, import names
    modules: Mapping[str, str]  # top-level module -> "ok" or the error
    module_owners: Mapping[str, str]  # top-level module -> distribution
    entry_points: Mapping[str, str]  # "dist:group:name" -> "ok" or the error
    notes: Mapping[str, str] = field(default_factory=dict)

    def working(self) -> int:
        return sum(state == OK for state in [*self.modules.values(), *self.entry_points.values()])


def survey(venv: Path, jobs: int = 2, timeout: float = 900) -> Survey:
    python = str(venv / "bin" / "python")
    found = json.loads(_run([python, "-I", "-B", "-c", _DISCOVER], timeout, check=True))
    owners: dict[str, str] = found["modules"]
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        imported = dict(
            zip(owners, pool.map(lambda m: _state([python, "-I", "-B", "-c", f"import {m}"], timeout), owners))
        )
        points = list(found["entry_points"])
        loaded = dict(
            zip(points, pool.map(lambda p: _state([python, "-I", "-B", "-c", _LOAD_ENTRY_POINT, p], timeout), points))
        )
    return Survey(found["distributions"], imported, owners, loaded)


def regressions(before: Survey, after: Survey, uninstalled: Iterable[str] = ()) -> list[str]:
    """What worked before and does not after, one line each; empty when nothing regressed."""
    gone = set(uninstalled)
    found: list[str] = []
    for name, facts in before.distributions.items():
        if name in gone:
            continue
        now = after.distributions.get(name)
        if now is None:
            found.append(f"distribution {name}: gone")
            continue
        for key in ("version", "metadata", "import_names"):
            if facts[key] != now[key]:
                found.append(f"distribution {name}: {key} was {facts[key]!r}, now {now[key]!r}")
    for module, state in before.modules.items():
        if state == OK and before.module_owners.get(module) not in gone and after.modules.get(module) != OK:
            found.append(f"import {module}: {after.modules.get(module, 'not found')}")
    for point, state in before.entry_points.items():
        if state == OK and point.split(":", 1)[0] not in gone and after.entry_points.get(point) != OK:
            found.append(f"entry point {point}: {after.entry_points.get(point, 'not found')}")
    return found


def _state(command: list[str], timeout: float) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:g} s"
    if completed.returncode == 0:
        return OK
    lines = completed.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit {completed.returncode}"


def _run(command: list[str], timeout: float, check: bool) -> str:
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=check)
    return completed.stdout


def _load(path: Path) -> Survey:
    return Survey(**json.loads(path.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("venv", type=Path)
    parser.add_argument("--out", type=Path, help="write the survey as JSON")
    parser.add_argument("--compare", type=Path, help="a survey taken before: print every regression, exit 1 on any")
    parser.add_argument("--uninstalled", nargs="*", default=[], help="distributions removed on purpose")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    taken = survey(args.venv, args.jobs)
    if args.out:
        args.out.write_text(json.dumps(asdict(taken), indent=1, sort_keys=True))
    total = len(taken.modules) + len(taken.entry_points)
    print(f"{args.venv}: {taken.working()}/{total} imports and entry points work; {len(taken.distributions)} dists")
    if args.compare is None:
        return 0
    found = regressions(_load(args.compare), taken, args.uninstalled)
    for line in found:
        print(f"REGRESSION {line}")
    print(f"{len(found)} regressions against {args.compare}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
