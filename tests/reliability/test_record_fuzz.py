"""Fuzz the RECORD reader and rewriter with malformed files: random bytes, bad CSV, bad UTF-8, huge fields.

The contract: nothing escapes but ``OSError`` or ``ValueError`` (which the apply step collects per file, leaving the
RECORD as it was), and a RECORD that is written re-parses, with every row that was not dropped still in it.
(The ELF stripper's fuzz test lives in tests/unit/test_elf.py.)
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import Guard
from tests.site_builder import install_dist, make_site, tree_digest
from venvprune import records
from venvprune.apply import Transaction
from venvprune.categories.record import RewriteRecord
from venvprune.plan import Action, ActionKind, Phase
from venvprune.target import resolve_target

FIELD_LIMIT = csv.field_size_limit()
PATHS = ["pkg/__init__.py", "pkg/gone.py", "pkg/tests/test_a.py", "pkg/lib.so", "pkg-1.0.dist-info/RECORD"]
ON_DISK = {"pkg/__init__.py": b"x = 1\n", "pkg/lib.so": b"\x7fELF stripped\n"}  # gone.py and tests were removed
DROPPED = frozenset({"pkg/gone.py", "pkg/tests/test_a.py", "pkg/__init__.py"})  # __init__.py is back: keeps its row
REHASHED = frozenset({"pkg/lib.so"})

fields = st.one_of(
    st.sampled_from(PATHS),
    st.text(alphabet=st.one_of(st.sampled_from(list('ab/.,"\r\n\t =\\-_')), st.characters()), max_size=30),
    st.builds(lambda n: "x" * n, st.integers(FIELD_LIMIT - 2, FIELD_LIMIT + 2)),  # around csv's field limit
)
rows = st.lists(st.lists(fields, min_size=1, max_size=4), max_size=8)


def csv_bytes(table: list[list[str]], line_end: str) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator=line_end).writerows(table)
    return out.getvalue().encode("utf-8", "surrogatepass")


record_files = st.one_of(
    st.binary(max_size=600),  # anything at all
    st.builds(csv_bytes, rows, st.sampled_from(["\n", "\r\n"])),  # well-formed CSV, odd fields
    st.builds(  # mostly valid, then damaged: a byte that is not UTF-8, a NUL, a torn quote, a bare CR
        lambda good, damage, where: good[:where] + damage + good[where:],
        st.builds(csv_bytes, rows, st.just("\n")),
        st.sampled_from([b"\xff", b"\xc3", b"\x00", b'"', b"\r", b"\xed\xa0\x80"]),
        st.integers(0, 200),
    ),
    st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")),
)


def strict_rows(data: bytes) -> list[list[str]] | None:
    """The rows the csv module finds, with CR and LF as written (no newline translation); None when malformed."""
    try:
        text = data.decode("utf-8")
        return [row for row in csv.reader(io.StringIO(text, newline=""), strict=True) if row]
    except (UnicodeDecodeError, csv.Error):
        return None


def lay_out(root: Path, record: bytes, guard: Guard) -> tuple[Path, Path]:
    site = root / "site-packages"
    for rel, content in ON_DISK.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(content)
    dist_info = site / "pkg-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "RECORD").write_bytes(record)
    guard.plant(site)
    os.link(dist_info / "RECORD", root / "twin-RECORD")  # a hard-linked twin of the file being rewritten
    return site, dist_info / "RECORD"


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],  # one guard for all
)
@given(record=record_files)
@example(record=b"pkg/__init__.py,sha256=x,6\n" + b"x" * (FIELD_LIMIT + 1) + b"\n")  # a field over csv's limit
@example(record=b"pkg/__init__.py,,\npkg/lib.so,,\n\xff\xfe\n")  # not UTF-8 at the end
@example(record=b'pkg/gone.py,,\n"pkg/__init__.py,,\n')  # a quote that never closes
def test_read_and_rewrite_malformed_records(record: bytes, guard: Guard) -> None:
    with tempfile.TemporaryDirectory() as temp:
        site, source = lay_out(Path(temp), record, guard)
        expected = strict_rows(record)
        try:
            read = records.read(source)
        except (OSError, ValueError):
            read = None
        if read is not None:
            assert [list(row.fields) for row in read] == expected

        destination = source.with_name("RECORD.new")
        transform = RewriteRecord(site, DROPPED, REHASHED)
        try:
            with open(source, "rb") as original, open(destination, "xb") as new:
                transform.write(original, new)
        except (OSError, ValueError):
            # Collected by the apply step: the RECORD stays as it was (checked end to end below).
            assert source.read_bytes() == record
            return
        finally:
            assert (Path(temp) / "twin-RECORD").read_bytes() == record
            guard.check()
        # Written: it must be a RECORD that parses, keeping every row it was not told to drop.
        assert expected is not None, "a malformed RECORD was rewritten (its rows are lost); it must raise instead"
        written = strict_rows(destination.read_bytes())
        assert written is not None, "the rewritten RECORD does not parse"
        kept = []
        for row in expected:
            rel = records.normalise(row[0])
            if rel in DROPPED and not os.path.lexists(site / rel):
                continue
            kept.append(row[0])
        assert [row[0] for row in written] == kept
        for row in written:
            if records.normalise(row[0]) in REHASHED:
                assert row[1].startswith("sha256=") and row[2] == str(len(ON_DISK["pkg/lib.so"]))


@pytest.mark.parametrize(
    "bad",
    [b"pkg/__init__.py,,\n\xff\xfe\n", b"pkg/__init__.py,,\n" + b"x" * (FIELD_LIMIT + 1) + b"\n"],
    ids=["not-utf8", "huge-field"],
)
def test_a_record_broken_between_plan_and_apply_is_left_as_it_was_and_reported(
    tmp_path: Path, bad: bytes, guard: Guard
) -> None:
    """Through the transaction: the failure is one FileError naming the RECORD, and its bytes do not change."""
    site = make_site(tmp_path / "prefix")
    dist_info = install_dist(site, "pkg", {"pkg/__init__.py": "x = 1\n", "pkg/gone.py": "y = 2\n"})
    record = dist_info / "RECORD"
    record.write_bytes(bad)
    guard.plant(site)
    guard.twin(site)
    before = tree_digest(site)
    transaction = Transaction.begin(resolve_target(site))
    action = Action(
        record,
        ActionKind.REWRITE,
        "record",
        "test",
        0,
        0,
        "pkg",
        transform=RewriteRecord(site, frozenset({"pkg/gone.py"}), frozenset()),
        phase=Phase.METADATA,
    )
    errors = transaction.execute([action])
    assert [e.path for e in errors] == [record]
    assert errors[0].message
    assert transaction.commit() == []
    assert tree_digest(site) == before
    guard.check()
