"""What verification needs of the prune's transaction: a small protocol, so that ``verify/`` never imports apply.

:class:`venvprune.apply.Transaction` is the one implementation; the unit tests use a fake.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from venvprune.plan import Action


class ChangeError(Protocol):
    """A file the transaction could not change or restore."""

    @property
    def path(self) -> Path: ...

    @property
    def message(self) -> str: ...


class Changes(Protocol):
    """The changes made so far, and the means to undo and redo them: what healing needs."""

    def executed(self) -> tuple[Action, ...]: ...

    def restore(self, actions: Iterable[Action]) -> Sequence[ChangeError]: ...

    def redo(self, actions: Iterable[Action]) -> Sequence[ChangeError]: ...


class Transaction(Changes, Protocol):
    """And the means to write into the target (the final-stage manifest and checker, or removing a stale one),
    recoverably."""

    def create(self, path: Path, content: bytes) -> None: ...

    def execute(self, actions: Iterable[Action]) -> Sequence[ChangeError]: ...
