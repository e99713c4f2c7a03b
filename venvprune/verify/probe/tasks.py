"""One check, run in this process: import a module, load an entry point, dlopen a library, ask the metadata.

:func:`run_task` never raises, whatever the check does (short of killing the process); the error is described for
the report and for healing (:func:`describe_exception`: the files, libraries and modules it names).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import sys
import time
import traceback
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from .discovery import canonical_name
from .judge import MISSING_LIBRARY

Task = Dict[str, Any]
Result = Dict[str, Any]

# Names of things in an error: absolute paths, shared-object names, and modules a ModuleNotFoundError names.
_PATH_IN_TEXT = re.compile(r"(/[^\s'\":,()\[\]]+)")
_SONAME_IN_TEXT = re.compile(r"\b([\w.+-]+\.so(?:\.[\w.]+)?)\b")
_MODULE_IN_TEXT = re.compile(r"No module named '([\w.]+)'")
# packages_distributions() of this process, read once: import name -> distributions.
_PACKAGES: Dict[str, List[str]] = {}


def run_task(task: Task) -> Result:
    """Run one check in this process; never raises, whatever the check does (short of killing the process)."""
    started = time.perf_counter()
    result: Result = {"id": task["id"], "ok": True}
    try:
        value = _TASK_KINDS[task["kind"]](task)
        if value is not None:
            result["value"] = value
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from an import are that import's failure
        result.update(describe_exception(exc))
        result["ok"] = False
        missing = _missing_optional(task, exc)
        if missing:
            # Not a pass, and not a failure on its own: the judge fails it when it passed before (a regression).
            result["optional_missing"] = missing
            result["error"] = _one_line("needs %s, not installed: %s" % (missing, result["error"]))
    result["seconds"] = round(time.perf_counter() - started, 4)
    return result


def _import(task: Task) -> None:
    import importlib

    importlib.import_module(task["name"])
    return None


def _entry_point(task: Task) -> None:
    """Load an entry point the way its consumers do (``module:attr.attr [extras]``); never call it.

    An entry point may need an optional dependency that is not installed (``pytest11`` plugins in a venv without
    pytest, a console script of an extra): :func:`_missing_optional` says so for every check kind alike.
    """
    import importlib

    module_name, colon, attrs = _entry_point_parts(task["value"])[:3]
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if colon or "." not in module_name or exc.name != module_name:
            raise
        # "package.Class" without a colon: consumers such as fsspec split at the last dot.
        module_name, _, attrs = module_name.rpartition(".")
        target = importlib.import_module(module_name)
    for attr in filter(None, attrs.split(".")):
        target = _attribute(target, attr)
    return None


def _entry_point_parts(value: str) -> Tuple[str, str, str, List[str]]:
    """``module``, ``:``, ``attr.attr`` and the extras of ``module:attr.attr [extra, extra]``."""
    extras = re.search(r"\[(.*)\]\s*$", value)
    names = [e.strip() for e in extras.group(1).split(",") if e.strip()] if extras else []
    value = value[: extras.start()] if extras else value
    module_name, colon, attrs = (part.strip() for part in value.strip().partition(":"))
    return module_name, colon, attrs, names


def _missing_optional(task: Task, exc: BaseException) -> Optional[str]:
    """What an import or entry point check failed for, when that is an optional dependency that is not installed.

    That is: the error is an ImportError, raised for (or, re-raised with advice, after: blackd) a module that no
    installed distribution provides and that is not the check's own; or the entry point names an extra
    (``blackd = blackd:patched_main [d]``) whose requirements are not installed. A module that a distribution
    still claims, or the check's own, is missing because something broke, never optional.
    """
    if task.get("kind") == "dlopen":
        return _missing_system_library(task, exc)
    if task.get("kind") not in ("import", "entry_point") or not isinstance(exc, ImportError):
        return None
    own = (task.get("name") or _entry_point_parts(task.get("value", ""))[0]).split(".")[0]
    current: Optional[BaseException] = exc
    seen: Set[int] = set()
    while isinstance(current, ImportError) and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ModuleNotFoundError) and current.name:
            top = current.name.split(".")[0]
            if top != own and not _provided(top):
                return top
            break
        current = current.__cause__ or current.__context__
    if task.get("kind") == "entry_point":
        missing = _extra_requirements_missing(task)
        if missing:
            return "%s (its [%s] extra)" % (", ".join(missing), ", ".join(_entry_point_parts(task["value"])[3]))
    return None


def _missing_system_library(task: Task, exc: BaseException) -> Optional[str]:
    """The library a dlopen check failed for, when the venv does not ship it: a system library that is not installed.

    Packages load such extensions only when the library is there (numba's ``tbbpool`` and ``libtbb.so.12``, cupy's
    CUDA modules): on its own that is not a failure. An extension the package loads at import fails its import
    check, and one that loaded when the venv was pruned fails here (the judge). A library the venv ships (in the
    extension's closure) that cannot be opened is broken, never optional.
    """
    found = MISSING_LIBRARY.search(str(exc)) if isinstance(exc, OSError) else None
    if found is None:
        return None
    shipped = {os.path.basename(path) for path in task.get("needs", ())}
    return None if found.group(1) in shipped else found.group(1)


def _provided(top: str) -> bool:
    """Whether a top-level module of this name can be found, or an installed distribution claims it."""
    if _importable(top):
        return True
    if not _PACKAGES:
        _PACKAGES.update(packages_distributions())
    return top in _PACKAGES


def _importable(top: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):  # a module in sys.modules without a spec: it is there
        return True


def _extra_requirements_missing(task: Task) -> List[str]:
    """The requirements of the entry point's extras that are not installed (``Requires-Dist: x; extra == "d"``)."""
    import importlib.metadata

    extras = {canonical_name(e) for e in _entry_point_parts(task.get("value", ""))[3]}
    if not extras or not task.get("distributions"):
        return []
    try:
        requires = importlib.metadata.distribution(task["distributions"][0]).requires or []
    except importlib.metadata.PackageNotFoundError:
        return []
    missing = []
    for requirement in requires:
        name, _, marker = requirement.partition(";")
        wanted = {canonical_name(e) for e in re.findall(r"extra\s*==\s*[\"']([^\"']+)[\"']", marker)}
        project = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", name)
        if not project or extras.isdisjoint(wanted):
            continue
        try:
            importlib.metadata.distribution(project.group(1))
        except importlib.metadata.PackageNotFoundError:
            missing.append(project.group(1))
    return sorted(set(missing))


def _attribute(target: Any, attr: str) -> Any:
    """``getattr``, or the submodule the name is (``pandas:plotting._matplotlib``): consumers that load such an
    entry point import that module (pandas' plotting-backend loader does), so it is not a missing attribute."""
    import importlib

    try:
        return getattr(target, attr)
    except AttributeError:
        package = getattr(target, "__name__", None) if hasattr(target, "__path__") else None
        if not isinstance(package, str):
            raise
        try:
            return importlib.import_module("%s.%s" % (package, attr))
        except ModuleNotFoundError as exc:
            if exc.name != "%s.%s" % (package, attr):
                raise
        raise


# A clean, single-threaded process (no site, nothing from site-packages loaded) that forks once per library:
# each dlopen starts from the same empty state, at the cost of a fork rather than an interpreter start.
_DLOPEN_SERVER = r"""
import ctypes, json, os, sys
for line in sys.stdin:
    path = json.loads(line)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            ctypes.CDLL(path, mode=os.RTLD_LAZY | os.RTLD_LOCAL)
        except OSError as exc:
            os.write(write, str(exc).encode("utf-8", "replace")[:4000])
            os._exit(1)
        os._exit(0)
    os.close(write)
    chunks = []
    while True:
        chunk = os.read(read, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        error = "killed by signal %d while loading" % os.WTERMSIG(status)
    else:
        error = b"".join(chunks).decode("utf-8", "replace") if os.WEXITSTATUS(status) else ""
    sys.stdout.write(json.dumps(error) + "\n")
    sys.stdout.flush()
"""
_dlopen_server: Any = None


def _dlopen(task: Task) -> None:
    """Load a shared library with lazy binding and local symbols, as an import would, in a clean process.

    Not in this worker: a library already loaded here satisfies a dependency by its soname, so a ``libgfortran``
    whose ``libquadmath`` was never shipped would load after another library brought one in, and then fail in
    the final image's checker, which loads in another order. A hang is this worker's timeout: the server and
    its child are in the worker's process group, which the timeout kills.
    """
    import subprocess

    global _dlopen_server
    if _dlopen_server is None or _dlopen_server.poll() is not None:
        _dlopen_server = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "-c", _DLOPEN_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            universal_newlines=True,
        )
    _dlopen_server.stdin.write(json.dumps(task["path"]) + "\n")
    _dlopen_server.stdin.flush()
    answer = _dlopen_server.stdout.readline()
    if not answer:
        raise OSError("the loader process ended unexpectedly")
    error = json.loads(answer)
    if error:
        raise OSError(error)
    return None


def _metadata(task: Task) -> Dict[str, Any]:
    """``importlib.metadata.version()`` answers, and ``packages_distributions()`` still maps each import name that
    still imports to it.

    Only import names are compared, never what a prune may legitimately change: Python 3.12+ infers the names of
    a distribution without ``top_level.txt`` from RECORD, so ``__pycache__/x.pyc`` makes a name ``__pycache__``
    that goes with the bytecode; a name whose module the prune removed (a top-level ``tests``) no longer imports,
    and its import check judges that.
    """
    import importlib

    name = task["dist"]
    if task.get("unreadable"):  # discovery could not read it (and reading it again could hang: a FIFO)
        raise LookupError(task["unreadable"])
    expect = task.get("expect")
    value = _metadata_of(name, fresh=False)
    if expect is not None and _metadata_lost(value, expect):
        # Read again: this worker read the metadata before healing restored a RECORD (the answer is cached).
        importlib.invalidate_caches()
        value = _metadata_of(name, fresh=True)
    if expect is None:
        return value
    if value["version"] != expect.get("version"):
        raise LookupError(
            "importlib.metadata.version(%r) is %r, was %r" % (name, value["version"], expect.get("version"))
        )
    lost = _metadata_lost(value, expect)
    if lost:
        raise LookupError(
            "packages_distributions() no longer maps %s to %s, which still import%s (maps %s now)"
            % (", ".join(lost), name, "s" if len(lost) == 1 else "", value["packages"])
        )
    return value


def _metadata_of(name: str, fresh: bool) -> Dict[str, Any]:
    import importlib.metadata

    version = importlib.metadata.version(name)
    if version is None:
        raise LookupError("importlib.metadata.version(%r) returned None: METADATA is unreadable" % name)
    if fresh or not _PACKAGES:
        _PACKAGES.clear()
        _PACKAGES.update(packages_distributions())
    wanted = canonical_name(name)
    # A distribution whose metadata names nothing maps to None: its own check fails, never another's.
    names = sorted(
        k for k, dists in _PACKAGES.items() if _import_name(k) and any(d and canonical_name(d) == wanted for d in dists)
    )
    return {"version": version, "packages": names}


def _metadata_lost(value: Dict[str, Any], expect: Dict[str, Any]) -> List[str]:
    """What the answer lost that matters: the version, or import names that still import."""
    if value["version"] != expect.get("version"):
        return ["version %s" % expect.get("version")]
    lost = set(expect.get("packages", [])) - set(value["packages"])
    return sorted(n for n in lost if _import_name(n) and _importable(n))


def _import_name(name: str) -> bool:
    """A name ``import`` can take: not ``__pycache__``, which Python 3.12+ infers from bytecode in RECORD."""
    return name.isidentifier() and name != "__pycache__"


def packages_distributions() -> Dict[str, List[str]]:
    """``importlib.metadata.packages_distributions()``, or the same mapping on 3.8/3.9, which lack it."""
    import importlib.metadata

    native = getattr(importlib.metadata, "packages_distributions", None)
    if native is not None:
        return dict(native())
    mapping: Dict[str, List[str]] = collections.defaultdict(list)
    for dist in importlib.metadata.distributions():
        names = (dist.read_text("top_level.txt") or "").split()
        if not names:
            names = sorted({_top_name(str(f)) for f in (dist.files or [])} - {""})
        for name in names:
            mapping[name].append(dist.metadata["Name"])
    return dict(mapping)


def _top_name(rel: str) -> str:
    """The import name a RECORD path gives, from code only: a bytecode file or folder names none."""
    import importlib.machinery

    parts = rel.split("/")
    if not rel.endswith((".py", *importlib.machinery.EXTENSION_SUFFIXES)):
        return ""
    name = parts[0] if len(parts) > 1 else parts[0].partition(".")[0]
    return name if _import_name(name) else ""


def _compile(task: Task) -> Dict[str, float]:
    """Compile files into a throwaway folder: how long a cold start spends compiling them."""
    import py_compile

    started = time.perf_counter()
    for index, path in enumerate(task["files"]):
        cfile = os.path.join(task["cache"], "%d.pyc" % index)
        # Removed, unreadable or invalid: the import check that needs it says so.
        with contextlib.suppress(py_compile.PyCompileError, OSError, ValueError):
            py_compile.compile(path, cfile, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    return {"seconds": time.perf_counter() - started}


_TASK_KINDS: Dict[str, Callable[[Task], Any]] = {
    "import": _import,
    "entry_point": _entry_point,
    "dlopen": _dlopen,
    "metadata": _metadata,
    "compile": _compile,
}


def describe_exception(exc: BaseException) -> Dict[str, Any]:
    """One line for the report, and every file, library and module the error names (to find what to restore)."""
    files: List[str] = []
    libraries: List[str] = []
    modules: List[str] = []
    # The frames of the error itself, innermost last: the last one in site-packages is the code that needed
    # what is missing ("foo/bar.py needed it").
    frames = [f.filename for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("/")]
    seen: Set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen and len(seen) < 20:
        seen.add(id(current))
        for frame in traceback.extract_tb(current.__traceback__):
            if frame.filename.startswith("/"):
                files.append(frame.filename)
        if isinstance(current, ImportError):
            if current.name:
                modules.append(current.name)
            if current.path:
                files.append(current.path)
        if isinstance(current, OSError):
            for name in (current.filename, current.filename2):
                if isinstance(name, str) and name:
                    (files if name.startswith("/") else libraries).append(name)
        text_files, text_libraries, text_modules = names_in_text(str(current))
        files += text_files
        libraries += text_libraries
        modules += text_modules
        current = current.__cause__ or current.__context__
    message = ("%s: %s" % (type(exc).__name__, exc)).strip().rstrip(":")
    return {
        "error": _one_line(message),
        "frames": _unique(frames),
        "files": _unique(files),
        "libraries": _unique(libraries),
        "modules": _unique(modules),
    }


def names_in_text(text: str) -> Tuple[List[str], List[str], List[str]]:
    """Absolute paths, shared-object names and missing modules mentioned in an error message or command output."""
    files = [p.rstrip(".") for p in _PATH_IN_TEXT.findall(text)]
    libraries = [os.path.basename(s) for s in _SONAME_IN_TEXT.findall(text)]
    modules = _MODULE_IN_TEXT.findall(text)
    return files, libraries, modules


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _unique(items: Iterable[str]) -> List[str]:
    return list(dict.fromkeys(items))
