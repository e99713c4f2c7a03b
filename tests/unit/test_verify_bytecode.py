"""The bytecode kept aside for the after-check, and the scratch folders a killed run leaves behind."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pytest

from venvprune.verify import scratch
from venvprune.verify.bytecode import BytecodeCache, compile_sample, in_tree_cache, prefixed_cache, scale_to_all


def test_cache_paths_are_the_ones_the_import_system_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = str(tmp_path / "pkg" / "mod.py")
    tag = sys.implementation.cache_tag
    assert str(in_tree_cache(source, tag)) == importlib.util.cache_from_source(source)
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path / "prefix"))
    assert str(prefixed_cache(tmp_path / "prefix", source, tag)) == importlib.util.cache_from_source(source)


def test_the_venvs_bytecode_is_linked_aside_and_deleted_with_the_cache(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "__pycache__").mkdir(parents=True)
    (package / "mod.py").write_text("X = 1\n")
    compiled = package / "__pycache__" / f"mod.{sys.implementation.cache_tag}.pyc"
    compiled.write_bytes(b"bytecode")
    (package / "nocache.py").write_text("Y = 2\n")
    cache = BytecodeCache([str(package / "mod.py"), str(package / "nocache.py")], sys.implementation.cache_tag)
    linked = prefixed_cache(cache.path, str(package / "mod.py"), sys.implementation.cache_tag)
    assert cache.sources == (str(package / "mod.py"),)
    assert os.path.samefile(linked, compiled)  # a hard link: no bytes copied
    compiled.unlink()  # pruned: the copy aside stays
    assert linked.read_bytes() == b"bytecode"
    cache.cleanup()
    assert not cache.path.exists()


def test_compile_estimate_scales_the_sample_by_size(tmp_path: Path) -> None:
    sources = []
    for index in range(40):
        path = tmp_path / f"m{index}.py"
        path.write_text("x = 1\n" * (10 if index % 16 else 30))
        sources.append(str(path))
    sample = compile_sample(sources)
    assert sample == sources[::16]
    total = sum(os.path.getsize(s) for s in sources)
    assert scale_to_all(2.0, sample, sources) == pytest.approx(2.0 * total / sum(os.path.getsize(s) for s in sample))


def test_scratch_folders_nobody_holds_are_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Judged by their lock, not by the process id in their name (a live run in another PID namespace looks dead)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / f"venvprune-unit-{os.getpid()}-abc"  # a live pid, but no lock: the run that made it is gone
    stale.mkdir()
    os.utime(stale, (0, 0))  # and old: a folder just made may be another run's, before it takes its lock
    fresh = tmp_path / "venvprune-unit-4194399-new"
    fresh.mkdir()
    held = tmp_path / "venvprune-unit-4194399-abc"  # a pid that does not exist here, but its lock is held
    held.mkdir()
    os.utime(held, (0, 0))
    other_kind = tmp_path / "venvprune-other-4194399-abc"
    other_kind.mkdir()
    holder = os.open(held, os.O_RDONLY | os.O_DIRECTORY)  # another open file: flock(2) sees another holder
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        made = scratch.make("unit")
        assert made.parent == tmp_path and made.name.startswith(f"venvprune-unit-{os.getpid()}-")
        assert not stale.exists() and held.exists() and other_kind.exists() and fresh.exists()
        scratch.make("unit")
        assert made.exists(), "a folder this process holds was swept"
    finally:
        os.close(holder)
    scratch.remove(made)
    assert not made.exists()
