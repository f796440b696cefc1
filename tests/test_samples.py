"""Samples: hand-computed sequences for both protocols, leakage checks, vocabularies,
determinism, negative sampling, bad arguments, the real Amazon sample, byte-identity with the
samples of the code before the renovation, what evaluation reads beside the samples (oracle/,
negative_sampler.parquet, feature_map.json), the typed job and CLI plan, and failures a user can
meet (full disk, read-only folder, a file that is no warehouse, a locked warehouse)."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from micn.data import samples as samples_module
from micn.data.ingest import ingest
from micn.config import SamplesConfig
from micn.data.samples import SamplesJob, build_job, build_samples, run_check, samples_dir
from micn.data.sql import run_script
from micn.errors import MicnError
from tests.conftest import AMAZON, raw_files, requires_shared

# --- a hand-made warehouse -------------------------------------------------------------------
#
# user  behaviors (item@ts)                         what it exercises
# u1    a@100 b@200 c@300 f@400                     plain sequence; the only user who reviewed f
# u2    b@100 c@100 a@200                           two behaviors share a ts before the target
# u3    c@50                                        < 2 behaviors: dropped
# u4    a@10  d@20  b@20  -> ordered a, b, d        the target shares its ts with b: b leaves its history
# u5    e@5   a@5                                   all at one ts: dropped (nothing strictly before)
# u6    a@1 b@2 c@3 e@4 d@5 a@6                     longer than max_len=3; reviewed every item but f
HAND = {
    "u1": [("a", 100), ("b", 200), ("c", 300), ("f", 400)],
    "u2": [("b", 100), ("c", 100), ("a", 200)],
    "u3": [("c", 50)],
    "u4": [("a", 10), ("d", 20), ("b", 20)],
    "u5": [("e", 5), ("a", 5)],
    "u6": [("a", 1), ("b", 2), ("c", 3), ("e", 4), ("d", 5), ("a", 6)],
}
CATEGORIES = {"a": "X", "b": "X", "c": "Y", "d": "Y", "e": None, "f": "Z", "z": "W"}  # e: no metadata; z: never reviewed
MAX_LEN = 3
FRACTIONS = {"valid_frac": 0.25, "test_frac": 0.25}
DROPPED = {"fewer than 2 behaviors": 1, "all behaviors at one timestamp": 1}

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


def make_warehouse(path: Path, sequences: dict, categories: dict, dataset: str = "hand") -> Path:
    """A warehouse with the ingest schema, filled by plain inserts."""
    with duckdb.connect(str(path)) as con:
        run_script(con, "ingest/schema")
        reviewed = {item for seq in sequences.values() for item, _ in seq}
        for user, seq in sequences.items():
            for item, ts in seq:
                con.execute("insert into reviews values ($d, $u, $i, 5.0, $t)", {"d": dataset, "u": user, "i": item, "t": ts})
        for item, category in categories.items():
            if category is None and item not in reviewed:
                continue
            con.execute("insert into items values ($d, $i, $c, null, null, null, $m)",
                        {"d": dataset, "i": item, "c": category or "default_cat", "m": category is not None})
    return path


@pytest.fixture(scope="module")
def hand_db(tmp_path_factory) -> Path:
    return make_warehouse(tmp_path_factory.mktemp("hand") / "w.duckdb", HAND, CATEGORIES)


def read(out: Path, split: str) -> pl.DataFrame:
    return pl.read_parquet(out / f"{split}.parquet")


def vocab(out: Path, name: str) -> dict[str, int]:
    key = {"user": "user_id", "item": "item_id", "category": "category"}[name]
    df = pl.read_parquet(out / f"vocab_{name}.parquet")
    return dict(zip(df[key].to_list(), df["index"].to_list()))


def encode(ids, mapping: dict[str, int]) -> list[int]:
    return [mapping.get(x, 1) for x in ids]


def padded(ids: list[int], max_len: int = MAX_LEN) -> list[int]:
    return [0] * (max_len - len(ids)) + ids


def file_hashes(out: Path) -> dict[str, str]:
    """sha256 of every file below `out` (oracle/ included), by relative path."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*"))
            if p.is_file()}


# --- hand-computed: dien -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def dien_build(hand_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("dien")
    return build_samples(hand_db, "hand", out, protocol="dien", max_len=MAX_LEN, seed=3, **FRACTIONS), out


def test_dien_report_counts(dien_build, hand_db):
    report, out = dien_build
    assert report.users == 6 and report.users_kept == 4
    assert report.users_dropped == DROPPED
    # ceil(4 * 0.25) = 1 test user, 1 valid user, the other 2 train
    assert report.users_per_split == {"train": 2, "valid": 1, "test": 1}
    assert report.pairs_per_split == {"train": 2, "valid": 1, "test": 1}
    assert report.samples_per_split == {"train": 4, "valid": 2, "test": 2}
    assert report.targets_history_shortened == 1  # u4: b shares d's ts
    assert set(report.checks) == {"samples_history_before_target", "samples_user_in_one_split",
                                  "samples_negative_not_positive", "samples_user_accounting"}
    assert all(n == 0 for n in report.checks.values())
    fmap = json.loads((out / "feature_map.json").read_text())
    assert fmap["counts"]["users"] == {"total": 6, "kept": 4, "dropped": DROPPED}
    assert fmap["protocol"] == "dien" and fmap["max_len"] == MAX_LEN and fmap["seed"] == 3
    assert fmap["source"] == hand_db.name and fmap["columns"]["hist_items"] == "fixed_size_list<item: int32 not null>[3]"
    assert "warehouse" not in fmap and fmap["oracle"] is None  # real-like data: no ground truth
    assert fmap["padding_id"] == 0 and fmap["oov_id"] == 1
    assert fmap["n_items"] == len(vocab(out, "item")) + 2
    assert fmap["n_users"] == len(vocab(out, "user")) + 2 == 2 + 2  # train users only
    assert fmap["n_categories"] == len(vocab(out, "category")) + 2
    rows = report.summary_rows()
    assert ("users", "dropped", "fewer than 2 behaviors", 1) in rows and ("samples", "test", "positives + negatives", 2) in rows


def test_dien_exact_samples(dien_build):
    _, out = dien_build
    items, cats, users = vocab(out, "item"), vocab(out, "category"), vocab(out, "user")
    category_of = {i: c or "default_cat" for i, c in CATEGORIES.items()}
    seen = {}
    for split in ("train", "valid", "test"):
        df = read(out, split)
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
    items = vocab(out, "item")
    inverse = {v: k for k, v in items.items()}
    train = read(out, "train")
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


@pytest.fixture(scope="module")
def din_build(hand_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("din")
    return build_samples(hand_db, "hand", out, protocol="din", max_len=MAX_LEN, seed=3, **FRACTIONS), out


def test_din_exact_samples(din_build):
    report, out = din_build
    assert report.users_dropped == DROPPED and report.users_kept == 4
    # users with a training pair: u1, u4, u6 -> ceil(3 * 0.25) = 1 validation user
    assert report.pairs_per_split == {"train": 6, "valid": 1, "test": 4}
    assert report.targets_history_shortened == 1
    assert "samples_din_negative_not_in_history" in report.checks and "samples_user_in_one_split" not in report.checks
    items = vocab(out, "item")
    got = {}  # (user, target) -> (split, hist)
    for split in ("train", "valid", "test"):
        df = read(out, split)
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
    negatives = pl.concat([read(tmp_path / "din", s) for s in ("train", "valid", "test")]).filter(pl.col("label") == 0)
    assert negatives["item_id"].to_list() == ["d"] * 4  # w and y never reviewed d, the only choice
    dien = build_samples(db, "hand", tmp_path / "dien", protocol="dien", max_len=2, valid_frac=0.3, test_frac=0.3)
    assert dien.users_dropped == {} and dien.users_kept == 3


# --- leakage / accounting checks on planted bad tables -----------------------------------------


@pytest.fixture
def planted():
    """A connection holding the tables the checks read, with one good pair per user."""
    con = duckdb.connect()
    con.execute("create table stg_behaviors as select * from (values "
                "(1, 'u1', 11, 100, 1, 0), (1, 'u1', 12, 200, 2, 1), (1, 'u1', 13, 300, 3, 2), "
                "(2, 'u2', 11, 100, 1, 0), (2, 'u2', 14, 200, 2, 1), (2, 'u2', 15, 200, 3, 1)) "
                "as t(user_key, user_id, item_key, ts, pos, n_before)")
    con.execute("create table int_users as select * from (values (1, 'u1', null::varchar), (2, 'u2', null)) "
                "as t(user_key, user_id, drop_reason)")
    con.execute("create table sample_pairs as select * from (values "
                "('train', 1, 'u1', 3, 300, 13, 14, [11, 12], [14, 15], 1, 2), "
                "('test', 2, 'u2', 3, 200, 15, 12, [11], [13], 1, 1)) "
                "as t(split, user_key, user_id, pos, ts, item_key, neg_item_key, hist_item_keys, hist_neg_keys, "
                "hist_first_pos, hist_len)")
    yield con
    con.close()


PARAMS = {"protocol": "dien", "max_len": 3}


def test_checks_pass_on_good_tables(planted):
    for name in samples_module.CHECKS:
        assert run_check(planted, name, PARAMS).n_offending == 0, name


def test_history_check_catches_planted_leakage(planted):
    # u2's history claims its same-ts behavior (pos 2, ts 200 = the target's ts)
    planted.execute("update sample_pairs set hist_item_keys = [11, 14], hist_neg_keys = [13, 13] where user_id = 'u2'")
    result = run_check(planted, "samples_history_before_target", PARAMS)
    assert result.n_offending == 1
    row = dict(zip(result.columns, result.examples[0]))
    assert row["user_id"] == "u2" and row["hist_pos"] == 2 and row["hist_ts"] == 200
    assert row["problem"] == "history event at or after the target time"
    # the target itself slipped into u1's history under a wrong position
    planted.execute("update sample_pairs set hist_item_keys = [11, 13] where user_id = 'u1'")
    problems = {dict(zip(r.columns, e))["problem"] for r in [run_check(planted, "samples_history_before_target", PARAMS)]
                for e in r.examples}
    assert "history item is not the behavior at its position" in problems


def test_split_check_catches_a_user_in_two_splits(planted):
    planted.execute("insert into sample_pairs select 'valid', 1, 'u1', 2, 200, 12, 13, [11], [15], 1, 1")
    result = run_check(planted, "samples_user_in_one_split", PARAMS)
    assert result.n_offending == 1 and result.examples[0][0] == "u1"
    assert dict(zip(result.columns, result.examples[0]))["splits"] == "train, valid"


def test_negative_check_catches_equal_negatives(planted):
    planted.execute("update sample_pairs set neg_item_key = item_key where user_id = 'u1'")
    planted.execute("update sample_pairs set hist_neg_keys = [11] where user_id = 'u2'")
    result = run_check(planted, "samples_negative_not_positive", PARAMS)
    assert sorted((e[1], e[3]) for e in result.examples) == [
        ("u1", "target negative equals the positive"), ("u2", "a history negative equals the clicked item at its position")]


def test_din_negative_check_catches_negative_in_history(planted):
    planted.execute("update sample_pairs set neg_item_key = 11 where user_id = 'u1'")  # in u1's history
    planted.execute("update sample_pairs set neg_item_key = 14 where user_id = 'u2'")  # reviewed by u2, not in history
    result = run_check(planted, "samples_din_negative_not_in_history", PARAMS)
    assert sorted((e[1], e[4]) for e in result.examples) == [
        ("u1", "negative is in the history"), ("u2", "negative was reviewed by the user")]


def test_accounting_check_catches_missing_and_extra_pairs(planted):
    planted.execute("update int_users set drop_reason = 'fewer than 2 behaviors' where user_id = 'u2'")
    planted.execute("delete from sample_pairs where user_id = 'u1'")
    result = run_check(planted, "samples_user_accounting", PARAMS)
    problems = {dict(zip(result.columns, e))["user_id"]: dict(zip(result.columns, e))["problem"] for e in result.examples}
    assert problems == {"u1": "kept user has the wrong number of pairs", "u2": "dropped user has samples"}


def test_a_failing_check_stops_the_build_and_writes_nothing(hand_db, tmp_path, monkeypatch):
    real = samples_module.materialize

    def leaky(con, table, model, params):
        real(con, table, model, params)
        if table == "sample_pairs":  # plant a negative equal to its positive
            con.execute("update sample_pairs set neg_item_key = item_key "
                        "where split = 'train' and user_key = (select min(user_key) from sample_pairs where split = 'train')")

    monkeypatch.setattr(samples_module, "materialize", leaky)
    with pytest.raises(MicnError, match=r"samples_negative_not_positive .* found 1 offending rows.*Nothing was written"):
        build_samples(hand_db, "hand", tmp_path / "out", max_len=MAX_LEN, **FRACTIONS)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_vocab_marts_ignore_valid_and_test_only_ids():
    con = duckdb.connect()
    con.execute("create table stg_items as select * from (values (1, 'a', 1, 'X'), (2, 'b', 1, 'X'), (3, 'c', 2, 'Y'), "
                "(4, 'd', 3, 'Z')) as t(item_key, item_id, category_key, category)")
    con.execute("create table sample_pairs as select * from (values "
                "('train', 1, 'u1', 2, 1, [1, 2], [1, 1]), ('train', 1, 'u1', 2, 1, [1], [2]), "
                "('test', 2, 'u2', 4, 3, [3], [1]), ('valid', 3, 'u3', 3, 1, [4], [1])) "
                "as t(split, user_key, user_id, item_key, neg_item_key, hist_item_keys, hist_neg_keys)")
    for table in ("vocab_user", "vocab_item", "vocab_category"):
        samples_module.materialize(con, table, f"samples/marts/{table}", {})
    # item rows: a = 1+1+2*(1+1+1+1) ... counted per row (a pair is 2 rows sharing its history)
    assert con.sql("select item_id, index, frequency from vocab_item order by index").fetchall() == [
        ("a", 2, 2 + 2 * 4), ("b", 3, 2 + 2 * 2)]
    assert con.sql("select category, index from vocab_category").fetchall() == [("X", 2)]
    assert con.sql("select user_id, index from vocab_user").fetchall() == [("u1", 2)]


# --- determinism ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_db(tiny_world, tmp_path_factory) -> Path:
    reviews, meta = raw_files(tiny_world)
    db = tmp_path_factory.mktemp("tiny_db") / "w.duckdb"
    ingest("tiny", [reviews], [meta], db)
    return db


@pytest.fixture(scope="module")
def tiny_dien(tiny_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_dien")
    return build_samples(tiny_db, "tiny", out, protocol="dien", max_len=10, seed=11), out


def test_same_seed_gives_identical_bytes_for_any_thread_count(tiny_db, tiny_dien, tmp_path, monkeypatch):
    _, first = tiny_dien
    connect = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda *a, config=None, **k: connect(*a, config={**(config or {}), "threads": 1}, **k))
    build_samples(tiny_db, "tiny", tmp_path / "again", protocol="dien", max_len=10, seed=11)
    assert file_hashes(first) == file_hashes(tmp_path / "again")
    # 3 splits, 3 vocabularies, the feature map, the summary, the negative sampler, 4 oracle files
    assert len(file_hashes(first)) == 13


def test_other_seed_gives_other_negatives(tiny_db, tiny_dien, tmp_path):
    _, first = tiny_dien
    build_samples(tiny_db, "tiny", tmp_path / "other", protocol="dien", max_len=10, seed=12)
    a, b = read(first, "test"), read(tmp_path / "other", "test")
    assert a.height == b.height
    assert a.filter(pl.col("label") == 0)["item_id"].to_list() != b.filter(pl.col("label") == 0)["item_id"].to_list()
    assert set(a["user_id"]) != set(b["user_id"])  # the split draws change too


def test_din_is_deterministic_too(hand_db, din_build, tmp_path):
    _, first = din_build
    build_samples(hand_db, "hand", tmp_path / "again", protocol="din", max_len=MAX_LEN, seed=3, **FRACTIONS)
    assert file_hashes(first) == file_hashes(tmp_path / "again")


# --- negatives on the synthetic world ---------------------------------------------------------


def test_dien_negatives_are_popularity_weighted(tiny_db, tiny_dien):
    """History negatives are drawn from review rows: their frequency follows item review counts,
    far from what uniform draws over items would give."""
    _, out = tiny_dien
    with duckdb.connect(str(tiny_db), read_only=True) as con:
        reviews = dict(con.sql("select item_id, count(*) from reviews where dataset = 'tiny' group by 1").fetchall())
    inverse = {v: k for k, v in vocab(out, "item").items()}
    drawn = Counter()
    for split in ("train", "valid", "test"):
        df = read(out, split)
        drawn.update(df.filter(pl.col("label") == 0)["item_id"].to_list())  # target negatives
        hist = np.asarray(df.filter(pl.col("label") == 1)["hist_neg_items"].to_list())
        drawn.update(inverse[x] for x in hist[hist >= 2].tolist())  # (dien: each history appears once per user)
    ids = sorted(reviews)
    counts = np.array([reviews[i] for i in ids], dtype=float)
    freq = np.array([drawn[i] for i in ids], dtype=float)
    n = freq.sum()
    assert n > 2000
    assert np.corrcoef(counts, freq)[0, 1] > 0.8
    # mean review count of a drawn item: sum(c^2)/sum(c) if popularity-weighted, mean(c) if uniform
    drawn_mean = (counts * freq).sum() / n
    popularity_mean, uniform_mean = (counts**2).sum() / counts.sum(), counts.mean()
    assert abs(drawn_mean - popularity_mean) < abs(drawn_mean - uniform_mean) / 4
    # chi-square distance: far closer to the popularity law than to the uniform one
    chi_pop = (((freq - n * counts / counts.sum()) ** 2) / (n * counts / counts.sum())).sum()
    chi_unif = (((freq - n / len(ids)) ** 2) / (n / len(ids))).sum()
    assert chi_pop * 3 < chi_unif


def test_din_negatives_never_reviewed_and_roughly_uniform(tiny_db, tmp_path):
    out = tmp_path / "din"
    report = build_samples(tiny_db, "tiny", out, protocol="din", max_len=10, seed=5)
    with duckdb.connect(str(tiny_db), read_only=True) as con:
        reviewed = set(con.sql("select user_id, item_id from reviews where dataset = 'tiny'").fetchall())
        n_items = con.sql("select count(distinct item_id) from reviews where dataset = 'tiny'").fetchall()[0][0]
    negatives = pl.concat([read(out, s) for s in ("train", "valid", "test")]).filter(pl.col("label") == 0)
    assert negatives.height == sum(report.pairs_per_split.values())
    assert not any((u, i) in reviewed for u, i in negatives.select("user_id", "item_id").iter_rows())
    freq = np.array(list(Counter(negatives["item_id"].to_list()).values()))
    # uniform over ~400 items: every item is drawn, none far more often than its share
    assert len(freq) > 0.95 * n_items and freq.max() < 4 * negatives.height / n_items


# --- bad arguments and degenerate data ----------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"dataset": "nope"}, r"dataset='nope' is not in the warehouse; it holds: 'hand'"),
    ({"dataset": ""}, r"dataset='' is not valid"),
    ({"dataset": "hand\n"}, r"dataset='hand\\n' is not valid: .*whitespace or control characters"),
    ({"protocol": "sasrec"}, r"samples\.protocol: .*'dien' or 'din' \(got 'sasrec'\)"),
    ({"max_len": 0}, r"max_len=0 must be >= 1"),
    ({"max_len": 2.5}, r"max_len=2.5 must be an integer"),
    ({"seed": -1}, r"samples\.seed: .*greater than or equal to 0 \(got -1\)"),
    ({"seed": 2**64}, r"samples\.seed: .*less than or equal to 9223372036854775807 \(got 18446744073709551616\)"),
    ({"valid_frac": 0.0}, r"samples\.valid_frac: .*greater than 0 \(got 0.0\)"),
    ({"test_frac": 1.2}, r"samples\.test_frac: .*less than 1 \(got 1.2\)"),
    ({"test_frac": float("nan")}, r"samples\.test_frac: expected a finite number"),
    ({"valid_frac": 0.5, "test_frac": 0.5}, r"valid_frac \+ test_frac = 0.5 \+ 0.5 must be below 1"),
])
def test_bad_arguments_are_rejected_before_any_work(hand_db, tmp_path, kwargs, message):
    args = {"db": hand_db, "dataset": "hand", "out_dir": tmp_path / "out", **kwargs}
    with pytest.raises(MicnError, match=message):
        build_samples(**args)
    assert not (tmp_path / "out").exists()


def test_missing_warehouse_and_empty_dataset(tmp_path):
    with pytest.raises(MicnError, match="no such warehouse file"):
        build_samples(tmp_path / "missing.duckdb", "hand", tmp_path / "out")
    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        run_script(con, "ingest/schema")
        con.execute("insert into items values ('empty', 'a', 'X', null, null, null, true)")
    with pytest.raises(MicnError, match="dataset='empty' has no reviews"):
        build_samples(db, "empty", tmp_path / "out")


def test_every_user_with_one_behavior_gives_a_clear_error(tmp_path):
    db = make_warehouse(tmp_path / "w.duckdb", {"u1": [("a", 1)], "u2": [("b", 2)], "u3": [("a", 3)]},
                        {"a": "X", "b": "Y"})
    with pytest.raises(MicnError, match=r"none of its 3 users can give a sample \(3 users: fewer than 2 behaviors\), "
                                        r"so no samples can be built"):
        build_samples(db, "hand", tmp_path / "out")


def test_warehouse_is_not_written(hand_db, dien_build):
    before = hand_db.stat().st_mtime_ns, hashlib.sha256(hand_db.read_bytes()).hexdigest()
    build_samples(hand_db, "hand", hand_db.parent / "again", max_len=MAX_LEN, **FRACTIONS)
    assert (hand_db.stat().st_mtime_ns, hashlib.sha256(hand_db.read_bytes()).hexdigest()) == before


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


def test_fixed_chunks_do_not_depend_on_incoming_batch_sizes():
    """Row groups are cut from DuckDB's stream at fixed sizes, whatever batches it hands out."""
    import pyarrow as pa

    values = list(range(17))
    batches = [pa.record_batch({"x": values[a:b]}) for a, b in ((0, 3), (3, 8), (8, 9), (9, 16), (16, 17))]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, batches)
    chunks = list(samples_module._fixed_chunks(reader, 4))
    assert [c.num_rows for c in chunks] == [4, 4, 4, 4, 1]
    assert [x for c in chunks for x in c["x"].to_pylist()] == values


def test_too_few_users_for_a_training_split(tmp_path):
    db = make_warehouse(tmp_path / "w.duckdb", {"u1": [("a", 1), ("b", 2)], "u2": [("b", 1), ("a", 2)]}, {"a": "X", "b": "Y"})
    with pytest.raises(MicnError, match=r"the training split is empty \(2 usable users, protocol='dien'"):
        build_samples(db, "hand", tmp_path / "out")


def test_write_summary_table(dien_build, tmp_path):
    report, _ = dien_build
    path = samples_module.write_summary(report, tmp_path / "summary.parquet")
    table = pl.read_parquet(path)
    assert table.columns == ["subject", "outcome", "reason", "n"]
    assert list(table.iter_rows()) == report.summary_rows()


def test_negatives_never_equal_their_positive_on_the_tiny_world(tiny_dien):
    _, out = tiny_dien
    for split in ("train", "valid", "test"):
        df = read(out, split)
        pos, neg = df.filter(pl.col("label") == 1), df.filter(pl.col("label") == 0)
        assert (pos["item_id"] != neg["item_id"]).all()
        if split == "train":  # every training id is in the vocabulary, so indexes compare like raw ids
            hist, hist_neg = np.asarray(pos["hist_items"].to_list()), np.asarray(pos["hist_neg_items"].to_list())
            assert not ((hist == hist_neg) & (hist != 0)).any()
            assert ((hist == 0) == (hist_neg == 0)).all()


# --- identical to the samples before the renovation ----------------------------------------------
#
# sha256 over (name, sha256(bytes)) of the split and vocabulary files, recorded with the code of
# commit 6124b18 (before the negative draw became the `popularity_negatives` macro, the settings a
# typed job and the SQL runner one). DuckDB's `hash` and pyarrow's writer are pinned in
# constraints.txt; a deliberate upgrade of either is the one reason to re-record these.
# `skewed`: one item holds most review rows, so most first draws are rejected and retried and
# some exhaust the 8 attempts and take the fallback (the paths the macro must keep exactly).
SKEWED = {f"s{u:02d}": [("p", 10 * k + u) if (k + u) % 6 else (f"q{(u + k) % 5}", 10 * k + u) for k in range(8)]
          for u in range(30)}
SKEWED_CATEGORIES = {"p": "P", **{f"q{i}": "Q" for i in range(5)}}
DATA_FILES = ("train.parquet", "valid.parquet", "test.parquet", "vocab_user.parquet", "vocab_item.parquet",
              "vocab_category.parquet")
SKEWED_ARGS = {"max_len": 4, "valid_frac": 0.2, "test_frac": 0.2}
BEFORE = {
    "hand_dien": "ab11ef2bcf2a16104612edf6f87600964bd93192a8821a19cdb107338cf7e316",
    "hand_din": "9f62c61d1804ec17fde9c4ea1e6dd47a56d0ada0794b7ffc885d0c3c1b949698",
    "skewed_dien_s0": "b04f0558e7dcf559e0bcb5829eadf9431463e8a8a3309f65c27099162d66da44",
    "skewed_dien_s1": "fff7893a11e0aefef31071d24285819b02a5854271b619e5cd33dfb9e5545f74",
    "skewed_din_s0": "e35c5d2bc5cd53efab343af85da69b74bd245f90eadfcc4b78fa88b6c160c125",
    "tiny_dien_s11": "d83435f2a9b4cbbf75957a37b918be75d8b1fea38086d441e9be9b7d61eb6884",
}


def data_digest(out: Path) -> str:
    h = hashlib.sha256()
    for name in DATA_FILES:
        h.update(name.encode())
        h.update(hashlib.sha256((out / name).read_bytes()).digest())
    return h.hexdigest()


@pytest.fixture(scope="module")
def skewed_db(tmp_path_factory) -> Path:
    return make_warehouse(tmp_path_factory.mktemp("skewed") / "w.duckdb", SKEWED, SKEWED_CATEGORIES, dataset="skewed")


def test_samples_are_byte_identical_to_those_before_the_renovation(dien_build, din_build, tiny_dien, skewed_db, tmp_path):
    built = {"hand_dien": dien_build[1], "hand_din": din_build[1], "tiny_dien_s11": tiny_dien[1]}
    for protocol, seed in (("dien", 0), ("dien", 1), ("din", 0)):
        out = tmp_path / f"skewed_{protocol}_s{seed}"
        build_samples(skewed_db, "skewed", out, protocol=protocol, seed=seed, **SKEWED_ARGS)
        built[out.name] = out
    assert {name: data_digest(out) for name, out in built.items()} == BEFORE


# Each behavior's 8 seeded draws of int_behavior_negatives (salt 'hist_neg'), recomputed.
HIST_NEG_DRAWS = """
with draws as (
    select b.user_key, b.pos, b.item_key, attempts.k, r.item_key as drawn
    from stg_behaviors as b
    cross join range(8) as attempts(k)
    inner join int_review_rows as r
        on r.row_idx = hash(b.user_key, b.pos, $seed, 'hist_neg', attempts.k) % $n_rows::ubigint
),

per_behavior as (
    select
        bool_or(k = 0 and drawn = item_key) as first_rejected,
        bool_and(drawn = item_key) as all_rejected
    from draws
    group by user_key, pos
)

select count(*) filter (where first_rejected), count(*) filter (where all_rejected) from per_behavior
"""


def test_skewed_world_exercises_retries_and_the_fallback(skewed_db):
    """The byte-identity test above covers the rejection paths only if they are taken."""
    job = SamplesJob.of("skewed", 4, protocol="dien", seed=0, valid_frac=0.2, test_frac=0.2)
    con = duckdb.connect()
    samples_module._attach_warehouse(con, skewed_db)
    run_script(con, "samples/macros")
    for table, model in samples_module.MODELS[:9]:
        samples_module.materialize(con, table, model.format(protocol="dien"), job.sql_params())
    n_rows = con.sql("select count(*) from int_review_rows").fetchall()[0][0]
    rejected_first, all_rejected = con.execute(HIST_NEG_DRAWS, {"seed": 0, "n_rows": n_rows}).fetchall()[0]
    assert rejected_first > 100 and all_rejected > 10
    # the fallback is the next item key (cyclic): never the behavior's own item
    assert con.sql("select count(*) from int_behavior_negatives join stg_behaviors using (user_key, pos) "
                   "where neg_item_key = item_key").fetchall()[0][0] == 0


def test_popularity_negatives_macro_rejects_then_falls_back_to_the_next_item():
    """Every review row is item 1: a behavior of item 1 can never draw another item in 8 attempts
    and takes item 1 % n_items + 1 = 2; a behavior of item 2 draws item 1 at once."""
    con = duckdb.connect()
    run_script(con, "samples/macros")
    con.execute("create table int_review_rows as select range::ubigint as row_idx, 1 as item_key from range(10)")
    con.execute("create table stg_items as select * from (values (1), (2), (3)) as t(item_key)")
    con.execute("create table wanted as select * from (values (7, 1, 1), (7, 2, 2), (8, 1, 1)) as t(user_key, pos, item_key)")
    got = con.execute("select user_key, pos, neg_item_key from popularity_negatives('wanted', $seed, 'neg') order by all",
                      {"seed": 5}).fetchall()
    assert got == [(7, 1, 2), (7, 2, 1), (8, 1, 2)]


def test_the_two_popularity_draws_use_the_one_macro():
    for model in ("int_behavior_negatives", "int_target_negatives_dien"):
        text = samples_module.load_sql(f"samples/intermediate/{model}")
        code = "\n".join(line.split("--")[0] for line in text.splitlines())
        assert "popularity_negatives(" in code and "hash(" not in code, model


# --- what evaluation reads beside the samples ---------------------------------------------------


def test_negative_sampler_counts_equal_a_direct_sql_count(tiny_db, tiny_dien, dien_build, hand_db):
    for db, dataset, out in ((tiny_db, "tiny", tiny_dien[1]), (hand_db, "hand", dien_build[1])):
        table = pl.read_parquet(out / "negative_sampler.parquet")
        assert table.schema == {"item_id": pl.String, "count": pl.Int64}
        with duckdb.connect(str(db), read_only=True) as con:
            direct = con.execute("select item_id, count(*) from reviews where dataset = $d group by item_id order by item_id",
                                 {"d": dataset}).fetchall()
        assert list(table.iter_rows()) == direct
        assert table["item_id"].to_list() == sorted(table["item_id"].to_list())


def test_oracle_files_are_byte_copies_of_the_worlds_ground_truth(tiny_world, tiny_dien):
    _, out = tiny_dien
    truth = tiny_world / "ground_truth"
    assert sorted(p.name for p in (out / "oracle").iterdir()) == sorted(samples_module.ORACLE_FILES)
    for name in samples_module.ORACLE_FILES:
        assert (out / "oracle" / name).read_bytes() == (truth / name).read_bytes(), name
    assert json.loads((out / "feature_map.json").read_text())["oracle"] == "oracle"


def test_feature_map_holds_no_path_into_the_warehouse_or_the_raw_folder(tiny_db, tiny_world, tiny_dien):
    _, out = tiny_dien
    fmap = json.loads((out / "feature_map.json").read_text())
    assert "warehouse" not in fmap and fmap["source"] == tiny_db.name
    text = json.dumps(fmap)
    for path in (tiny_db.resolve(), tiny_db.parent.resolve(), tiny_world.resolve()):
        assert str(path) not in text
    # every file the feature map names is inside the samples folder
    named = [*fmap["splits"].values(), *fmap["vocab_files"].values(), fmap["oracle"]]
    assert all((out / name).exists() and not Path(name).is_absolute() and ".." not in Path(name).parts for name in named)


def test_samples_folder_works_without_the_warehouse_and_the_raw_folder(tiny_world, tmp_path):
    """Copy the world, build, then delete the warehouse and the raw folder: nothing the samples
    hold points back at them (what training and `micn interests` rely on)."""
    from micn.data.ingest import ingest

    world = shutil.copytree(tiny_world, tmp_path / "world")
    reviews, meta = raw_files(world)
    db = tmp_path / "w.duckdb"
    ingest("tiny", [reviews], [meta], db)
    build_samples(db, "tiny", tmp_path / "samples", max_len=10, seed=11)
    shutil.rmtree(world)
    db.unlink()
    out = tmp_path / "samples"
    fmap = json.loads((out / "feature_map.json").read_text())
    assert (out / fmap["oracle"] / "world.json").is_file() and (out / "negative_sampler.parquet").is_file()


def test_ground_truth_missing_a_file_is_a_clear_error(tiny_world, tmp_path):
    from micn.data.ingest import ingest

    world = shutil.copytree(tiny_world, tmp_path / "world")
    (world / "ground_truth" / "users.parquet").unlink()
    reviews, meta = raw_files(world)
    ingest("tiny", [reviews], [meta], tmp_path / "w.duckdb")
    with pytest.raises(MicnError, match=r"ground_truth: a synthetic world's ground truth without users\.parquet"):
        build_samples(tmp_path / "w.duckdb", "tiny", tmp_path / "out", max_len=10)
    assert not (tmp_path / "out").exists()


def test_real_data_over_synthetic_samples_removes_the_stale_oracle(tiny_db, hand_db, tmp_path):
    out = tmp_path / "out"
    build_samples(tiny_db, "tiny", out, max_len=10, seed=11)
    assert (out / "oracle").is_dir()
    build_samples(hand_db, "hand", out, max_len=MAX_LEN, **FRACTIONS)
    assert not (out / "oracle").exists()
    assert json.loads((out / "feature_map.json").read_text())["oracle"] is None
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(f).name for f in samples_module._output_names(False))


# --- the typed job, the layout, the CLI plan ------------------------------------------------------


def test_samples_job_carries_every_setting_and_its_sql_parameters():
    job = SamplesJob("hand", 3, SamplesConfig(protocol="din", seed=7, valid_frac=0.2, test_frac=0.3))
    assert job == SamplesJob.of("hand", 3, protocol="din", seed=7, valid_frac=0.2, test_frac=0.3)
    assert job.sql_params() == {"dataset": "hand", "protocol": "din", "max_len": 3, "seed": 7, "valid_frac": 0.2,
                                "test_frac": 0.3}
    with pytest.raises(MicnError, match=r"max_len=True must be an integer"):
        SamplesJob("hand", True)
    with pytest.raises(MicnError, match=r"dataset='\.\./x' is not valid"):
        SamplesJob("../x", 3)


def test_build_job_equals_the_keyword_form(hand_db, dien_build, tmp_path):
    _, first = dien_build
    job = SamplesJob.of("hand", MAX_LEN, protocol="dien", seed=3, **FRACTIONS)
    build_job(hand_db, job, tmp_path / "job")
    assert file_hashes(tmp_path / "job") == file_hashes(first)


def test_samples_dir_is_the_one_layout(tmp_path):
    from micn import experiment

    assert samples_dir(tmp_path, "tiny", 10) == tmp_path / "data" / "samples" / "tiny" / "len10"
    assert experiment.samples_dir(tmp_path, "tiny", 10) == samples_dir(tmp_path, "tiny", 10)


PARAMS_YAML = """
datasets:
  tiny: {enabled: true, max_len: 10}
experiments:
  table2: {enabled: true, backbones: [din], variants: [base]}
  table4: {enabled: true, backbones: [din], variants: [base], max_lens: [5, 10]}
samples: {protocol: din, seed: 11, valid_frac: 0.2, test_frac: 0.1}
"""


def parse(argv: list[str]) -> argparse.Namespace:
    from flows import samples as samples_flow_module

    parser = argparse.ArgumentParser()
    samples_flow_module.add_arguments(parser, "samples")
    return parser.parse_args(argv)


def test_flag_mode_and_params_mode_give_the_same_typed_plan(tmp_path):
    from flows.samples import SamplesBuild, SamplesPlan, plan_from_args

    params = tmp_path / "params.yaml"
    params.write_text(PARAMS_YAML)
    by_params = plan_from_args(parse(["--params", str(params), "--db", "w.duckdb", "--out", "data/samples"]))
    by_flags = [plan_from_args(parse(["--dataset", "tiny", "--max-len", str(n), "--protocol", "din", "--seed", "11",
                                      "--valid-frac", "0.2", "--test-frac", "0.1", "--db", "w.duckdb",
                                      "--out", f"data/samples/tiny/len{n}"])) for n in (5, 10)]
    assert isinstance(by_params, SamplesPlan) and all(isinstance(b, SamplesBuild) for b in by_params.builds)
    assert by_params == SamplesPlan(Path("w.duckdb"), tuple(b for plan in by_flags for b in plan.builds))
    assert [b.out for b in by_params.builds] == [Path("data/samples/tiny/len5"), Path("data/samples/tiny/len10")]


@pytest.mark.parametrize(("argv", "message"), [
    (["--db", "w.duckdb", "--out", "o"], r"give --dataset \(one dataset\) or --params"),
    (["--dataset", "tiny", "--valid-frac", "1.5", "--db", "w.duckdb", "--out", "o"], r"samples\.valid_frac: .*less than 1"),
    (["--dataset", "tiny", "--max-len", "0", "--db", "w.duckdb", "--out", "o"], r"max_len=0 must be >= 1"),
])
def test_bad_flags_are_one_error_before_any_work(argv, message):
    from flows.samples import plan_from_args

    with pytest.raises(MicnError, match=message):
        plan_from_args(parse(argv))


# --- failures a user can meet ------------------------------------------------------------------


def test_a_file_that_is_no_duckdb_warehouse_is_a_clear_error(tmp_path):
    text = tmp_path / "notes.duckdb"
    text.write_text("hello\nworld\n")
    empty = tmp_path / "empty.duckdb"
    empty.touch()
    for path, what in ((text, r"a file of 12 bytes without DuckDB's header"), (empty, "an empty file")):
        with pytest.raises(MicnError, match=rf"{path.name}: not a DuckDB database file \({what}\); give the warehouse"):
            build_samples(path, "hand", tmp_path / "out")
    with pytest.raises(MicnError, match=r": is a directory, not a warehouse file"):
        build_samples(tmp_path, "hand", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_micn_samples_on_a_text_file_prints_one_paragraph_and_exits_2(tmp_path):
    text = tmp_path / "warehouse.duckdb"
    text.write_text("not a database\n")
    done = subprocess.run([sys.executable, "-m", "flows.cli", "samples", "--db", str(text), "--dataset", "tiny",
                           "--out", str(tmp_path / "out")], cwd=Path(__file__).resolve().parents[1],
                          env={**os.environ, "MICN_PREFECT_SERVER": "temporary"}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert done.stderr.strip().splitlines() == [
        f"micn samples: error: {text}: not a DuckDB database file (a file of 15 bytes without DuckDB's header); "
        "give the warehouse written by `micn ingest` (e.g. data/warehouse.duckdb)."]
    assert not (tmp_path / "out").exists()


def test_a_warehouse_locked_by_another_process_is_a_clear_error(tmp_path):
    db = make_warehouse(tmp_path / "w.duckdb", HAND, CATEGORIES)
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('holding', flush=True); time.sleep(60)", str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(MicnError, match=r"another process holds this warehouse open for writing"):
            build_samples(db, "hand", tmp_path / "out", max_len=MAX_LEN, **FRACTIONS)
    finally:
        holder.kill()
        holder.wait()


@contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of `size` mounted at `path` (root only; skipped elsewhere with the reason)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk_is_one_error_naming_the_file_and_keeps_the_previous_samples(hand_db, tiny_db, tmp_path):
    with small_disk(tmp_path / "disk", "96k") as disk:
        out = disk / "samples"
        build_samples(hand_db, "hand", out, max_len=MAX_LEN, **FRACTIONS)
        before = file_hashes(out)
        with pytest.raises(MicnError, match=rf"{out}/\S+: cannot write the samples \(the disk is full: free some space "
                                            r"and rerun\); no partial file is left and the previous samples, if any, "
                                            r"are unchanged\.") as caught:
            build_samples(tiny_db, "tiny", out, max_len=10, seed=11)
        assert "\n" not in str(caught.value)
        assert file_hashes(out) == before
        assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no staging folder left behind


def test_read_only_output_folder_is_one_error_and_writes_nothing(hand_db, tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        out = disk / "samples"
        build_samples(hand_db, "hand", out, max_len=MAX_LEN, **FRACTIONS)
        before = file_hashes(out)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        for target in (out, disk / "new" / "samples"):
            with pytest.raises(MicnError, match=r": cannot write the samples \(the file system is read-only"):
                build_samples(hand_db, "hand", target, max_len=MAX_LEN, seed=4, **FRACTIONS)
        assert file_hashes(out) == before and not (disk / "new").exists()


def test_a_staging_folder_left_by_a_killed_build_is_removed(hand_db, tmp_path):
    out = tmp_path / "out"
    stale = out / ".micn-samples-killed"
    stale.mkdir(parents=True)
    (stale / "train.parquet").write_bytes(b"half")
    (out / "mine.txt").write_text("a user's file")
    build_samples(hand_db, "hand", out, max_len=MAX_LEN, **FRACTIONS)
    assert not stale.exists() and (out / "mine.txt").read_text() == "a user's file"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_write_summary_is_atomic_and_names_the_file_it_cannot_write(dien_build, tmp_path):
    report, _ = dien_build
    missing = tmp_path / "no" / "such" / "summary.parquet"
    with pytest.raises(MicnError, match=rf"{missing}: cannot write the samples"):
        samples_module.write_summary(report, missing)
    assert not missing.parent.exists()
