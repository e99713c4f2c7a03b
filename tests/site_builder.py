"""Lay out installed distributions in a site-packages directory, as an installer would, for fast unit tests.

Integration tests install real wheels with pip instead (``tests/wheel_builder.py``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Union

from venvprune import records

Content = Union[str, bytes]


def make_site(tmp_path: Path, python: str = "python3.11") -> Path:
    """A prefix layout without an interpreter: ``tmp_path/lib/python3.11/site-packages``."""
    site_packages = tmp_path / "lib" / python / "site-packages"
    site_packages.mkdir(parents=True)
    return site_packages


def install_dist(
    site_packages: Path,
    name: str,
    files: Mapping[str, Content],
    version: str = "1.0",
    entry_points: str | None = None,
    top_level: str | None = None,
    requires: tuple[str, ...] = (),
) -> Path:
    """Write *files* and a ``NAME-VERSION.dist-info`` whose RECORD lists them all; return the dist-info path.

    A path starting with ``../../../`` lies outside site-packages, in the prefix (``../../../bin/tool``), as an
    installer writes scripts. *requires* are ``Requires-Dist`` lines."""
    for rel, content in files.items():
        path = site_packages / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    dist_info = site_packages / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    meta: dict[str, Content] = {
        "METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {requirement}\n" for requirement in requires),
        "INSTALLER": "pip\n",
    }
    if entry_points is not None:
        meta["entry_points.txt"] = entry_points
    if top_level is not None:
        meta["top_level.txt"] = top_level
    for rel, content in meta.items():
        (dist_info / rel).write_text(content if isinstance(content, str) else content.decode())
    rows = [records.row_for(rel, (site_packages / rel).read_bytes()) for rel in files]
    rows += [records.row_for(f"{dist_info.name}/{rel}", (dist_info / rel).read_bytes()) for rel in meta]
    rows.append(records.Row((f"{dist_info.name}/RECORD", "", "")))
    (dist_info / "RECORD").write_bytes(records.dump(rows))
    return dist_info


def tree_digest(root: Path) -> dict[str, tuple[str, str]]:
    """Every entry below *root* (symlinks not followed) -> (kind, content hash or link target), to compare trees."""
    result: dict[str, tuple[str, str]] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                result[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                result[rel] = ("dir", "")
            else:
                with open(path, "rb") as handle:
                    result[rel] = ("file", hashlib.sha256(handle.read()).hexdigest())
    return result
