"""Running checks against one target: discovery and the import workers in the target's interpreter, smoke commands.

Everything runs from a scratch folder outside the target, with the probe archive written there: nothing of
venvprune's is importable by the target, by design (``-I``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from venvprune.verify import reaper
from venvprune.verify import scratch as scratch_folders
from venvprune.verify.archive import probe_archive
from venvprune.verify.checks import COMPILE_ID, Check, Discovery, Result, VerifyError, build_checks
from venvprune.verify.probe.pool import hygienic_environment, run_tasks
from venvprune.verify.probe.tasks import names_in_text


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
        """A user's command, through the shell, with the venv's bin first on PATH; exit status 0 is healthy.

        It is the user's own assertion, so it runs as they would run it: in the folder venvprune was started in,
        with their environment (``python manage.py`` from ``WORKDIR /app``, ``ENV PYTHONPATH=/app``). Only
        bytecode writing is off, so that the command cannot put back the caches the prune removed.

        It is timed by its own exit, not by its output: the output goes to a file, so a child it detached
        (``setsid server &``) that keeps the descriptors open cannot hold the run. At the timeout, and once it
        has exited, everything it started is killed, detached or not (:mod:`.reaper`): a server the check before
        pruning started can never answer the check after it, nor outlive venvprune.
        """
        with self._fresh_scratch("smoke") as scratch:
            env = dict(os.environ)
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            env["PATH"] = os.pathsep.join([str(self.interpreter.parent), os.environ.get("PATH", os.defpath)])
            env["VIRTUAL_ENV"] = str(self.root)
            env[reaper.MARKER] = token = uuid.uuid4().hex
            started = time.monotonic()
            with tempfile.TemporaryFile(dir=scratch) as output:
                process = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-B", reaper.__file__, command],
                    cwd=os.getcwd(),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                try:
                    process.wait(timeout=self.timeout)
                except subprocess.TimeoutExpired:
                    return Result(
                        False, f"timed out after {self.timeout:g} s", time.monotonic() - started, timed_out=True
                    )
                finally:
                    _end_smoke(process, token)
                output.seek(0)
                text = output.read().decode("utf-8", "replace")
        seconds = time.monotonic() - started
        if process.returncode == 0:
            return Result(True, seconds=seconds)
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


def _end_smoke(process: subprocess.Popen[bytes], token: str) -> None:
    """End a smoke command's :mod:`.reaper` and everything the command started: the reaper kills its descendants
    when told to stop; its process group, then any process still carrying the run's marker, are killed after it."""
    with suppress(ProcessLookupError):
        process.terminate()
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=reaper.GRACE + 1.0)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    reaper.end_marked(token)
