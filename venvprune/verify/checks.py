"""The checks as data: what must keep working, and what one run of it said.

A :class:`Check` wraps one task of the probe's checklist (:mod:`venvprune.verify.probe.checklist`) -- a module
import, an entry point, an extension module that must dlopen, a distribution's metadata -- or a user's smoke
command, with the distributions it belongs to (to find what to restore when it breaks). A :class:`Result` is what
one run of it said. The tasks themselves, and the verdicts, are the probe's, shared with the final-stage checker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from venvprune.errors import VenvpruneError
from venvprune.verify.probe.checklist import checklist, module_owners

COMPILE_ID = "(compile estimate)"  # a pool task that is no check: how long compiling a sample takes


class VerifyError(VenvpruneError):
    """The checks could not run at all (not: a check failed)."""


@dataclass(frozen=True)
class Check:
    id: str  # what the report names: "import numpy", "dlopen lib/python3.11/site-packages/x.so", ...
    kind: str  # import, entry_point, dlopen, metadata, smoke
    task: Mapping[str, Any] = field(compare=False)  # what the worker runs (JSON); a smoke check has the command
    distributions: tuple[str, ...] = ()  # canonical names of the distributions it belongs to
    subject: Path | None = None  # the extension module a dlopen check loads

    @classmethod
    def from_task(cls, task: Mapping[str, Any]) -> Check:
        subject = Path(task["path"]) if task["kind"] == "dlopen" else None
        return cls(str(task["id"]), str(task["kind"]), task, tuple(task.get("distributions", ())), subject)

    @property
    def explicit(self) -> bool:
        """The user's own check (``--check-module``, ``--smoke``): an assertion, failing before or after."""
        return self.kind == "smoke" or bool(self.task.get("explicit"))

    @property
    def needs(self) -> tuple[Path, ...]:
        """The bundled libraries the loader brings in for a dlopen check's extension module."""
        return tuple(Path(p) for p in self.task.get("needs", ()))


@dataclass(frozen=True)
class Result:
    ok: bool
    error: str = ""
    seconds: float = 0.0
    frames: tuple[str, ...] = ()  # traceback files of the error, innermost last
    files: tuple[str, ...] = ()  # every absolute path the error names
    libraries: tuple[str, ...] = ()  # shared-object names it names (libpq.so.5)
    modules: tuple[str, ...] = ()  # modules it could not find
    value: Any = field(default=None, compare=False)  # a metadata check's answer; a skipped entry point's reason
    attempt: str = "shared"  # the process that gave the verdict: shared, fresh (a retry group) or alone
    timed_out: bool = False
    not_run: str = ""  # why it was not run (a module it needs timed out): never a pass
    optional_missing: str = ""  # the module it failed for that no installed distribution provides
    uses: tuple[str, ...] = field(default=(), compare=False)  # top-level names its imports asked for
    costs: Mapping[str, float] = field(default_factory=dict, compare=False)  # seconds each package took to load
    sources: tuple[str, ...] = field(default=(), compare=False)  # source files of the modules it loaded
    mapped: tuple[str, ...] = field(default=(), compare=False)  # shared objects of site-packages it loaded

    @classmethod
    def from_probe(cls, raw: Mapping[str, Any]) -> Result:
        return cls(
            ok=bool(raw.get("ok")),
            error=str(raw.get("error", "")),
            seconds=float(raw.get("seconds", 0.0)),
            frames=tuple(raw.get("frames", ())),
            files=tuple(raw.get("files", ())),
            libraries=tuple(raw.get("libraries", ())),
            modules=tuple(raw.get("modules", ())),
            value=raw.get("value"),
            attempt=str(raw.get("attempt", "shared")),
            timed_out=bool(raw.get("timed_out")),
            not_run=str(raw.get("not_run", "")),
            optional_missing=str(raw.get("optional_missing", "")),
            uses=tuple(raw.get("uses", ())),
            costs=dict(raw.get("costs", {})),
            sources=tuple(raw.get("sources", ())),
            mapped=tuple(raw.get("mapped", ())),
        )

    @classmethod
    def skipped(cls, why: str) -> Result:
        return cls(False, f"not run: {why}", not_run=why)

    def as_probe(self) -> dict[str, Any]:
        """The fields the probe's judge reads."""
        return {
            "ok": self.ok,
            "error": self.error,
            "timed_out": self.timed_out,
            "not_run": self.not_run,
            "optional_missing": self.optional_missing,
        }


@dataclass(frozen=True)
class Discovery:
    """What the target holds, as its own interpreter sees it."""

    python: str
    cache_tag: str | None  # cpython-311: names the bytecode files
    checks: tuple[Check, ...]
    module_owners: Mapping[str, tuple[str, ...]]  # top-level import name -> canonical distribution names
    found: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # the probe's answer

    @property
    def versions(self) -> dict[str, str | None]:
        """Canonical distribution name -> version (None: its metadata cannot be read)."""
        return {
            check.distributions[0]: None if check.task["version"] is None else str(check.task["version"])
            for check in self._metadata()
        }

    @property
    def requires(self) -> dict[str, tuple[str, ...]]:
        """Canonical distribution name -> the canonical names its ``Requires-Dist`` names (any marker)."""
        return {check.distributions[0]: tuple(check.task["requires"]) for check in self._metadata()}

    def _metadata(self) -> list[Check]:
        return [c for c in self.checks if c.kind == "metadata" and c.distributions]


def build_checks(found: Mapping[str, Any], root: Path, check_modules: Sequence[str] = ()) -> Discovery:
    """The probe's checklist for its discovery, as checks; bundles keep a module with its entry points."""
    tasks = checklist(dict(found), str(root), check_modules)
    by_name = {d["name"]: d for d in found["distributions"]}
    for task in tasks:  # what the metadata checks know of their distribution, for the manifest and the scope
        if task["kind"] == "metadata":
            dist = by_name[task["dist"]]
            task["version"] = dist["version"]
            task["requires"] = list(dist.get("requires", ()))
    owners = module_owners(dict(found))
    return Discovery(
        str(found["python"]),
        found.get("cache_tag"),
        tuple(Check.from_task(t) for t in tasks),
        {module: tuple(names) for module, names in owners.items()},
        found,
    )


def smoke_check(command: str) -> Check:
    return Check(f"smoke {command}", "smoke", {"id": f"smoke {command}", "kind": "smoke", "command": command})


def bundle_weights(checks: Iterable[Check], results: Mapping[str, Result]) -> dict[str, float]:
    """Seconds per bundle in a run, to hand the slowest bundles out first next time."""
    weights: dict[str, float] = {}
    for check in checks:
        result = results.get(check.id)
        bundle = check.task.get("bundle")
        if result is not None and isinstance(bundle, str):
            weights[bundle] = weights.get(bundle, 0.0) + result.seconds
    return weights


def bundle_uses(checks: Iterable[Check], results: Mapping[str, Result]) -> dict[str, list[str]]:
    """Top-level names each bundle's imports asked for, to keep a bundle with the worker that has them loaded."""
    uses: dict[str, set[str]] = {}
    for check in checks:
        result = results.get(check.id)
        bundle = check.task.get("bundle")
        if result is not None and isinstance(bundle, str) and result.uses:
            uses.setdefault(bundle, set()).update(result.uses)
    return {bundle: sorted(names) for bundle, names in uses.items()}


def package_costs(results: Mapping[str, Result]) -> dict[str, float]:
    """Seconds each top-level package took to load (with what it needed that was not loaded yet)."""
    costs: dict[str, float] = {}
    for result in results.values():
        for name, seconds in result.costs.items():
            costs[name] = max(seconds, costs.get(name, 0.0))
    return costs


def loaded_sources(checks: Iterable[Check], results: Mapping[str, Result]) -> list[str]:
    """The source files the checks loaded, each once, in the order of the checks."""
    sources: dict[str, None] = {}
    for check in checks:
        result = results.get(check.id)
        if result is not None:
            sources.update(dict.fromkeys(result.sources))
    return list(sources)


def import_seconds(checks: Iterable[Check], results: Mapping[str, Result]) -> float:
    """Seconds spent importing the modules, summed over the workers (each cold start pays about this)."""
    return round(sum(results[c.id].seconds for c in checks if c.kind == "import" and c.id in results), 2)


def mapped_libraries(results: Iterable[Result]) -> list[str]:
    """Shared objects of site-packages the imports loaded (``ctypes.CDLL`` included)."""
    return sorted({path for result in results for path in result.mapped})
