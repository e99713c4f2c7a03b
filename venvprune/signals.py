"""SIGTERM and SIGINT during a prune: the one place they are handled.

``docker stop`` sends SIGTERM and Ctrl-C sends SIGINT. Before the commit, either one becomes :class:`Interrupted`,
raised wherever the main thread is, so that the transaction restores every change and the CLI exits 130 with one
line. Once the commit has begun the staged originals are being deleted and there is nothing left to restore: a
signal is then ignored and the run (and its report) ends normally.

:func:`handled` installs the handler. It is re-entrant: the pipeline enters it for every prune and check, and the CLI
enters it around the whole command so that writing the report is covered too; only the outermost entry installs
and, at its end, restores the previous handlers.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

from venvprune.errors import Interrupted

HANDLED = (signal.SIGTERM, signal.SIGINT)


class _State:
    depth = 0  # how many handled() blocks are open
    committing = False  # a commit has begun in this process: the prune is finished rather than undone
    received: str | None = None  # the name of a signal the handler raised for


def _handler(signum: int, _frame: FrameType | None) -> None:
    if not _State.committing:
        _State.received = signal.Signals(signum).name
        raise Interrupted(f"stopped by {_State.received}; every change was restored")


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`Interrupted` until the commit begins (see the module's text)."""
    if _State.depth:
        _State.depth += 1
        try:
            yield
        finally:
            _State.depth -= 1
        return
    _State.committing = False
    _State.received = None
    previous = {sig: signal.signal(sig, _handler) for sig in HANDLED}
    _State.depth = 1
    try:
        yield
    finally:
        _State.depth = 0
        for sig, old in previous.items():
            signal.signal(sig, old)


def commit_begins() -> None:
    """From now on a signal lets the run finish: the originals are being deleted."""
    _State.committing = True


def commit_failed() -> None:
    """The commit marker could not be written: the prune is not committed and is rolled back, so signals count again."""
    _State.committing = False


def stop_if_received() -> None:
    """Raise again for a signal whose exception was lost.

    Python runs a signal handler wherever the main thread is, and an exception raised inside a finalizer (a
    generator or file closed by the garbage collector) is only printed as "ignored". The pipeline calls this
    between its phases, so such a signal still stops the run before the commit.
    """
    if _State.received is not None and not _State.committing:
        raise Interrupted(f"stopped by {_State.received}; every change was restored")


@contextlib.contextmanager
def ignored() -> Iterator[None]:
    """While restoring, a second signal must not leave the restore half done."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in HANDLED}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGTERM and SIGINT back until the block is done (recovery): it ends whole, then the signal stops the run."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(HANDLED))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
