"""--warm: how fast a module imports after pruning, with and without --warm, against the unpruned venv.

Two fresh copies of VENV (``cp -a``) are pruned, one with the default profile and one with ``--warm MODULE``; then
``import MODULE`` is timed in a fresh process of each venv's own interpreter (``-I -B``: nothing written), the three
venvs in turn (A B C A B C ...) so that a shared machine's load falls on all of them alike. Medians are printed.

    python benchmarks/warm_benchmark.py VENV MODULE [--runs 7] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def prune(venv: Path, *options: str) -> None:
    command = [sys.executable, "-m", "venvprune", "-q", *options, str(venv)]
    subprocess.run(command, check=True, cwd=REPOSITORY)


def import_seconds(venv: Path, module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([str(venv / "bin" / "python"), "-I", "-B", "-c", code], capture_output=True, text=True)
    out.check_returncode()
    return float(out.stdout)


def du_bytes(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("venv", type=Path)
    parser.add_argument("module")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--work", type=Path, help="where the copies go (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(dir=args.work))
    try:
        pruned, warmed = work / "pruned", work / "warmed"
        for copy in (pruned, warmed):
            subprocess.run(["cp", "-a", str(args.venv), str(copy)], check=True)
        prune(pruned)
        prune(warmed, "--warm", args.module)
        venvs = {"unpruned": args.venv, "pruned": pruned, f"pruned --warm {args.module}": warmed}
        times: dict[str, list[float]] = {name: [] for name in venvs}
        for _ in range(args.runs):
            for name, venv in venvs.items():
                times[name].append(import_seconds(venv, args.module))
        reference = statistics.median(times["unpruned"])
        for name, venv in venvs.items():
            median = statistics.median(times[name])
            runs = " ".join(f"{t:.2f}" for t in times[name])
            print(
                f"{name:<40} {du_bytes(venv) / 1e6:8.1f} MB  import {args.module}: median {median:.2f} s "
                f"({100 * (median / reference - 1):+.0f}%)  runs {runs}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
