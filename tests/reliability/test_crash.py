"""Crash consistency: SIGKILL, SIGINT and SIGTERM at points spread over a real prune of a real venv (issue 5).

The points are aimed from the phases' timings of a clean run of the same venv (``--json -``), not from a fixed
sleep: each aims at a fraction of one phase, counted from the moment the phase before it ended (the CLI prints one
line per phase on stderr when that is not a terminal). Where the kill really landed is read from the same lines.

After a SIGKILL the venv must be, once recovered, exactly as before or exactly as a clean prune leaves it (a hash of
every file), and the next run of venvprune must leave it exactly pruned. Both states pass an import check once, in
the fixture; a trial that ends in one of them byte for byte imports as well. SIGINT and SIGTERM must restore
everything and exit 130 with a one-line message.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.conftest import (
    PHASE_LINE,
    RealVenv,
    phase_in_progress,
    prune_command,
    report_of,
    run_venvprune,
    staging_left,
    tool_env,
    venv_digest,
)
from venvprune.apply import recover
from venvprune.target import resolve_target

pytestmark = pytest.mark.integration

# How many points to aim at each phase: more where the disk changes (apply; verify, which writes the manifest;
# commit). "recover" takes no time when nothing is pending: the kills that land there come from startup's end.
SIGKILL_AIMS: Mapping[str, int] = {
    "startup": 3,
    "scan": 3,
    "plan": 2,
    "baseline": 4,
    "apply": 8,
    "verify": 6,
    "commit": 6,
}
SIGNAL_AIMS: Mapping[str, int] = {"scan": 1, "plan": 1, "baseline": 2, "apply": 2, "verify": 2, "commit": 1}


@dataclass(frozen=True)
class Aim:
    phase: str
    after: str  # the phase whose end line starts the clock ("" for the process start)
    delay: float  # seconds after that


@dataclass(frozen=True)
class Shot:
    aim: Aim
    landed: str  # the phase running when the signal was sent, from the lines read so far
    returncode: int
    stderr: str
    staging: bool  # a transaction was open when the process ended


def aims(phases: Sequence[tuple[str, float]], per_phase: Mapping[str, int]) -> list[Aim]:
    """Points spread evenly inside each phase: fractions (i + 1/2) / n of its measured duration."""
    result: list[Aim] = []
    names = [name for name, _ in phases]
    for index, (name, seconds) in enumerate(phases):
        count = per_phase.get(name, 0)
        after = "" if index == 0 else names[index - 1]
        result.extend(Aim(name, after, seconds * (i + 0.5) / count) for i in range(count))
    return result


def shoot(venv: Path, aim: Aim, signum: int, order: Sequence[str], *, group: bool = False) -> Shot:
    """Start a prune, send *signum* at *aim*, wait for the end. With *group*, the whole process group gets it."""
    process = subprocess.Popen(
        prune_command(str(venv)),
        cwd=venv.parent,
        env=tool_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,  # its own group: the import workers can be reached, and reaped, with it
    )
    started = time.monotonic()
    assert process.stderr is not None
    stderr = process.stderr
    lines: list[str] = []
    ended: list[str] = []
    anchor = threading.Event()
    anchored_at: list[float] = []

    def read() -> None:
        for line in stderr:
            lines.append(line)
            match = PHASE_LINE.match(line)
            if match:
                ended.append(match.group(1))
                if match.group(1) == aim.after:
                    anchored_at.append(time.monotonic())
                    anchor.set()
        anchor.set()  # the process ended before the anchor: shoot now

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if aim.after:
            anchor.wait(timeout=300)
        start = anchored_at[0] if anchored_at else started if not aim.after else time.monotonic()
        time.sleep(max(0.0, start + aim.delay - time.monotonic()))
        landed = phase_in_progress(list(ended), order) if process.poll() is None else "exited"
        with contextlib.suppress(ProcessLookupError):  # it may have ended a moment ago
            if group:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
        returncode = process.wait(timeout=300)
    finally:
        # The target interpreter's import workers die with a killed build; reap any that outlived their parent.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        reader.join(timeout=60)
        stderr.close()
    return Shot(aim, landed, returncode, "".join(lines), staging_left(venv))


def table(title: str, counts: Mapping[str, int]) -> str:
    return f"{title}: " + ", ".join(f"{phase} {n}" for phase, n in counts.items())


def test_sigkill_anywhere_then_the_next_run_restores_or_completes(real_venv: RealVenv) -> None:
    phases = real_venv.phases
    order = [name for name, _ in phases]
    points = aims(phases, SIGKILL_AIMS)
    assert len(points) >= 30
    landed: collections.Counter[str] = collections.Counter()
    recovered: collections.Counter[str] = collections.Counter()
    for number, aim in enumerate(points):
        venv = real_venv.reset()
        with real_venv.guard.twinned(venv):
            shot = shoot(venv, aim, signal.SIGKILL, order)
            landed[shot.landed] += 1
            where = f"SIGKILL #{number} aimed at {aim.phase} +{aim.delay:.3f}s, landed in {shot.landed}"
            if number % 2 == 0:
                # Recovery alone (what the next run does first), checked by itself: before, or pruned.
                recovery = recover(resolve_target(venv))
                state = venv_digest(venv)
                assert state in (real_venv.before, real_venv.pruned), f"{where}: neither as before nor as pruned"
                assert not staging_left(venv), where
                recovered["as before" if state == real_venv.before else "as pruned"] += 1
                assert (recovery is not None) == shot.staging, where
            # The next run of venvprune: recovers what is pending, prunes, verifies.
            rerun = run_venvprune("--json", "-", str(venv), cwd=venv.parent)
            report = report_of(rerun)
            assert rerun.returncode == 0 and report["status"] == "success", f"{where}\n{rerun.stderr}"
            verification = report["verification"]
            # A run that finds the prune already completed has nothing to change, and so nothing to verify.
            assert verification.get("ok") is True or verification == {"skipped": "nothing to change"}, where
            if number % 2 == 1:
                assert (report["recovery"] is not None) == shot.staging, f"{where}: {report['recovery']}"
                # "an interrupted prune was found and restored (57 changes)"
                outcome = str(report["recovery"]).split(" and ")[-1].split(" (")[0] if shot.staging else "none"
                recovered[f"next run: {outcome}"] += 1
            assert venv_digest(venv) == real_venv.pruned, f"{where}: the next run did not leave a clean prune"
            assert not staging_left(venv), where
    real_venv.guard.check()
    print(f"\n{table('SIGKILL landed', landed)}\n{table('recovered', recovered)}")
    # The kills reached every phase that changes the disk, and some hit an open transaction.
    assert {"apply", "verify", "commit"} <= set(landed), landed
    assert len(landed) >= 5, landed


@pytest.mark.parametrize(
    ("signum", "group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["SIGINT-to-the-group", "SIGTERM-to-the-process"],
)
def test_sigint_and_sigterm_restore_and_exit_130(real_venv: RealVenv, signum: int, group: bool) -> None:
    """Ctrl-C reaches the whole foreground group; ``docker stop`` sends SIGTERM to the main process only."""
    phases = real_venv.phases
    order = [name for name, _ in phases]
    name = signal.Signals(signum).name
    landed: collections.Counter[str] = collections.Counter()
    for aim in aims(phases, SIGNAL_AIMS):
        venv = real_venv.reset()
        with real_venv.guard.twinned(venv):
            shot = shoot(venv, aim, signum, order, group=group)
            landed[shot.landed] += 1
            where = f"{name} aimed at {aim.phase} +{aim.delay:.3f}s, landed in {shot.landed}:\n{shot.stderr}"
            assert "Traceback" not in shot.stderr, where
            assert not staging_left(venv), where
            after_commit = shot.landed in ("report", "exited") or order.index(shot.landed) >= order.index("commit")
            if after_commit and shot.returncode in (0, -signum):
                # Once the COMMITTED marker is written (and in the phases after it) the prune is finished rather than
                # undone: the signal waits (or, after the very end, finds the process exiting); the venv is pruned.
                assert venv_digest(venv) == real_venv.pruned, where
                continue
            assert shot.returncode == 130, where
            assert shot.stderr.splitlines()[-1] == f"venvprune: error: stopped by {name}; every change was restored"
            assert venv_digest(venv) == real_venv.before, where
    real_venv.guard.check()
    print(f"\n{table(f'{name} landed', landed)}")
    assert {"apply", "verify"} <= set(landed), landed
