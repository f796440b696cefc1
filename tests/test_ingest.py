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
    'unixReviewTime is a string ("yesterday"); expected an integer': review(unixReviewTime="yesterday"),
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
        return "select * from a_table_that_does_not_exist" if name == "ingest/marts/items" else real_load_sql(name)

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
    for format in ("2014", "2018"):
        out = tmp_path / format
        generate_world("tiny", out, seed=3, format=format)
        reviews, meta = raw_files(out)
        dbs[format] = tmp_path / f"{format}.duckdb"
        ingest("tiny", [reviews], [meta], dbs[format])
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


# --- issue 13 §3: refuse rather than lose ------------------------------------------------------


def all_rejected(tmp_path: Path, n: int = 10) -> Path:
    """A reviews file that still looks like reviews (so it passes the sniffer) but whose every line is a reject."""
    return write_lines(tmp_path / "broken.json", [review(reviewerID=f"A{i}", unixReviewTime="yesterday") for i in range(n)])


def test_reingest_with_every_line_rejected_is_refused_and_keeps_the_old_rows(tmp_path, meta_2014):
    db = tmp_path / "w.duckdb"
    good = write_lines(tmp_path / "good.json", [review(reviewerID=f"A{i}", unixReviewTime=1000 + i) for i in range(10)])
    ingest("d", [good], [meta_2014], db)
    before = snapshot(db)
    with pytest.raises(MicnError, match="no review was accepted") as e:
        ingest("d", [all_rejected(tmp_path)], [meta_2014], db)
    message = str(e.value)
    assert "10 rejected" in message and "unixReviewTime is a string" in message and "--allow-shrink" in message
    assert "its 10 reviews" in message and "\n" not in message
    assert snapshot(db) == before


def test_reingest_keeping_under_half_the_reviews_is_refused(tmp_path, meta_2014):
    db = tmp_path / "w.duckdb"
    lines = [review(reviewerID=f"A{i}", unixReviewTime=1000 + i) for i in range(10)]
    ingest("d", [write_lines(tmp_path / "all.json", lines)], [meta_2014], db)
    before = snapshot(db)
    four = write_lines(tmp_path / "four.json", lines[:4])  # 4 of 10: under the 50 % floor
    with pytest.raises(MicnError, match="only 4 reviews were accepted, under 50% of the 10"):
        ingest("d", [four], [meta_2014], db)
    assert snapshot(db) == before
    five = write_lines(tmp_path / "five.json", lines[:5])  # exactly half is allowed
    assert ingest("d", [five], [meta_2014], db).reviews == 5


def test_allow_shrink_replaces_the_dataset_anyway(tmp_path, meta_2014):
    db = tmp_path / "w.duckdb"
    ingest("d", [write_lines(tmp_path / "good.json", [review()])], [meta_2014], db)
    report = ingest("d", [all_rejected(tmp_path)], [meta_2014], db, allow_shrink=True)
    assert report.reviews == 0 and report.rejects == 10
    assert table(db, "select count(*) from reviews") == [(0,)]


def test_first_ingest_with_no_accepted_review_is_refused_and_leaves_no_warehouse(tmp_path, meta_2014):
    db = tmp_path / "new" / "w.duckdb"
    with pytest.raises(MicnError, match="no review was accepted") as e:
        ingest("d", [all_rejected(tmp_path)], [meta_2014], db)
    assert "was left as it was" in str(e.value)
    assert not db.exists() and not (tmp_path / "new").exists()


def test_allow_shrink_flag_and_params_mode_build_the_same_typed_config(tmp_path, meta_2014):
    """Flag mode and --params mode give one IngestConfig type; --allow-shrink reaches it."""
    import argparse

    from flows.ingest import IngestConfig, IngestJob, add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser, "ingest")
    reviews = write_lines(tmp_path / "reviews_X_5.json", [review()])
    flags = config_from_args(parser.parse_args(
        ["--dataset", "synthetic", "--reviews", str(reviews), "--meta", str(meta_2014), "--db", "w.duckdb", "--allow-shrink"]))
    assert flags == IngestConfig(Path("w.duckdb"), (IngestJob("synthetic", (reviews,), (meta_2014,)),), allow_shrink=True)

    raw = tmp_path / "raw" / "synthetic"
    raw.mkdir(parents=True)
    shutil.copy(reviews, raw / "reviews_X_5.json")
    shutil.copy(meta_2014, raw / "meta_X.json")
    params = tmp_path / "params.yaml"
    params.write_text(Path("params.yaml").read_text())
    from_params = config_from_args(parser.parse_args(
        ["--params", str(params), "--raw", str(tmp_path / "raw"), "--db", "w.duckdb", "--allow-shrink"]))
    assert type(from_params) is type(flags) and from_params.allow_shrink
    assert [(j.dataset, [p.name for p in j.reviews], [p.name for p in j.meta]) for j in from_params.jobs] == [
        ("synthetic", ["reviews_X_5.json"], ["meta_X.json"])]
    with pytest.raises(MicnError, match="drop --dataset"):
        config_from_args(parser.parse_args(["--params", str(params), "--dataset", "x", "--db", "w.duckdb"]))


# --- issue 13 §5: types, not coercions ---------------------------------------------------------


def only_reject(db: Path) -> tuple[int, str, str]:
    [row] = table(db, "select line_no, reason, raw_line from rejects")
    return row


def ingest_one_bad_review(tmp_path: Path, meta: Path, bad: str) -> tuple:
    """Ingest [good, bad, good]; returns the accounting of the file and the single reject."""
    src = write_lines(tmp_path / "reviews.json", [review(reviewerID="A1"), bad, review(reviewerID="A2")])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [src], [meta], db)
    assert_accounting(report)
    f = report.files[0]
    assert (f.lines_read, f.accepted, f.rejected) == (3, 2, 1)
    assert {u for (u,) in table(db, "select user_id from reviews")} == {"A1", "A2"}
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
        ("-5", "unixReviewTime -5 is negative"),
        (2**64 - 1, "unixReviewTime 18446744073709551615 is out of range"),
    ],
)
def test_timestamp_that_is_not_a_non_negative_integer_is_a_reject(tmp_path, meta_2014, value, reason):
    got = ingest_one_bad_review(tmp_path, meta_2014, review(reviewerID="A9", unixReviewTime=value))
    assert got.startswith(reason), got


def test_integer_valued_string_timestamp_is_accepted(tmp_path, meta_2014):
    src = write_lines(tmp_path / "r.json", [review(unixReviewTime="1163980800"), review(reviewerID="A2", unixReviewTime=" 7 ")])
    db = tmp_path / "w.duckdb"
    ingest("d", [src], [meta_2014], db)
    assert table(db, "select user_id, ts from reviews order by 1") == [("A1", 1163980800), ("A2", 7)]


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("asin", ["B1"], 'asin is an array (["B1"]); expected a string or an integer'),
        ("asin", {"id": "B1"}, 'asin is an object ({"id":"B1"}); expected a string or an integer'),
        ("asin", 1.5, "asin is a number with a fraction or exponent (1.5)"),
        ("asin", True, "asin is a boolean (true)"),
        ("reviewerID", ["A9"], 'reviewerID is an array (["A9"])'),
        ("reviewerID", {"a": 1}, "reviewerID is an object"),
    ],
)
def test_id_that_is_not_a_string_or_integer_is_a_reject(tmp_path, meta_2014, field, value, reason):
    got = ingest_one_bad_review(tmp_path, meta_2014, review(**{"reviewerID": "A9", field: value}))
    assert got.startswith(reason), got


def test_integer_ids_are_kept_as_their_digits(tmp_path, meta_2014):
    src = write_lines(tmp_path / "r.json", [review(reviewerID=123, asin=456)])
    db = tmp_path / "w.duckdb"
    ingest("d", [src], [meta_2014], db)
    assert table(db, "select user_id, item_id from reviews") == [("123", "456")]


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
    got = ingest_one_bad_review(tmp_path, meta_2014, review(reviewerID="A9", overall=value))
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
    reviews = write_lines(tmp_path / "r.json", [review()])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [reviews], [meta], db)
    assert_accounting(report)
    line_no, got, _ = only_reject(db)
    assert line_no == 2 and got.startswith(reason), got
    # the item's reviews stay: it is a reviewed item without (usable) metadata, never a category named '["Electronics"]'
    assert table(db, "select item_id, category, has_meta from items order by 1") == [("B1", "default_cat", False), ("B2", "Audio", True)]


@pytest.mark.parametrize("asin, reason", [(["B1"], 'asin is an array (["B1"])'), (True, "asin is a boolean")])
def test_2018_asin_of_the_wrong_type_is_a_reject(tmp_path, asin, reason):
    meta = write_lines(tmp_path / "meta.json", [meta_2018_line(asin="B2"), meta_2018_line(asin=asin)])
    db = tmp_path / "w.duckdb"
    ingest("d", [write_lines(tmp_path / "r.json", [review()])], [meta], db)
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
    report = ingest("d", [write_lines(tmp_path / "r.json", [review()])], [meta], db)
    assert_accounting(report)
    assert report.files[1].rejected == 1
    line_no, got, raw = only_reject(db)
    assert line_no == 2 and raw == line and got.startswith(reason), got
    assert table(db, "select item_id, category, has_meta from items order by 1") == [("B1", "default_cat", False), ("B2", "Audio", True)]


def test_integer_asin_in_2014_metadata_is_kept_as_its_digits(tmp_path):
    meta = write_lines(tmp_path / "meta.json", ["{'asin': 456, 'categories': [['E', 'Audio']]}"])
    db = tmp_path / "w.duckdb"
    ingest("d", [write_lines(tmp_path / "r.json", [review(asin=456)])], [meta], db)
    assert table(db, "select item_id, category, has_meta from items") == [("456", "Audio", True)]


def test_utf8_bom_on_2014_metadata_keeps_the_first_items_category(tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_bytes(b"\xef\xbb\xbf" + "\n".join(META_2014_LINES[:2]).encode() + b"\n")
    assert sniff_format(meta) == "meta-2014"
    db = tmp_path / "w.duckdb"
    report = ingest("d", [write_lines(tmp_path / "r.json", [review()])], [meta], db)
    assert report.rejects == 0
    assert table(db, "select item_id, category from items order by 1") == [("B1", "Headphones"), ("B2", "Cables")]


def test_utf8_bom_on_json_reviews_is_not_a_reject(tmp_path, meta_2014):
    src = tmp_path / "r.json"
    src.write_bytes(b"\xef\xbb\xbf" + f"{review(reviewerID='A1')}\n{review(reviewerID='A2')}\n".encode())
    db = tmp_path / "w.duckdb"
    assert ingest("d", [src], [meta_2014], db).rejects == 0
    assert table(db, "select user_id from reviews order by 1") == [("A1",), ("A2",)]


# --- issue 13 §8: one paragraph for every failure a user can meet ------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_json_line_is_a_reject_not_a_recursion_error(tmp_path, meta_2014):
    src = write_lines(tmp_path / "r.json", [review(reviewerID="A1"), DEEP, review(reviewerID="A2")])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [src], [meta_2014], db)
    assert (report.files[0].accepted, report.files[0].rejected) == (2, 1)
    line_no, reason, _ = only_reject(db)
    assert line_no == 2 and "nested too deeply" in reason


def test_deeply_nested_2014_metadata_line_is_a_reject_not_a_recursion_error(tmp_path):
    deep = "{'asin': 'B9', 'related': " + DEEP + "}"
    meta = write_lines(tmp_path / "meta.json", [META_2014_LINES[0], deep])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [write_lines(tmp_path / "r.json", [review()])], [meta], db)
    assert report.files[1].rejected == 1
    assert "nested too deeply" in only_reject(db)[1] or "RecursionError" in only_reject(db)[1]


def test_format_sniffer_survives_deeply_nested_lines(tmp_path):
    deep_object = '{"reviewerID": "A9", "x": ' + DEEP + "}"  # starts like a record, so the sniffer parses it
    mostly_deep = write_lines(tmp_path / "deep.json", [deep_object, deep_object, review()])
    assert sniff_format(mostly_deep) == "reviews-2014"
    only_deep = write_lines(tmp_path / "only_deep.json", [deep_object])
    with pytest.raises(MicnError, match="unknown format"):
        sniff_format(only_deep)


def test_db_that_is_a_text_file_is_refused_and_left_untouched(tmp_path, meta_2014):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(MicnError, match="not a DuckDB database file") as e:
        ingest("d", [write_lines(tmp_path / "r.json", [review()])], [meta_2014], notes)
    assert str(notes) in str(e.value)
    assert notes.read_text() == "my notes\n"


def test_db_that_is_a_directory_is_refused(tmp_path, meta_2014):
    folder = tmp_path / "warehouse"
    folder.mkdir()
    with pytest.raises(MicnError, match="is a directory") as e:
        ingest("d", [write_lines(tmp_path / "r.json", [review()])], [meta_2014], folder)
    assert str(folder) in str(e.value)
    assert list(folder.iterdir()) == []


def test_failed_first_ingest_leaves_no_warehouse_file(tmp_path, meta_2014):
    lines = [review(reviewerID=f"A{i}", unixReviewTime=i, reviewText=f"text {i} " * 40) for i in range(5000)]
    good = write_lines(tmp_path / "good.json", lines, gz=True)
    truncated = tmp_path / "truncated.json.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    db = tmp_path / "new_folder" / "w.duckdb"
    with pytest.raises(MicnError, match="gzip"):
        ingest("d", [truncated], [meta_2014], db)
    assert not db.exists() and not Path(f"{db}.wal").exists() and not db.parent.exists()


HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(120)
"""


@pytest.mark.integration
def test_warehouse_locked_by_another_process_names_the_file_and_the_process(tmp_path, meta_2014):
    import subprocess
    import sys

    db = tmp_path / "w.duckdb"
    reviews = write_lines(tmp_path / "r.json", [review()])
    ingest("d", [reviews], [meta_2014], db)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(MicnError, match="another process") as e:
            ingest("d", [reviews], [meta_2014], db)
    finally:
        holder.kill()
        holder.wait()
    message = str(e.value)
    assert str(db) in message and f"PID {holder.pid}" in message and "\n" not in message
    assert table(db, "select user_id from reviews") == [("A1",)]  # still there, unharmed


def mount_tmpfs(path: Path, options: str) -> None:
    """Mount a small tmpfs at `path` (root only); skip the test with the reason otherwise."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a full or read-only file system)")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def mounts():
    import subprocess

    mounted: list[Path] = []
    yield mounted
    for path in mounted:
        subprocess.run(["umount", str(path)], check=False)


def test_full_disk_is_one_paragraph_and_keeps_the_old_warehouse(tmp_path, meta_2014, mounts):
    import random
    import string

    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=3m")
    mounts.append(disk)
    db = disk / "w.duckdb"
    ingest("d", [write_lines(tmp_path / "small.json", [review(reviewerID=f"A{i}") for i in range(100)])], [meta_2014], db)
    rng = random.Random(0)  # incompressible ids so that the warehouse cannot fit in 3 MB
    big = [review(reviewerID="".join(rng.choices(string.ascii_letters, k=30)), asin=f"B{i % 997}", unixReviewTime=i)
           for i in range(200_000)]
    with pytest.raises(MicnError, match="disk is full") as e:
        ingest("d", [write_lines(tmp_path / "big.json", big)], [meta_2014], db)
    message = str(e.value)
    assert str(db) in message and "cannot rollback" not in message and "\n" not in message
    assert table(db, "select count(*) from reviews") == [(100,)]


def test_full_disk_on_a_first_ingest_leaves_no_warehouse_file(tmp_path, meta_2014, mounts):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=200k")
    mounts.append(disk)
    with pytest.raises(MicnError, match="disk is full.*no warehouse file was left behind"):
        ingest("d", [write_lines(tmp_path / "r.json", [review()])], [meta_2014], disk / "w.duckdb")
    assert list(disk.iterdir()) == []


def test_read_only_folder_is_one_paragraph(tmp_path, meta_2014, mounts):
    ro = tmp_path / "ro"
    mount_tmpfs(ro, "ro,size=1m")
    mounts.append(ro)
    reviews = write_lines(tmp_path / "r.json", [review()])
    for db in (ro / "w.duckdb", ro / "sub" / "w.duckdb"):
        with pytest.raises(MicnError, match="cannot write") as e:
            ingest("d", [reviews], [meta_2014], db)
        assert str(db) in str(e.value) and "\n" not in str(e.value)


# --- issue 13 §9: a line over DuckDB's object-size limit ---------------------------------------


def test_line_over_the_object_size_limit_is_a_reject_not_a_refusal_of_the_file(tmp_path, meta_2014):
    huge = review(reviewerID="A9", reviewText="x" * (50 * 2**20))  # one 50 MB line
    src = write_lines(tmp_path / "r.json", [review(reviewerID="A1"), huge, review(reviewerID="A2")], gz=True)
    db = tmp_path / "w.duckdb"
    report = ingest("d", [src], [meta_2014], db)
    assert_accounting(report)
    assert (report.files[0].lines_read, report.files[0].accepted, report.files[0].rejected) == (3, 2, 1)
    line_no, reason, raw = only_reject(db)
    assert line_no == 2 and reason == f"line of {len(huge.encode()):,} bytes is over the 16 MiB limit of one record"
    assert raw.startswith(huge[:100]) and len(raw) < 10_000  # the head of the line, not 50 MB
    assert {u for (u,) in table(db, "select user_id from reviews")} == {"A1", "A2"}


def test_line_over_the_size_limit_in_2014_metadata_is_a_reject(tmp_path):
    huge = "{'asin': 'B9', 'title': '" + "x" * (17 * 2**20) + "', 'categories': [['E']]}"
    meta = write_lines(tmp_path / "meta.json", [META_2014_LINES[0], huge])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [write_lines(tmp_path / "r.json", [review()])], [meta], db)
    assert report.files[1].rejected == 1
    assert only_reject(db)[1].startswith("line of") and "16 MiB" in only_reject(db)[1]


@pytest.mark.integration
def test_cli_refuses_a_shrinking_reingest_with_exit_2_and_no_traceback(tmp_path, meta_2014):
    import subprocess
    import sys

    db = tmp_path / "w.duckdb"
    ingest("d", [write_lines(tmp_path / "good.json", [review(reviewerID=f"A{i}") for i in range(10)])], [meta_2014], db)
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "ingest", "--dataset", "d", "--reviews", str(all_rejected(tmp_path)),
         "--meta", str(meta_2014), "--db", str(db)],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 2, done.stderr
    assert "no review was accepted" in done.stderr and "--allow-shrink" in done.stderr
    assert "Traceback" not in done.stderr
    assert table(db, "select count(*) from reviews") == [(10,)]
