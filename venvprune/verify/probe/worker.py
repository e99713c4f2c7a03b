"""``python ARCHIVE worker CMD_FD RESULT_FD NICE [SITE_DIR...]``: a long-lived process that runs tasks.

It reads one task (a JSON line) at a time from CMD_FD, runs it (:func:`.tasks.run_task`) and writes the result to
RESULT_FD. Its stdout is not the channel, so a module that prints at import cannot confuse it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import site
import sys
import time
from typing import Any, Dict, Iterable, List, Set

from .tasks import run_task


def worker(argv: List[str]) -> None:
    """Serve tasks until the command pipe closes, then leave at once (no atexit, no waiting for module threads).

    With each result go, for the pool's scheduling: ``loaded``, the top-level modules this task added to
    ``sys.modules``; ``uses``, every top-level module the task needed, whatever the mechanism: what it added to
    ``sys.modules`` (a plugin loaded by ``EntryPoint.load()``, a file loaded by path), and every name an import
    statement or ``importlib.import_module`` asked for while it ran -- also the ones already loaded, so ``import
    functorch`` after ``import torch`` still says it needs torch, and a host whose plugin another check loaded
    first still says it needs the plugin (``--verify affected`` re-checks it when the plugin changes); ``costs``, the
    seconds each package it loaded took to load; ``sources``, the source files of the modules it loaded; and
    ``mapped``, the shared objects in site-packages it brought into the process (``ctypes.CDLL`` included), so that
    a bundled library loaded at run time is never taken for an unused one.
    """
    import builtins
    import faulthandler

    command_fd, result_fd, niceness = int(argv[0]), int(argv[1]), int(argv[2])
    if niceness:
        with contextlib.suppress(OSError, AttributeError):
            os.nice(niceness)
    known = {os.path.realpath(p) for p in sys.path if p}
    site_dirs = [os.path.realpath(p).rstrip(os.sep) + os.sep for p in argv[3:]]
    mapped = _mapped(site_dirs)
    # Run by an interpreter that does not know the target (--python, a final-stage python): the target goes first,
    # with what its .pth files add, as PYTHONPATH puts it for the program. addsitedir appends, and the interpreter's
    # own copy of a distribution both hold would shadow the target's.
    interpreter_path = list(sys.path)
    for site_dir in argv[3:]:
        if os.path.realpath(site_dir) not in known:
            site.addsitedir(site_dir)
    sys.path[:] = [p for p in sys.path if p not in interpreter_path] + interpreter_path
    # A crash prints the Python frames to stderr, which the pool reads to say where it happened.
    faulthandler.enable()
    _die_with_parent()
    uses: Set[str] = set()
    costs: Dict[str, float] = {}
    original_import = builtins.__import__

    def tracking_import(name: str, *args: Any, **kwargs: Any) -> Any:
        level = args[3] if len(args) > 3 else kwargs.get("level", 0)
        top = name.partition(".")[0]
        if level or not top:
            return original_import(name, *args, **kwargs)
        uses.add(top)
        if top in sys.modules:
            return original_import(name, *args, **kwargs)
        started = time.perf_counter()
        try:
            return original_import(name, *args, **kwargs)
        finally:  # what loading this package (and what it needs that was not loaded yet) cost
            costs.setdefault(top, time.perf_counter() - started)

    builtins.__import__ = tracking_import
    _track_import_module(uses)
    commands = os.fdopen(command_fd, "r", encoding="utf-8")
    for line in commands:
        task = json.loads(line)
        tracked = task["kind"] in ("import", "entry_point")
        modules_before = set(sys.modules) if tracked else set()
        before = {name.partition(".")[0] for name in modules_before}
        uses.clear()
        costs.clear()
        if task.get("user_path"):  # a module the user named, in a process of its own: found where they find it
            sys.path[:0] = [p for p in task["user_path"] if p not in sys.path]
            with contextlib.suppress(OSError):
                os.chdir(task["user_cwd"])
        result = run_task(task)
        if tracked:
            after = {name.partition(".")[0] for name in list(sys.modules)}
            result["loaded"] = sorted(after - before)
            result["sources"] = _sources(set(sys.modules) - modules_before)
            result["uses"] = sorted(uses | _top_names(set(sys.modules) - modules_before))
            own = str(task.get("name", "")).partition(".")[0]
            if own in after - before:
                costs[own] = result["seconds"]
            result["costs"] = {k: round(v, 3) for k, v in costs.items() if v >= 0.01}
            now = _mapped(site_dirs)
            result["mapped"] = sorted(now - mapped)
            mapped = now
        data = (json.dumps(result) + "\n").encode("utf-8")
        while data:
            data = data[os.write(result_fd, data) :]
    os._exit(0)


def _track_import_module(uses: Set[str]) -> None:
    """Add to *uses* the top-level name of every ``importlib.import_module`` call, loaded already or not.

    ``import_module`` never calls ``builtins.__import__``, and callers bind it by name (``importlib.metadata``
    does, for ``EntryPoint.load()``), so it is followed where every version (3.8-3.13) sends it:
    ``importlib._bootstrap._gcd_import``, looked up at each call.
    """
    import importlib

    bootstrap: Any = getattr(importlib, "_bootstrap", None)
    original = getattr(bootstrap, "_gcd_import", None)
    if original is None:
        return

    def tracking_gcd_import(name: str, package: Any = None, level: int = 0) -> Any:
        top = (package or "") if level else name  # import_module(".tests", "plug") needs plug
        if isinstance(top, str) and top:
            uses.add(top.partition(".")[0])
        return original(name, package, level)

    bootstrap._gcd_import = tracking_gcd_import


def _top_names(modules: Iterable[str]) -> Set[str]:
    """The top-level names of *modules* (names in ``sys.modules``)."""
    return {name.partition(".")[0] for name in modules if name}


def _mapped(site_dirs: List[str]) -> Set[str]:
    """Files under *site_dirs* mapped into this process (Linux: /proc/self/maps; elsewhere nothing is known)."""
    found: Set[str] = set()
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="surrogateescape") as handle:
            for line in handle:
                path = line.rstrip("\n").split(None, 5)[-1] if line.count(" ") >= 5 else ""
                if path.startswith(tuple(site_dirs)):
                    found.add(path)
    except OSError:
        pass
    return found


def _sources(names: Iterable[str]) -> List[str]:
    """The source files of these modules, in load order: what a venv without bytecode compiles at each start."""
    files = []
    for name in names:
        spec = getattr(sys.modules.get(name), "__spec__", None)
        origin = getattr(spec, "origin", None)
        if isinstance(origin, str) and origin.endswith(".py"):
            files.append(origin)
    return sorted(files)


def _die_with_parent() -> None:
    """Linux: be killed when the pool dies (a SIGKILLed venvprune), even in the middle of a hanging import."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # without it, the worker still leaves when its task pipe closes
