"""A kill between any two file-system calls of a commit or of a recovery: the next recovery still ends the story.

The SIGKILL tests in test_crash.py aim at the phases of a real prune by time; these are the exhaustive, fast
counterpart for the two steps a timed kill rarely hits: each file-system call of ``commit`` and of ``recover`` is
made to "die" in turn (an exception no code catches, and nothing after it runs, as with SIGKILL), then recovery
runs again. The target must end exactly pruned (a commit had begun) or exactly as before (it had not).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from tests.reliability.conftest import Guard
from tests.site_builder import install_dist, make_site, tree_digest
from venvprune import categories
from venvprune.apply import Transaction, recover
from venvprune.plan import Action, ActionKind, Phase, build_plan
from venvprune.scan import scan
from venvprune.target import MANIFEST_DIR_NAME, Target, resolve_target

FILESYSTEM_CALLS = ("unlink", "rmdir", "rename", "replace", "link", "mkdir")


class Killed(BaseException):
    """What SIGKILL does to Python code: nothing after it runs; no ``except Exception`` sees it."""


@pytest.fixture
def killer(monkeypatch: pytest.MonkeyPatch) -> Iterator[KillSwitch]:
    switch = KillSwitch(monkeypatch)
    yield switch
    switch.disarm()


class KillSwitch:
    """Counts file-system calls made through ``os`` and kills the caller at call number *after* (0: the first)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.calls = 0
        self.after: int | None = None

    def arm(self, after: int | None) -> None:
        self.calls = 0
        self.after = after
        for name in FILESYSTEM_CALLS:
            real = getattr(os, name)
            self.monkeypatch.setattr(os, name, self._wrap(real))

    def disarm(self) -> None:
        self.monkeypatch.undo()

    def _wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.after is not None and self.calls >= self.after:
                raise Killed
            self.calls += 1
            return real(*args, **kwargs)

        return call


def build(prefix: Path, guard: Guard) -> Path:
    """A site-packages with a tests dir, bytecode, a plain file and a RECORD; a manifest from an earlier prune;
    symlinks to the guard's sentinel; and a hard-linked twin."""
    if prefix.exists():
        shutil.rmtree(prefix)
    site = make_site(prefix)
    install_dist(
        site,
        "pkg",
        {
            "pkg/__init__.py": "x = 1\n",
            "pkg/__pycache__/__init__.cpython-311.pyc": b"\x00" * 64,
            "pkg/mod.py": "y = 2\n",
            "pkg/mod.pyc": b"\x01" * 32,
            "pkg/tests/__init__.py": "",
            "pkg/tests/test_x.py": "def test(): pass\n",
            "pkg/sub/tests/test_y.py": "def test(): pass\n",
            "pkg/data.txt": "hello\n",
        },
    )
    # A venv pruned before carries the manifest of that prune: the next one replaces it (a "create" over a file).
    (site / MANIFEST_DIR_NAME).mkdir()
    (site / MANIFEST_DIR_NAME / "manifest.json").write_text('{"old": true}\n')
    guard.plant(site)
    guard.twin(site, prefix.parent)
    return site


def prune_until(site: Path, *, commit: bool) -> tuple[Target, Transaction]:
    target = resolve_target(site)
    plan = build_plan(scan(target, inspect_elf=False), categories.select(only=("bytecode", "tests", "record")))
    transaction = Transaction.begin(target)
    assert transaction.execute(plan.by_phase(Phase.FILES)) == []
    assert transaction.execute(plan.by_phase(Phase.METADATA)) == []
    # What verification writes at its end: the manifest (over the old one) and the checker (in a new folder).
    transaction.create(site / MANIFEST_DIR_NAME / "manifest.json", b'{"new": true}\n')
    transaction.create(site / MANIFEST_DIR_NAME / "deeper" / "check.py", b"print('ok')\n")
    if commit:
        transaction.commit()
    return target, transaction


def references(where: Path, guard: Guard) -> tuple[Path, dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    prefix = where / "prefix"
    site = build(prefix, guard)
    before = tree_digest(site)
    prune_until(site, commit=True)
    pruned = tree_digest(site)
    assert pruned != before
    return prefix, before, pruned


def calls_made(function) -> int:  # type: ignore[no-untyped-def]
    """How many file-system calls *function* makes when nothing kills it."""
    counted = {"n": 0}
    real = {name: getattr(os, name) for name in FILESYSTEM_CALLS}

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            counted["n"] += 1
            return original(*args, **kwargs)

        return call

    try:
        for name, original in real.items():
            setattr(os, name, wrap(original))
        function()
    finally:
        for name, original in real.items():
            setattr(os, name, original)
    return counted["n"]


@pytest.mark.parametrize("file_system", ["tmp", "tmpfs"])
def test_kill_at_every_call_of_a_commit_then_recovery_completes_the_prune(
    tmp_path: Path, guard: Guard, killer: KillSwitch, tmpfs: Callable[[str], Path], file_system: str
) -> None:
    """The file system matters: tmpfs lists a folder newest first, so the COMMITTED marker comes first."""
    where = tmpfs("16m") if file_system == "tmpfs" else tmp_path
    prefix, _before, pruned = references(where, guard)
    site = build(prefix, guard)
    target, transaction = prune_until(site, commit=False)
    total = calls_made(transaction.commit)
    assert tree_digest(site) == pruned
    assert total >= 5
    for after in range(total):
        site = build(prefix, guard)
        target, transaction = prune_until(site, commit=False)
        killer.arm(after)
        with pytest.raises(Killed):
            transaction.commit()
        killer.disarm()
        recovery = recover(target)
        assert recovery is not None and recovery.errors == (), f"killed at call {after} of {total}"
        assert tree_digest(site) == pruned, f"killed at call {after} of {total} of the commit: not the clean prune"
        assert not target.staging_dir.exists()
    print(f"\ncommit on {file_system}: killed at each of its {total} file-system calls, then recovered")
    guard.check()


def test_kill_at_every_call_of_a_recovery_then_recovery_again_restores_everything(
    tmp_path: Path, guard: Guard, killer: KillSwitch
) -> None:
    prefix, before, _pruned = references(tmp_path, guard)
    site = build(prefix, guard)
    target, transaction = prune_until(site, commit=False)
    transaction._abandon()  # killed: the OS closes the journal
    total = calls_made(lambda: recover(target))
    assert tree_digest(site) == before
    assert total >= 5
    for after in range(total):
        site = build(prefix, guard)
        target, transaction = prune_until(site, commit=False)
        transaction._abandon()
        killer.arm(after)
        with pytest.raises(Killed):
            recover(target)
        killer.disarm()
        recovery = recover(target)
        assert recovery is not None and recovery.errors == (), f"killed at call {after} of {total}"
        assert tree_digest(site) == before, f"killed at call {after} of {total} of a recovery: not as before"
        assert not target.staging_dir.exists()
    print(f"\nrecovery: killed at each of its {total} file-system calls, then recovered again")
    guard.check()


@dataclass(frozen=True)
class Upper:
    """A rewrite for tests: the content in upper case."""

    def write(self, source: BinaryIO, destination: BinaryIO) -> None:
        destination.write(source.read().upper())


@pytest.mark.parametrize("failure", ["killed", "disk-full"])
def test_a_copied_original_is_never_staged_half_written(
    tmp_path: Path, guard: Guard, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """Where the kernel refuses a hard link (a file another user owns, with fs.protected_hardlinks), the original
    of a rewrite is copied into staging instead; a copy cut short must never be put back over the file."""
    site = make_site(tmp_path / "prefix")
    install_dist(site, "pkg", {"pkg/__init__.py": "", "pkg/data.txt": "original content\n" * 50_000})
    data = site / "pkg" / "data.txt"
    guard.plant(site)
    guard.twin(site)
    before = tree_digest(site)
    target = resolve_target(site)

    def refuse_link(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    def torn_copy(source: BinaryIO, destination: BinaryIO, length: int = 0) -> None:
        destination.write(source.read(1000))
        destination.flush()
        if failure == "killed":
            raise Killed
        raise OSError(errno.ENOSPC, "No space left on device", str(destination))

    transaction = Transaction.begin(target)
    monkeypatch.setattr(os, "link", refuse_link)
    monkeypatch.setattr(shutil, "copyfileobj", torn_copy)
    action = Action(data, ActionKind.REWRITE, "test", "upper", 0, 0, "pkg", transform=Upper())
    if failure == "killed":
        with pytest.raises(Killed):
            transaction.execute([action])
        transaction._abandon()
        monkeypatch.undo()
        assert recover(target) is not None
    else:
        errors = transaction.execute([action])
        monkeypatch.undo()
        assert [(e.path, e.message) for e in errors] == [(data, "No space left on device")]
        transaction.rollback()
    assert tree_digest(site) == before, "the file was replaced by a torn copy of itself"
    assert not target.staging_dir.exists()
    guard.check()
