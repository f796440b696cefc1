"""Ingest of whole files: the real Amazon samples, the 2014 metadata fixture, gzip detection,
generated worlds in both formats; re-ingesting, several datasets in one warehouse, and the one
transaction that replaces a dataset's rows."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import duckdb
import pytest

import micn.data.ingest.publish as publish_module
from micn.data.formats import sniff_format
from micn.data.ingest.load import ingest
from tests.helpers import (
    AMAZON,
    BAD_REVIEW_LINES,
    assert_accounting,
    db_rows,
    raw_files,
    requires_shared,
    review_line,
    warehouse_snapshot,
    write_lines,
)


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
    assert set(db_rows(db, "select user_id, item_id, ts, rating from reviews")) == expected
    # none of the sample's items is in the fixture metadata → all fall back to default_cat
    n_items = len({e[1] for e in expected})
    assert db_rows(db, "select count(*), count(*) filter (where category = 'default_cat' and not has_meta) "
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
    assert db_rows(db, "select count(*) from reviews") == [(len(keys),)]
    meta_records = [json.loads(line) for line in meta.open()]
    by_asin = {}
    for m in meta_records:
        by_asin.setdefault(m["asin"], m)
    items = dict(db_rows(db, "select item_id, category from items where has_meta"))
    assert len(items) == len(by_asin)
    for asin, m in by_asin.items():
        leaf = m["category"][-1].replace("&amp;", "&") if m["category"] else "default_cat"
        assert items[asin] == leaf
    # HTML entities never split a category in two
    assert not db_rows(db, "select category from items where category like '%&amp;%'")


def test_2014_metadata_fixture(tmp_path, meta_2014):
    assert sniff_format(meta_2014) == "meta-2014"
    reviews = write_lines(tmp_path / "reviews.json", [review_line(asin="B1"), review_line(asin="B9", reviewerID="A2")])
    db = tmp_path / "w.duckdb"
    report = ingest("fx", [reviews], [meta_2014], db)
    assert_accounting(report)
    rows = {r[0]: r[1:] for r in db_rows(db, "select item_id, category, title, brand, price, has_meta from items")}
    assert rows["B1"] == ("Headphones", "Sony's Café Headphones", "Sony", 12.5, True)  # first path's last element
    assert rows["B2"] == ("Cables", "Über “quoted” cable ™", None, None, True)
    assert rows["B3"] == ("Electronics", None, None, None, True)
    assert rows["B4"][0] == "default_cat" and rows["B5"][0] == "default_cat"  # described, but no category path
    assert rows["B9"] == ("default_cat", None, None, None, False)  # reviewed, never described


def test_gzip_detected_from_content_not_name(tmp_path, meta_2014):
    lines = [review_line(reviewerID=f"A{i}", unixReviewTime=1_163_980_800 + i) for i in range(20)]
    plain = write_lines(tmp_path / "plain.json", lines)
    gz = write_lines(tmp_path / "compressed.json", lines, gz=True)  # gzip without a .gz name
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    ingest("d", [plain], [meta_2014], a)
    ingest("d", [gz], [meta_2014], b)
    q = "select user_id, item_id, rating, ts from reviews order by all"
    assert db_rows(a, q) == db_rows(b, q) and len(db_rows(a, q)) == 20


# --- idempotency, transactions, several datasets -----------------------------------------------


def test_reingest_is_idempotent_and_datasets_are_independent(tmp_path, meta_2014):
    a = write_lines(tmp_path / "a.json", [review_line(reviewerID="A1"), BAD_REVIEW_LINES["a JSON array"], review_line(reviewerID="A1")])
    b = write_lines(tmp_path / "b.json", [review_line(reviewerID="B1"), review_line(reviewerID="B2")])
    db = tmp_path / "w.duckdb"
    ingest("one", [a], [meta_2014], db)
    ingest("two", [b], [meta_2014], db)
    first = warehouse_snapshot(db)
    ingest("one", [a], [meta_2014], db)
    assert warehouse_snapshot(db) == first
    assert db_rows(db, "select dataset, count(*) from reviews group by 1 order by 1") == [("one", 1), ("two", 2)]
    # the log keeps one row per file of the latest ingest of each dataset
    assert db_rows(db, "select dataset, count(*) from ingest_log group by 1 order by 1") == [("one", 2), ("two", 2)]


def test_failure_inside_the_transaction_rolls_back(tmp_path, meta_2014, monkeypatch):
    a = write_lines(tmp_path / "a.json", [review_line(reviewerID="A1"), review_line(reviewerID="A2")])
    db = tmp_path / "w.duckdb"
    ingest("d", [a], [meta_2014], db)
    before = warehouse_snapshot(db)
    b = write_lines(tmp_path / "b.json", [review_line(reviewerID="Z9")])
    real_load_sql = publish_module.load_sql

    def broken_items_model(name):  # fail after reviews were already replaced inside the transaction
        return "select * from a_table_that_does_not_exist" if name == "ingest/marts/items" else real_load_sql(name)

    monkeypatch.setattr(publish_module, "load_sql", broken_items_model)
    with pytest.raises(duckdb.Error):
        ingest("d", [b], [meta_2014], db)
    assert warehouse_snapshot(db) == before


def test_generated_world_round_trips(tmp_path, tiny_world):
    """Every generated review lands in the warehouse; items without metadata get default_cat."""
    reviews, meta = raw_files(tiny_world)
    db = tmp_path / "w.duckdb"
    report = ingest("tiny", [reviews], [meta], db)
    assert_accounting(report)
    assert report.rejects == 0 and sum(f.duplicates for f in report.files) == 0
    expected = [(r["reviewerID"], r["asin"], r["unixReviewTime"]) for r in map(json.loads, gzip.open(reviews, "rt"))]
    assert sorted(db_rows(db, "select user_id, item_id, ts from reviews")) == sorted(expected)
    truth = json.loads((tiny_world / "ground_truth" / "world.json").read_text())
    assert report.users == truth["counts"]["n_users"] if "counts" in truth else report.users > 0
    no_meta = db_rows(db, "select count(*) from items where not has_meta and category = 'default_cat'")[0][0]
    assert no_meta == report.items_without_meta


def test_2018_generated_world_matches_2014(tmp_path):
    """The same seed in both formats gives the same reviews and categories in the warehouse."""
    from micn.data.synthetic import generate_world

    dbs = {}
    for format in ("2014", "2018"):
        out = tmp_path / format
        generate_world("tiny", out, seed=3, format=format)
        reviews, meta = raw_files(out)
        dbs[format] = tmp_path / f"{format}.duckdb"
        ingest("tiny", [reviews], [meta], dbs[format])
    for q in ("select user_id, item_id, ts, rating from reviews order by all",
              "select item_id, category, has_meta from items order by all"):
        assert db_rows(dbs["2014"], q) == db_rows(dbs["2018"], q)


def test_copying_the_warehouse_keeps_everything(tmp_path, meta_2014):
    """The warehouse is one self-contained file (checkpointed, no WAL left behind)."""
    a = write_lines(tmp_path / "a.json", [review_line(reviewerID="A1")])
    db = tmp_path / "w.duckdb"
    ingest("d", [a], [meta_2014], db)
    assert not Path(str(db) + ".wal").exists()
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    assert warehouse_snapshot(copy) == warehouse_snapshot(db)
