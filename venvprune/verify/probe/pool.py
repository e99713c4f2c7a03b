"""The pool: a few long-lived workers of the target's interpreter, each handed bundles of related tasks.

venvprune imports this module in its own interpreter and calls :func:`run_tasks`; the final-stage checker calls it
in the target's. It hands each worker a bundle of related tasks (a module, then the entry points and libraries that
live in it, so the module is imported once), keeping a bundle with the worker that already has what it needs
(torch is imported once, not by every worker). It kills a worker whose task runs past the timeout, and retries in a
fresh process a task that failed after other tasks ran in the same one: a segfault, a hang or an import-order clash
in one import fails that task, never the run.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import os
import re
import selectors
import signal
import subprocess
import tempfile
import time
from typing import IO, Any, Deque, Dict, List, Optional, Set, Tuple

from .tasks import Result, Task, _unique

# Variables that point Python at a CA bundle somewhere else, and so hide a deleted certifi/cacert.pem.
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE")
# Where packages cache data between runs; pointed at an empty scratch folder so no cache masks a deletion.
CACHE_VARIABLES = ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "TMPDIR")

_FILLER_NICENESS = 5  # workers other than the one on the critical path
_EXPENSIVE = 0.25  # seconds: a package cheaper to load than this may be loaded by several workers
SHARED, FRESH, ALONE = 0, 1, 2  # how a worker process was started: long-lived, for one retry group, for one task


class _Worker:
    def __init__(self, process: "subprocess.Popen[bytes]", commands: int, results: int, stderr: IO[bytes]) -> None:
        self.process = process
        self.commands = commands  # write end of its task pipe
        self.results = results  # read end of its result pipe
        self.stderr = stderr
        self.buffer = b""
        self.level = SHARED
        self.queue: Deque[Task] = collections.deque()
        self.current: Optional[Task] = None
        self.started = 0.0
        self.ran = 0  # tasks finished in this process
        self.failed: List[Task] = []  # failed after other tasks ran here: to retry in a fresh process
        self.bundle: Optional[str] = None  # the bundle it is working through
        self.loaded: Set[str] = set()  # top-level modules imported in this process
        self.closed = False


def hygienic_environment(base: Dict[str, str], scratch: str) -> Dict[str, str]:
    """The environment checks run in: no CA-bundle override, no bytecode writing, caches in an empty scratch."""
    env = {k: v for k, v in base.items() if k not in CA_BUNDLE_VARIABLES and not k.startswith("PYTHON")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # for any Python a module starts; the workers run with -B already
    for name in CACHE_VARIABLES:
        env[name] = os.path.join(scratch, name.lower())
        os.makedirs(env[name], exist_ok=True)
    return env


def run_tasks(
    python: str,
    probe: str,
    tasks: List[Task],
    jobs: int,
    timeout: float,
    site_dirs: List[str],
    scratch: str,
    weights: Optional[Dict[str, float]] = None,
    uses: Optional[Dict[str, List[str]]] = None,
    costs: Optional[Dict[str, float]] = None,
    pycache: Optional[str] = None,
    environment: Optional[Dict[str, str]] = None,
) -> Dict[str, Result]:
    """Run *tasks* in worker processes of *python* (running the *probe* file); one result per task id.

    Tasks with the same ``bundle`` go to one worker in their order. A free worker takes, first, a bundle whose
    module it has already imported (free), else the heaviest (*weights*: seconds per bundle from an earlier run,
    else the given order) that needs no expensive package (*costs*: seconds to load each) that another worker
    has loaded or is loading for its current bundle (*uses*: the top-level names each bundle asked for last
    time). So torch is imported once, by the worker that needs it for sentence_transformers, and functorch waits
    for that worker rather than importing torch a second time. Uses and costs are learnt again as results come.

    A task that fails after others ran in its process is retried: first with the other failures of its bundle in
    a fresh process (``setuptools`` and its forty entry points fail together when ``distutils`` was imported
    first), then, if it fails there after others, alone. Each result says which ``attempt`` gave it. Tasks
    marked ``fresh`` (they needed a fresh process last time) start in one of their bundle's own.

    A task that runs past *timeout* has its worker's process group killed and says ``timed_out``; it is never
    retried, and its module is not imported again in this run: the tasks that need it (its entry points, a bundle
    that imported it last time, a distribution that requires its distribution -- ``requires`` of the metadata
    tasks, what a first run knows) get ``not_run`` results instead of a timeout each.

    *pycache*: a scratch folder for the bytecode the workers compile (``-X pycache_prefix``), for a venv whose
    caches were removed: each module is compiled once per run, never written into the venv. Without it the
    workers run with ``-B`` and read the venv's caches as they are.
    """
    base = dict(os.environ) if environment is None else environment
    env = hygienic_environment(base, scratch)
    pool = _Pool(python, probe, max(1, jobs or usable_cpus()), timeout, site_dirs, scratch, env, pycache)
    pool.user_place = user_place(base)
    return pool.run(tasks, weights or {}, uses or {}, costs or {})


def user_place(environment: Dict[str, str]) -> Dict[str, Any]:
    """Where the user's own ``python -c 'import NAME'`` finds NAME: this folder, then their ``PYTHONPATH``.

    The modules a user names (``--check-module``) are looked for there, as their own command would; the automatic
    checks stay isolated (``-I``, a scratch folder): what the venv holds, nothing else.
    """
    cwd = os.getcwd()
    extra = [os.path.join(cwd, p) for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"user_cwd": cwd, "user_path": [cwd, *extra]}


class _Pool:
    def __init__(
        self,
        python: str,
        probe: str,
        jobs: int,
        timeout: float,
        site_dirs: List[str],
        scratch: str,
        env: Dict[str, str],
        pycache: Optional[str],
    ) -> None:
        bytecode = ["-X", "pycache_prefix=" + pycache] if pycache else ["-B"]
        self.command = [python, "-I", *bytecode, probe, "worker"]
        self.jobs = jobs
        self.timeout = timeout
        self.site_dirs = site_dirs
        self.scratch = scratch
        self.work_dir = os.path.join(scratch, "cwd")
        os.makedirs(self.work_dir, exist_ok=True)
        self.env = env
        self.pending: List[Tuple[str, List[Task]]] = []  # (bundle, tasks), heaviest first
        self.retries: Deque[Tuple[int, List[Task]]] = collections.deque()  # (level, tasks) for fresh processes
        self.uses: Dict[str, Set[str]] = {}
        self.costs: Dict[str, float] = {}
        self.results: Dict[str, Result] = {}
        self.hung: Dict[str, str] = {}  # module whose import timed out -> the check that timed out
        self.hung_distributions: Dict[str, str] = {}  # distribution of such a module -> the check that timed out
        self.requires: Dict[str, Set[str]] = {}  # distribution -> every distribution it requires, directly or not
        self.workers: List[_Worker] = []
        self.started_critical = False
        self.selector = selectors.DefaultSelector()
        self.user_place: Dict[str, Any] = {}

    def run(
        self, tasks: List[Task], weights: Dict[str, float], uses: Dict[str, List[str]], costs: Dict[str, float]
    ) -> Dict[str, Result]:
        bundles: Dict[str, List[Task]] = collections.OrderedDict()
        fresh: Dict[str, List[Task]] = collections.OrderedDict()
        for task in tasks:
            bundle = str(task.get("bundle") or task["id"])
            if task.get("explicit") and self.user_place:
                # A module the user named: found from their folder and PYTHONPATH, in a process of its own so that
                # nothing of theirs is importable by the automatic checks.
                fresh.setdefault("explicit " + bundle, []).append(dict(task, **self.user_place))
                continue
            (fresh if task.get("fresh") else bundles).setdefault(bundle, []).append(task)
        self.retries.extend((FRESH, group) for group in fresh.values())
        order = sorted(bundles, key=lambda b: -weights.get(b, 0.0)) if weights else list(bundles)
        self.pending = [(b, bundles[b]) for b in order]
        self.uses = {b: set(names) for b, names in uses.items()}
        self.costs = dict(costs)
        self.requires = _required_closure(tasks)
        try:
            while self.pending or self.retries or self.workers:
                self._dispatch()
                if not self.workers:
                    break  # nothing could be started (cannot happen: a free slot always takes a bundle)
                self._wait()
        finally:
            for worker in list(self.workers):
                self._stop(worker)
            self.selector.close()
        return self.results

    # -- scheduling --

    def _dispatch(self) -> None:
        """Give idle workers work, start workers for what nobody can take, stop those with nothing left."""
        for worker in [w for w in self.workers if w.current is None and not w.closed]:
            self._send_next(worker)
        while len(self.workers) < self.jobs and self.retries:
            level, group = self.retries.popleft()
            self._start(group, level)
        while len(self.workers) < self.jobs:
            index = self._pick(None)
            if index is None:
                break
            bundle, tasks = self.pending.pop(index)
            self._start(tasks, SHARED, bundle)
        idle = [w for w in self.workers if w.current is None and not w.closed]
        if self.pending and idle and len(idle) == len(self.workers):
            # Every worker waits for another to take what it has loaded: the one that has most of it does.
            def overlap(worker: _Worker) -> int:
                bundle = self.pending[0][0]
                return len((self.uses.get(bundle, set()) | {bundle}) & worker.loaded)

            worker = max(idle, key=overlap)
            worker.bundle, tasks = self.pending.pop(0)
            worker.queue.extend(tasks)
            self._send_next(worker)

    def _pick(self, worker: Optional[_Worker]) -> Optional[int]:
        """The pending bundle for *worker* (None: a new one): one it has imported, else one that would not
        import again something expensive another worker has (or is loading) -- preferring one whose expensive
        needs it has itself."""
        loaded = worker.loaded if worker is not None else set()
        for index, (bundle, _) in enumerate(self.pending):
            if bundle in loaded:
                return index
        claimed: Set[str] = set()
        for other in self.workers:
            if other is not worker and not other.closed and other.level == SHARED:
                claimed |= other.loaded
                if other.bundle is not None:
                    claimed |= self.uses.get(other.bundle, set()) | {other.bundle}
        first = None
        for index, (bundle, _) in enumerate(self.pending):
            heavy = {n for n in self.uses.get(bundle, set()) | {bundle} if self.costs.get(n, 0.0) >= _EXPENSIVE}
            if (heavy & claimed) - loaded:
                continue
            if heavy and heavy <= loaded:
                return index
            if first is None:
                first = index
        return first

    # -- processes --

    def _start(self, queue: List[Task], level: int, bundle: Optional[str] = None) -> None:
        queue = [task for task in queue if not self._skipped(task)]
        if not queue:
            return
        # The first long-lived worker takes the heaviest bundle: the critical path (sentence_transformers needs
        # torch, transformers and scikit-learn in one process). The others have time to spare; on a machine that
        # is busy with something else, they yield to it rather than slow it down.
        niceness = 0 if level == SHARED and not self.started_critical else _FILLER_NICENESS
        self.started_critical = self.started_critical or level == SHARED
        command_read, command_write = os.pipe()
        result_read, result_write = os.pipe()
        stderr = tempfile.TemporaryFile(dir=self.scratch)  # noqa: SIM115 -- closed in _stop
        try:
            process = subprocess.Popen(
                [*self.command, str(command_read), str(result_write), str(niceness), *self.site_dirs],
                pass_fds=(command_read, result_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=self.work_dir,
                env=self.env,
                start_new_session=True,  # its own process group: a timeout kills what the import started too
            )
        except OSError:
            stderr.close()
            for fd in (command_write, result_read):
                os.close(fd)
            raise
        finally:
            os.close(command_read)
            os.close(result_write)
        os.set_blocking(result_read, False)
        worker = _Worker(process, command_write, result_read, stderr)
        worker.level = level
        worker.queue.extend(queue)
        worker.bundle = bundle
        self.workers.append(worker)
        self.selector.register(result_read, selectors.EVENT_READ, worker)
        self._send_next(worker)

    def _send_next(self, worker: _Worker) -> None:
        self._skip_blocked(worker.queue)
        while not worker.queue:
            self._flush_failed(worker)  # its bundle is done
            worker.bundle = None
            index = self._pick(worker) if worker.level == SHARED else None
            if index is None:
                break
            worker.bundle, tasks = self.pending.pop(index)
            worker.queue.extend(tasks)
            self._skip_blocked(worker.queue)
        if not worker.queue:
            if worker.level != SHARED or not self.pending:
                self._stop(worker)
            return  # idle: what is left is being imported elsewhere; _dispatch tries again after each result
        worker.current = worker.queue.popleft()
        worker.started = time.monotonic()
        line = (json.dumps(worker.current) + "\n").encode("utf-8")
        try:
            while line:
                line = line[os.write(worker.commands, line) :]
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            # It died before reading the task: reported as a crash when its result pipe closes.

    def _wait(self) -> None:
        now = time.monotonic()
        deadlines = [w.started + self.timeout for w in self.workers if w.current is not None]
        wait = min(max(0.0, min(deadlines) - now) if deadlines else 0.5, 0.5)
        for key, _ in self.selector.select(wait):
            worker = key.data
            if not worker.closed:
                self._read(worker)
        now = time.monotonic()
        for worker in list(self.workers):
            if worker.closed:
                continue
            if worker.current is not None and now - worker.started > self.timeout:
                _kill_group(worker.process)
                why = "timed out after %g s (a hang?); the process was killed" % self.timeout
                self._died(worker, why, timed_out=True)
            elif worker.process.poll() is not None:
                # Exited, but a child it forked may hold the pipe open: read what is there, then bury it.
                self._read(worker)
                if not worker.closed:
                    self._died(worker, _exit_description(worker.process.returncode))

    def _skip_blocked(self, queue: Deque[Task]) -> None:
        kept = [task for task in queue if not self._skipped(task)]
        queue.clear()
        queue.extend(kept)

    def _skipped(self, task: Task) -> bool:
        """Whether *task* needs a module that timed out in this run; if so it gets its result: not run."""
        why = self._blocked_by(task)
        if why is not None:
            self.results[task["id"]] = {
                "id": task["id"],
                "ok": False,
                "not_run": why,
                "error": "not run: %s" % why,
                "seconds": 0.0,
            }
        return why is not None

    def _blocked_by(self, task: Task) -> Optional[str]:
        """The check whose module timed out and that *task* needs: its own module, one its bundle imported, or
        one of a distribution its own requires (``Requires-Dist``: known before anything ran)."""
        if not self.hung or task["kind"] not in ("import", "entry_point"):
            return None
        module = _module_of(task)
        uses = self.uses.get(task_bundle(task), set())
        for name, check_id in self.hung.items():
            if module == name or module.startswith(name + ".") or ("." not in name and name in uses):
                return "%s timed out" % check_id
        own = set(task.get("distributions") or ())
        for dist in own:
            for required in sorted(self.requires.get(dist, set()) - own):
                if required in self.hung_distributions:
                    return "%s timed out" % self.hung_distributions[required]
        return None

    def _flush_failed(self, worker: _Worker) -> None:
        if worker.failed:
            self.retries.append((FRESH, worker.failed))
            worker.failed = []

    def _stop(self, worker: _Worker) -> None:
        if worker.closed:
            return
        worker.closed = True
        self._flush_failed(worker)
        self.selector.unregister(worker.results)
        self.workers.remove(worker)
        for fd in (worker.commands, worker.results):
            os.close(fd)
        _kill_group(worker.process)
        worker.stderr.close()

    def _finish(self, worker: _Worker, result: Result) -> None:
        task = worker.current
        assert task is not None
        worker.current = None
        worker.ran += 1
        worker.loaded.update(result.pop("loaded", ()))
        if worker.bundle is not None and result.get("uses"):
            self.uses.setdefault(worker.bundle, set()).update(result["uses"])
        for name, seconds in result.get("costs", {}).items():
            self.costs[name] = max(seconds, self.costs.get(name, 0.0))
        if not result["ok"] and worker.ran > 1 and worker.level != ALONE and not result.get("timed_out"):
            # It failed after other tasks ran in this process: the verdict is the one it gets without them.
            # Not a timeout: importing a module that hangs again costs the whole timeout again, and again.
            if worker.level == SHARED:
                worker.failed.append(task)
            else:
                self.retries.append((ALONE, [task]))
            return
        result["attempt"] = ("shared", "fresh", "alone")[worker.level]
        self.results[task["id"]] = result

    def _died(self, worker: _Worker, why: str, timed_out: bool = False) -> None:
        task = worker.current
        if task is not None:
            result: Result = {"id": task["id"], "ok": False}
            result["seconds"] = round(time.monotonic() - worker.started, 4)
            result.update(_crash_details(worker, why))
            if timed_out:
                result["timed_out"] = True
                module = _module_of(task)
                if module:  # never imported again in this run: what needs it is not run (see _blocked_by)
                    self.hung.setdefault(module, task["id"])
                    for dist in task.get("distributions") or ():
                        self.hung_distributions.setdefault(dist, task["id"])
            self._finish(worker, result)
        if worker.queue:
            # The rest of its work goes to another process of the same kind.
            if worker.level == SHARED:
                self.pending.insert(0, (worker.bundle or task_bundle(worker.queue[0]), list(worker.queue)))
            else:
                self.retries.appendleft((worker.level, list(worker.queue)))
            worker.queue.clear()
        self._stop(worker)

    def _read(self, worker: _Worker) -> None:
        while True:
            try:
                chunk = os.read(worker.results, 65536)
            except BlockingIOError:
                return
            if not chunk:
                try:
                    returncode = worker.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    returncode = -signal.SIGKILL  # it closed the pipe and lives on; _stop kills it
                self._died(worker, _exit_description(returncode))
                return
            worker.buffer += chunk
            while b"\n" in worker.buffer:
                line, worker.buffer = worker.buffer.split(b"\n", 1)
                try:
                    result = json.loads(line.decode("utf-8"))
                except ValueError:
                    self._died(worker, "it sent a garbled result (did the module write to the result pipe?)")
                    return
                self._finish(worker, result)
                self._send_next(worker)
                if worker.closed or worker.current is None:
                    return


def _required_closure(tasks: List[Task]) -> Dict[str, Set[str]]:
    """Distribution -> every distribution it requires, directly or not, from the metadata tasks' ``requires``."""
    direct: Dict[str, Set[str]] = {}
    for task in tasks:
        if task["kind"] == "metadata" and task.get("distributions"):
            direct.setdefault(task["distributions"][0], set()).update(task.get("requires") or ())
    closure: Dict[str, Set[str]] = {}
    for dist in direct:
        found: Set[str] = set()
        pending = [dist]
        while pending:
            for required in direct.get(pending.pop(), ()):
                if required not in found:
                    found.add(required)
                    pending.append(required)
        closure[dist] = found
    return closure


def task_bundle(task: Task) -> str:
    return str(task.get("bundle") or task["id"])


def _module_of(task: Task) -> str:
    """The module an import or entry-point task imports ("" for other kinds)."""
    if task["kind"] == "import":
        return str(task["name"])
    if task["kind"] == "entry_point":
        return re.sub(r"\[.*\]\s*$", "", str(task["value"])).partition(":")[0].strip()
    return ""


def _exit_description(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "signal %d" % -returncode
        return "the interpreter died of %s while running it" % name
    return "the interpreter exited with status %d while running it" % returncode


def _crash_details(worker: _Worker, why: str) -> Dict[str, Any]:
    """The crash, and the files in the fatal-error traceback faulthandler wrote (the module that crashed)."""
    try:
        worker.stderr.seek(0, os.SEEK_END)
        size = worker.stderr.tell()
        worker.stderr.seek(max(0, size - 16384))
        tail = worker.stderr.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        tail = ""
    fatal = tail.rfind("Fatal Python error")
    files: List[str] = []
    first = ""
    if fatal >= 0:
        block = tail[fatal:]
        first = block.splitlines()[0]
        files = _unique(re.findall(r'File "(/[^"]+)"', block))
    error = why + (" (%s)" % first if first else "")
    return {"error": error, "files": files, "libraries": [], "modules": []}


def _kill_group(process: "subprocess.Popen[bytes]") -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota (``docker run --cpus``,
    a CI runner's limit), which ``os.cpu_count()`` does not see: a worker per host CPU in a one-CPU container only
    queues."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_cpus()
    return max(1, min(count, quota) if quota is not None else count)


def _cgroup_cpus() -> Optional[int]:
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as handle:  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
            quota, _, period = handle.read().partition(" ")
    except (OSError, ValueError):
        try:  # cgroup v1
            with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", encoding="ascii") as handle:
                quota = handle.read()
            with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us", encoding="ascii") as handle:
                period = handle.read()
        except (OSError, ValueError):
            return None
    return quota_cpus(quota, period)


def quota_cpus(quota: str, period: str) -> Optional[int]:
    """CPUs a cgroup quota allows, rounded up (1.5 CPUs: 2); None for no quota ("max" in v2, -1 in v1)."""
    try:
        allowed, length = int(quota), int(period)
    except ValueError:
        return None
    if allowed <= 0 or length <= 0:
        return None
    return -(-allowed // length)
