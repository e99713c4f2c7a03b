"""venvprune against the shell chain it replaces, side by side in one run: size, breakage, time, memory (issue 12).

    python benchmarks/run.py [--venv data|ml|synthetic ...] [--rounds 3] [--quick] [--cache-dir DIR] [--out DIR]

Reference venvs are built once into the cache folder (``--cache-dir``, default ``~/.cache/venvprune-benchmark``)
and then only read; what is missing is built (see ``references.py``): **data**, **ML** and the **synthetic** trees of
50,000, 100,000 and 200,000 files (the curve). Each round runs every contender, in an order that rotates from round
to round, on a fresh ``cp -a`` copy made (and written back with ``sync``, except with ``--quick``) just before it,
in ``--workdir`` (default: the cache folder), so every contender finds the page cache warm and pays for no one
else's writes:

- ``chain``: the seed's seven-step ``find`` chain, verbatim, with ``/opt/venv`` replaced by the copy;
- ``gnu-strip``: GNU strip (default mode) over every ELF file, found by magic before the clock starts;
- venvprune ``--dry-run``, ``--no-verify``, the default, ``--only debug-symbols --no-verify``, and ``--profile max``
  when ``venvprune --help`` lists it.

Recorded per contender: size after (``du -sb`` of the whole venv; the size before is taken on the first copy, on
the same file system), files removed (files before minus after, the
whole venv), wall time (median of the rounds), venvprune's own peak memory and the verification workers' (see
``inprocess.py``: exact ``getrusage`` high-water marks of venvprune's process and of its largest child, plus the
sum of all its descendants' resident memory sampled from ``/proc`` every 50 ms), and the top-level modules that
imported before and not after, each imported in a process of its own (first round only: the result of a prune
does not change between rounds). Results go to ``OUT/results.md`` and ``OUT/results.json`` and the table to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import measure
import references

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = Path.home() / ".cache" / "venvprune-benchmark"
CURVE = (50_000, 100_000, 200_000)
QUICK_FILES = 1_000

# The seed's chain, verbatim (a Docker optimisation guide's "7-step extreme clean-up").
SEED_CHAIN = """\
find /opt/venv -name "*.pyc" -delete && \\
find /opt/venv -name "tests" -type d -exec rm -rf {} + && \\
find /opt/venv -name "test" -type d -exec rm -rf {} + && \\
find /opt/venv -name "__pycache__" -type d -exec rm -rf {} + && \\
find /opt/venv -name "*.so" -exec strip {} + && \\
find /opt/venv -name "*.dist-info" -type d -exec rm -rf {} + && \\
find /opt/venv -name "*.egg-info" -type d -exec rm -rf {} +"""
PHASE_LINE = re.compile(r"^venvprune: ([\w-]+) ([0-9.]+) s", re.MULTILINE)


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    venvprune_args: tuple[str, ...] | None = None  # None: not venvprune

    @property
    def is_venvprune(self) -> bool:
        return self.venvprune_args is not None


CHAIN = Contender("chain", "seed `find` chain")
GNU_STRIP = Contender("gnu-strip", "GNU strip, every ELF file")
VENVPRUNE = (
    Contender("dry-run", "`venvprune --dry-run`", ("--dry-run",)),
    Contender("no-verify", "`venvprune --no-verify`", ("--no-verify",)),
    Contender("default", "`venvprune`", ()),
    Contender(
        "debug-symbols", "`venvprune --only debug-symbols --no-verify`", ("--only", "debug-symbols", "--no-verify")
    ),
)
PROFILE_MAX = Contender("profile-max", "`venvprune --profile max`", ("--profile", "max"))


def main() -> int:
    args = _parse_args()
    # Stopped with SIGTERM, still delete the copies (the finally below).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    _ensure_venvprune_importable(args.cache_dir)
    contenders = _contenders(args.contender)
    strip = shutil.which("strip")
    if strip is None:
        contenders = [c for c in contenders if c.key != GNU_STRIP.key]
        print("GNU strip is not on PATH: the gnu-strip contender is left out", file=sys.stderr)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    results: dict[str, Any] = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": measure.machine(),
        "tool_python": platform.python_version(),
        # The code measured: the last commit that changed venvprune/ (and whether it has changed since).
        "venvprune_commit": _git(["log", "-1", "--format=%h", "--", "venvprune"]),
        "venvprune_modified": bool(_git(["status", "--porcelain", "--", "venvprune"])),
        "strip": measure.tool_version(strip) if strip else None,
        "rounds": args.rounds,
        "note": args.note,
        "contenders": {c.key: _describe(c) for c in contenders},
        "venvs": {},
    }
    try:
        targets = _targets(args)
    except references.CacheError as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="venvprune-benchmark-", dir=args.workdir or args.cache_dir))
    results["copies_in"] = _file_system(workdir)
    try:
        for name, venv in targets:
            print(f"== {name}: {venv}", file=sys.stderr)
            results["venvs"][name] = _bench_venv(venv, contenders, args, workdir, strip)
            _write(results, args.out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    markdown = _write(results, args.out)
    print(markdown, end="")
    return 0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--venv",
        action="append",
        choices=["data", "ml", "synthetic"],
        help="what to prune (repeatable; default: all three, or only a tiny synthetic tree with --quick)",
    )
    parser.add_argument("--rounds", type=int, help="rounds of every contender (default 3, 1 with --quick)")
    parser.add_argument(
        "--quick", action="store_true", help=f"one round on a {QUICK_FILES:,}-file synthetic tree, without syncs"
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"reference venvs (default {DEFAULT_CACHE})"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where results.md and results.json go")
    parser.add_argument(
        "--workdir", type=Path, help="where the copies go (default: in the cache folder, on the same file system)"
    )
    parser.add_argument("--python", default=shutil.which("python3.11") or sys.executable, help="builds the venvs")
    parser.add_argument("--torch-index-url", help="extra index for the CPU torch wheel (PyPI's default is CUDA)")
    parser.add_argument(
        "--synthetic-files",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        help=f"sizes of the synthetic trees (default {','.join(map(str, CURVE))})",
    )
    parser.add_argument("--contender", action="append", help="run only these contenders (repeatable)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel import checks")
    parser.add_argument("--no-imports", action="store_true", help="skip the per-module import checks")
    parser.add_argument("--note", default="", help="a sentence printed with the results (e.g. the machine was busy)")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.venv = args.venv or (["synthetic"] if args.quick else ["data", "ml", "synthetic"])
    args.synthetic_files = args.synthetic_files or ((QUICK_FILES,) if args.quick else CURVE)
    args.cache_dir = args.cache_dir.resolve()
    args.out = args.out.resolve()
    return args


def _ensure_venvprune_importable(cache: Path) -> None:
    """Run under an interpreter that has venvprune's dependencies: this one, or a tool venv made in the cache."""
    if all(importlib.util.find_spec(m) for m in ("click", "packaging", "elftools")):
        return
    tool = cache / "tool-venv"
    python = tool / "bin" / "python"
    if not python.exists():
        print(f"building {tool} for venvprune's dependencies ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(tool)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", str(REPO)], check=True)
    if Path(sys.executable).resolve() == python.resolve():
        sys.exit(f"run.py: {tool} lacks venvprune's dependencies; remove it and run again")
    os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])


def _contenders(only: Sequence[str] | None) -> list[Contender]:
    chosen = [CHAIN, GNU_STRIP, *VENVPRUNE]
    if _venvprune_has_profile_max():
        chosen.append(PROFILE_MAX)
    if only:
        unknown = set(only) - {c.key for c in chosen}
        if unknown:
            sys.exit(f"run.py: unknown or unavailable contender {', '.join(sorted(unknown))}")
        chosen = [c for c in chosen if c.key in only]
    return chosen


def _venvprune_has_profile_max() -> bool:
    """Detected, not assumed: ``--profile`` with a ``max`` choice in ``venvprune --help``."""
    completed = subprocess.run(
        [sys.executable, "-m", "venvprune", "--help"],
        capture_output=True,
        text=True,
        env=measure.venvprune_environment(REPO, None),
        check=False,
    )
    block = re.search(r"--profile\b.*?(?=\n  -|\Z)", completed.stdout, re.DOTALL)
    return block is not None and re.search(r"\bmax\b", block.group(0)) is not None


def _describe(contender: Contender) -> str:
    if contender.key == CHAIN.key:
        return SEED_CHAIN
    if contender.key == GNU_STRIP.key:
        return "strip FILE... (batched like find -exec strip {} +) over every file that starts with \\x7fELF"
    return shlex.join(["venvprune", *(contender.venvprune_args or ()), "VENV"])


def _targets(args: argparse.Namespace) -> list[tuple[str, Path]]:
    targets = []
    for key in args.venv:
        if key == "synthetic":
            targets += [
                (f"synthetic-{n}", references.synthetic_venv(n, args.cache_dir, args.python))
                for n in args.synthetic_files
            ]
        else:
            targets.append((key, references.reference_venv(key, args.cache_dir, args.python, args.torch_index_url)))
    return targets


def _bench_venv(
    venv: Path, contenders: Sequence[Contender], args: argparse.Namespace, workdir: Path, strip: str | None
) -> dict[str, Any]:
    modules = [] if args.no_imports else measure.top_level_modules(venv)
    baseline = measure.import_each(venv, modules, args.jobs)
    record: dict[str, Any] = {
        "path": str(venv),
        "python": _venv_python_version(venv),
        "distributions": references.distributions(venv),
        "before": {},  # measured on the first copy: directory sizes differ between file systems (tmpfs, ext4)
        "modules": modules,
        "failing_before": sorted(m for m, ok in baseline.items() if not ok),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "contenders": {c.key: {"rounds": []} for c in contenders},
    }
    for number in range(args.rounds):
        shift = number % len(contenders)
        for contender in [*contenders[shift:], *contenders[:shift]]:
            copy = workdir / f"{contender.key}-{number}"
            subprocess.run(["cp", "-a", str(venv), str(copy)], check=True)
            if not args.quick:  # a system-wide sync takes seconds on a busy machine: not for a smoke run
                os.sync()  # write back the copy now, so no contender pays for writes it did not make
            if not record["before"]:
                record["before"] = {"bytes": measure.du_bytes(copy), "files": measure.count_files(copy)}
            result = _run(contender, copy, workdir, strip)
            result["round"] = number + 1
            result["size_after"] = measure.du_bytes(copy)
            result["files_removed"] = record["before"]["files"] - measure.count_files(copy)
            if number == 0 and modules and contender.key != "dry-run":
                result["imports_broken"] = measure.broken(baseline, measure.import_each(copy, modules, args.jobs))
            record["contenders"][contender.key]["rounds"].append(result)
            print(
                f"  round {number + 1} {contender.key}: {result['seconds']:.2f} s, exit {result['exit_code']}",
                file=sys.stderr,
            )
            shutil.rmtree(copy)
    record["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    _summarise(record)
    return record


def _run(contender: Contender, copy: Path, workdir: Path, strip: str | None) -> dict[str, Any]:
    if contender.key == CHAIN.key:
        finished = measure.run_measured(["sh", "-c", SEED_CHAIN.replace("/opt/venv", shlex.quote(str(copy)))], workdir)
        return {"seconds": finished.seconds, "exit_code": finished.exit_code, "output_tail": finished.output[-400:]}
    if contender.key == GNU_STRIP.key:
        assert strip is not None
        files = measure.elf_files(copy)
        stripped = measure.gnu_strip(strip, files)
        return {"seconds": stripped["seconds"], "exit_code": stripped["failed_batches"], "elf_files": len(files)}
    return _run_venvprune(contender, copy, workdir)


def _run_venvprune(contender: Contender, copy: Path, workdir: Path) -> dict[str, Any]:
    memory_file = workdir / "memory.json"
    command = [
        sys.executable,
        str(HERE / "inprocess.py"),
        "--memory",
        str(memory_file),
        "--",
        *(contender.venvprune_args or ()),
        str(copy),
    ]
    scratch = Path(tempfile.mkdtemp(prefix="cwd-", dir=workdir))  # no pyproject.toml to pick settings from
    try:
        finished = measure.run_measured(
            command, scratch, measure.venvprune_environment(REPO, workdir / "tmp"), sample_descendants=True
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    memory = json.loads(memory_file.read_text()) if memory_file.exists() else {}
    memory_file.unlink(missing_ok=True)
    result: dict[str, Any] = {
        "seconds": finished.seconds,
        "exit_code": finished.exit_code,
        "phases": {name: float(seconds) for name, seconds in PHASE_LINE.findall(finished.output)},
        "peak_rss": memory.get("peak_rss_bytes"),
        "largest_child_peak_rss": memory.get("largest_child_peak_rss_bytes"),
        "children_peak_rss_sum": finished.descendants_peak_bytes,
        "children_at_once": finished.descendants_peak_count,
        "last_line": finished.output.strip().splitlines()[-1:] if finished.output.strip() else [],
    }
    if finished.exit_code not in (0, 3):
        result["output_tail"] = finished.output[-2000:]
        print(f"  {contender.key} exited {finished.exit_code}:\n{finished.output[-2000:]}", file=sys.stderr)
    return result


def _file_system(path: Path) -> str:
    """``ext4 (discard)`` or ``tmpfs``: deleting many files costs what the file system makes it cost."""
    completed = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE,OPTIONS", "-T", str(path)], capture_output=True, text=True, check=False
    )
    fields = completed.stdout.split()
    if not fields:
        return "unknown"
    return f"{fields[0]} (discard)" if len(fields) > 1 and "discard" in fields[1].split(",") else fields[0]


def _venv_python_version(venv: Path) -> str:
    completed = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.stdout.strip()


def _git(arguments: list[str]) -> str | None:
    completed = subprocess.run(["git", "-C", str(REPO), *arguments], capture_output=True, text=True, check=False)
    return completed.stdout.strip() or None


def _summarise(record: dict[str, Any]) -> None:
    chain = record["contenders"].get(CHAIN.key)
    chain_seconds = statistics.median(r["seconds"] for r in chain["rounds"]) if chain else None
    for data in record["contenders"].values():
        rounds = data["rounds"]
        seconds = statistics.median(r["seconds"] for r in rounds)
        data["median_seconds"] = seconds
        data["vs_chain"] = seconds / chain_seconds if chain_seconds else None
        data["size_after"] = int(statistics.median(r["size_after"] for r in rounds))
        data["files_removed"] = int(statistics.median(r["files_removed"] for r in rounds))
        data["exit_codes"] = sorted({r["exit_code"] for r in rounds})
        data["imports_broken"] = rounds[0].get("imports_broken")
        for field in ("peak_rss", "largest_child_peak_rss", "children_peak_rss_sum"):
            values = [r[field] for r in rounds if r.get(field) is not None]
            data[field] = max(values) if values else None  # a peak: the highest of the rounds
        phases = [r["phases"] for r in rounds if r.get("phases")]
        if phases:
            data["median_phases"] = {p: statistics.median(x.get(p, 0.0) for x in phases) for p in phases[0]}
    strip = record["contenders"].get(GNU_STRIP.key)
    symbols = record["contenders"].get("debug-symbols")
    if strip and symbols:
        record["debug_symbols_vs_gnu_strip"] = symbols["median_seconds"] / strip["median_seconds"]


# -- output ---------------------------------------------------------------------------------------------------------


def _write(results: dict[str, Any], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    markdown = render(results)
    (out / "results.md").write_text(markdown)
    return markdown


def _mb(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:,.0f} MB" if abs(value) >= 10e6 else f"{value / 1e6:,.1f} MB"


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    quota = f", cgroup quota {m['cgroup_cpu_quota']:g} CPUs" if m.get("cgroup_cpu_quota") else ", no cgroup CPU quota"
    lines = [
        f"# venvprune benchmark, {results['date']}",
        "",
        f"Machine: {m['cores']} cores ({m['usable_cpus']} usable{quota}), {m['cpu_model']}, {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}; load average {m['load_average'][0]} at the start"
        + (f", {m['load_average_at_end'][0]} at the end" if "load_average_at_end" in m else "")
        + f". Benchmark and venvprune on Python {results['tool_python']}; venvprune {results['venvprune_commit']}"
        + (" with uncommitted changes" if results.get("venvprune_modified") else "")
        + "; "
        f"{results['strip'] or 'no GNU strip'}. Wall time: median of {results['rounds']} round(s), each contender "
        f"on a fresh `cp -a` copy (on {results.get('copies_in', 'the cache file system')}), order rotating per round.",
    ]
    if results.get("note"):
        lines += ["", f"Note: {results['note']}"]
    for name, venv in results["venvs"].items():
        lines += ["", *_venv_table(name, venv)]
    curve = _curve(results)
    if curve:
        lines += ["", *curve]
    return "\n".join(lines) + "\n"


def _venv_table(name: str, venv: dict[str, Any]) -> list[str]:
    before = venv["before"]
    failing = venv["failing_before"]
    lines = [
        f"## {name}: {before['bytes'] / 1e6:,.0f} MB, {before['files']:,} files, Python {venv['python']}, "
        f"{len(venv['distributions'])} distributions",
        "",
        f"Top-level modules checked: {len(venv['modules'])}"
        + (f" ({len(failing)} fail before any pruning: {', '.join(failing)})" if failing else "")
        + f". Load average {venv['load_average_at_start'][0]} before, {venv['load_average_at_end'][0]} after.",
        "",
        "| contender | size after | saved | files removed | wall time | x chain | venvprune peak RSS "
        "| workers: largest / all at once | imports broken | exit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for key, data in venv["contenders"].items():
        saved = before["bytes"] - data["size_after"]
        ratio = "-" if data["vs_chain"] is None else f"{data['vs_chain']:.2f}x"
        workers = (
            "-"
            if data.get("largest_child_peak_rss") is None
            else f"{_mb(data['largest_child_peak_rss'])} / {_mb(data['children_peak_rss_sum'])}"
        )
        broken = data["imports_broken"]
        broken_text = "-" if broken is None else (f"{len(broken)}: {', '.join(broken)}" if broken else "0")
        lines.append(
            f"| {LABELS.get(key, key)} | {_mb(data['size_after'])} | {_mb(saved)} ({saved / before['bytes']:.0%}) "
            f"| {data['files_removed']:,} | {data['median_seconds']:.2f} s | {ratio} | {_mb(data.get('peak_rss'))} "
            f"| {workers} | {broken_text} | {','.join(map(str, data['exit_codes']))} |"
        )
    if "debug_symbols_vs_gnu_strip" in venv:
        lines += [
            "",
            f"`--only debug-symbols --no-verify`, end to end: {venv['debug_symbols_vs_gnu_strip']:.2f}x GNU strip "
            "over the same files (GNU strip's file list is made before its clock starts).",
        ]
    phases = {k: d["median_phases"] for k, d in venv["contenders"].items() if d.get("median_phases")}
    if phases:
        lines += ["", "venvprune's phases (median seconds, as its progress lines print them):", ""]
        lines += [
            f"- {LABELS.get(k, k)}: " + ", ".join(f"{p} {s:.1f}" for p, s in v.items()) for k, v in phases.items()
        ]
    return lines


LABELS = {c.key: c.label for c in (CHAIN, GNU_STRIP, *VENVPRUNE, PROFILE_MAX)}


def _curve(results: dict[str, Any]) -> list[str]:
    sizes = sorted((v["before"]["files"], v) for n, v in results["venvs"].items() if n.startswith("synthetic-"))
    if len(sizes) < 2:
        return []
    keys = [k for k in sizes[0][1]["contenders"] if k != GNU_STRIP.key]
    lines = [
        "## Growth with the number of files (synthetic trees)",
        "",
        "| files | " + " | ".join(LABELS.get(k, k) for k in keys) + " |",
        "|---:|" + "---:|" * len(keys),
    ]
    for files, venv in sizes:
        cells = []
        for key in keys:
            data = venv["contenders"].get(key)
            if data is None:
                cells.append("-")
                continue
            memory = f", {_mb(data['peak_rss'])}" if data.get("peak_rss") else ""
            cells.append(f"{data['median_seconds']:.1f} s{memory}")
        lines.append(f"| {files:,} | " + " | ".join(cells) + " |")
    (small, first), (large, last) = sizes[0], sizes[-1]
    growth = []
    for key in keys:
        a, b = first["contenders"].get(key), last["contenders"].get(key)
        if a and b:
            text = f"{LABELS.get(key, key)}: time x{b['median_seconds'] / a['median_seconds']:.2f}"
            if a.get("peak_rss") and b.get("peak_rss"):
                slope = (b["peak_rss"] - a["peak_rss"]) / (large - small) * 10_000
                text += f", peak memory +{slope / 1e6:.1f} MB per 10,000 files"
            growth.append(text)
    lines += ["", f"From {small:,} to {large:,} files (x{large / small:.1f}): " + "; ".join(growth) + "."]
    return lines


if __name__ == "__main__":
    sys.exit(main())
