"""venvprune's debug-symbol stripping against GNU strip, side by side on copies of one venv (issue 3).

    python benchmarks/strip_benchmark.py VENV [--runs 3] [--json results.json] [--cli]

Each run makes two fresh copies of VENV (``cp -a``), lists the ELF files of the copy by their magic (the same
list for both), then times

- GNU strip in its default mode over that list, batched like the seed's ``find ... -exec strip {} +``;
- venvprune over that list through the library API (``venvprune.elf.inspect`` + ``write_stripped`` + rename,
  the way the apply step rewrites a file), in a child process whose PATH holds no binutils at all.

The order alternates between runs so neither tool always gets the warmer cache. After the first run, every
top-level module of every distribution is imported with each copy's own interpreter, and compared with the
untouched venv (imported with bytecode writing off, so it is not modified). ``--cli`` also times one
end-to-end ``venvprune prune --only debug-symbols --no-verify`` on a third copy, without binutils too.

Results go to stdout as Markdown, and with ``--json`` to a file.
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

from measure import broken, elf_files, gnu_strip, import_each, tool_version, top_level_modules

REPO = Path(__file__).resolve().parent.parent
NO_BINUTILS_PATH = "/nonexistent"  # the child is started by absolute path; nothing else is found on PATH


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("venv", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--workdir", type=Path, help="where the copies go (default: beside the venv)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel import checks")
    parser.add_argument("--no-imports", action="store_true", help="skip the import check")
    parser.add_argument("--cli", action="store_true", help="also time the CLI end to end on one more copy")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args.worker)

    venv = args.venv.resolve()
    strip = shutil.which("strip")
    if strip is None:
        parser.error("GNU strip must be on PATH for the comparison (venvprune itself never needs it)")
    workdir = Path(tempfile.mkdtemp(prefix="strip-benchmark-", dir=args.workdir or venv.parent))
    results: dict[str, Any] = {"venv": str(venv), "strip": tool_version(strip), "runs": []}
    try:
        venv_bytes = _tree_bytes(venv)
        results["venv_bytes"] = venv_bytes
        for run in range(args.runs):
            results["runs"].append(_one_run(venv, workdir, run, strip, args, results))
        if args.cli:
            results["cli"] = _cli_run(venv, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _summarise(results)
    print(_markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _one_run(
    venv: Path, workdir: Path, run: int, strip: str, args: argparse.Namespace, results: dict[str, Any]
) -> dict[str, Any]:
    gnu_copy, vp_copy = workdir / f"gnu-{run}", workdir / f"venvprune-{run}"
    for copy in (gnu_copy, vp_copy):
        subprocess.run(["cp", "-a", str(venv), str(copy)], check=True)
    gnu_files, vp_files = elf_files(gnu_copy), elf_files(vp_copy)
    before = _sizes(gnu_files)
    record: dict[str, Any] = {"run": run + 1, "elf_files": len(gnu_files), "elf_bytes": sum(before)}

    def gnu() -> None:
        record["gnu"] = gnu_strip(strip, gnu_files)

    def venvprune() -> None:
        record["venvprune"] = _venvprune_child(vp_files, workdir / f"list-{run}.txt")

    for step in (gnu, venvprune) if run % 2 == 0 else (venvprune, gnu):
        # Write back what cp and the other tool left dirty, so neither pays for the other's writes.
        os.sync()
        step()
    record["gnu"]["bytes_saved"] = sum(before) - sum(_sizes(gnu_files))
    record["venvprune"]["bytes_saved_on_disk"] = sum(before) - sum(_sizes(vp_files))

    if run == 0 and not args.no_imports:
        modules = top_level_modules(venv)
        baseline = import_each(venv, modules, args.jobs)
        results["imports"] = {
            "modules": len(modules),
            "baseline_failures": sorted(m for m, ok in baseline.items() if not ok),
            "broken_by_gnu_strip": broken(baseline, import_each(gnu_copy, modules, args.jobs)),
            "broken_by_venvprune": broken(baseline, import_each(vp_copy, modules, args.jobs)),
        }
    shutil.rmtree(gnu_copy)
    shutil.rmtree(vp_copy)
    return record


def _venvprune_child(files: list[Path], listing: Path) -> dict[str, Any]:
    listing.write_text("\n".join(str(f) for f in files) + "\n")
    env = {"PATH": NO_BINUTILS_PATH, "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "x", "--worker", str(listing)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    report: dict[str, Any] = json.loads(result.stdout)
    report["seconds"] = wall  # the whole child, interpreter start-up included
    return report


def _worker(listing: Path) -> int:
    """Strip every file in *listing* with venvprune's library API, as the apply step would."""
    from venvprune import elf  # imported here: the parent needs nothing of venvprune

    start = time.perf_counter()
    reasons: Counter[str] = Counter()
    saved = left = errors = 0
    for line in listing.read_text().splitlines():
        path = Path(line)
        facts = elf.inspect(path)
        left += facts.left_in_place
        if facts.skip_reason is not None:
            reasons[facts.skip_reason] += 1
            continue
        new = path.with_name(path.name + ".venvprune-new")
        try:
            elf.write_stripped(path, new, facts)
            os.chmod(new, path.stat().st_mode & 0o7777)
            os.replace(new, path)
        except OSError:
            errors += 1
            continue
        reasons["stripped"] += 1
        saved += facts.bytes_saved
    print(
        json.dumps(
            {
                "work_seconds": time.perf_counter() - start,
                "bytes_saved": saved,
                "left_in_place": left,
                "files": dict(reasons),
                "errors": errors,
                "strip_on_path": shutil.which("strip"),
                "objcopy_on_path": shutil.which("objcopy"),
            }
        )
    )
    return 0


def _cli_run(venv: Path, workdir: Path) -> dict[str, Any]:
    copy = workdir / "cli"
    subprocess.run(["cp", "-a", str(venv), str(copy)], check=True)
    env = {"PATH": NO_BINUTILS_PATH, "PYTHONPATH": str(REPO), "LANG": "C.UTF-8", "HOME": str(workdir)}
    before = _tree_bytes(copy)
    command = [
        sys.executable,
        "-m",
        "venvprune",
        "prune",
        "--only",
        "debug-symbols",
        "--no-verify",
        "--no-manifest",
        "-q",
        str(copy),
    ]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    after = _tree_bytes(copy)
    shutil.rmtree(copy)
    return {
        "seconds": seconds,
        "exit_code": result.returncode,
        "bytes_saved": before - after,
        "last_line": (result.stdout.strip().splitlines() or [result.stderr.strip()])[-1:],
    }


def _sizes(files: list[Path]) -> list[int]:
    return [f.stat().st_size for f in files]


def _tree_bytes(root: Path) -> int:
    return sum(
        (Path(d, n).lstat().st_size for d, _, names in os.walk(root) for n in names),
    )


def _summarise(results: dict[str, Any]) -> None:
    runs = results["runs"]
    gnu = statistics.median(r["gnu"]["seconds"] for r in runs)
    vp = statistics.median(r["venvprune"]["seconds"] for r in runs)
    results["median_seconds"] = {"gnu": gnu, "venvprune": vp, "ratio": vp / gnu}


def _import_row(tool: str, modules: list[str]) -> str:
    return f"| {tool} | {len(modules)}: {', '.join(modules) or '-'} |"


def _mb(value: int) -> str:
    return f"{value / 1e6:,.1f}"


def _markdown(results: dict[str, Any]) -> str:
    runs = results["runs"]
    first = runs[0]
    lines = [
        f"Venv: `{results['venv']}` ({_mb(results['venv_bytes'])} MB), {first['elf_files']} ELF files "
        f"({_mb(first['elf_bytes'])} MB). GNU strip: {results['strip']}; venvprune: library API, "
        f"PATH without binutils (`strip` found by the child: {first['venvprune']['strip_on_path'] or 'no'}).",
        "",
        "| run | GNU strip: MB saved | GNU strip: s | venvprune: MB saved | venvprune: s | time ratio venvprune/GNU |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        g, v = r["gnu"], r["venvprune"]
        lines.append(
            f"| {r['run']} | {_mb(g['bytes_saved'])} | {g['seconds']:.2f} | {_mb(v['bytes_saved_on_disk'])} "
            f"| {v['seconds']:.2f} | {v['seconds'] / g['seconds']:.2f} |"
        )
    median = results["median_seconds"]
    lines += [
        f"| median | | {median['gnu']:.2f} | | {median['venvprune']:.2f} | {median['ratio']:.2f} |",
        "",
        f"venvprune files: {first['venvprune']['files']}; symbol/debug bytes left in place between segments: "
        f"{_mb(first['venvprune']['left_in_place'])} MB; write errors: {first['venvprune']['errors']}.",
    ]
    imports = results.get("imports")
    if imports:
        lines += [
            "",
            f"Imports ({imports['modules']} top-level modules; failing before any stripping: "
            f"{', '.join(imports['baseline_failures']) or 'none'}):",
            "",
            "| tool | imports broken |",
            "|---|---|",
            _import_row("GNU strip", imports["broken_by_gnu_strip"]),
            _import_row("venvprune", imports["broken_by_venvprune"]),
        ]
    cli = results.get("cli")
    if cli:
        lines += [
            "",
            f"End to end, `venvprune prune --only debug-symbols --no-verify` (scan, plan, journalled apply, "
            f"commit; no binutils on PATH): {cli['seconds']:.2f} s, {_mb(cli['bytes_saved'])} MB saved, "
            f"exit code {cli['exit_code']}.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
