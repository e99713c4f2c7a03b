"""What the benchmarks measure, shared by ``run.py`` and ``strip_benchmark.py``: sizes, files, ELF files, GNU strip,
top-level modules and their imports (each in its own process), memory of a process tree, and the machine.

Linux only, like the tools compared (``du -sb``, ``cp -a``, GNU strip, ``/proc``).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ELF_MAGIC = b"\x7fELF"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# Distributions that are venv plumbing, not what the venv is for.
NOT_USER_MODULES = frozenset({"pip", "setuptools", "pkg_resources", "_distutils_hack"})


def du_bytes(root: Path) -> int:
    """``du -sb``: apparent bytes of everything below *root*, directories included, hard links once."""
    completed = subprocess.run(["du", "-sb", str(root)], capture_output=True, text=True, check=True)
    return int(completed.stdout.split()[0])


def count_files(root: Path) -> int:
    """Every entry below *root* that is not a directory (regular files and symlinks); symlinks are not followed."""
    count = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    count += 1
    return count


def elf_files(root: Path) -> list[Path]:
    """Regular files below *root* that start with the ELF magic, whatever their name, sorted."""
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file():
                continue
            with open(path, "rb") as handle:
                if handle.read(4) == ELF_MAGIC:
                    found.append(path)
    return sorted(found)


def batches(items: Sequence[str], limit: int = 100_000) -> list[list[str]]:
    """Split *items* into command lines of at most *limit* characters, like ``find -exec ... {} +``."""
    result: list[list[str]] = [[]]
    length = 0
    for item in items:
        if result[-1] and length + len(item) + 1 > limit:
            result.append([])
            length = 0
        result[-1].append(item)
        length += len(item) + 1
    return result


def gnu_strip(strip: str, files: Sequence[Path]) -> dict[str, Any]:
    """GNU strip in its default mode over *files*, batched like the seed's ``find ... -exec strip {} +``."""
    start = time.perf_counter()
    failures = 0
    for batch in batches([str(f) for f in files]):
        result = subprocess.run([strip, *batch], capture_output=True, check=False)
        failures += result.returncode != 0
    return {"seconds": time.perf_counter() - start, "failed_batches": failures}


def tool_version(tool: str) -> str:
    return subprocess.run([tool, "--version"], capture_output=True, text=True, check=False).stdout.split("\n")[0]


def top_level_modules(venv: Path) -> list[str]:
    """Top-level import names: from top_level.txt where a distribution ships one, else from RECORD.

    Read from the untouched venv: after a prune that deleted ``*.dist-info`` there is nothing left to read.
    """
    names: set[str] = set()
    for site_packages in venv.glob("lib/python*/site-packages"):
        for dist_info in site_packages.glob("*.dist-info"):
            top_level = dist_info / "top_level.txt"
            if top_level.is_file():
                names.update(line.strip() for line in top_level.read_text().splitlines() if line.strip())
                continue
            record = dist_info / "RECORD"
            if record.is_file():
                names.update(_record_top_level(record))
    # Private helpers and venv plumbing are not what users import.
    return sorted(n for n in names if n.isidentifier() and not n.startswith("_") and n not in NOT_USER_MODULES)


def _record_top_level(record: Path) -> set[str]:
    names = set()
    for line in record.read_text().splitlines():
        path = line.split(",")[0]
        first = path.split("/")[0]
        if not first or first.endswith((".dist-info", ".data")) or first.startswith(".."):
            continue
        if "/" in path and path.endswith("__init__.py") and path.count("/") == 1:
            names.add(first)
        elif "/" not in path and path.endswith(".py"):
            names.add(first[:-3])
        elif "/" not in path and path.endswith(".so"):
            names.add(first.split(".")[0])  # an extension module at the top: name.cpython-311-....so
    return names


def import_each(venv: Path, modules: Sequence[str], jobs: int, timeout: float = 600) -> dict[str, bool]:
    """Import each module in a process of its own with *venv*'s interpreter: module -> imported.

    ``-I -B``: nothing from the caller's environment, and no bytecode written, so an untouched (cached) venv stays
    untouched and a pruned one is imported the way it will run (compiling in memory where bytecode was removed).
    """
    python = venv / "bin" / "python"
    scratch = tempfile.mkdtemp(prefix="venv-imports-")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": scratch, "TMPDIR": scratch}

    def one(module: str) -> tuple[str, bool]:
        try:
            result = subprocess.run(
                [str(python), "-I", "-B", "-c", f"import {module}"],
                cwd=scratch,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return module, False
        return module, result.returncode == 0

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return dict(pool.map(one, modules))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def broken(baseline: dict[str, bool], after: dict[str, bool]) -> list[str]:
    """Modules that imported before and do not after."""
    return sorted(m for m, ok in baseline.items() if ok and not after.get(m, False))


class TreeMemorySampler:
    """Polls ``/proc`` every *interval* seconds for the summed resident memory of *pid*'s descendants (not *pid*).

    The sum counts pages that forked workers share with their parent once per process, so it is an upper bound of
    what the workers hold at once; each process's own exact peak comes from ``getrusage`` instead.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_bytes = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            descendants = _descendants(self.pid)
            total = sum(_rss_bytes(p) for p in descendants)
            self.peak_bytes = max(self.peak_bytes, total)
            self.peak_processes = max(self.peak_processes, len(descendants))
            self._stop.wait(self.interval)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return found


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


@dataclass(frozen=True)
class Finished:
    """A child process that ended: exit code, wall time, output, and its descendants' memory when sampled."""

    exit_code: int
    seconds: float
    output: str
    descendants_peak_bytes: int | None = None  # summed RSS of the descendants at the sample where it was highest
    descendants_peak_count: int | None = None


def run_measured(
    command: Sequence[str], cwd: Path, env: dict[str, str] | None = None, *, sample_descendants: bool = False
) -> Finished:
    """Run *command* with its output in a temporary file (a pipe could fill and stall it) and time it."""
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
        sampler = TreeMemorySampler(process.pid) if sample_descendants else None
        if sampler is None:
            process.wait()
        else:
            with sampler:
                process.wait()
        seconds = time.perf_counter() - started
        output.seek(0)
        text = output.read().decode("utf-8", "replace")
    return Finished(
        process.returncode,
        seconds,
        text,
        sampler.peak_bytes if sampler else None,
        sampler.peak_processes if sampler else None,
    )


def venvprune_environment(repo: Path, private_tmp: Path | None) -> dict[str, str]:
    """The environment for a venvprune run of this checkout, its temporary folders in *private_tmp*.

    A private TMPDIR keeps other programs on a shared machine away from venvprune's scratch folders (and this run's
    away from theirs): another venvprune's sweep of stale ``/tmp/venvprune-*`` folders must not decide the result.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONPATH"] = str(repo)  # this checkout's venvprune, whatever the interpreter has installed
    if private_tmp is not None:
        private_tmp.mkdir(exist_ok=True)
        env["TMPDIR"] = str(private_tmp)
    return env


def machine() -> dict[str, Any]:
    """Cores, the CPUs this process may use, the cgroup CPU quota, CPU model, kernel, load, memory."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cgroup_cpu_quota": cgroup_cpu_quota(),
        "cpu_model": model,
        "kernel": platform.release(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def cgroup_cpu_quota() -> float | None:
    """CPUs the cgroup allows (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), None without a quota."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
