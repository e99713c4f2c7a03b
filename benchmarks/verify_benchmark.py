"""Verification speed against the simplest possible check, side by side in one run (issue 4).

    python benchmarks/verify_benchmark.py [VENV] [--runs 3] [--jobs 0] [--pruned-copy] [--json results.json]

The yardstick ("one process") is one interpreter of VENV that imports every module venvprune checks, one after
the other, in the same environment the checks get (``-I -B``, scratch HOME/TMPDIR, no CA-bundle variables). The
goal of issue 4: venvprune's baseline plus its after-check take no more than 2.5 times that.

Per run, after one untimed warm-up import (so every contender finds the page cache warm):

- ``one process``: the yardstick;
- ``baseline``: ``venvprune.verify.take_baseline`` -- discovery, then every check (imports, metadata, entry points,
  dlopen of every ELF library) in the worker pool, with retries;
- ``after-check``: the same checks again, as ``verify_and_heal`` runs them after pruning (ordered by the baseline's
  timings). VENV is not modified, so this is an after-check of a prune that changed nothing.

``--pruned-copy`` also copies VENV (``cp -a``), prunes the copy with ``python -m venvprune`` (default categories)
and reports its ``baseline`` and ``verify`` phases, and the yardstick on the pruned copy: without bytecode, every
import compiles again, in the check as in production -- the cost the report shows as import seconds.

VENV defaults to /work/cache/venv-ml (CPU torch, transformers, sentence-transformers, fastapi, psycopg2-binary,
pypdf). Results go to stdout as Markdown, and with ``--json`` to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from venvprune.target import Target, resolve_target  # noqa: E402
from venvprune.verify import VerifyOptions, take_baseline  # noqa: E402
from venvprune.verify.checks import Check, bundle_uses, bundle_weights  # noqa: E402
from venvprune.verify.compare import checks_after  # noqa: E402
from venvprune.verify.probe.pool import hygienic_environment  # noqa: E402
from venvprune.verify.runner import Runner  # noqa: E402

GOAL = 2.5
# The yardstick: each module in turn, a failure noted and passed over, like the checks do.
IMPORT_ALL = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failed.append("%s: %s" % (name, type(exc).__name__))
print("\\n".join(failed))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("venv", type=Path, nargs="?", default=Path("/work/cache/venv-ml"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=0, help="import workers (default: one per CPU)")
    parser.add_argument("--pruned-copy", action="store_true", help="also prune a copy and time its verification")
    parser.add_argument("--workdir", type=Path, help="where the copy goes (default: beside the venv)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    target = resolve_target(args.venv)
    options = VerifyOptions(jobs=args.jobs)
    first = take_baseline(target, options)  # also the warm-up: every file read once
    modules = [str(c.task["name"]) for c in first.checks if c.kind == "import"]
    one_process(target, modules)  # warm-up of the yardstick itself
    kinds = Counter(c.kind for c in first.checks)
    results: dict[str, Any] = {
        "venv": str(target.root),
        "python": target.python_version,
        "cpus": os.cpu_count(),
        "jobs": args.jobs or "one per CPU",
        "checks": dict(kinds),
        "failing_at_baseline": list(first.failures),
        "retried_in_a_fresh_process": sum(1 for r in first.results.values() if r.attempt != "shared"),
        "runs": [],
    }
    for number in range(args.runs):
        run: dict[str, float] = {}
        run["one_process"] = one_process(target, modules)
        started = time.monotonic()
        baseline = take_baseline(target, options)
        run["baseline"] = time.monotonic() - started
        run["after_check"] = after_check(target, options, baseline.checks, baseline)
        run["ratio"] = (run["baseline"] + run["after_check"]) / run["one_process"]
        results["runs"].append(run)
        print(f"run {number + 1}: {json.dumps({k: round(v, 2) for k, v in run.items()})}", file=sys.stderr)
    if args.pruned_copy:
        results["pruned_copy"] = pruned_copy(target, args.jobs, args.workdir or target.root.parent)

    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def one_process(target: Target, modules: list[str]) -> float:
    assert target.interpreter is not None
    scratch = tempfile.mkdtemp(prefix="verify-benchmark-")
    try:
        env = hygienic_environment(dict(os.environ), scratch)
        started = time.monotonic()
        subprocess.run(
            [str(target.interpreter), "-I", "-B", "-c", IMPORT_ALL, *modules],
            cwd=scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        return time.monotonic() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def after_check(target: Target, options: VerifyOptions, checks: tuple[Check, ...], baseline: Any) -> float:
    """The checks as verify_and_heal runs them after pruning (nothing was removed here, so nothing is skipped)."""
    assert target.interpreter is not None
    started = time.monotonic()
    selected = checks_after(checks, baseline.results, [])
    with Runner(target.interpreter, target.root, target.site_packages, options.jobs, options.timeout) as runner:
        runner.run(selected, bundle_weights(checks, baseline.results), bundle_uses(checks, baseline.results))
    return time.monotonic() - started


def pruned_copy(target: Target, jobs: int, workdir: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="verify-benchmark-", dir=workdir))
    try:
        copy = work / target.root.name
        subprocess.run(["cp", "-a", str(target.root), str(copy)], check=True)
        pristine = resolve_target(copy)
        modules = [
            str(c.task["name"]) for c in take_baseline(pristine, VerifyOptions(jobs=jobs)).checks if c.kind == "import"
        ]
        before = one_process(pristine, modules)
        completed = subprocess.run(
            [sys.executable, "-m", "venvprune", "--json", "-", "--jobs", str(jobs), str(copy)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=False,
        )
        report = json.loads(completed.stdout)
        phases = {t["phase"]: t["seconds"] for t in report["timings"]}
        after = one_process(resolve_target(copy), modules)
        verification = report["verification"]
        totals = report["totals"]
        return {
            "exit_code": completed.returncode,
            "one_process_before": before,
            "one_process_after_pruning": after,
            "baseline": phases.get("baseline"),
            "verify": phases.get("verify"),
            "ratio": (phases.get("baseline", 0) + phases.get("verify", 0)) / before,
            "checks": f"{verification.get('checks_passed')}/{verification.get('checks_total')}",
            "healed": len(verification.get("healed", [])),
            "import_seconds_before": verification.get("import_seconds_before"),
            "import_seconds_after": verification.get("import_seconds_after"),
            "saved": f"{totals['before_bytes'] / 1e6:.0f} MB -> {totals['after_bytes'] / 1e6:.0f} MB",
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render(results: dict[str, Any]) -> str:
    runs = results["runs"]
    lines = [
        f"## Verification speed: {results['venv']} (Python {results['python']}, {results['cpus']} CPUs)",
        "",
        f"Checks: {', '.join(f'{n} {k}' for k, n in sorted(results['checks'].items()))}; "
        f"{results['retried_in_a_fresh_process']} needed a fresh process; "
        f"{len(results['failing_at_baseline'])} fail in the untouched venv.",
        "",
        "| run | one process | baseline | after-check | (baseline + after) / one process |",
        "|---|---|---|---|---|",
    ]
    for number, run in enumerate(runs, 1):
        lines.append(
            f"| {number} | {run['one_process']:.1f} s | {run['baseline']:.1f} s | {run['after_check']:.1f} s "
            f"| {run['ratio']:.2f} |"
        )
    if runs:
        median = statistics.median(r["ratio"] for r in runs)
        verdict = "meets" if median <= GOAL else "misses"
        lines += ["", f"Median ratio {median:.2f}: {verdict} the goal of {GOAL}."]
    pruned = results.get("pruned_copy")
    if pruned:
        lines += [
            "",
            f"Pruned copy ({pruned['saved']}, exit {pruned['exit_code']}, {pruned['checks']} checks pass, "
            f"{pruned['healed']} healed): baseline {pruned['baseline']:.1f} s + verify {pruned['verify']:.1f} s "
            f"= {pruned['ratio']:.2f} x one process ({pruned['one_process_before']:.1f} s). One process without "
            f"bytecode after pruning: {pruned['one_process_after_pruning']:.1f} s; the report's import seconds "
            f"{pruned['import_seconds_before']} -> {pruned['import_seconds_after']}.",
        ]
    for failure in results["failing_at_baseline"]:
        lines.append(f"- fails in the untouched venv: {failure}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
