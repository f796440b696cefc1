"""Ingest: readers, format detection, bad input, accounting, idempotency, transactions."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from micn.data import ingest as ingest_module
from micn.data.formats import sniff_format
from micn.data.ingest import ingest
from micn.errors import MicnError
from tests.conftest import AMAZON, requires_shared

REVIEW = {"reviewerID": "A1", "asin": "B1", "reviewerName": "x", "helpful": [0, 0], "reviewText": "ok",
          "overall": 5.0, "summary": "s", "unixReviewTime": 1000, "reviewTime": "01 1, 1970"}

# A hand-built 2014 metadata fixture (no public real sample exists): Python dict literals as
# `str(dict)` writes them, with apostrophes, unicode, \xe9-style escapes, nested related /
# salesRank, several category paths and missing fields.
META_2014_LINES = [
    "{'asin': 'B1', 'title': \"Sony's Caf\\xe9 Headphones\", 'price': 12.5, 'imUrl': 'http://x/1.jpg', "
    "'related': {'also_bought': ['B2', 'B3'], 'also_viewed': ['B4'], 'bought_together': ['B2']}, "
    "'salesRank': {'Electronics': 1234}, 'brand': 'Sony', "
    "'categories': [['Electronics', 'Audio', 'Headphones'], ['Electronics', 'Accessories']]}",
    "{'asin': 'B2', 'title': 'Über “quoted” cable ™', 'categories': [['Electronics', 'Cables']]}",
    "{'asin': 'B3', 'categories': [['Electronics']]}",  # no title, no price
    "{'asin': 'B4', 'title': 'no categories at all'}",
    "{'asin': 'B5', 'title': 'empty path', 'categories': [[]]}",
]


def write_lines(path: Path, lines: list[str | bytes], gz: bool = False) -> Path:
    data = b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n" for ln in lines)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def review(**changes) -> str:
    r = {**REVIEW, **changes}
    return json.dumps({k: v for k, v in r.items() if v is not ...})


def table(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql(sql).fetchall()


def assert_accounting(report) -> None:
    """Nothing vanishes: for every file, lines read = accepted + rejected + duplicates."""
    for f in report.files:
        assert f.lines_read == f.accepted + f.rejected + f.duplicates, f


@pytest.fixture
def meta_2014(tmp_path) -> Path:
    return write_lines(tmp_path / "meta_Fixture.json", META_2014_LINES)


# --- readers on real samples -------------------------------------------------------------------


@requires_shared
def test_real_2014_reviews_sample(tmp_path, meta_2014):
    src = AMAZON / "2014" / "reviews_Musical_Instruments_5.head50.json"
    assert sniff_format(src) == "reviews-2014"
    db = tmp_path / "w.duckdb"
    report = ingest("music", [src], [meta_2014], db)
    assert_accounting(report)
    assert report.files[0].lines_read == 50 and report.files[0].accepted == 50
    expected = {(r["reviewerID"], r["asin"], r["unixReviewTime"], r["overall"]) for r in map(json.loads, src.open())}
    assert set(table(db, "select user_id, item_id, ts, rating from reviews")) == expected
    # none of the sample's items is in the fixture metadata → all fall back to default_cat
    n_items = len({e[1] for e in expected})
    assert table(db, "select count(*), count(*) filter (where category = 'default_cat' and not has_meta) "
                     "from items where item_id not like 'B_'") == [(n_items, n_items)]


@requires_shared
def test_real_2018_samples(tmp_path):
    reviews, meta = AMAZON / "2018" / "reviews.head100.json", AMAZON / "2018" / "meta_Appliances.head100.json"
    assert sniff_format(reviews) == "reviews-2018" and sniff_format(meta) == "meta-2018"
    db = tmp_path / "w.duckdb"
    report = ingest("r18", [reviews], [meta], db)
    assert_accounting(report)
    records = [json.loads(line) for line in reviews.open()]
    keys = {(r["reviewerID"], r["asin"], r["unixReviewTime"]) for r in records}
    assert report.files[0].lines_read == 100
    assert report.files[0].duplicates == 100 - len(keys)
    assert table(db, "select count(*) from reviews") == [(len(keys),)]
    meta_records = [json.loads(line) for line in meta.open()]
    by_asin = {}
    for m in meta_records:
        by_asin.setdefault(m["asin"], m)
    items = dict(table(db, "select item_id, category from items where has_meta"))
    assert len(items) == len(by_asin)
    for asin, m in by_asin.items():
        leaf = m["category"][-1].replace("&amp;", "&") if m["category"] else "default_cat"
        assert items[asin] == leaf
    # HTML entities never split a category in two
    assert not table(db, "select category from items where category like '%&amp;%'")


def test_2014_metadata_fixture(tmp_path, meta_2014):
    assert sniff_format(meta_2014) == "meta-2014"
    reviews = write_lines(tmp_path / "reviews.json", [review(asin="B1"), review(asin="B9", reviewerID="A2")])
    db = tmp_path / "w.duckdb"
    report = ingest("fx", [reviews], [meta_2014], db)
    assert_accounting(report)
    rows = {r[0]: r[1:] for r in table(db, "select item_id, category, title, brand, price, has_meta from items")}
    assert rows["B1"] == ("Headphones", "Sony's Café Headphones", "Sony", 12.5, True)  # first path's last element
    assert rows["B2"] == ("Cables", "Über “quoted” cable ™", None, None, True)
    assert rows["B3"] == ("Electronics", None, None, None, True)
    assert rows["B4"][0] == "default_cat" and rows["B5"][0] == "default_cat"  # described, but no category path
    assert rows["B9"] == ("default_cat", None, None, None, False)  # reviewed, never described


def test_gzip_detected_from_content_not_name(tmp_path, meta_2014):
    lines = [review(reviewerID=f"A{i}", unixReviewTime=1000 + i) for i in range(20)]
    plain = write_lines(tmp_path / "plain.json", lines)
    gz = write_lines(tmp_path / "compressed.json", lines, gz=True)  # gzip without a .gz name
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    ingest("d", [plain], [meta_2014], a)
    ingest("d", [gz], [meta_2014], b)
    q = "select user_id, item_id, rating, ts from reviews order by all"
    assert table(a, q) == table(b, q) and len(table(a, q)) == 20


# --- bad input: one reject row per bad line, with its reason and raw text ---------------------

BAD_LINES = {
    "malformed JSON": '{"reviewerID": "A9", "asin": "B1", "overall": 4.0, "unixReviewTime": 2000',
    "a JSON array": '["A9", "B1", 4.0, 2000]',
    "a Python dict literal": "{'reviewerID': 'A9', 'asin': 'B1', 'overall': 4.0, 'unixReviewTime': 2000}",
    "reviewerID missing": review(reviewerID=...),
    "reviewerID missing, null": review(reviewerID=None),
    "reviewerID missing, null or empty": review(reviewerID=""),
    "asin missing": review(asin=...),
    "asin missing, null": review(asin=None),
    "asin missing, null or empty": review(asin="  "),
    "unixReviewTime missing": review(unixReviewTime=...),
    "unixReviewTime missing or not an integer": review(unixReviewTime="yesterday"),
    "invalid UTF-8": review(reviewerName="PLACEHOLDER").encode().replace(b"PLACEHOLDER", b"caf\xe9"),
}


@pytest.mark.parametrize("reason", list(BAD_LINES))
def test_bad_review_line_becomes_a_reject(tmp_path, meta_2014, reason):
    bad = BAD_LINES[reason]
    lines = [review(reviewerID="A1"), bad, review(reviewerID="A2")]
    src = write_lines(tmp_path / "reviews.json", lines)
    db = tmp_path / "w.duckdb"
    report = ingest("d", [src], [meta_2014], db)
    assert_accounting(report)
    assert (report.files[0].lines_read, report.files[0].accepted, report.files[0].rejected) == (3, 2, 1)
    [(source, line_no, got_reason, raw)] = table(db, "select source_file, line_no, reason, raw_line from rejects")
    assert source == str(src) and line_no == 2
    assert got_reason.startswith(reason), got_reason
    expected_raw = bad.decode("utf-8", errors="backslashreplace") if isinstance(bad, bytes) else bad
    assert raw == expected_raw
    assert {u for (u,) in table(db, "select user_id from reviews")} == {"A1", "A2"}


def test_line_numbers_count_blank_lines(tmp_path, meta_2014):
    src = write_lines(tmp_path / "r.json", [review(reviewerID="A1"), "", "   ", BAD_LINES["a JSON array"], review(reviewerID="A2")])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [src], [meta_2014], db)
    assert report.files[0].lines_read == 3  # blank lines are not records
    assert table(db, "select line_no from rejects") == [(4,)]


def test_exact_duplicate_lines_are_counted_not_loaded(tmp_path, meta_2014):
    a = write_lines(tmp_path / "a.json", [review(reviewerID="A1"), review(reviewerID="A1"), review(reviewerID="A2")])
    b = write_lines(tmp_path / "b.json", [review(reviewerID="A2"), review(reviewerID="A3")])  # A2 repeats across files
    db = tmp_path / "w.duckdb"
    report = ingest("d", [a, b], [meta_2014], db)
    assert_accounting(report)
    assert [(f.accepted, f.duplicates) for f in report.files[:2]] == [(2, 1), (1, 1)]
    assert table(db, "select user_id, count(*) from reviews group by 1 order by 1") == [("A1", 1), ("A2", 1), ("A3", 1)]


def test_same_key_with_other_rating_keeps_the_first(tmp_path, meta_2014):
    src = write_lines(tmp_path / "r.json", [review(overall=2.0), review(overall=5.0)])
    db = tmp_path / "w.duckdb"
    ingest("d", [src], [meta_2014], db)
    assert table(db, "select rating from reviews") == [(2.0,)]


def test_broken_literal_line_in_2014_metadata(tmp_path):
    lines = [*META_2014_LINES, "{'asin': 'B7', 'title': 'unterminated", "['B8', 'a list']", "{'title': 'no asin'}"]
    meta = write_lines(tmp_path / "meta.json", lines)
    reviews = write_lines(tmp_path / "r.json", [review()])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [reviews], [meta], db)
    assert_accounting(report)
    m = report.files[1]
    assert (m.lines_read, m.accepted, m.rejected) == (8, 5, 3)
    rejects = table(db, "select line_no, reason, raw_line from rejects order by line_no")
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
    lines = [review(reviewerID=f"A{i}", unixReviewTime=i, reviewText="x" * 200) for i in range(5000)]
    good = write_lines(tmp_path / "good.json", lines, gz=True)
    db = tmp_path / "w.duckdb"
    ingest("d", [good], [meta_2014], db)
    before = table(db, "select * from reviews order by all")
    truncated = tmp_path / "truncated.json.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(MicnError, match="gzip") as e:
        ingest("d", [truncated], [meta_2014], db)
    assert str(truncated) in str(e.value)
    assert table(db, "select * from reviews order by all") == before


def test_files_given_as_the_wrong_kind(tmp_path, meta_2014):
    reviews = write_lines(tmp_path / "r.json", [review()])
    with pytest.raises(MicnError, match="--meta"):
        ingest("d", [meta_2014], [reviews], tmp_path / "w.duckdb")


def test_missing_file_and_bad_dataset_name(tmp_path, meta_2014):
    with pytest.raises(MicnError, match="no such file"):
        ingest("d", [tmp_path / "nope.json"], [meta_2014], tmp_path / "w.duckdb")
    with pytest.raises(MicnError, match="dataset name"):
        ingest("bad name; drop table", [meta_2014], [meta_2014], tmp_path / "w.duckdb")


# --- idempotency, transactions, several datasets --------------------------------------------


def snapshot(db: Path) -> dict[str, list[tuple]]:
    return {t: table(db, f"select * from {t} order by all") for t in ("reviews", "items", "rejects")}


def test_reingest_is_idempotent_and_datasets_are_independent(tmp_path, meta_2014):
    a = write_lines(tmp_path / "a.json", [review(reviewerID="A1"), BAD_LINES["a JSON array"], review(reviewerID="A1")])
    b = write_lines(tmp_path / "b.json", [review(reviewerID="B1"), review(reviewerID="B2")])
    db = tmp_path / "w.duckdb"
    ingest("one", [a], [meta_2014], db)
    ingest("two", [b], [meta_2014], db)
    first = snapshot(db)
    ingest("one", [a], [meta_2014], db)
    assert snapshot(db) == first
    assert table(db, "select dataset, count(*) from reviews group by 1 order by 1") == [("one", 1), ("two", 2)]
    # the log keeps one row per file of the latest ingest of each dataset
    assert table(db, "select dataset, count(*) from ingest_log group by 1 order by 1") == [("one", 2), ("two", 2)]


def test_failure_inside_the_transaction_rolls_back(tmp_path, meta_2014, monkeypatch):
    a = write_lines(tmp_path / "a.json", [review(reviewerID="A1"), review(reviewerID="A2")])
    db = tmp_path / "w.duckdb"
    ingest("d", [a], [meta_2014], db)
    before = snapshot(db)
    b = write_lines(tmp_path / "b.json", [review(reviewerID="Z9")])
    real_load_sql = ingest_module.load_sql

    def broken_items_model(name):  # fail after reviews were already replaced inside the transaction
        return "select * from a_table_that_does_not_exist" if name == "ingest/items" else real_load_sql(name)

    monkeypatch.setattr(ingest_module, "load_sql", broken_items_model)
    with pytest.raises(duckdb.Error):
        ingest("d", [b], [meta_2014], db)
    assert snapshot(db) == before


def test_generated_world_round_trips(tmp_path, tiny_world):
    """Every generated review lands in the warehouse; items without metadata get default_cat."""
    from tests.conftest import raw_files

    reviews, meta = raw_files(tiny_world)
    db = tmp_path / "w.duckdb"
    report = ingest("tiny", [reviews], [meta], db)
    assert_accounting(report)
    assert report.rejects == 0 and sum(f.duplicates for f in report.files) == 0
    expected = [(r["reviewerID"], r["asin"], r["unixReviewTime"]) for r in map(json.loads, gzip.open(reviews, "rt"))]
    assert sorted(table(db, "select user_id, item_id, ts from reviews")) == sorted(expected)
    truth = json.loads((tiny_world / "ground_truth" / "world.json").read_text())
    assert report.users == truth["counts"]["n_users"] if "counts" in truth else report.users > 0
    no_meta = table(db, "select count(*) from items where not has_meta and category = 'default_cat'")[0][0]
    assert no_meta == report.items_without_meta


def test_2018_generated_world_matches_2014(tmp_path):
    """The same seed in both formats gives the same reviews and categories in the warehouse."""
    from micn.data.synthetic import generate_world
    from tests.conftest import raw_files

    dbs = {}
    for fmt in ("2014", "2018"):
        out = tmp_path / fmt
        generate_world("tiny", out, seed=3, fmt=fmt)
        reviews, meta = raw_files(out)
        dbs[fmt] = tmp_path / f"{fmt}.duckdb"
        ingest("tiny", [reviews], [meta], dbs[fmt])
    for q in ("select user_id, item_id, ts, rating from reviews order by all",
              "select item_id, category, has_meta from items order by all"):
        assert table(dbs["2014"], q) == table(dbs["2018"], q)


def test_copying_the_warehouse_keeps_everything(tmp_path, meta_2014):
    """The warehouse is one self-contained file (checkpointed, no WAL left behind)."""
    a = write_lines(tmp_path / "a.json", [review(reviewerID="A1")])
    db = tmp_path / "w.duckdb"
    ingest("d", [a], [meta_2014], db)
    assert not Path(str(db) + ".wal").exists()
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    assert snapshot(copy) == snapshot(db)
