"""``--warm MODULE``: the bytecode of what importing MODULE loads stays, so the application starts as fast as before
while the rest of the bytecode goes.

Removing bytecode costs every cold start (each import compiles again). For the modules named with ``--warm`` (and
``--check-module``), the target's own interpreter is asked, before the plan:

- which source files importing each module loads (:func:`survey`): one import per module in a fresh process, with
  ``-I -B`` (no user site, no ``PYTHON*`` variables, nothing written). The plan keeps their bytecode (a
  ``__pycache__`` folder that holds some of it loses only the rest) and lists the bytecode that is missing
  (``uv`` does not compile by default);
- how long each import takes (:func:`import_seconds`, the median of a few fresh processes), before the prune and
  after it, for the report.

The missing bytecode is compiled by the target's interpreter (its magic number, its cache tag) into a scratch folder
outside the target (:func:`compile_bytecode`); the transaction writes it in, so a rollback takes it out again.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from venvprune.errors import VenvpruneError
from venvprune.verify import scratch

RUNS = 5  # fresh processes per module and measurement; the median is reported
TIMEOUT = 300.0

# Runs in the target's interpreter (3.8+, standard library only). argv: the answer's file descriptor, the module.
# Every module loaded by then counts, those a .pth file imported at start-up too: every start pays for them.
_IMPORT = r"""
import json, os, sys, time
fd, name = int(sys.argv[1]), sys.argv[2]
started = time.perf_counter()
try:
    __import__(name)
    error = None
except BaseException as exc:
    error = "%s: %s" % (type(exc).__name__, exc)
seconds = time.perf_counter() - started
files = sorted({os.path.abspath(m.__file__) for m in list(sys.modules.values())
                if isinstance(getattr(m, "__file__", None), str) and m.__file__.endswith(".py")})
os.write(fd, json.dumps({"seconds": seconds, "error": error, "files": files,
                         "tag": sys.implementation.cache_tag}).encode())
"""

# argv: the answer's file descriptor, the scratch folder, then source paths; compiles each as the import system would.
_COMPILE = r"""
import json, os, py_compile, sys
fd, scratch, sources = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
done = {}
for number, source in enumerate(sources):
    out = os.path.join(scratch, "%d.pyc" % number)
    try:
        py_compile.compile(source, cfile=out, dfile=source, doraise=True)
        done[source] = out
    except Exception as exc:
        done[source] = None
os.write(fd, json.dumps(done).encode())
"""


class WarmError(VenvpruneError):
    """The target's interpreter could not be asked; nothing was changed."""


@dataclass(frozen=True)
class WarmSet:
    """What importing the warm modules loads, and how long it took before the prune."""

    modules: tuple[str, ...]
    sources: frozenset[Path] = frozenset()  # source files the imports loaded, inside site-packages
    cache_tag: str = ""  # sys.implementation.cache_tag of the target: cpython-311
    failed: tuple[tuple[str, str], ...] = ()  # (module, error): a module that does not import warms nothing
    seconds_before: Mapping[str, float] = field(default_factory=dict)

    def bytecode_of(self, source: Path) -> Path:
        """Where the import system looks for *source*'s bytecode (PEP 3147)."""
        return source.parent / "__pycache__" / f"{source.stem}.{self.cache_tag}.pyc"

    @property
    def reason(self) -> str:
        return f"--warm {', '.join(self.modules)} loads it: its bytecode stays, so that import starts as fast as before"


def survey(interpreter: Path, root: Path, modules: Sequence[str], site_packages: Iterable[Path]) -> WarmSet:
    """Import each module in the target's interpreter: what it loads, and how long it takes (median of RUNS)."""
    inside = tuple(str(sp) + os.sep for sp in site_packages)
    sources: set[Path] = set()
    failed = []
    seconds: dict[str, float] = {}
    tag = ""
    for module in modules:
        answers = [_ask(interpreter, root, [_IMPORT, module]) for _ in range(RUNS)]
        first = answers[0]
        tag = str(first["tag"])
        if first["error"] is not None:
            failed.append((module, str(first["error"])))
            continue
        sources.update(Path(f) for f in first["files"] if str(f).startswith(inside))
        seconds[module] = statistics.median(float(a["seconds"]) for a in answers)
    return WarmSet(tuple(modules), frozenset(sources), tag, tuple(failed), seconds)


def import_seconds(interpreter: Path, root: Path, modules: Iterable[str]) -> dict[str, float]:
    """Each module's import time in a fresh process of the target's interpreter, median of RUNS; failures left out."""
    found = {}
    for module in modules:
        answers = [_ask(interpreter, root, [_IMPORT, module]) for _ in range(RUNS)]
        if all(a["error"] is None for a in answers):
            found[module] = statistics.median(float(a["seconds"]) for a in answers)
    return found


def compile_bytecode(interpreter: Path, root: Path, sources: Sequence[Path]) -> dict[Path, bytes]:
    """The bytecode of *sources*, compiled by the target's interpreter outside the target; a source that does not
    compile is left out (Python will compile it, or fail, as it would have)."""
    if not sources:
        return {}
    folder = scratch.make("warm")
    try:
        answer = _ask(interpreter, root, [_COMPILE, str(folder), *map(str, sources)])
        compiled = {}
        for source, output in answer.items():
            if output is not None:
                compiled[Path(source)] = Path(output).read_bytes()
        return compiled
    finally:
        scratch.remove(folder)


def _ask(interpreter: Path, root: Path, arguments: list[str]) -> dict[str, Any]:
    """Run a script in the target's interpreter; its answer comes on a pipe of its own (a module may print), read
    while it runs (a long answer would fill the pipe and stall it)."""
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen(
            [str(interpreter), "-I", "-B", "-c", arguments[0], str(write_end), *arguments[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(write_end,),
            cwd=str(root),
        )
    except OSError as exc:
        os.close(read_end)
        raise WarmError(f"{interpreter}: does not run ({exc.strerror}); repair the venv or leave out --warm") from exc
    finally:
        os.close(write_end)
    chunks: list[bytes] = []
    with os.fdopen(read_end, "rb") as answer_pipe:
        reader = threading.Thread(target=lambda: chunks.append(answer_pipe.read()), daemon=True)
        reader.start()
        try:
            process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.wait()
            raise WarmError(f"{interpreter}: --warm {arguments[-1]} did not finish in {TIMEOUT:g} s") from exc
        finally:
            reader.join()
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise WarmError(f"{interpreter}: no answer for --warm (exit {process.returncode})") from exc
    if not isinstance(answer, dict):
        raise WarmError(f"{interpreter}: unexpected answer for --warm")
    return answer
