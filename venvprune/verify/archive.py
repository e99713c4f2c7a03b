"""The probe package as one file: a zip archive that Python runs (``python -B ARCHIVE``), as ``zipapp`` makes.

The same bytes run the checks in the target's interpreter during a prune and ``venvprune check`` (written to a
scratch folder outside the target) and become the final-stage ``<venv>/.venvprune/check.py``. A zip archive may
start with other bytes: the checker's starts with comment lines that say what it is and how to run it, so ``head``
shows them. Entries are stored (no zlib needed in a distroless image) with a fixed date, so two prunes write the
same bytes.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from venvprune.verify import probe

PACKAGE = "_venvprune_probe"  # its name inside the archive: never the target's own venvprune, if it has one
_BOOTSTRAP = f"import sys\nfrom {PACKAGE}.main import main\nsys.exit(main(sys.argv[1:]))\n".encode()
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry


def probe_archive(header: bytes = b"") -> bytes:
    """*header* (``#`` comment lines), then the archive of the probe package and its ``__main__``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for source in sorted(Path(probe.__file__).parent.glob("*.py")):
            if source.name != "__main__.py":
                _add(archive, f"{PACKAGE}/{source.name}", source.read_bytes())
        _add(archive, "__main__.py", _BOOTSTRAP)
    return header + buffer.getvalue()


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    entry = zipfile.ZipInfo(name, date_time=_EPOCH)
    entry.external_attr = 0o644 << 16
    archive.writestr(entry, data)
