"""Hostile sizes and values: a line over the size limit is a reject quoting its length and start,
read without ever holding it whole (peak memory bounded, whatever the line); a file that is one
such line says so; a reason quotes a value as the file writes it (1e10, not 10000000000.0).

Most tests lower the limit to a few hundred bytes (`small_limit`) instead of writing large files.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from micn.data import formats
from micn.data.formats import LongLine, read_lines, sniff_format
from micn.data.ingest import json_lines, rejects
from micn.data.ingest.load import ingest
from micn.data.ingest.rejects import raw_value
from micn.errors import MicnError
from tests.helpers import META_2014_LINES, assert_accounting, db_rows, only_reject, review_line, write_lines

LIMIT = 1000


@pytest.fixture
def small_limit(monkeypatch) -> int:
    """MAX_LINE_BYTES = 1000 and RAW_LINE_BYTES = 100 wherever they are read."""
    for module in (formats, json_lines, rejects):
        for name, value in (("MAX_LINE_BYTES", LIMIT), ("RAW_LINE_BYTES", 100)):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, value)
    return LIMIT


def line_of(n: int, reviewer: str = "A9") -> str:
    """A valid review line of exactly `n` bytes."""
    line = review_line(reviewerID=reviewer, reviewText="")
    return line.replace('"reviewText": ""', '"reviewText": "' + "x" * (n - len(line)) + '"')


# --- reading lines, bounded ------------------------------------------------------------------------


def test_read_lines_gives_a_long_line_as_its_head_and_length(small_limit):
    data = b"a\n" + b"y" * 5000 + b"\r\n" + b"z" * LIMIT + b"\r\n" + b"w" * (LIMIT + 1) + b"\n\nlast"
    got = list(read_lines(io.BufferedReader(io.BytesIO(data), buffer_size=64)))
    assert got == [b"a\n", LongLine(b"y" * 100, 5000), b"z" * LIMIT + b"\r\n", LongLine(b"w" * 100, LIMIT + 1), b"\n", b"last"]


def test_read_lines_holds_at_most_the_limit_of_a_line(small_limit):
    class Recording(io.BytesIO):
        largest = 0

        def readline(self, size=-1):
            assert size > 0, "an unbounded readline"
            out = super().readline(size)
            Recording.largest = max(Recording.largest, len(out))
            return out

    [line] = read_lines(Recording(b"{" + b"1," * 100_000 + b"1}"))
    assert line.length == 200_003 and Recording.largest <= LIMIT + 2


# --- a line over the limit -------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_the_limit_is_exact_and_a_longer_line_is_a_reject_quoting_length_and_start(tmp_path, meta_2014, small_limit, gz):
    at_limit, over = line_of(LIMIT, "A2"), line_of(LIMIT + 1, "A3")
    src = write_lines(tmp_path / "r.json", [review_line(reviewerID="A1"), at_limit, "", over, review_line(reviewerID="A4")], gz=gz)
    db = tmp_path / "w.duckdb"
    report = ingest("d", [src], [meta_2014], db)
    assert_accounting(report)
    assert (report.files[0].lines_read, report.files[0].accepted, report.files[0].rejected) == (4, 3, 1)
    line_no, reason, raw = only_reject(db)
    assert line_no == 4
    assert reason == f"line of 1,001 bytes is over the 1,000 bytes limit of one record; it starts {over[:40]}..."
    assert raw == over[:100] + "... [cut: the line has 1,001 bytes]"
    assert db_rows(db, "select user_id from reviews order by 1") == [("A1",), ("A2",), ("A4",)]
    assert not list(tmp_path.glob(".micn-ingest-*"))  # the copy DuckDB read is gone


def test_a_long_line_in_2018_metadata_is_a_reject(tmp_path, small_limit):
    good = json.dumps({"asin": "B1", "title": "t", "category": ["E", "Audio"]})
    long = json.dumps({"asin": "B2", "title": "t" * 2000, "category": ["E", "Cables"]})
    meta = write_lines(tmp_path / "meta.json", [good, long])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [write_lines(tmp_path / "r.json", [review_line(asin="B1"), review_line(asin="B2")])], [meta], db)
    assert_accounting(report)
    line_no, reason, _ = only_reject(db)
    assert line_no == 2 and reason.startswith(f"line of {len(long):,} bytes is over the 1,000 bytes limit")
    assert db_rows(db, "select item_id, category from items order by 1") == [("B1", "Audio"), ("B2", "default_cat")]


def test_a_long_python_literal_is_a_reject_and_a_long_json_line_in_2014_metadata_is_not(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "MAX_LITERAL_BYTES", 350)
    literal = "{'asin': 'B2', 'title': \"Sony's " + "x" * 300 + "\", 'categories': [['E', 'Cables']]}"
    as_json = json.dumps({"asin": "B3", "title": "Sony's " + "x" * 300, "categories": [["E", "Audio"]]})
    meta = write_lines(tmp_path / "meta.json", [META_2014_LINES[0], literal, as_json])
    db = tmp_path / "w.duckdb"
    ingest("d", [write_lines(tmp_path / "r.json", [review_line()])], [meta], db)
    line_no, reason, _ = only_reject(db)
    assert line_no == 2
    assert reason == f"line of {len(literal):,} bytes needs Python's literal parser, which is given at most 350 bytes (as JSON it may have 4 MiB)"
    assert db_rows(db, "select item_id, category from items where item_id = 'B3'") == [("B3", "Audio")]


@pytest.mark.parametrize("gz", [False, True])
def test_a_file_that_is_one_line_over_the_limit_says_so(tmp_path, meta_2014, gz):
    src = tmp_path / "reviews_X_5.json"
    content = line_of(formats.MAX_LINE_BYTES + 10).encode()  # no line break at all
    src.write_bytes(gzip.compress(content, compresslevel=1) if gz else content)
    with pytest.raises(MicnError) as e:
        ingest("d", [src], [meta_2014], tmp_path / "w.duckdb")
    assert str(e.value).startswith(f"{src}: the file is one line of {len(content):,} bytes, and one record may have at most 4 MiB;")
    assert not (tmp_path / "w.duckdb").exists()


def test_a_file_of_long_lines_only_says_so_and_one_long_line_among_records_does_not_hide_the_format(tmp_path, small_limit):
    only_long = write_lines(tmp_path / "long.json", [line_of(2000), line_of(3000)])
    with pytest.raises(MicnError, match="has 2 non-blank lines, each over the limit \\(the longest has 3,000 bytes\\)"):
        sniff_format(only_long)
    assert sniff_format(write_lines(tmp_path / "mixed.json", [line_of(5000), review_line()])) == "reviews-2014"


PEAK = """
import gzip, sys
sys.path.insert(0, ROOT)
from micn.data.ingest.load import ingest
from tests.helpers import META_2014_LINES, review_line
tmp = sys.argv[1]
with gzip.open(tmp + "/r.json.gz", "wt", compresslevel=1) as f:
    f.write(review_line(reviewerID="A1") + "\\n")
    f.write(review_line(reviewerID="A2")[:-1] + ', "vote": [1')  # one line of 64 MiB of small values
    for _ in range(2**15):
        f.write(",1" * 1024)
    f.write("]}\\n" + review_line(reviewerID="A3") + "\\n")
open(tmp + "/meta.json", "w").write("\\n".join(META_2014_LINES) + "\\n")
report = ingest("d", [tmp + "/r.json.gz"], [tmp + "/meta.json"], tmp + "/w.duckdb")
# VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(report.files[0].accepted, report.files[0].rejected, peak_kib // 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak from /proc")
def test_peak_memory_of_a_64_mib_line_is_bounded(tmp_path):
    """DuckDB's parse of a 64 MiB line of small values alone takes over 1.5 GB."""
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", PEAK.replace("ROOT", repr(root)), str(tmp_path)], capture_output=True, text=True,
                         check=True, cwd=root)
    accepted, rejected, peak_mib = map(int, out.stdout.split())
    assert (accepted, rejected) == (2, 1)
    assert peak_mib < 400, f"peak RSS {peak_mib} MiB"


# --- a reason quotes a value as the file writes it --------------------------------------------------


def ingest_one_bad_line(tmp_path: Path, meta: Path, bad: str) -> str:
    src = write_lines(tmp_path / "reviews.json", [review_line(reviewerID="A1"), bad])
    db = tmp_path / "w.duckdb"
    assert_accounting(ingest("d", [src], [meta], db))
    line_no, reason, raw = only_reject(db)
    assert line_no == 2 and raw == bad
    return reason


@pytest.mark.parametrize(
    "field, text, reason",
    [
        ("unixReviewTime", "1e10", "unixReviewTime is a number with a fraction or exponent (1e10); expected an integer"),
        ("unixReviewTime", "1.16398080E9", "unixReviewTime is a number with a fraction or exponent (1.16398080E9)"),
        ("unixReviewTime", "99999999999999999999", "unixReviewTime 99999999999999999999 is out of range"),
        ("unixReviewTime", '"00000000000000000000000000000000000000000000042"',
         'unixReviewTime "000000000000000000000000000000000000000... is outside the plausible review times'),  # 40 characters
        ("overall", "1e1", "overall 1e1 is outside 1 to 5"),
        ("overall", "-0.0E0", "overall -0.0E0 is outside 1 to 5"),
        ("asin", '{"id" : 1e2}', 'asin is an object ({"id" : 1e2}); expected a string or an integer'),
        ("asin", "[1.0e0, 2]", "asin is an array ([1.0e0, 2])"),
        ("reviewerID", '"\\u0041\\u0000"', 'reviewerID "\\u0041\\u0000" holds a control character'),
    ],
)
def test_a_reason_quotes_a_review_value_as_the_file_writes_it(tmp_path, meta_2014, field, text, reason):
    fields = {"reviewerID": '"A9"', "asin": '"B1"', "overall": "5.0", "unixReviewTime": "1163980800", field: text}
    got = ingest_one_bad_line(tmp_path, meta_2014, "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}")
    assert got.startswith(reason), got


def test_a_repeated_key_is_quoted_as_duckdb_reads_it_the_first(tmp_path, meta_2014):
    bad = '{"reviewerID": "A9", "asin": "B1", "overall": 5.0, "unixReviewTime": 1e10, "unixReviewTime": 1163980800}'
    assert "(1e10)" in ingest_one_bad_line(tmp_path, meta_2014, bad)


def test_a_reason_quotes_a_2018_category_element_as_written(tmp_path):
    bad = '{"asin": "B2", "title": "t", "category": ["E", 1E0]}'
    meta = write_lines(tmp_path / "meta.json", [bad])
    db = tmp_path / "w.duckdb"
    ingest("d", [write_lines(tmp_path / "r.json", [review_line()])], [meta], db)
    assert only_reject(db)[1].startswith("category[1] is a number with a fraction or exponent (1E0); expected a list of strings")


@pytest.mark.parametrize(
    "line, reason",
    [
        ("{'asin': 1e10, 'categories': [['E']]}", "asin is a float (1e10); expected a string or an integer"),
        ("{'asin': 'B9', 'categories': [['E'], [3E0]]}", "categories[1][0] is a float (3E0)"),
        ("{'asin': 2.5, 'asin': 1e10, 'categories': [['E']]}", "asin is a float (1e10)"),  # Python keeps the last
        ("{'asin': 'B9', 'categories': [['E', 'Elec\\x1btronics']], 'title': \"a \\\"b\\\" c\"}",
         "categories 'Elec\\x1btronics' holds a control character"),
    ],
)
def test_a_reason_quotes_a_2014_metadata_value_as_written(tmp_path, line, reason):
    meta = write_lines(tmp_path / "meta.json", [META_2014_LINES[0], line])
    db = tmp_path / "w.duckdb"
    ingest("d", [write_lines(tmp_path / "r.json", [review_line()])], [meta], db)
    got = only_reject(db)[1]
    assert got.startswith(reason), got


@pytest.mark.parametrize(
    "text, path, expected",
    [
        ('{"a": 1e10, "b": [1, {"c": "x]}"}, 3]}', "b[1]", '{"c": "x]}"}'),
        ('{"a": 1e10, "b": [1, {"c": "x]}"}, 3]}', "b[-1]", "3"),
        ('{"a": 1, "a": 2}', "a", "1"),
        ("{'t': \"it's: [x]\", 'c': (1, u'2')}", "c[1]", "u'2'"),
        ("{'t': \"it's: [x]\", 'c': (1, u'2')}", "t", "\"it's: [x]\""),
        ('{"s": "a\\"b", "n": -1.5E-3 }', "n", "-1.5E-3"),
        ('{"\\u0061": 7}', "a", "7"),  # the key as JSON reads it
        ('{"a": [1, 2]}', "a[2]", None),
        ('{"a": [1, 2]}', "b", None),
        ('{"a": 1}', "a[0]", None),
        ('{"a": "unclosed}', "a", None),
        ('{"d": ' + "[" * 100_000 + "]" * 100_000 + ', "e": 5}', "e", "5"),  # no recursion
    ],
)
def test_raw_value_finds_the_text_of_a_value(text, path, expected):
    assert raw_value(text, path) == expected


def test_rejects_are_collected_in_batches_across_files_in_file_then_line_order(tmp_path, meta_2014, monkeypatch):
    """Rejects go to DuckDB a batch at a time (here 2 rows), never as one list of every bad line;
    the warehouse then holds each reject of each file once, in file then line order, whatever
    the batches' edges. DuckDB itself works under the warehouse's memory limit (it spills)."""
    import duckdb

    from micn.data.ingest import warehouse

    monkeypatch.setattr(rejects, "BATCH_ROWS", 2)
    bad = lambda i: review_line(reviewerID=f"B{i}", unixReviewTime=12.5)  # noqa: E731
    files = [write_lines(tmp_path / f"r{k}_5.json", [review_line(reviewerID=f"A{k}"), bad(k * 10), "", bad(k * 10 + 1),
                                                     review_line(reviewerID=f"C{k}"), bad(k * 10 + 2)])
             for k in range(3)]
    db = tmp_path / "w.duckdb"
    report = ingest("d", files, [meta_2014], db)
    assert_accounting(report)
    got = db_rows(db, "select source_file, line_no from rejects order by source_file, line_no")
    assert got == [(str(f), n) for f in files for n in (2, 4, 6)]
    assert all("12.5" in reason for (reason,) in db_rows(db, "select reason from rejects"))
    with warehouse.open_warehouse(db) as con:
        limit = con.sql("select current_setting('memory_limit')").fetchall()[0][0]
    with duckdb.connect(config={"memory_limit": warehouse.MEMORY_LIMIT}) as reference, duckdb.connect() as default:
        assert limit == reference.sql("select current_setting('memory_limit')").fetchall()[0][0]
        assert limit != default.sql("select current_setting('memory_limit')").fetchall()[0][0]
