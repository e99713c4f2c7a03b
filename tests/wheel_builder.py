"""Build real wheels at test time: a zip with dist-info METADATA, WHEEL, RECORD, entry_points.txt, top_level.txt.

Installed with the target venv's own pip (``--no-index``), they give real venvs with exactly the layout a test
needs, in well under a second per wheel.
"""

from __future__ import annotations

import subprocess
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Union

from venvprune import records

Content = Union[str, bytes]


def build_wheel(
    directory: Path,
    name: str,
    files: Mapping[str, Content],
    version: str = "1.0",
    entry_points: str | None = None,
    top_level: str | None = None,
    tag: str = "py3-none-any",
) -> Path:
    """Write ``NAME-VERSION-TAG.whl`` into *directory* holding *files* (paths relative to site-packages)."""
    dist = name.replace("-", "_")
    dist_info = f"{dist}-{version}.dist-info"
    contents: dict[str, bytes] = {rel: _bytes(content) for rel, content in files.items()}
    contents[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    contents[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()
    )
    if entry_points is not None:
        contents[f"{dist_info}/entry_points.txt"] = entry_points.encode()
    if top_level is not None:
        contents[f"{dist_info}/top_level.txt"] = top_level.encode()
    rows = [records.row_for(rel, data) for rel, data in contents.items()]
    rows.append(records.Row((f"{dist_info}/RECORD", "", "")))
    contents[f"{dist_info}/RECORD"] = records.dump(rows)
    wheel = directory / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel, data in contents.items():
            archive.writestr(rel, data)
    return wheel


def pip_install(venv: Path, *wheels: Path) -> None:
    """Install wheels into *venv* with its own pip, offline."""
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", "--no-deps", *map(str, wheels)],
        check=True,
    )


def _bytes(content: Content) -> bytes:
    return content.encode() if isinstance(content, str) else content
