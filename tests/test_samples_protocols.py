"""Samples of both protocols, computed by hand on the hand-made warehouse (`tests.helpers.HAND`):
targets, histories, splits and negatives, the vocabularies fitted on train, and the real Amazon
2018 sample's dropped users."""

from __future__ import annotations

import json
import math
from collections import Counter

import duckdb
import polars as pl
import pytest

from micn.data.ingest.load import ingest
from micn.data.samples.build import build_samples
from micn.data.samples.tables import materialize
from micn.errors import MicnError
from tests.helpers import (
    AMAZON,
    HAND,
    HAND_CATEGORIES,
    HAND_DROPPED,
    HAND_MAX_LEN,
    make_warehouse,
    read_split,
    read_vocab,
    requires_shared,
)


# --- hand-computed: dien -----------------------------------------------------------------------


# dien: (target, history) per kept user
DIEN_EXPECTED = {"u1": ("f", ["a", "b", "c"]), "u2": ("a", ["b", "c"]), "u4": ("d", ["a"]), "u6": ("a", ["c", "e", "d"])}
# din: (target, history, role) per target; role: test = last pair, last_train = goes to valid for a valid user
DIN_EXPECTED = {
    "u1": [("b", ["a"], "train"), ("c", ["a", "b"], "last_train"), ("f", ["a", "b", "c"], "test")],
    "u2": [("a", ["b", "c"], "test")],  # b and c share the first ts: neither is a target
    "u4": [("b", ["a"], "last_train"), ("d", ["a"], "test")],
    "u6": [("b", ["a"], "train"), ("c", ["a", "b"], "train"), ("e", ["a", "b", "c"], "train"),
           ("d", ["b", "c", "e"], "last_train"), ("a", ["c", "e", "d"], "test")],
}


def encode(ids, mapping: dict[str, int]) -> list[int]:
    return [mapping.get(x, 1) for x in ids]


def padded(ids: list[int], max_len: int = HAND_MAX_LEN) -> list[int]:
    return [0] * (max_len - len(ids)) + ids


def test_dien_report_counts(dien_build, hand_db):
    report, out = dien_build
    assert report.users == 6 and report.users_kept == 4
    assert report.users_dropped == HAND_DROPPED
    # ceil(4 * 0.25) = 1 test user, 1 valid user, the other 2 train
    assert report.users_per_split == {"train": 2, "valid": 1, "test": 1}
    assert report.pairs_per_split == {"train": 2, "valid": 1, "test": 1}
    assert report.samples_per_split == {"train": 4, "valid": 2, "test": 2}
    assert report.targets_history_shortened == 1  # u4: b shares d's ts
    assert set(report.checks) == {"samples_history_before_target", "samples_user_in_one_split",
                                  "samples_negative_not_positive", "samples_user_accounting"}
    assert all(n == 0 for n in report.checks.values())
    fmap = json.loads((out / "feature_map.json").read_text())
    assert fmap["counts"]["users"] == {"total": 6, "kept": 4, "dropped": HAND_DROPPED}
    assert fmap["protocol"] == "dien" and fmap["max_len"] == HAND_MAX_LEN and fmap["seed"] == 3
    assert fmap["source"] == hand_db.name and fmap["columns"]["hist_items"] == "fixed_size_list<item: int32 not null>[3]"
    assert "warehouse" not in fmap and fmap["oracle"] is None  # real-like data: no ground truth
    assert fmap["padding_id"] == 0 and fmap["oov_id"] == 1
    assert fmap["n_items"] == len(read_vocab(out, "item")) + 2
    assert fmap["n_users"] == len(read_vocab(out, "user")) + 2 == 2 + 2  # train users only
    assert fmap["n_categories"] == len(read_vocab(out, "category")) + 2
    rows = report.summary_rows()
    assert ("users", "dropped", "fewer than 2 behaviors", 1) in rows and ("samples", "test", "positives + negatives", 2) in rows


def test_dien_exact_samples(dien_build):
    _, out = dien_build
    items, cats, users = read_vocab(out, "item"), read_vocab(out, "category"), read_vocab(out, "user")
    category_of = {i: c or "default_cat" for i, c in HAND_CATEGORIES.items()}
    seen = {}
    for split in ("train", "valid", "test"):
        df = read_split(out, split)
        assert df["label"].to_list() == [1, 0] * (df.height // 2)  # pairs: positive then negative
        for pos, neg in zip(df.filter(pl.col("label") == 1).iter_rows(named=True),
                            df.filter(pl.col("label") == 0).iter_rows(named=True)):
            user = pos["user_id"]
            target, hist = DIEN_EXPECTED[user]
            seen[user] = split
            assert pos["item_id"] == target and pos["item"] == items.get(target, 1)
            assert pos["category"] == cats.get(category_of[target], 1)
            assert pos["hist_items"] == padded(encode(hist, items))
            assert pos["hist_categories"] == padded(encode([category_of[i] for i in hist], cats))
            assert pos["hist_len"] == len(hist)
            assert pos["last_hist_item_id"] == hist[-1]
            assert pos["ts"] == dict(HAND[user])[target]
            assert pos["user"] == (users[user] if split == "train" else 1)  # valid/test users are OOV
            # the negative row shares everything but the target
            for col in ("user", "hist_items", "hist_categories", "hist_neg_items", "hist_neg_categories", "hist_len",
                        "user_id", "ts", "last_hist_item_id"):
                assert neg[col] == pos[col], col
            assert neg["item_id"] != target and neg["item_id"] in category_of
            assert neg["category"] == cats.get(category_of[neg["item_id"]], 1)
            # one history negative per real position, padding elsewhere; never the clicked item
            assert [x == 0 for x in pos["hist_neg_items"]] == [x == 0 for x in pos["hist_items"]]
            real = [(h, n) for h, n in zip(pos["hist_items"], pos["hist_neg_items"]) if h != 0]
            assert all(h != n or h == 1 for h, n in real)
    assert sorted(seen) == sorted(DIEN_EXPECTED)  # every kept user once, in exactly one split
    assert Counter(seen.values()) == {"train": 2, "valid": 1, "test": 1}


def test_dien_vocab_is_fitted_on_train_rows_only(dien_build):
    _, out = dien_build
    items = read_vocab(out, "item")
    inverse = {v: k for k, v in items.items()}
    train = read_split(out, "train")
    in_train = set(train["item_id"].to_list())
    for row in train.filter(pl.col("label") == 1).iter_rows(named=True):
        in_train |= set(DIEN_EXPECTED[row["user_id"]][1])
        assert all(x >= 2 for x in row["hist_neg_items"] if x != 0)  # train ids are all in the vocabulary
        in_train |= {inverse[x] for x in row["hist_neg_items"] if x != 0}
    assert set(items) == in_train
    assert "z" not in items  # described but never reviewed
    # index order: descending training frequency (rows), ties by raw id
    freq = pl.read_parquet(out / "vocab_item.parquet")
    assert freq["index"].to_list() == list(range(2, len(items) + 2))
    keys = [(-f, i) for f, i in zip(freq["frequency"].to_list(), freq["item_id"].to_list())]
    assert keys == sorted(keys)


# --- hand-computed: din ------------------------------------------------------------------------


def test_din_exact_samples(din_build):
    report, out = din_build
    assert report.users_dropped == HAND_DROPPED and report.users_kept == 4
    # users with a training pair: u1, u4, u6 -> ceil(3 * 0.25) = 1 validation user
    assert report.pairs_per_split == {"train": 6, "valid": 1, "test": 4}
    assert report.targets_history_shortened == 1
    assert "samples_din_negative_not_in_history" in report.checks and "samples_user_in_one_split" not in report.checks
    items = read_vocab(out, "item")
    got = {}  # (user, target) -> (split, hist)
    for split in ("train", "valid", "test"):
        df = read_split(out, split)
        for pos, neg in zip(df.filter(pl.col("label") == 1).iter_rows(named=True),
                            df.filter(pl.col("label") == 0).iter_rows(named=True)):
            got[(pos["user_id"], pos["item_id"], pos["ts"])] = (split, pos["hist_items"], pos["hist_len"])
            reviewed = {i for i, _ in HAND[pos["user_id"]]}
            assert neg["item_id"] not in reviewed  # uniform negative the user never reviewed
            if pos["user_id"] == "u6":
                assert neg["item_id"] == "f"  # the only item u6 never reviewed
    valid_users = {u for (u, _, _), (s, _, _) in got.items() if s == "valid"}
    assert len(valid_users) == 1 and valid_users <= {"u1", "u4", "u6"}
    expected = {}
    for user, targets in DIN_EXPECTED.items():
        ts = dict(HAND[user])  # (u6 reviews a twice: the last one, a@6, is the target)
        for target, hist, role in targets:
            split = {"test": "test", "train": "train"}.get(role) or ("valid" if user in valid_users else "train")
            expected[(user, target, ts[target])] = (split, padded(encode(hist, items)), len(hist))
    assert got == expected


def test_din_drops_users_who_reviewed_every_item(tmp_path):
    db = make_warehouse(tmp_path / "w.duckdb", {"x": [("a", 1), ("b", 2), ("c", 3), ("d", 4)],
                                                "y": [("a", 1), ("b", 2), ("c", 3)], "w": [("b", 1), ("a", 2), ("c", 3)]},
                        {"a": "X", "b": "X", "c": "Y", "d": "Y"})
    report = build_samples(db, "hand", tmp_path / "din", protocol="din", max_len=2, valid_frac=0.3, test_frac=0.1)
    assert report.users_dropped == {"reviewed every item": 1}
    assert report.pairs_per_split == {"train": 1, "valid": 1, "test": 2}
    negatives = pl.concat([read_split(tmp_path / "din", s) for s in ("train", "valid", "test")]).filter(pl.col("label") == 0)
    assert negatives["item_id"].to_list() == ["d"] * 4  # w and y never reviewed d, the only choice
    dien = build_samples(db, "hand", tmp_path / "dien", protocol="dien", max_len=2, valid_frac=0.3, test_frac=0.3)
    assert dien.users_dropped == {} and dien.users_kept == 3


# --- the vocabulary marts ----------------------------------------------------------------------


def test_vocab_marts_ignore_valid_and_test_only_ids():
    con = duckdb.connect()
    con.execute("create table stg_items as select * from (values (1, 'a', 1, 'X'), (2, 'b', 1, 'X'), (3, 'c', 2, 'Y'), "
                "(4, 'd', 3, 'Z')) as t(item_key, item_id, category_key, category)")
    con.execute("create table sample_pairs as select * from (values "
                "('train', 1, 'u1', 2, 1, [1, 2], [1, 1]), ('train', 1, 'u1', 2, 1, [1], [2]), "
                "('test', 2, 'u2', 4, 3, [3], [1]), ('valid', 3, 'u3', 3, 1, [4], [1])) "
                "as t(split, user_key, user_id, item_key, neg_item_key, hist_item_keys, hist_neg_keys)")
    for table in ("vocab_user", "vocab_item", "vocab_category"):
        materialize(con, table, f"samples/marts/{table}", {})
    # item rows: a = 1+1+2*(1+1+1+1) ... counted per row (a pair is 2 rows sharing its history)
    assert con.sql("select item_id, index, frequency from vocab_item order by index").fetchall() == [
        ("a", 2, 2 + 2 * 4), ("b", 3, 2 + 2 * 2)]
    assert con.sql("select category, index from vocab_category").fetchall() == [("X", 2)]
    assert con.sql("select user_id, index from vocab_user").fetchall() == [("u1", 2)]


# --- the real Amazon sample --------------------------------------------------------------------


@requires_shared
def test_real_2018_sample_counts_its_dropped_users(tmp_path):
    src = AMAZON / "2018" / "reviews.head100.json"
    meta = AMAZON / "2018" / "meta_Appliances.head100.json"
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    # the excerpt alone: every reviewer has one review, so nothing can be built
    db = tmp_path / "w.duckdb"
    ingest("real", [src], [meta], db)
    n_users = len({r["reviewerID"] for r in rows})
    with pytest.raises(MicnError, match=rf"none of its {n_users} users can give a sample \({n_users} users: fewer than 2"):
        build_samples(db, "real", tmp_path / "out")
    # add a later review (of another real item) for every 10th reviewer: those users flow through
    extra = [dict(r, asin=rows[(k + 1) % len(rows)]["asin"], unixReviewTime=r["unixReviewTime"] + 86_400)
             for k, r in enumerate(rows) if k % 10 == 0]
    more = tmp_path / "more_5.json"
    more.write_text("".join(json.dumps(r) + "\n" for r in extra))
    ingest("real", [src, more], [meta], db)
    behaviors = {(r["reviewerID"], r["asin"], r["unixReviewTime"]) for r in rows + extra}
    per_user = Counter(u for u, _, _ in behaviors)
    expected_dropped = sum(1 for n in per_user.values() if n < 2)
    report = build_samples(db, "real", tmp_path / "out", valid_frac=0.2, test_frac=0.2)
    assert report.users == len(per_user)
    assert report.users_dropped == {"fewer than 2 behaviors": expected_dropped}
    assert report.users_kept == len(per_user) - expected_dropped == math.ceil(len(rows) / 10)
    assert sum(report.pairs_per_split.values()) == report.users_kept
