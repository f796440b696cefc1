"""Types, not coercions: a field of the wrong JSON type or out of range is a reject with a reason
naming the field, the type and the value (reviews, 2018 and 2014 metadata); integer ids keep their
digits; a byte-order mark is no reject."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from micn.data.formats import sniff_format
from micn.data.ingest.load import ingest
from tests.helpers import META_2014_LINES, assert_accounting, db_rows, only_reject, review_line, write_lines


# --- types, not coercions ----------------------------------------------------------------------


def ingest_one_bad_review(tmp_path: Path, meta: Path, bad: str) -> tuple:
    """Ingest [good, bad, good]; returns the accounting of the file and the single reject."""
    src = write_lines(tmp_path / "reviews.json", [review_line(reviewerID="A1"), bad, review_line(reviewerID="A2")])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [src], [meta], db)
    assert_accounting(report)
    f = report.files[0]
    assert (f.lines_read, f.accepted, f.rejected) == (3, 2, 1)
    assert {u for (u,) in db_rows(db, "select user_id from reviews")} == {"A1", "A2"}
    line_no, reason, raw = only_reject(db)
    assert line_no == 2 and raw == bad
    return reason


@pytest.mark.parametrize(
    "value, reason",
    [
        (12.5, "unixReviewTime is a number with a fraction or exponent (12.5); expected an integer"),
        (1163980800.7, "unixReviewTime is a number with a fraction or exponent (1163980800.7)"),
        (True, "unixReviewTime is a boolean (true)"),
        ("12.5", 'unixReviewTime is a string ("12.5")'),
        ([1000], "unixReviewTime is an array ([1000])"),
        (-5, "unixReviewTime -5 is negative"),
        ("-5", 'unixReviewTime "-5" is negative'),  # quoted as the file writes it
        (2**64 - 1, "unixReviewTime 18446744073709551615 is out of range"),
    ],
)
def test_timestamp_that_is_not_a_non_negative_integer_is_a_reject(tmp_path, meta_2014, value, reason):
    got = ingest_one_bad_review(tmp_path, meta_2014, review_line(reviewerID="A9", unixReviewTime=value))
    assert got.startswith(reason), got


@pytest.mark.parametrize("value", [0, 1000, 32503680000, 2**63 - 1, 1796620800 + 10 * 86_400])
def test_an_implausible_timestamp_is_a_reject_quoting_it(tmp_path, meta_2014, value):
    """Before 1990 or after tomorrow (year 3000, 0, 2^63 - 1): never a target."""
    got = ingest_one_bad_review(tmp_path, meta_2014, review_line(reviewerID="A9", unixReviewTime=value))
    assert got.startswith(f"unixReviewTime {value} is outside the plausible review times 1990-01-01 .. "), got


def test_the_plausible_window_ends_the_day_after_the_ingest():
    from micn.data.formats import TS_MIN, ts_window

    window = ts_window(now=1_764_979_200)  # 2025-12-06T00:00:00Z
    assert window == {"ts_min": TS_MIN, "ts_max": 1_764_979_200 + 86_400, "ts_window": "1990-01-01 .. 2025-12-07"}


@pytest.mark.parametrize(("field", "value"), [("reviewerID", r"A\u00009"), ("asin", r"B\u00071"),
                                              ("reviewerID", r"A\u001b[31m")])  # JSON escapes: NUL, BEL, ESC
def test_an_id_with_a_control_character_is_a_reject_quoting_it(tmp_path, meta_2014, field, value):
    line = review_line(reviewerID="A9").replace('"A9"', f'"{value}"') if field == "reviewerID" else \
        review_line(reviewerID="A9").replace('"B1"', f'"{value}"')
    got = ingest_one_bad_review(tmp_path, meta_2014, line)
    assert got.lower() == f'{field} "{value}" holds a control character'.lower(), got  # DuckDB writes \u001B


def test_integer_valued_string_timestamp_is_accepted(tmp_path, meta_2014):
    src = write_lines(tmp_path / "r.json", [review_line(unixReviewTime="1163980800"), review_line(reviewerID="A2", unixReviewTime=" 1163980807 ")])
    db = tmp_path / "w.duckdb"
    ingest("d", [src], [meta_2014], db)
    assert db_rows(db, "select user_id, ts from reviews order by 1") == [("A1", 1163980800), ("A2", 1163980807)]


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("asin", ["B1"], 'asin is an array (["B1"]); expected a string or an integer'),
        ("asin", {"id": "B1"}, 'asin is an object ({"id": "B1"}); expected a string or an integer'),
        ("asin", 1.5, "asin is a number with a fraction or exponent (1.5)"),
        ("asin", True, "asin is a boolean (true)"),
        ("reviewerID", ["A9"], 'reviewerID is an array (["A9"])'),
        ("reviewerID", {"a": 1}, "reviewerID is an object"),
    ],
)
def test_id_that_is_not_a_string_or_integer_is_a_reject(tmp_path, meta_2014, field, value, reason):
    got = ingest_one_bad_review(tmp_path, meta_2014, review_line(**{"reviewerID": "A9", field: value}))
    assert got.startswith(reason), got


def test_integer_ids_are_kept_as_their_digits(tmp_path, meta_2014):
    src = write_lines(tmp_path / "r.json", [review_line(reviewerID=123, asin=456)])
    db = tmp_path / "w.duckdb"
    ingest("d", [src], [meta_2014], db)
    assert db_rows(db, "select user_id, item_id from reviews") == [("123", "456")]


@pytest.mark.parametrize(
    "value, reason",
    [
        (0, "overall 0 is outside 1 to 5"),
        (7.5, "overall 7.5 is outside 1 to 5"),
        (-1.0, "overall -1.0 is outside 1 to 5"),
        (True, "overall is a boolean (true); expected a number from 1 to 5"),
        ("4", 'overall is a string ("4"); expected a number from 1 to 5'),
        (None, "overall missing or null"),
    ],
)
def test_rating_outside_1_to_5_or_not_a_number_is_a_reject(tmp_path, meta_2014, value, reason):
    got = ingest_one_bad_review(tmp_path, meta_2014, review_line(reviewerID="A9", overall=value))
    assert got == reason


def meta_2018_line(**changes) -> str:
    record = {"asin": "B1", "title": "t", "category": ["Electronics", "Audio"], "also_buy": [], "main_cat": "E", **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...})


@pytest.mark.parametrize(
    "category, reason",
    [
        ("Electronics", 'category is a string ("Electronics"); expected a list of strings (a category path)'),
        ([["Electronics"], "Audio"], 'category[0] is an array (["Electronics"]); expected a list of strings'),
        (["Electronics", 3], "category[1] is an integer (3); expected a list of strings"),
        ({"path": ["E"]}, "category is an object"),
    ],
)
def test_2018_category_of_the_wrong_shape_is_a_reject(tmp_path, category, reason):
    meta = write_lines(tmp_path / "meta.json", [meta_2018_line(asin="B2"), meta_2018_line(category=category)])
    reviews = write_lines(tmp_path / "r.json", [review_line()])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [reviews], [meta], db)
    assert_accounting(report)
    line_no, got, _ = only_reject(db)
    assert line_no == 2 and got.startswith(reason), got
    # the item's reviews stay: it is a reviewed item without (usable) metadata, never a category named '["Electronics"]'
    assert db_rows(db, "select item_id, category, has_meta from items order by 1") == [("B1", "default_cat", False), ("B2", "Audio", True)]


@pytest.mark.parametrize("asin, reason", [(["B1"], 'asin is an array (["B1"])'), (True, "asin is a boolean")])
def test_2018_asin_of_the_wrong_type_is_a_reject(tmp_path, asin, reason):
    meta = write_lines(tmp_path / "meta.json", [meta_2018_line(asin="B2"), meta_2018_line(asin=asin)])
    db = tmp_path / "w.duckdb"
    ingest("d", [write_lines(tmp_path / "r.json", [review_line()])], [meta], db)
    assert only_reject(db)[1].startswith(reason)


@pytest.mark.parametrize(
    "line, reason",
    [
        ("{'asin': 'B1', 'categories': 'Electronics'}", "categories is a string ('Electronics'); expected a list of category paths"),
        ("{'asin': 'B1', 'categories': ['Electronics', 'Audio']}", "categories[0] is a string ('Electronics')"),
        ("{'asin': 'B1', 'categories': [['Electronics', ['Audio']]]}", "categories[0][1] is a list (['Audio'])"),
        ("{'asin': 'B1', 'categories': [['Electronics'], [3]]}", "categories[1][0] is an integer (3)"),
        ("{'asin': ['B1'], 'categories': [['E']]}", "asin is a list (['B1']); expected a string or an integer"),
        ("{'asin': True, 'categories': [['E']]}", "asin is a boolean (True)"),
        ("{'asin': 1.5, 'categories': [['E']]}", "asin is a float (1.5)"),
    ],
)
def test_2014_metadata_of_the_wrong_shape_is_a_reject(tmp_path, line, reason):
    meta = write_lines(tmp_path / "meta.json", ["{'asin': 'B2', 'categories': [['E', 'Audio']]}", line])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [write_lines(tmp_path / "r.json", [review_line()])], [meta], db)
    assert_accounting(report)
    assert report.files[1].rejected == 1
    line_no, got, raw = only_reject(db)
    assert line_no == 2 and raw == line and got.startswith(reason), got
    assert db_rows(db, "select item_id, category, has_meta from items order by 1") == [("B1", "default_cat", False), ("B2", "Audio", True)]


def test_integer_asin_in_2014_metadata_is_kept_as_its_digits(tmp_path):
    meta = write_lines(tmp_path / "meta.json", ["{'asin': 456, 'categories': [['E', 'Audio']]}"])
    db = tmp_path / "w.duckdb"
    ingest("d", [write_lines(tmp_path / "r.json", [review_line(asin=456)])], [meta], db)
    assert db_rows(db, "select item_id, category, has_meta from items") == [("456", "Audio", True)]


def test_utf8_bom_on_2014_metadata_keeps_the_first_items_category(tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_bytes(b"\xef\xbb\xbf" + "\n".join(META_2014_LINES[:2]).encode() + b"\n")
    assert sniff_format(meta) == "meta-2014"
    db = tmp_path / "w.duckdb"
    report = ingest("d", [write_lines(tmp_path / "r.json", [review_line()])], [meta], db)
    assert report.rejects == 0
    assert db_rows(db, "select item_id, category from items order by 1") == [("B1", "Headphones"), ("B2", "Cables")]


def test_utf8_bom_on_json_reviews_is_not_a_reject(tmp_path, meta_2014):
    src = tmp_path / "r.json"
    src.write_bytes(b"\xef\xbb\xbf" + f"{review_line(reviewerID='A1')}\n{review_line(reviewerID='A2')}\n".encode())
    db = tmp_path / "w.duckdb"
    assert ingest("d", [src], [meta_2014], db).rejects == 0
    assert db_rows(db, "select user_id from reviews order by 1") == [("A1",), ("A2",)]
