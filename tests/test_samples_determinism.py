"""Determinism and negative sampling of a samples build: the same arguments give the same bytes
for any thread count, the negatives follow their laws on the tiny world, the files match pinned
digests, and the popularity draw's rejection and fallback paths are taken and kept."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from micn.data.samples.build import build_samples
from micn.data.samples.encode import fixed_chunks
from micn.data.samples.job import SamplesJob
from micn.data.samples.tables import MODELS, materialize
from micn.data.samples.warehouse import attach_warehouse
from micn.data.sql import load_sql, run_script
from tests.helpers import HAND_FRACTIONS, HAND_MAX_LEN, file_hashes, make_warehouse, read_split, read_vocab


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_for_any_thread_count(tiny_warehouse, tiny_dien, tmp_path, monkeypatch):
    _, first = tiny_dien
    connect = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda *a, config=None, **k: connect(*a, config={**(config or {}), "threads": 1}, **k))
    build_samples(tiny_warehouse, "tiny", tmp_path / "again", protocol="dien", max_len=10, seed=11)
    assert file_hashes(first) == file_hashes(tmp_path / "again")
    # 3 splits, 3 vocabularies, the feature map, the summary, the negative sampler, 4 oracle files
    assert len(file_hashes(first)) == 13


def test_other_seed_gives_other_negatives(tiny_warehouse, tiny_dien, tmp_path):
    _, first = tiny_dien
    build_samples(tiny_warehouse, "tiny", tmp_path / "other", protocol="dien", max_len=10, seed=12)
    a, b = read_split(first, "test"), read_split(tmp_path / "other", "test")
    assert a.height == b.height
    assert a.filter(pl.col("label") == 0)["item_id"].to_list() != b.filter(pl.col("label") == 0)["item_id"].to_list()
    assert set(a["user_id"]) != set(b["user_id"])  # the split draws change too


def test_din_is_deterministic_too(hand_db, din_build, tmp_path):
    _, first = din_build
    build_samples(hand_db, "hand", tmp_path / "again", protocol="din", max_len=HAND_MAX_LEN, seed=3, **HAND_FRACTIONS)
    assert file_hashes(first) == file_hashes(tmp_path / "again")


def test_fixed_chunks_do_not_depend_on_incoming_batch_sizes():
    """Row groups are cut from DuckDB's stream at fixed sizes, whatever batches it hands out."""
    import pyarrow as pa

    values = list(range(17))
    batches = [pa.record_batch({"x": values[a:b]}) for a, b in ((0, 3), (3, 8), (8, 9), (9, 16), (16, 17))]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, batches)
    chunks = list(fixed_chunks(reader, 4))
    assert [c.num_rows for c in chunks] == [4, 4, 4, 4, 1]
    assert [x for c in chunks for x in c["x"].to_pylist()] == values


# --- negatives on the synthetic world ----------------------------------------------------------


def test_dien_negatives_are_popularity_weighted(tiny_warehouse, tiny_dien):
    """History negatives are drawn from review rows: their frequency follows item review counts,
    far from what uniform draws over items would give."""
    _, out = tiny_dien
    with duckdb.connect(str(tiny_warehouse), read_only=True) as con:
        reviews = dict(con.sql("select item_id, count(*) from reviews where dataset = 'tiny' group by 1").fetchall())
    inverse = {v: k for k, v in read_vocab(out, "item").items()}
    drawn = Counter()
    for split in ("train", "valid", "test"):
        df = read_split(out, split)
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


def test_din_negatives_never_reviewed_and_roughly_uniform(tiny_warehouse, tmp_path):
    out = tmp_path / "din"
    report = build_samples(tiny_warehouse, "tiny", out, protocol="din", max_len=10, seed=5)
    with duckdb.connect(str(tiny_warehouse), read_only=True) as con:
        reviewed = set(con.sql("select user_id, item_id from reviews where dataset = 'tiny'").fetchall())
        n_items = con.sql("select count(distinct item_id) from reviews where dataset = 'tiny'").fetchall()[0][0]
    negatives = pl.concat([read_split(out, s) for s in ("train", "valid", "test")]).filter(pl.col("label") == 0)
    assert negatives.height == sum(report.pairs_per_split.values())
    assert not any((u, i) in reviewed for u, i in negatives.select("user_id", "item_id").iter_rows())
    freq = np.array(list(Counter(negatives["item_id"].to_list()).values()))
    # uniform over ~400 items: every item is drawn, none far more often than its share
    assert len(freq) > 0.95 * n_items and freq.max() < 4 * negatives.height / n_items


def test_negatives_never_equal_their_positive_on_the_tiny_world(tiny_dien):
    _, out = tiny_dien
    for split in ("train", "valid", "test"):
        df = read_split(out, split)
        pos, neg = df.filter(pl.col("label") == 1), df.filter(pl.col("label") == 0)
        assert (pos["item_id"] != neg["item_id"]).all()
        if split == "train":  # every training id is in the vocabulary, so indexes compare like raw ids
            hist, hist_neg = np.asarray(pos["hist_items"].to_list()), np.asarray(pos["hist_neg_items"].to_list())
            assert not ((hist == hist_neg) & (hist != 0)).any()
            assert ((hist == 0) == (hist_neg == 0)).all()


# --- byte-identical to pinned digests ----------------------------------------------------------
#
# sha256 over (name, sha256(bytes)) of the split and vocabulary files of six builds, pinned: a
# change to a split, a negative draw, a vocabulary or the Parquet encoding changes them. DuckDB's
# `hash` and pyarrow's writer are pinned in constraints.txt; a deliberate upgrade of either is the
# one reason to re-record these.
# `skewed`: one item holds most review rows, so most first draws are rejected and retried and
# some exhaust the 8 attempts and take the fallback (the paths the macro must keep exactly).
SKEWED = {f"s{u:02d}": [("p", 10 * k + u) if (k + u) % 6 else (f"q{(u + k) % 5}", 10 * k + u) for k in range(8)]
          for u in range(30)}
SKEWED_CATEGORIES = {"p": "P", **{f"q{i}": "Q" for i in range(5)}}
DATA_FILES = ("train.parquet", "valid.parquet", "test.parquet", "vocab_user.parquet", "vocab_item.parquet",
              "vocab_category.parquet")
SKEWED_ARGS = {"max_len": 4, "valid_frac": 0.2, "test_frac": 0.2}
PINNED_DIGESTS = {
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


def test_samples_are_byte_identical_to_the_pinned_digests(dien_build, din_build, tiny_dien, skewed_db, tmp_path):
    built = {"hand_dien": dien_build[1], "hand_din": din_build[1], "tiny_dien_s11": tiny_dien[1]}
    for protocol, seed in (("dien", 0), ("dien", 1), ("din", 0)):
        out = tmp_path / f"skewed_{protocol}_s{seed}"
        build_samples(skewed_db, "skewed", out, protocol=protocol, seed=seed, **SKEWED_ARGS)
        built[out.name] = out
    assert {name: data_digest(out) for name, out in built.items()} == PINNED_DIGESTS


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
    attach_warehouse(con, skewed_db)
    run_script(con, "samples/macros")
    for table, model in MODELS[:9]:
        materialize(con, table, model.format(protocol="dien"), job.sql_params())
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
        text = load_sql(f"samples/intermediate/{model}")
        code = "\n".join(line.split("--")[0] for line in text.splitlines())
        assert "popularity_negatives(" in code and "hash(" not in code, model
