"""A SIGTERM or SIGINT that lands anywhere in a run stops it: no ``except Exception`` on the way may eat it.

pyelftools' construct library turns any Exception raised inside a field parse into its own error, which venvprune
reads as a corrupt ELF file. A signal handler that raised an Exception there was swallowed and the prune went on to
the end (test_crash.py caught it, about one shot in fifty, when the scan still read every library with pyelftools;
now it reads with pyelftools only a library whose dynamic string table lies in no loaded segment).
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import elftools.construct.core
import pytest

from tests.elf_helpers import shared_library, unmapped_string_table
from tests.reliability.conftest import Guard
from tests.site_builder import install_dist, make_site, tree_digest
from venvprune import pipeline, signals
from venvprune.config import Config
from venvprune.errors import Interrupted
from venvprune.scan import scan
from venvprune.target import Target, resolve_target

SIGNALS = pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])


def many_libraries(tmp_path: Path, library: Path, guard: Guard, count: int) -> tuple[Target, Path]:
    site = make_site(tmp_path / "prefix")
    install_dist(site, "pkg", {f"pkg/lib{i}.so": library.read_bytes() for i in range(count)})
    guard.plant(site)
    guard.twin(site)
    return resolve_target(site), site


@SIGNALS
def test_a_signal_inside_a_pyelftools_field_parse_stops_the_scan(
    tmp_path: Path, symbols_library: Path, guard: Guard, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    """Deterministic: the signal arrives while construct reads a field, inside its ``except Exception``."""
    named = shared_library(tmp_path, "libnamed.so", "-Wl,-soname,libnamed.so")  # a name to read from the table
    library = unmapped_string_table(named, tmp_path / "libunmapped.so")
    target, site = many_libraries(tmp_path, library, guard, 3)
    before = tree_digest(site)
    read_stream = elftools.construct.core._read_stream
    calls = {"n": 0}

    def signalled_read(stream: Any, length: int) -> bytes:
        calls["n"] += 1
        if calls["n"] == 5:
            signal.raise_signal(signum)  # the handler runs at the next instruction: in here
        return read_stream(stream, length)

    monkeypatch.setattr(elftools.construct.core, "_read_stream", signalled_read)
    with pytest.raises(Interrupted, match=f"stopped by {signal.Signals(signum).name}"), signals.handled():
        scan(target)
    assert calls["n"] == 5
    assert tree_digest(site) == before
    guard.check()


class Silent:
    def start(self, phase: str) -> None:
        pass

    def end(self, phase: str, seconds: float, detail: str) -> None:
        pass


# An exception raised by a signal handler can land inside a finalizer (a generator or a file closed by the garbage
# collector), where Python only prints it as "ignored"; the pipeline raises it again between phases. Such a file is
# then closed by the collector, which pytest reports as an unraisable warning: harmless in a process about to exit.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@SIGNALS
def test_a_signal_anywhere_in_a_dry_run_stops_it(
    tmp_path: Path, symbols_library: Path, guard: Guard, signum: int
) -> None:
    _target, site = many_libraries(tmp_path, symbols_library, guard, 150)
    before = tree_digest(site)
    config = Config(target=site, dry_run=True)
    started = time.monotonic()
    pipeline.prune(config, Silent())
    took = time.monotonic() - started
    shots = 16
    for shot in range(shots):
        timer = threading.Timer(took * (shot + 0.5) / shots, os.kill, (os.getpid(), signum))
        with pytest.raises(Interrupted), signals.handled():  # the outer handler only guards pytest itself
            timer.start()
            try:
                pipeline.prune(config, Silent())
                time.sleep(took + 0.05)  # a signal that came after the run lands here; one the run lost never does
            finally:
                timer.join()
    gc.collect()
    assert tree_digest(site) == before
    guard.check()
