"""A Docker build's file system: overlayfs refuses to rename directories from a lower layer (EXDEV).

`RUN venvprune /opt/venv` after a separate `RUN pip install` meets exactly this; the transaction must move such
directories entry by entry and still restore every byte.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.site_builder import install_dist, make_site, tree_digest
from venvprune import categories
from venvprune.apply import Transaction, recover
from venvprune.plan import build_plan
from venvprune.scan import scan
from venvprune.target import resolve_target

pytestmark = pytest.mark.integration


@pytest.fixture
def merged(tmp_path: Path) -> Iterator[Path]:
    """An overlay mount whose lower layer holds a site-packages tree, as an earlier image layer would."""
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("mounting overlayfs needs root (CI runs as root)")
    lower, upper, work, mount = (tmp_path / name for name in ("lower", "upper", "work", "merged"))
    for folder in (upper, work, mount):
        folder.mkdir()
    site = make_site(lower)
    install_dist(
        site,
        "pkg",
        {
            "pkg/__init__.py": "",
            "pkg/__pycache__/__init__.cpython-311.pyc": b"\x00" * 64,
            "pkg/tests/__init__.py": "",
            "pkg/tests/deep/__init__.py": "",
            "pkg/tests/deep/test_x.py": "def test(): pass\n",
        },
    )
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(mount)], check=True)
    try:
        yield mount / site.relative_to(lower)
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_lower_layer_directories_are_moved_and_restored(merged: Path) -> None:
    with pytest.raises(OSError, match="Invalid cross-device link"):
        os.rename(merged / "pkg" / "tests", merged / "moved")  # the premise: a plain rename fails here
    before = tree_digest(merged)
    target = resolve_target(merged)
    plan = build_plan(scan(target, inspect_elf=False), categories.select(only=("bytecode", "tests", "record")))
    transaction = Transaction.begin(target)
    errors = transaction.execute(plan.actions)
    assert errors == []
    assert not (merged / "pkg" / "tests").exists() and not (merged / "pkg" / "__pycache__").exists()
    transaction.rollback()
    assert tree_digest(merged) == before

    transaction = Transaction.begin(target)
    errors = transaction.execute(plan.actions)
    transaction._abandon()  # abandoned, as by SIGKILL
    assert recover(target) is not None
    assert tree_digest(merged) == before

    transaction = Transaction.begin(target)
    errors = transaction.execute(plan.actions)
    assert transaction.commit() == []
    assert not (merged / "pkg" / "tests").exists()
    assert (merged / "pkg" / "__init__.py").exists()
