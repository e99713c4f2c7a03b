"""``benchmarks/run.py --quick`` end to end on a tiny synthetic tree: the results it writes are there and make sense.

No timing is asserted here (timings live in the benchmark's output); only what a reader of the results would check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_writes_the_table_and_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # The copies on another file system than the cache (tmpfs where there is one), as `--workdir /dev/shm` puts them:
    # sizes before and after must both be measured there (du -sb counts directories differently on tmpfs and ext4).
    shm = Path("/dev/shm")
    workdir = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path / "copies"
    workdir.mkdir(exist_ok=True)
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--quick",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(out),
            "--workdir",
            str(workdir),
            "--python",
            sys.executable,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    shutil.rmtree(workdir, ignore_errors=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    markdown = (out / "results.md").read_text()
    assert markdown == completed.stdout
    assert "| contender | size after |" in markdown
    results = json.loads((out / "results.json").read_text())
    assert results["machine"]["cores"] >= 1
    (venv,) = results["venvs"].values()
    contenders = venv["contenders"]
    assert {"chain", "dry-run", "no-verify", "default", "debug-symbols"} <= set(contenders)
    before = venv["before"]

    # The seed's chain deletes dist-info and tests: the package that reads its version and imports its tests breaks.
    assert contenders["chain"]["files_removed"] > 0
    assert contenders["chain"]["imports_broken"] == ["synth00000"]
    # The dry run is a plan: nothing changes.
    assert contenders["dry-run"]["size_after"] == before["bytes"]
    assert contenders["dry-run"]["files_removed"] == 0
    for key in ("no-verify", "default"):
        assert contenders[key]["size_after"] < before["bytes"]
        assert contenders[key]["imports_broken"] == []
        assert contenders[key]["exit_codes"] == [0]
    # venvprune's own peak memory is measured, and the workers' apart from it when it verifies.
    assert contenders["no-verify"]["peak_rss"] > 10_000_000
    assert contenders["default"]["largest_child_peak_rss"] > 0
    assert all(data["median_seconds"] > 0 for data in contenders.values())
