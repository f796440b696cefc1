"""Bad input lines: one reject row per bad line, with its line number, reason and raw text;
duplicates counted, not loaded; whole-file problems as clear errors; a line over the size limit
of one record is a reject, not a refusal of its file."""

from __future__ import annotations

import pytest

from micn.data.formats import MAX_LINE_BYTES, RAW_LINE_BYTES
from micn.data.ingest.load import ingest
from micn.errors import MicnError
from tests.helpers import (
    BAD_REVIEW_LINES,
    META_2014_LINES,
    assert_accounting,
    db_rows,
    only_reject,
    review_line,
    write_lines,
)


# --- bad input: one reject row per bad line, with its reason and raw text ----------------------


@pytest.mark.parametrize("reason", list(BAD_REVIEW_LINES))
def test_bad_review_line_becomes_a_reject(tmp_path, meta_2014, reason):
    bad = BAD_REVIEW_LINES[reason]
    lines = [review_line(reviewerID="A1"), bad, review_line(reviewerID="A2")]
    src = write_lines(tmp_path / "reviews.json", lines)
    db = tmp_path / "w.duckdb"
    report = ingest("d", [src], [meta_2014], db)
    assert_accounting(report)
    assert (report.files[0].lines_read, report.files[0].accepted, report.files[0].rejected) == (3, 2, 1)
    [(source, line_no, got_reason, raw)] = db_rows(db, "select source_file, line_no, reason, raw_line from rejects")
    assert source == str(src) and line_no == 2
    assert got_reason.startswith(reason), got_reason
    expected_raw = bad.decode("utf-8", errors="backslashreplace") if isinstance(bad, bytes) else bad
    assert raw == expected_raw
    assert {u for (u,) in db_rows(db, "select user_id from reviews")} == {"A1", "A2"}


def test_line_numbers_count_blank_lines(tmp_path, meta_2014):
    src = write_lines(tmp_path / "r.json", [review_line(reviewerID="A1"), "", "   ", BAD_REVIEW_LINES["a JSON array"], review_line(reviewerID="A2")])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [src], [meta_2014], db)
    assert report.files[0].lines_read == 3  # blank lines are not records
    assert db_rows(db, "select line_no from rejects") == [(4,)]


def test_exact_duplicate_lines_are_counted_not_loaded(tmp_path, meta_2014):
    a = write_lines(tmp_path / "a.json", [review_line(reviewerID="A1"), review_line(reviewerID="A1"), review_line(reviewerID="A2")])
    b = write_lines(tmp_path / "b.json", [review_line(reviewerID="A2"), review_line(reviewerID="A3")])  # A2 repeats across files
    db = tmp_path / "w.duckdb"
    report = ingest("d", [a, b], [meta_2014], db)
    assert_accounting(report)
    assert [(f.accepted, f.duplicates) for f in report.files[:2]] == [(2, 1), (1, 1)]
    assert db_rows(db, "select user_id, count(*) from reviews group by 1 order by 1") == [("A1", 1), ("A2", 1), ("A3", 1)]


def test_same_key_with_other_rating_keeps_the_first(tmp_path, meta_2014):
    src = write_lines(tmp_path / "r.json", [review_line(overall=2.0), review_line(overall=5.0)])
    db = tmp_path / "w.duckdb"
    ingest("d", [src], [meta_2014], db)
    assert db_rows(db, "select rating from reviews") == [(2.0,)]


def test_broken_literal_line_in_2014_metadata(tmp_path):
    lines = [*META_2014_LINES, "{'asin': 'B7', 'title': 'unterminated", "['B8', 'a list']", "{'title': 'no asin'}"]
    meta = write_lines(tmp_path / "meta.json", lines)
    reviews = write_lines(tmp_path / "r.json", [review_line()])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [reviews], [meta], db)
    assert_accounting(report)
    m = report.files[1]
    assert (m.lines_read, m.accepted, m.rejected) == (8, 5, 3)
    rejects = db_rows(db, "select line_no, reason, raw_line from rejects order by line_no")
    assert [r[0] for r in rejects] == [6, 7, 8]
    assert rejects[0][1].startswith("not a Python dict literal") and rejects[0][2] == lines[5]
    assert "list" in rejects[1][1] and rejects[2][1].startswith("asin missing")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (b"id,name\n1,foo\n2,bar\n", "unknown format"),
        (b'{"some": "json", "but": "not amazon"}\n', "unknown format"),
    ],
)
def test_whole_file_problems_are_clear_errors(tmp_path, meta_2014, content, message):
    src = tmp_path / "reviews_X_5.json"
    src.write_bytes(content)
    db = tmp_path / "w.duckdb"
    with pytest.raises(MicnError, match=message) as e:
        ingest("d", [src], [meta_2014], db)
    assert str(src) in str(e.value)
    assert not db.exists()  # nothing half-written


def test_truncated_gzip_is_an_error_and_leaves_the_warehouse_intact(tmp_path, meta_2014):
    lines = [review_line(reviewerID=f"A{i}", unixReviewTime=1_163_980_800 + i, reviewText="x" * 200) for i in range(5000)]
    good = write_lines(tmp_path / "good.json", lines, gz=True)
    db = tmp_path / "w.duckdb"
    ingest("d", [good], [meta_2014], db)
    before = db_rows(db, "select * from reviews order by all")
    truncated = tmp_path / "truncated.json.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(MicnError, match="gzip") as e:
        ingest("d", [truncated], [meta_2014], db)
    assert str(truncated) in str(e.value)
    assert db_rows(db, "select * from reviews order by all") == before


def test_files_given_as_the_wrong_kind(tmp_path, meta_2014):
    reviews = write_lines(tmp_path / "r.json", [review_line()])
    with pytest.raises(MicnError, match="--meta"):
        ingest("d", [meta_2014], [reviews], tmp_path / "w.duckdb")


def test_missing_file_and_bad_dataset_name(tmp_path, meta_2014):
    with pytest.raises(MicnError, match="no such file"):
        ingest("d", [tmp_path / "nope.json"], [meta_2014], tmp_path / "w.duckdb")
    with pytest.raises(MicnError, match="dataset name"):
        ingest("bad name; drop table", [meta_2014], [meta_2014], tmp_path / "w.duckdb")


# --- a line over the size limit of one record ---------------------------------------------------


def test_line_over_the_size_limit_is_a_reject_not_a_refusal_of_the_file(tmp_path, meta_2014):
    huge = review_line(reviewerID="A9", reviewText="x" * MAX_LINE_BYTES)  # just over the limit
    src = write_lines(tmp_path / "r.json", [review_line(reviewerID="A1"), huge, review_line(reviewerID="A2")], gz=True)
    db = tmp_path / "w.duckdb"
    report = ingest("d", [src], [meta_2014], db)
    assert_accounting(report)
    assert (report.files[0].lines_read, report.files[0].accepted, report.files[0].rejected) == (3, 2, 1)
    line_no, reason, raw = only_reject(db)
    assert line_no == 2
    assert reason == f"line of {len(huge.encode()):,} bytes is over the 4 MiB limit of one record; it starts {huge[:40]}..."
    assert raw == huge[:RAW_LINE_BYTES] + f"... [cut: the line has {len(huge.encode()):,} bytes]"
    assert {u for (u,) in db_rows(db, "select user_id from reviews")} == {"A1", "A2"}


def test_line_over_the_size_limit_in_2014_metadata_is_a_reject(tmp_path):
    huge = "{'asin': 'B9', 'title': '" + "x" * MAX_LINE_BYTES + "', 'categories': [['E']]}"
    meta = write_lines(tmp_path / "meta.json", [META_2014_LINES[0], huge])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [write_lines(tmp_path / "r.json", [review_line()])], [meta], db)
    assert report.files[1].rejected == 1
    assert only_reject(db)[1].startswith(f"line of {len(huge):,} bytes is over the 4 MiB limit of one record; it starts {{'asin'")


def test_a_lone_surrogate_or_a_control_character_is_a_reject_never_an_internal_error(tmp_path):
    """A `\\ud800` escape decodes to no Unicode character: in a review (JSON) or a 2014 metadata line
    (a Python literal) it is a reject with its reason, and so is a NUL or ESC in a metadata id or
    category; the other lines load."""
    reviews = write_lines(tmp_path / "reviews_X_5.json", [
        review_line(reviewerID="A1"), review_line(reviewerID="A2", asin="B2"),
        '{"reviewerID": "A\\ud800", "asin": "B1", "overall": 5.0, "unixReviewTime": 1163980800}'])
    meta = write_lines(tmp_path / "meta_X.json", [
        "{'asin': 'B1', 'categories': [['Electronics']]}",
        "{'asin': 'B2', 'categories': [['Elec\\ud800tronics']]}",
        "{'asin': 'B3', 'title': 'T\\udfff', 'categories': [['Electronics']]}",
        "{'asin': 'B4\\x00', 'categories': [['Electronics']]}",
        "{'asin': 'B5', 'categories': [['Elec\\x1btronics']]}"])
    db = tmp_path / "w.duckdb"
    ingest("x", [reviews], [meta], db)
    reasons = dict(db_rows(db, "select line_no, reason from rejects where source_file like '%meta_X%'"))
    assert reasons == {2: "categories 'Elec\\ud800tronics' holds a lone surrogate, which is not a Unicode character",
                       3: "title 'T\\udfff' holds a lone surrogate, which is not a Unicode character",
                       4: "asin 'B4\\x00' holds a control character",
                       5: "categories 'Elec\\x1btronics' holds a control character"}
    review_rejects = db_rows(db, "select line_no, reason from rejects where source_file like '%reviews_X%'")
    assert review_rejects == [(3, "reviewerID \"A\\ud800\" holds a lone surrogate (a \\ud800-\\udfff escape), which is "
                                  "not a Unicode character")]
    assert sorted(db_rows(db, "select user_id from reviews")) == [("A1",), ("A2",)]
