"""The checks as data, and running them: discovery and the import workers in the target's interpreter, smoke commands.

A :class:`Check` is one thing that must keep working -- a module import, an entry point, a library that must
dlopen, a distribution's metadata, a user's smoke command -- with the task the worker runs and the distributions
it belongs to (to find what to restore when it breaks). A :class:`Result` is what one run of it said.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from venvprune.errors import VenvpruneError
from venvprune.verify import scratch as scratch_folders
from venvprune.verify.archive import probe_archive
from venvprune.verify.probe.discovery import canonical_name
from venvprune.verify.probe.pool import hygienic_environment, run_tasks
from venvprune.verify.probe.tasks import names_in_text

METADATA_BUNDLE = "(metadata)"
LIBRARIES_BUNDLE = "(libraries)"
COMPILE_ID = "(compile estimate)"  # a pool task that is no check: how long compiling a sample takes


class VerifyError(VenvpruneError):
    """The checks could not run at all (not: a check failed)."""


@dataclass(frozen=True)
class Check:
    id: str  # what the report names: "import numpy", "dlopen lib/python3.11/site-packages/x.so", ...
    kind: str  # import, entry_point, dlopen, metadata, smoke
    task: Mapping[str, Any] = field(compare=False)  # what the worker runs (JSON); a smoke check has the command
    distributions: tuple[str, ...] = ()  # canonical names of the distributions it belongs to
    subject: Path | None = None  # the library a dlopen check loads


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
    uses: tuple[str, ...] = field(default=(), compare=False)  # top-level names its imports asked for
    costs: Mapping[str, float] = field(default_factory=dict, compare=False)  # seconds each package took to load
    sources: tuple[str, ...] = field(default=(), compare=False)  # source files of the modules it loaded

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
            uses=tuple(raw.get("uses", ())),
            costs=dict(raw.get("costs", {})),
            sources=tuple(raw.get("sources", ())),
        )


@dataclass(frozen=True)
class Discovery:
    """What the target holds, as its own interpreter sees it."""

    python: str
    cache_tag: str | None  # cpython-311: names the bytecode files
    checks: tuple[Check, ...]
    module_owners: Mapping[str, tuple[str, ...]]  # top-level import name -> canonical distribution names


def build_checks(found: Mapping[str, Any], root: Path, check_modules: Sequence[str] = ()) -> Discovery:
    """Turn the probe's discovery into checks; bundles keep a module with its entry points and libraries."""
    checks: dict[str, Check] = {}
    module_owners: dict[str, list[str]] = {}
    first_module: dict[str, str] = {}  # distribution -> the bundle its libraries join
    distributions = sorted(found["distributions"], key=lambda d: -int(d.get("files", 0)))  # heaviest first
    for dist in distributions:
        name = canonical_name(dist["name"])
        for module in dist["modules"]:
            module_owners.setdefault(module.split(".")[0], []).append(name)
            first_module.setdefault(name, module.split(".")[0])

    def add(check: Check) -> None:
        existing = checks.get(check.id)
        if existing is None:
            checks[check.id] = check
        else:  # one module or entry point from two distributions (a namespace package): both own it
            owners = tuple(dict.fromkeys(existing.distributions + check.distributions))
            checks[check.id] = Check(existing.id, existing.kind, existing.task, owners, existing.subject)

    for dist in distributions:
        name = canonical_name(dist["name"])
        metadata_id = f"metadata {dist['name']}"
        add(Check(metadata_id, "metadata", _task(metadata_id, "metadata", METADATA_BUNDLE, dist=dist["name"]), (name,)))
    for dist in distributions:
        name = canonical_name(dist["name"])
        for module in dist["modules"]:
            add(_import_check(module, (name,)))
    for module in check_modules:
        add(_import_check(module, tuple(module_owners.get(module.split(".")[0], ()))))
    for dist in distributions:
        name = canonical_name(dist["name"])
        for group, ep_name, value in dist["entry_points"]:
            top = value.split(":")[0].strip().split(".")[0]
            bundle = top if top in module_owners else f"(entry points of {name})"
            check_id = f"entry point {group}:{ep_name} = {value}"
            add(Check(check_id, "entry_point", _task(check_id, "entry_point", bundle, value=value), (name,)))
    for path, owner in found["libraries"]:
        library = Path(path)
        owner_name = canonical_name(owner) if owner else None
        check_id = f"dlopen {_relative(library, root)}"
        bundle = first_module.get(owner_name, LIBRARIES_BUNDLE) if owner_name else LIBRARIES_BUNDLE
        owners = (owner_name,) if owner_name else ()
        add(Check(check_id, "dlopen", _task(check_id, "dlopen", bundle, path=path), owners, library))
    return Discovery(
        str(found["python"]),
        found.get("cache_tag"),
        tuple(checks.values()),
        {module: tuple(dict.fromkeys(owners)) for module, owners in module_owners.items()},
    )


def _import_check(module: str, owners: tuple[str, ...]) -> Check:
    check_id = f"import {module}"
    return Check(check_id, "import", _task(check_id, "import", module.split(".")[0], name=module), owners)


def _task(check_id: str, kind: str, bundle: str, **fields: Any) -> dict[str, Any]:
    return {"id": check_id, "kind": kind, "bundle": bundle, **fields}


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def smoke_check(command: str) -> Check:
    return Check(f"smoke {command}", "smoke", {"command": command})


class Runner:
    """Runs checks against one target from a scratch folder outside it; use as a context manager."""

    def __init__(self, interpreter: Path, root: Path, site_dirs: Sequence[Path], jobs: int, timeout: float) -> None:
        self.interpreter = interpreter
        self.root = root
        self.site_dirs = [str(p) for p in site_dirs]
        self.jobs = jobs
        self.timeout = timeout
        self.scratch = scratch_folders.make("verify")
        self.probe = self.scratch / "probe.pyz"
        self.compile_seconds = 0.0
        # A copy, not the installed package: nothing of venvprune's is importable by the target, by design (-I).
        self.probe.write_bytes(probe_archive())

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        scratch_folders.remove(self.scratch)

    def discover(self, check_modules: Sequence[str] = ()) -> Discovery:
        out = self.scratch / "discovery.json"
        with self._fresh_scratch("discover") as scratch:
            env = hygienic_environment(dict(os.environ), str(scratch))
            try:
                completed = subprocess.run(
                    [str(self.interpreter), "-I", "-B", str(self.probe), "discover", str(out), *self.site_dirs],
                    cwd=scratch,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    errors="replace",
                    timeout=max(self.timeout, 60.0),
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise VerifyError(f"{self.interpreter}: cannot list what to check ({exc})") from exc
        if completed.returncode != 0:
            last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            raise VerifyError(f"{self.interpreter}: listing what to check failed ({last}); is it CPython 3.8 or newer?")
        found = json.loads(out.read_text(encoding="utf-8"))
        return build_checks(found, self.root, check_modules)

    def run(
        self,
        checks: Iterable[Check],
        weights: Mapping[str, float] | None = None,
        uses: Mapping[str, Sequence[str]] | None = None,
        costs: Mapping[str, float] | None = None,
        pycache: Path | None = None,
        estimate: Sequence[str] = (),
    ) -> dict[str, Result]:
        """Results of *checks* (metadata checks carry their expectation in the task); smoke commands included.

        *weights*, *uses* and *costs* come from an earlier run (:func:`bundle_weights`, :func:`bundle_uses`,
        :func:`package_costs`) and only make it faster.

        *pycache*: a bytecode cache outside the venv (``-X pycache_prefix``; see :mod:`.bytecode`) for a venv
        whose own caches were removed. Without it the workers run with ``-B``: nothing is written anywhere.
        *estimate*: sources to compile, last, on a worker with nothing else to do (into a throwaway folder);
        :attr:`compile_seconds` says how long that took.
        """
        checks = list(checks)
        tasks = [dict(c.task) for c in checks if c.kind != "smoke"]
        results: dict[str, Result] = {}
        if tasks:
            with self._fresh_scratch("pool") as scratch:
                if estimate:
                    (scratch / "compiled").mkdir()
                    tasks.append(
                        {
                            "id": COMPILE_ID,
                            "kind": "compile",
                            "bundle": COMPILE_ID,
                            "files": list(estimate),
                            "cache": str(scratch / "compiled"),
                        }
                    )
                raw = run_tasks(
                    str(self.interpreter),
                    str(self.probe),
                    tasks,
                    self.jobs,
                    self.timeout,
                    self.site_dirs,
                    str(scratch),
                    weights=dict(weights) if weights else None,
                    uses={k: list(v) for k, v in uses.items()} if uses else None,
                    costs=dict(costs) if costs else None,
                    pycache=str(pycache) if pycache is not None else None,
                )
            compiled = raw.pop(COMPILE_ID, None)
            if compiled and compiled.get("ok"):
                self.compile_seconds += float(compiled["value"]["seconds"])
            for task in tasks:
                if task["id"] == COMPILE_ID:
                    continue
                found = raw.get(task["id"])
                results[task["id"]] = Result.from_probe(found) if found else Result(False, "no result (internal error)")
        for check in checks:
            if check.kind == "smoke":
                results[check.id] = self._smoke(str(check.task["command"]))
        return results

    def _smoke(self, command: str) -> Result:
        """A user's command, through the shell, with the venv's bin first on PATH; exit status 0 is healthy."""
        with self._fresh_scratch("smoke") as scratch:
            env = hygienic_environment(dict(os.environ), str(scratch))
            env["HOME"] = os.environ.get("HOME", env["HOME"])  # the user's command may need their configuration
            env["PATH"] = os.pathsep.join([str(self.interpreter.parent), os.environ.get("PATH", os.defpath)])
            env["VIRTUAL_ENV"] = str(self.root)
            started = time.monotonic()
            process = subprocess.Popen(
                command,
                shell=True,
                cwd=scratch,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                output, _ = process.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                return Result(False, f"timed out after {self.timeout:g} s", time.monotonic() - started)
        seconds = time.monotonic() - started
        if process.returncode == 0:
            return Result(True, seconds=seconds)
        text = output.decode("utf-8", "replace")
        files, libraries, modules = names_in_text(text)
        last = (text.strip().splitlines() or ["no output"])[-1]
        return Result(
            False,
            f"exit status {process.returncode}: {last}",
            seconds,
            files=tuple(files),
            libraries=tuple(libraries),
            modules=tuple(modules),
        )

    @contextmanager
    def _fresh_scratch(self, name: str) -> Iterator[Path]:
        """An empty folder per run: no cache a package wrote in one run can mask a deletion in the next."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.scratch))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


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
