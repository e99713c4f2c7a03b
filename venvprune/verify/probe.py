# venvprune's import checker. Standard library only, Python 3.8+: it runs inside the checked interpreter.
"""The checks themselves, in the interpreter being checked -- and, copied to ``<venv>/.venvprune/check.py``, the
final-stage checker.

This one file has three uses:

* ``python -I -B probe.py discover OUT SITE_DIR...`` lists, without importing anything, what there is to check in
  SITE_DIR: each distribution's importable top-level modules, its entry points, its version and the ELF shared
  libraries. venvprune turns that into tasks.
* ``python -I -B probe.py worker CMD_FD RESULT_FD NICE [SITE_DIR...]`` is a long-lived worker: it reads one task (a JSON
  line) at a time from CMD_FD, runs it (import a module, load an entry point, dlopen a library, ask
  ``importlib.metadata``), and writes the result to RESULT_FD. Its stdout is not the channel, so a module that
  prints at import cannot confuse it.
* ``python check.py`` (no arguments) reads ``manifest.json`` beside it, runs every check that passed when the venv
  was pruned, and exits 1 naming each one that fails now -- in a final image that lacks a system library, say.

:func:`run_tasks` is the pool: venvprune imports this module in its own interpreter and calls it; the checker calls
it in the target's. It runs a few long-lived workers and hands each a bundle of related tasks (a module, then the
entry points and libraries that live in it, so the module is imported once), keeping a bundle with the worker that
already has what it needs (torch is imported once, not by every worker). It kills a worker whose task runs past the
timeout, and retries in a fresh process a task that failed after other tasks ran in the same one: a segfault, a
hang or an import-order clash in one import fails that task, never the run.

Rules for this file: nothing outside the standard library, no syntax newer than 3.8, no annotation that is
evaluated at run time (the ``__future__`` import keeps them strings).
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
import site
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from typing import IO, Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Set, Tuple

Task = Dict[str, Any]
Result = Dict[str, Any]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1

# Variables that point Python at a CA bundle somewhere else, and so hide a deleted certifi/cacert.pem.
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE")
# Where packages cache data between runs; pointed at an empty scratch folder so no cache masks a deletion.
CACHE_VARIABLES = ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "TMPDIR")

# Files that are never ELF: skipped before their first bytes are read (a venv has tens of thousands of them).
# (A string split, not a literal: formatted, a literal takes a line per suffix.)
_NOT_ELF_SUFFIXES = tuple(
    ".py .pyc .pyi .pyx .pxd .pxi .h .hpp .cuh .c .cc .cpp .txt .json .md .rst .html .js .css .yaml .yml .toml .cfg"  # noqa: SIM905
    " .ini .typed .pem .csv .png .svg .jinja .j2 .tmpl .xml .a .o .pkl .npz .npy".split()
)
_ET_DYN = 3
_PT_INTERP = 3
_SKIPPED_TOP_DIRS = (".venvprune", ".venvprune-staging", ".venvprune-unrestored", "__pycache__")

# Names of things in an error: absolute paths, shared-object names, and modules a ModuleNotFoundError names.
_PATH_IN_TEXT = re.compile(r"(/[^\s'\":,()\[\]]+)")
_SONAME_IN_TEXT = re.compile(r"\b([\w.+-]+\.so(?:\.[\w.]+)?)\b")
_MODULE_IN_TEXT = re.compile(r"No module named '([\w.]+)'")


# -- discovery ---------------------------------------------------------------------------------------------------


def canonical_name(name: str) -> str:
    """PEP 503 normalisation (``packaging.utils.canonicalize_name`` without the dependency)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def discover(site_dirs: List[str]) -> Dict[str, Any]:
    """What there is to check in *site_dirs*: read from metadata and the disk; no package is imported."""
    import importlib.metadata
    import pathlib

    distributions = []
    owners: Dict[str, str] = {}  # path relative to its site dir -> distribution name
    for site_dir in site_dirs:
        try:
            entries = sorted(os.listdir(site_dir))
        except OSError:
            continue
        for entry in entries:
            meta_dir = os.path.join(site_dir, entry)
            if not entry.endswith((".dist-info", ".egg-info")) or not os.path.isdir(meta_dir):
                continue
            dist = importlib.metadata.PathDistribution(pathlib.Path(meta_dir))
            name = dist.metadata["Name"]
            if not name:
                continue
            files = _installed_files(dist)
            for rel in files:
                owners.setdefault(os.path.normpath(rel), name)
            top_level = (dist.read_text("top_level.txt") or "").split()
            distributions.append(
                {
                    "name": name,
                    "version": dist.version,
                    "metadata_dir": meta_dir,
                    "modules": importable_modules(site_dir, files, top_level),
                    "entry_points": sorted({(ep.group, ep.name, ep.value) for ep in dist.entry_points}),
                    "files": len(files),
                }
            )
    libraries: List[List[Optional[str]]] = []
    for path in shared_libraries(site_dirs):
        relative = _relative_to_any(path, site_dirs)
        libraries.append([path, owners.get(relative) if relative is not None else None])
    return {
        "python": "%d.%d.%d" % sys.version_info[:3],
        "executable": sys.executable,
        "cache_tag": sys.implementation.cache_tag,
        "distributions": distributions,
        "libraries": libraries,
    }


def _installed_files(dist: Any) -> List[str]:
    """RECORD's paths, read directly: ``Distribution.files`` builds a PackagePath for each of torch's 15,000."""
    import csv

    text = dist.read_text("RECORD")
    if text is not None:
        return [row[0] for row in csv.reader(text.splitlines()) if row and row[0]]
    return [str(f) for f in (dist.files or [])]


def importable_modules(site_dir: str, files: Iterable[str], top_level: Iterable[str]) -> List[str]:
    """The top-level modules a distribution installs, from its RECORD and top_level.txt.

    A namespace package (a directory without ``__init__``) is not a module worth importing -- it imports even when
    empty -- so the search goes down to the first regular package or module below it: ``opentelemetry.trace``,
    not ``opentelemetry``. Names that are not identifiers (``numpy.libs``, ``foo-1.0.data``) are not modules, nor
    are files this interpreter would not import (``foo.cpython-310-x86_64-linux-gnu.so`` under 3.11, ``libbar.so.1``).
    """
    import importlib.machinery

    suffixes = tuple(importlib.machinery.all_suffixes())
    found: Set[str] = set()
    packages: Dict[str, bool] = {}  # directory -> regular package? (torch lists 15,000 files in one package)

    def is_package(directory: str) -> bool:
        if directory not in packages:
            packages[directory] = _is_regular_package(directory, suffixes)
        return packages[directory]

    for rel in files:
        parts = os.path.normpath(rel).split(os.sep)
        if parts[0] in ("..", "") or not parts[-1].endswith(suffixes):
            continue
        module = _module_root(site_dir, parts, suffixes, is_package)
        if module is not None:
            found.add(module)
    for name in top_level:
        if not name.isidentifier() or name in found or any(m.startswith(name + ".") for m in found):
            continue
        if _is_regular_package(os.path.join(site_dir, name), suffixes) or _module_file(site_dir, name, suffixes):
            found.add(name)
    return sorted(found)


def _module_root(
    site_dir: str, parts: List[str], suffixes: Tuple[str, ...], is_package: Callable[[str], bool]
) -> Optional[str]:
    """The shortest dotted name that imports the file *parts*: its first regular package, else the module itself."""
    dotted: List[str] = []
    for part in parts[:-1]:
        if not part.isidentifier() or part == "__pycache__" or len(dotted) >= 3:
            return None
        dotted.append(part)
        if is_package(os.path.join(site_dir, *dotted)):
            return ".".join(dotted)
    stem = next((parts[-1][: -len(s)] for s in suffixes if parts[-1].endswith(s)), "")
    if not stem.isidentifier() or stem == "__init__":
        return None
    return ".".join([*dotted, stem])


def _is_regular_package(directory: str, suffixes: Tuple[str, ...]) -> bool:
    return _module_file(directory, "__init__", suffixes)


def _module_file(directory: str, name: str, suffixes: Tuple[str, ...]) -> bool:
    return any(os.path.isfile(os.path.join(directory, name + suffix)) for suffix in suffixes)


def _relative_to_any(path: str, directories: Iterable[str]) -> Optional[str]:
    for directory in directories:
        prefix = directory.rstrip(os.sep) + os.sep
        if path.startswith(prefix):
            return path[len(prefix) :]
    return None


def shared_libraries(site_dirs: Iterable[str]) -> Iterator[str]:
    """ELF shared objects this interpreter could load, found by their header, not by a ``.so`` name.

    Executables (a PT_INTERP segment: ``torch/bin/*``), objects of another class or machine (test data) and
    relocatable objects are not libraries to dlopen.
    """
    wanted = _elf_identity(os.path.realpath(sys.executable))
    for site_dir in site_dirs:
        for directory, dirnames, filenames in os.walk(site_dir):
            if directory == site_dir:
                dirnames[:] = [d for d in dirnames if d not in _SKIPPED_TOP_DIRS]
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            dirnames.sort()
            for filename in sorted(filenames):
                if filename.endswith(_NOT_ELF_SUFFIXES):
                    continue
                path = os.path.join(directory, filename)
                if os.path.islink(path):
                    continue  # its target is checked under its own name
                if wanted is not None and _is_loadable_library(path, wanted):
                    yield path


def _elf_identity(path: str) -> Optional[Tuple[int, int, int]]:
    """(class, byte order, machine) of an ELF file, None when it is not one."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return None
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    order = "<" if header[5] == 1 else ">"
    return header[4], header[5], struct.unpack(order + "H", header[18:20])[0]


def _is_loadable_library(path: str, wanted: Tuple[int, int, int]) -> bool:
    try:
        with open(path, "rb") as handle:
            header = handle.read(64)
            if len(header) < 52 or header[:4] != b"\x7fELF":
                return False
            elf_class, data = header[4], header[5]
            order = "<" if data == 1 else ">"
            e_type, e_machine = struct.unpack(order + "HH", header[16:20])
            if (elf_class, data, e_machine) != wanted or e_type != _ET_DYN:
                return False
            if elf_class == 2:
                (phoff,) = struct.unpack(order + "Q", header[32:40])
                phentsize, phnum = struct.unpack(order + "HH", header[54:58])
            else:
                (phoff,) = struct.unpack(order + "I", header[28:32])
                phentsize, phnum = struct.unpack(order + "HH", header[42:46])
            handle.seek(phoff)
            table = handle.read(phentsize * phnum)
    except (OSError, struct.error):
        return False
    for index in range(min(phnum, len(table) // max(phentsize, 1))):
        (p_type,) = struct.unpack(order + "I", table[index * phentsize : index * phentsize + 4])
        if p_type == _PT_INTERP:
            return False
    return True


# -- running one task (in a worker) ------------------------------------------------------------------------------


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
    result["seconds"] = round(time.perf_counter() - started, 4)
    return result


def _import(task: Task) -> None:
    import importlib

    importlib.import_module(task["name"])
    return None


def _entry_point(task: Task) -> Optional[Dict[str, str]]:
    """Load an entry point the way its consumers do (``module:attr.attr [extras]``); never call it.

    An entry point may need an extra that is not installed (``pytest11`` plugins in a venv without pytest): when
    the module it cannot find belongs to nothing installed, the entry point is skipped, not failed.
    """
    import importlib
    import importlib.util

    value = re.sub(r"\[.*\]\s*$", "", task["value"]).strip()
    module_name, colon, attrs = (part.strip() for part in value.partition(":"))
    try:
        try:
            target: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if colon or "." not in module_name or exc.name != module_name:
                raise
            # "package.Class" without a colon: consumers such as fsspec split at the last dot.
            module_name, _, attrs = module_name.rpartition(".")
            target = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top and top != module_name.split(".")[0] and importlib.util.find_spec(top) is None:
            return {"skipped": "needs %s, which is not installed (an optional dependency)" % top}
        raise
    for attr in filter(None, attrs.split(".")):
        target = getattr(target, attr)
    return None


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


_PACKAGES: Dict[str, List[str]] = {}


def _metadata(task: Task) -> Dict[str, Any]:
    """``importlib.metadata.version()`` answers, and ``packages_distributions()`` maps the same names to it."""
    import importlib.metadata

    name = task["dist"]
    version = importlib.metadata.version(name)
    if version is None:
        raise LookupError("importlib.metadata.version(%r) returned None: METADATA is unreadable" % name)
    if not _PACKAGES:
        _PACKAGES.update(packages_distributions())
    wanted = canonical_name(name)
    names = sorted(k for k, dists in _PACKAGES.items() if any(canonical_name(d) == wanted for d in dists))
    value = {"version": version, "packages": names}
    expect = task.get("expect")
    if expect is not None and value != expect:
        if version != expect.get("version"):
            raise LookupError("importlib.metadata.version(%r) is %r, was %r" % (name, version, expect.get("version")))
        lost = sorted(set(expect.get("packages", [])) - set(names))
        gained = sorted(set(names) - set(expect.get("packages", [])))
        raise LookupError(
            "packages_distributions() maps %s to %s now, was %s (lost: %s, new: %s)"
            % (name, names, expect.get("packages"), lost or "none", gained or "none")
        )
    return value


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
    parts = rel.split("/")
    if parts[0] == "..":
        return ""
    name = parts[0] if len(parts) > 1 else parts[0].partition(".")[0] if rel.endswith(".py") else ""
    return name if name.isidentifier() else ""


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


def worker(argv: List[str]) -> None:
    """Serve tasks until the command pipe closes, then leave at once (no atexit, no waiting for module threads).

    With each result go, for the pool's scheduling: ``loaded``, the top-level modules this task added to
    ``sys.modules``; ``uses``, every top-level name an import statement asked for while it ran -- also the ones
    already loaded, so ``import functorch`` after ``import torch`` still says it needs torch; ``costs``, the
    seconds each package it loaded took to load; and ``sources``, the source files of the modules it loaded.
    """
    import builtins
    import faulthandler

    command_fd, result_fd, niceness = int(argv[0]), int(argv[1]), int(argv[2])
    if niceness:
        with contextlib.suppress(OSError, AttributeError):
            os.nice(niceness)
    known = {os.path.realpath(p) for p in sys.path if p}
    for site_dir in argv[3:]:
        if os.path.realpath(site_dir) not in known:
            site.addsitedir(site_dir)  # run by an interpreter that does not know the venv: a final-stage python
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
    commands = os.fdopen(command_fd, "r", encoding="utf-8")
    for line in commands:
        task = json.loads(line)
        tracked = task["kind"] in ("import", "entry_point")
        modules_before = set(sys.modules) if tracked else set()
        before = {name.partition(".")[0] for name in modules_before}
        uses.clear()
        costs.clear()
        result = run_task(task)
        if tracked:
            after = {name.partition(".")[0] for name in list(sys.modules)}
            result["loaded"] = sorted(after - before)
            result["sources"] = _sources(set(sys.modules) - modules_before)
            result["uses"] = sorted(uses)
            own = str(task.get("name", "")).partition(".")[0]
            if own in after - before:
                costs[own] = result["seconds"]
            result["costs"] = {k: round(v, 3) for k, v in costs.items() if v >= 0.01}
        data = (json.dumps(result) + "\n").encode("utf-8")
        while data:
            data = data[os.write(result_fd, data) :]
    os._exit(0)


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


# -- the pool ----------------------------------------------------------------------------------------------------


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

    *pycache*: a scratch folder for the bytecode the workers compile (``-X pycache_prefix``), for a venv whose
    caches were removed: each module is compiled once per run, never written into the venv. Without it the
    workers run with ``-B`` and read the venv's caches as they are.
    """
    env = hygienic_environment(dict(os.environ) if environment is None else environment, scratch)
    pool = _Pool(python, probe, max(1, jobs or _cpu_count()), timeout, site_dirs, scratch, env, pycache)
    return pool.run(tasks, weights or {}, uses or {}, costs or {})


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
        self.workers: List[_Worker] = []
        self.started_critical = False
        self.selector = selectors.DefaultSelector()

    def run(
        self, tasks: List[Task], weights: Dict[str, float], uses: Dict[str, List[str]], costs: Dict[str, float]
    ) -> Dict[str, Result]:
        bundles: Dict[str, List[Task]] = collections.OrderedDict()
        fresh: Dict[str, List[Task]] = collections.OrderedDict()
        for task in tasks:
            bundle = str(task.get("bundle") or task["id"])
            (fresh if task.get("fresh") else bundles).setdefault(bundle, []).append(task)
        self.retries.extend((FRESH, group) for group in fresh.values())
        order = sorted(bundles, key=lambda b: -weights.get(b, 0.0)) if weights else list(bundles)
        self.pending = [(b, bundles[b]) for b in order]
        self.uses = {b: set(names) for b, names in uses.items()}
        self.costs = dict(costs)
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
        if not worker.queue:
            self._flush_failed(worker)  # its bundle is done
            worker.bundle = None
            index = self._pick(worker) if worker.level == SHARED else None
            if index is not None:
                worker.bundle, tasks = self.pending.pop(index)
                worker.queue.extend(tasks)
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
                self._died(worker, "timed out after %g s (a hang?); the process was killed" % self.timeout)
            elif worker.process.poll() is not None:
                # Exited, but a child it forked may hold the pipe open: read what is there, then bury it.
                self._read(worker)
                if not worker.closed:
                    self._died(worker, _exit_description(worker.process.returncode))

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
        if not result["ok"] and worker.ran > 1 and worker.level != ALONE:
            # It failed after other tasks ran in this process: the verdict is the one it gets without them.
            if worker.level == SHARED:
                worker.failed.append(task)
            else:
                self.retries.append((ALONE, [task]))
            return
        result["attempt"] = ("shared", "fresh", "alone")[worker.level]
        self.results[task["id"]] = result

    def _died(self, worker: _Worker, why: str) -> None:
        task = worker.current
        if task is not None:
            result: Result = {"id": task["id"], "ok": False}
            result["seconds"] = round(time.monotonic() - worker.started, 4)
            result.update(_crash_details(worker, why))
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


def task_bundle(task: Task) -> str:
    return str(task.get("bundle") or task["id"])


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


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# -- the final-stage checker -------------------------------------------------------------------------------------


def check_manifest(manifest_path: str, jobs: int = 0, timeout: float = 120.0) -> Tuple[int, List[str]]:
    """Run the manifest's checks against this venv: (checks run, failures as ``check: error`` lines)."""
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    if manifest.get("format") != MANIFEST_FORMAT:
        return 0, ["%s: format %r is not one this checker reads" % (manifest_path, manifest.get("format"))]
    root = os.path.dirname(os.path.dirname(os.path.abspath(manifest_path)))
    site_dirs = [os.path.normpath(os.path.join(root, d)) for d in manifest["site_dirs"]]
    python = os.path.normpath(os.path.join(root, manifest["interpreter"]))
    if not os.path.exists(python):
        python = sys.executable  # e.g. another layout in the final image; the workers add site_dirs to sys.path
    tasks = []
    for task in manifest["checks"]:
        if task["kind"] == "dlopen":
            task = dict(task, path=os.path.normpath(os.path.join(root, task["path"])))
        tasks.append(task)
    scratch = tempfile.mkdtemp(prefix="venvprune-check-")
    try:
        # A pruned venv has no bytecode: compile each module once, into the scratch folder (never the venv).
        pycache = os.path.join(scratch, "pycache")
        probe = os.path.abspath(__file__)
        results = run_tasks(python, probe, tasks, jobs, timeout, site_dirs, scratch, pycache=pycache)
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    failures = [
        "%s: %s" % (task["id"], results.get(task["id"], {}).get("error", "no result"))
        for task in tasks
        if not results.get(task["id"], {}).get("ok")
    ]
    return len(tasks), failures


def _check_main(argv: List[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="check.py",
        description="Repeat, in this image, the checks that passed when venvprune pruned this venv.",
    )
    parser.add_argument("--manifest", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), MANIFEST_NAME))
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (default: one per CPU)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per check")
    args = parser.parse_args(argv)
    try:
        total, failures = check_manifest(args.manifest, args.jobs, args.timeout)
    except (OSError, ValueError, KeyError) as exc:
        print("venvprune check.py: cannot read %s: %s" % (args.manifest, exc), file=sys.stderr)
        return 2
    for failure in failures:
        print("FAILED %s" % failure)
    print("venvprune check.py: %d/%d checks pass" % (total - len(failures), total))
    return 1 if failures else 0


def main(argv: List[str]) -> int:
    if argv[:1] == ["worker"]:
        worker(argv[1:])
        return 0
    if argv[:1] == ["discover"]:
        found = discover(argv[2:])
        with open(argv[1], "w", encoding="utf-8") as handle:
            json.dump(found, handle)
        return 0
    return _check_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
