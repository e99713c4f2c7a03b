"""RECORD rows: parsed, hashed and written back by one module, with odd names and line endings kept as they were."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.site_builder import install_dist, make_site
from venvprune import categories, records
from venvprune.plan import build_plan
from venvprune.scan import scan
from venvprune.target import resolve_target


def test_a_carriage_return_inside_a_quoted_name_survives_the_rewrite(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    dist_info = install_dist(site, "pkg", {"pkg/__init__.py": "", "pkg/tests/__init__.py": ""})
    odd = site / "pkg" / "odd\rname.txt"
    odd.write_bytes(b"x")
    record = dist_info / "RECORD"
    odd_row = b'"pkg/odd\rname.txt",sha256=LHlzWZM5sL7AH6-KVxJ1zyvKc7dqfsgWvuYPZT5Gk7c,1\n'
    record.write_bytes(record.read_bytes() + odd_row)

    plan = build_plan(scan(resolve_target(site), inspect_elf=False), categories.select(only=["tests"]))
    [rewrite] = [a for a in plan.actions if a.category == "record"]
    assert rewrite.transform is not None
    (site / "pkg" / "tests" / "__init__.py").unlink()
    os.rmdir(site / "pkg" / "tests")
    with open(record, "rb") as source, open(tmp_path / "RECORD.new", "xb") as destination:
        rewrite.transform.write(source, destination)

    written = (tmp_path / "RECORD.new").read_bytes()
    assert odd_row in written, written
    assert b"pkg/tests/__init__.py" not in written


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_rows_round_trip_with_their_line_ending(line_end: str) -> None:
    rows = [
        records.Row(("plain.py", "sha256=abc", "3")),
        records.Row(('we,ird "name"\r\n.txt', "", "")),
        records.Row(("short",)),  # malformed rows are kept as they were, never lost
        records.Row(("long", "h", "1", "extra")),
        records.Row(("",)),
    ]
    data = records.dump(rows, line_end)
    assert records.parse(data) == rows
    assert records.line_ending(data) == line_end
    assert sum(records.row_sizes(rows, line_end)) == len(data)


def test_hashes_are_the_wheel_spec_spelling(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"hello")
    # sha256("hello"), urlsafe base64 without padding, as pip writes it.
    assert (
        records.hash_file(path) == records.hash_bytes(b"hello") == "sha256=LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ"
    )
    assert records.row_for("pkg/f", b"hello") == records.Row(("pkg/f", records.hash_bytes(b"hello"), "5"))
    assert records.normalise("pkg/./sub/../a.py") == "pkg/a.py"
    assert records.normalise("../../bin/tool") == "../../bin/tool"


@pytest.mark.parametrize(
    "data", [b"\xff\xfe,x\n", b'"never closed\n', b'"a"b,c\n', b"x" * (csv.field_size_limit() + 1)]
)
def test_what_is_not_utf8_csv_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        records.parse(data)


def oldest_python() -> str:
    """The oldest interpreter here that the probe supports (3.8 under pyenv), else this one."""
    for version in sorted(Path("/root/.pyenv/versions").glob("3.*"), key=lambda p: [int(x) for x in p.name.split(".")]):
        python = version / "bin" / "python"
        if [int(x) for x in version.name.split(".")[:2]] >= [3, 8] and os.access(python, os.X_OK):
            return str(python)
    return sys.executable


def test_the_module_stands_alone_on_the_oldest_python(tmp_path: Path) -> None:
    """The probe runs inside the target's interpreter (3.8+) and may only use the standard library."""
    shutil.copy(Path(records.__file__), tmp_path / "records.py")
    (tmp_path / "RECORD").write_bytes(b'"a\rb",sha256=x,1\r\nc.py,,\r\n')
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import records; "
        "path = sys.argv[1] + '/RECORD'; rows = records.read(path); "
        "sys.stdout.write(repr([r.path for r in rows]) + records.line_ending(open(path, 'rb').read()))"
    )
    done = subprocess.run([oldest_python(), "-I", "-c", script, str(tmp_path)], capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"['a\\rb', 'c.py']\r\n"


def test_the_fast_paths_agree_with_normpath_and_the_writer() -> None:
    """normalise skips normpath and row_sizes skips the quoting for plain rows: on every kind of path and field
    (dots, slashes, commas, quotes, CR, LF, non-ASCII), both give what the slow way gives."""
    import posixpath
    import random

    pieces = ["a", "b", ".", "/", "..", "x.py", ",", '"', "\r", "\n", "é", ""]
    chooser = random.Random(12)
    for _ in range(20000):
        path = "".join(chooser.choice(pieces) for _ in range(chooser.randint(0, 7)))
        assert records.normalise(path) == (posixpath.normpath(path) if path else path), repr(path)
        fields = tuple(
            "".join(chooser.choice(pieces) for _ in range(chooser.randint(0, 4))) for _ in range(chooser.randint(1, 4))
        )
        assert records.row_sizes([records.Row(fields)]) == [len(records.dump([records.Row(fields)]))], fields
