"""A bytecode cache outside the venv, so the after-check of a venv whose ``__pycache__`` was pruned stays fast.

Without bytecode every import compiles its source, and compiling is two thirds of the cost of importing torch and
transformers (measured: 13 s with bytecode, 40 s without, on the ML venv of docs/why.md). The after-check must not
write bytecode into the venv (it would recreate what was just removed), and it does not need to compile either:
pruning never changes a ``.py`` file, so the bytecode the venv had *is* the compiled form of its sources. At
baseline, the cache file of every source the checks loaded is hard-linked (copied across file systems) into a
scratch folder laid out for ``-X pycache_prefix``; the after-check reads it from there. Python checks each cache
file against its source's size and modification time, so a source that differs is compiled again -- the checks
never run stale code -- and only sources can use it: a sourceless ``.pyc``, which *is* the module, is loaded from
the venv or not at all.

The cost a cold start of the pruned venv pays is then measured, not suffered: a sample of the sources is compiled
and the time scaled by size (:func:`scale_to_all`), for the report's import seconds. The sample is compiled by
a worker that has nothing else left to do, so it costs the after-check no time.
"""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import Sequence
from pathlib import Path

from venvprune.verify import scratch

SAMPLE_EVERY = 16  # compile one source in 16 to estimate what compiling all of them costs


class BytecodeCache:
    """A ``pycache_prefix`` folder holding the venv's bytecode for *sources*; deleted with this object."""

    def __init__(self, sources: Sequence[str], cache_tag: str) -> None:
        self.path = scratch.make("pycache")
        self.cache_tag = cache_tag
        self._finalizer = weakref.finalize(self, scratch.remove, self.path)
        linked = []
        for source in sources:
            if _link(in_tree_cache(source, cache_tag), prefixed_cache(self.path, source, cache_tag)):
                linked.append(source)
        self.sources = tuple(linked)

    def cleanup(self) -> None:
        self._finalizer()


def in_tree_cache(source: str, cache_tag: str) -> Path:
    """``foo/bar.py`` -> ``foo/__pycache__/bar.cpython-311.pyc`` (PEP 3147)."""
    head, name = os.path.split(source)
    return Path(head, "__pycache__", f"{name.rpartition('.')[0]}.{cache_tag}.pyc")


def prefixed_cache(prefix: Path, source: str, cache_tag: str) -> Path:
    """Where ``-X pycache_prefix=PREFIX`` looks for the cache of *source* (``importlib.util.cache_from_source``)."""
    head, name = os.path.split(source)
    return prefix / head.lstrip(os.sep) / f"{name.rpartition('.')[0]}.{cache_tag}.pyc"


def _link(original: Path, destination: Path) -> bool:
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(original, destination)
        except OSError:
            shutil.copyfile(original, destination)  # another file system, or links not allowed
    except OSError:
        return False  # no bytecode for it (or unreadable): the after-check compiles it into the cache
    return True


def compile_sample(sources: Sequence[str]) -> list[str]:
    """Every ``SAMPLE_EVERY``-th source: compiling these estimates compiling them all."""
    return list(sources[::SAMPLE_EVERY])


def scale_to_all(sample_seconds: float, sample: Sequence[str], sources: Sequence[str]) -> float:
    """Seconds to compile all *sources*, from the seconds the *sample* took, scaled by size."""
    sample_bytes = sum(_size(s) for s in sample)
    if not sample_bytes:
        return 0.0
    return sample_seconds * sum(_size(s) for s in sources) / sample_bytes


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
