"""``python reaper.py COMMAND``: run a user's smoke command through the shell, then end everything it started.

A smoke command may start a server and detach it (``setsid server &``, ``gunicorn --daemon``): it leaves the
command's process group and session, so killing the group misses it, and a server left from the check before
pruning -- running the unpruned code it already loaded -- would answer the check after pruning. This wrapper makes
itself a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``): whatever the command starts stays its descendant, however
it detaches, and when the command ends (or the wrapper is told to stop, at the timeout) every descendant is killed.
Every process also carries a marker in its environment (:data:`MARKER`), which :func:`end_marked` finds in ``/proc``:
the fallback where there is no subreaper.

Run as a file by venvprune's own interpreter (standard library only), so that it starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

MARKER = "VENVPRUNE_SMOKE_RUN"  # environment variable: a token per smoke command run
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_PDEATHSIG = 1
GRACE = 5.0  # seconds to keep killing what a command's processes fork while they die


def main(argv: list[str]) -> int:
    command = argv[0]
    stopped: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: object) -> None:
        stopped.append(signum)
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()

    signal.signal(signal.SIGTERM, stop)
    _become_subreaper()
    child = subprocess.Popen(["/bin/sh", "-c", command])
    if stopped:
        child.kill()
    child.wait()
    end_descendants(os.getpid())
    if stopped or child.returncode < 0:
        # Die as the command died, so that the caller sees the same status.
        number = stopped[0] if stopped else -child.returncode
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    return child.returncode


def _become_subreaper() -> None:
    """Keep what the command starts as descendants; and be told to stop (SIGTERM) if venvprune dies (SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)  # the thread that started it: venvprune's main one


def end_descendants(root: int) -> None:
    """SIGKILL every descendant of *root* until none is left, reaping the ones that became *root*'s children."""
    deadline = time.monotonic() + GRACE
    while True:
        found = _descendants(root)
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _reap()
        if not found or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def end_marked(token: str) -> None:
    """SIGKILL every process whose environment carries ``MARKER=token``: what escaped the subreaper, if anything."""
    needle = f"{MARKER}={token}".encode()
    for entry in _pids():
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                marked = needle in handle.read().split(b"\0")
        except OSError:
            continue
        if marked:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(entry, signal.SIGKILL)


def _descendants(root: int) -> set[int]:
    """Living (not zombie) processes below *root*, from ``/proc/PID/stat``."""
    children: dict[int, list[int]] = {}
    zombies: set[int] = set()
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None:
            state, parent = stat
            children.setdefault(parent, []).append(pid)
            if state in "ZX":
                zombies.add(pid)
    found: set[int] = set()
    pending = [root]
    while pending:
        for pid in children.get(pending.pop(), ()):
            if pid not in found:
                found.add(pid)
                pending.append(pid)
    return found - zombies


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rpartition(b")")[2].split()
        return fields[0].decode(), int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
