"""Where venvprune's time and memory go: py-spy and tracemalloc on fresh copies of one venv (issue 12).

    python benchmarks/profile_venvprune.py VENV [--mode no-verify --mode dry-run --mode default] [--rate 100]
                                               [--no-tracemalloc] [--out DIR]

Per mode, on a fresh ``cp -a`` copy each time:

1. ``py-spy record --idle`` samples venvprune's process (wall time: waiting on the disk or on the verification
   workers counts), and the samples of its main thread are summed by phase (the function ``pipeline._prune`` calls),
   by function (self: the innermost frame; inclusive: anywhere on the stack) and by venvprune source line;
2. ``inprocess.py --tracemalloc`` runs it again with Python's allocations traced, and snapshots them at the end of
   each phase: traced memory then, the peak so far, and the allocation sites holding most. (Tracing slows the run;
   its seconds are not the profile's.) The run under py-spy also gives the exact peak RSS (``getrusage``).

py-spy (``pip install py-spy``) must be on PATH or beside this interpreter. Writes ``OUT/profile-NAME-MODE.md``
(and the raw samples, ``.txt``) and prints the Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from measure import venvprune_environment

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODES = {"no-verify": ("--no-verify",), "dry-run": ("--dry-run",), "default": ()}
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
# The function pipeline._prune or ._apply calls -> the phase it is (the progress line's name where there is one).
PHASE_OF_CALL = {
    "resolve_target": "target",
    "select": "target",
    "target_lock": "target",
    "recover": "recover",
    "scan": "scan",
    "build_plan": "plan",
    "take_baseline": "baseline",
    "run_transaction": "apply",
    "Transaction.execute": "apply: RECORD rewrites (outside the apply timer)",
    "verify_and_heal": "verify",
    "Transaction.commit": "commit",
}
TOP = 25


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("venv", type=Path)
    parser.add_argument("--mode", action="append", choices=list(MODES), help="default: all three")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the (slow) allocation-tracing run")
    parser.add_argument("--name", help="name in the output files (default: the venv folder's name)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--workdir", type=Path, help="where the copies go (default: beside the venv)")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        sys.exit("profile_venvprune.py: py-spy not found; pip install py-spy")
    venv = args.venv.resolve()
    name = args.name or venv.name
    args.out = args.out.resolve()  # py-spy writes the samples from inside the work folder
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="profile-", dir=args.workdir or venv.parent))
    try:
        for mode in args.mode or list(MODES):
            samples_file = args.out / f"profile-{name}-{mode}.txt"
            memory = _sampled_run(py_spy, venv, workdir, mode, args.rate, samples_file)
            traced = None if args.no_tracemalloc else _traced_run(venv, workdir, mode)
            report = render(name, mode, args.rate, _aggregate(samples_file, args.rate), memory, traced)
            (args.out / f"profile-{name}-{mode}.md").write_text(report)
            print(report)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _fresh_copy(venv: Path, workdir: Path) -> Path:
    copy = workdir / "copy"
    shutil.rmtree(copy, ignore_errors=True)
    subprocess.run(["cp", "-a", str(venv), str(copy)], check=True)
    os.sync()
    return copy


def _venvprune(mode: str, copy: Path, *wrapper_options: str) -> list[str]:
    return [sys.executable, str(HERE / "inprocess.py"), *wrapper_options, "--", *MODES[mode], str(copy)]


def _sampled_run(py_spy: str, venv: Path, workdir: Path, mode: str, rate: int, samples: Path) -> dict[str, Any]:
    copy = _fresh_copy(venv, workdir)
    memory_file = workdir / "memory.json"
    command = [
        py_spy,
        "record",
        "--format",
        "raw",
        "--idle",
        "--threads",
        "--rate",
        str(rate),
        "--output",
        str(samples),
        "--",
        *_venvprune(mode, copy, "--memory", str(memory_file)),
    ]
    return _run_on_copy(command, copy, workdir, memory_file)


def _traced_run(venv: Path, workdir: Path, mode: str) -> dict[str, Any]:
    copy = _fresh_copy(venv, workdir)
    trace_file = workdir / "trace.json"
    return _run_on_copy(_venvprune(mode, copy, "--tracemalloc", str(trace_file)), copy, workdir, trace_file)


def _run_on_copy(command: list[str], copy: Path, workdir: Path, result_file: Path) -> dict[str, Any]:
    """Run *command* on the fresh *copy*, delete the copy, and return the JSON it wrote to *result_file*."""
    subprocess.run(
        command,
        cwd=workdir,
        env=venvprune_environment(REPO, workdir / "tmp"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    shutil.rmtree(copy)
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result


def _aggregate(samples: Path, rate: int) -> dict[str, Any]:
    """Sum py-spy's collapsed stacks of the main thread by phase, function and venvprune line, in seconds."""
    phases: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    main_thread = None
    other_threads = 0
    parsed = []
    for raw in samples.read_text().splitlines():
        stack_text, _, count_text = raw.rpartition(" ")
        frames = stack_text.split(";")
        if frames[0].endswith(": MainThread"):
            main_thread = frames[0].split(":")[0]
        parsed.append((frames, int(count_text)))
    total = 0
    for frames, count in parsed:
        if frames[0].split(":")[0] != main_thread:
            other_threads += count
            continue
        total += count
        calls = [_parse(f) for f in frames[1:]]
        phases[_phase(calls)] += count
        if not calls:
            continue  # the thread before its first Python frame
        function, file, _ = calls[-1]
        own[f"{function} ({file})"] += count
        for key in {f"{function} ({file})" for function, file, _ in calls}:
            inclusive[key] += count
        venvprune_frames = [c for c in calls if c[1].startswith("venvprune/")]
        if venvprune_frames:
            function, file, line = venvprune_frames[-1]
            lines[f"{file}:{line} ({function})"] += count
    return {
        "seconds": total / rate,
        "other_threads_seconds": other_threads / rate,
        "phases": {k: v / rate for k, v in phases.most_common()},
        "own": {k: v / rate for k, v in own.most_common(TOP)},
        "inclusive": {k: v / rate for k, v in inclusive.most_common() if "venvprune/" in k},
        "lines": {k: v / rate for k, v in lines.most_common(TOP)},
    }


def _parse(frame: str) -> tuple[str, str, str]:
    match = FRAME.match(frame)
    if match is None:
        return frame, "", ""
    file = match["file"]
    file = file.split("site-packages/")[-1] if "site-packages/" in file else file
    if "/venvprune/" in file or file.startswith("venvprune/"):
        file = "venvprune/" + file.split("venvprune/", 1)[1]
    return match["function"], file, match["line"] or ""


def _phase(calls: list[tuple[str, str, str]]) -> str:
    names = [function for function, file, _ in calls]
    for anchor in ("_apply", "_prune"):
        if anchor in names:
            position = len(names) - 1 - names[::-1].index(anchor)
            if position + 1 < len(names):
                callee = names[position + 1]
                if anchor == "_prune" and callee == "_apply":
                    continue
                return PHASE_OF_CALL.get(callee, f"other: {callee}")
            return f"{anchor} itself"
    if "prune_command" in names:
        position = names.index("prune_command")
        callee = names[position + 1] if position + 1 < len(names) else "prune_command"
        return "report and output" if callee != "load" else "config"
    return "start-up: interpreter, imports, click"


def render(
    name: str, mode: str, rate: int, profile: dict[str, Any], memory: dict[str, Any], traced: dict[str, Any] | None
) -> str:
    total = profile["seconds"] or 1.0
    command = " ".join(["venvprune", *MODES[mode], name])
    lines = [
        f"## Profile: `{command}`",
        "",
        f"py-spy, {rate} samples/s, wall time of the main thread: {profile['seconds']:.2f} s "
        f"(exit {memory['exit_code']}; other threads {profile['other_threads_seconds']:.2f} s). "
        f"Peak RSS: venvprune {memory['peak_rss_bytes'] / 1e6:.0f} MB, largest child "
        f"{memory['largest_child_peak_rss_bytes'] / 1e6:.0f} MB. CPU: {memory['user_seconds']:.1f} s user + "
        f"{memory['system_seconds']:.1f} s system in venvprune, {memory['children_user_seconds']:.1f} s + "
        f"{memory['children_system_seconds']:.1f} s in its children.",
        "",
        "| phase | seconds | share |",
        "|---|---:|---:|",
        *(f"| {k} | {v:.2f} | {v / total:.0%} |" for k, v in profile["phases"].items()),
        "",
        "Functions by own time (innermost frame):",
        "",
        "| function | seconds | share |",
        "|---|---:|---:|",
        *(f"| `{k}` | {v:.2f} | {v / total:.0%} |" for k, v in profile["own"].items()),
        "",
        "venvprune functions by inclusive time:",
        "",
        "| function | seconds | share |",
        "|---|---:|---:|",
        *(f"| `{k}` | {v:.2f} | {v / total:.0%} |" for k, v in list(profile["inclusive"].items())[:TOP]),
        "",
        "venvprune lines (the innermost venvprune frame) by time:",
        "",
        "| line | seconds | share |",
        "|---|---:|---:|",
        *(f"| `{k}` | {v:.2f} | {v / total:.0%} |" for k, v in profile["lines"].items()),
    ]
    if traced:
        lines += [
            "",
            "tracemalloc at the end of each phase (traced Python memory then / peak so far; RSS peak so far):",
            "",
            "| phase | traced | traced peak | RSS peak |",
            "|---|---:|---:|---:|",
            *(
                f"| {p['phase']} | {p['traced_bytes'] / 1e6:.1f} MB | {p['traced_peak_bytes'] / 1e6:.1f} MB "
                f"| {p['peak_rss_bytes_so_far'] / 1e6:.1f} MB |"
                for p in traced["phases"]
            ),
        ]
        fullest = max(traced["phases"], key=lambda p: p["traced_bytes"], default=None)
        if fullest:
            lines += [
                "",
                f"Allocation sites holding most at the end of `{fullest['phase']}`:",
                "",
                "| site | MB | blocks |",
                "|---|---:|---:|",
                *(
                    f"| `{_short(s['site'])}` | {s['bytes'] / 1e6:.1f} | {s['blocks']:,} |"
                    for s in fullest["top_sites"]
                ),
            ]
    return "\n".join(lines) + "\n"


def _short(site: str) -> str:
    """``/x/venvprune/scan.py:9`` -> ``venvprune/scan.py:9``; ``/x/lib/python3.11/os.py:5`` -> ``os.py:5``."""
    if "/venvprune/" in site:
        return "venvprune/" + site.split("/venvprune/", 1)[1]
    return re.sub(r"^.*/lib/python3\.\d+/(site-packages/)?", "", site)


if __name__ == "__main__":
    sys.exit(main())
