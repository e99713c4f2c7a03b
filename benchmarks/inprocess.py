"""Run venvprune's command line in this process, as its console script does, and note what it cost.

    python benchmarks/inprocess.py --memory OUT.json [--tracemalloc OUT.json] -- VENVPRUNE-ARGS...

``--memory`` writes, when the command ends, the kernel's peak resident set size (``getrusage``) of this process --
venvprune's own, including the interpreter -- and separately of the largest child process it waited for (the
verification workers, or with ``--no-verify`` only the query of the target's interpreter). Both are exact
high-water marks, not samples. The child figure is per process: the largest one, not the sum of those running at
once (``run.py`` samples that sum from ``/proc``).

``--tracemalloc`` (for the profile; slow) also traces Python allocations and writes, at the end of each phase, the
traced memory then and its peak so far, and the allocation sites (file:line) holding the most at that moment.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

TOP_SITES = 15


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv:
        print("usage: inprocess.py --memory OUT.json [--tracemalloc OUT.json] -- VENVPRUNE-ARGS...", file=sys.stderr)
        return 2
    split = argv.index("--")
    own, command = argv[:split], argv[split + 1 :]
    options = dict(zip(own[::2], own[1::2]))
    memory_out = options.get("--memory")
    trace_out = options.get("--tracemalloc")
    phases: list[dict[str, Any]] = []
    if trace_out:
        _trace_phases(phases)

    from venvprune import cli

    sys.argv = ["venvprune", *command]
    code: int | str | None = 0
    started = time.perf_counter()
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code
    seconds = time.perf_counter() - started
    if memory_out:
        own_usage = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        Path(memory_out).write_text(
            json.dumps(
                {
                    "exit_code": code,
                    "seconds_in_process": seconds,
                    "peak_rss_bytes": own_usage.ru_maxrss * 1024,  # Linux reports KiB
                    "largest_child_peak_rss_bytes": children.ru_maxrss * 1024,
                    "user_seconds": own_usage.ru_utime,
                    "system_seconds": own_usage.ru_stime,
                    "children_user_seconds": children.ru_utime,
                    "children_system_seconds": children.ru_stime,
                }
            )
        )
    if trace_out:
        phases.append(_snapshot("end: report written", seconds))
        Path(trace_out).write_text(json.dumps({"phases": phases}, indent=1))
    return code if isinstance(code, int) else 1


def _trace_phases(phases: list[dict[str, Any]]) -> None:
    """Snapshot Python's allocations whenever the CLI's progress reports the end of a phase."""
    from venvprune import cli

    tracemalloc.start(1)
    original_end = cli._Progress.end

    def end(self: Any, phase: str, seconds: float, detail: str) -> None:
        phases.append(_snapshot(phase, seconds))
        original_end(self, phase, seconds, detail)

    cli._Progress.end = end  # type: ignore[method-assign]


def _snapshot(phase: str, seconds: float) -> dict[str, Any]:
    current, peak = tracemalloc.get_traced_memory()
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    return {
        "phase": phase,
        "seconds_traced": seconds,
        "traced_bytes": current,
        "traced_peak_bytes": peak,
        "peak_rss_bytes_so_far": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "top_sites": [
            {"site": str(stat.traceback[0]), "bytes": stat.size, "blocks": stat.count}
            for stat in snapshot.statistics("lineno")[:TOP_SITES]
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
