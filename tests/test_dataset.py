"""The sample loader: shapes, dtypes, epoch coverage, padding, seeded shuffling, eval order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from micn.data.batch import Batch
from micn.data.dataset import SampleSet
from micn.data.feature_map import load_feature_map
from micn.data.ingest.load import ingest
from micn.data.samples.build import build_samples
from micn.errors import MicnError
from tests.helpers import raw_files

MAX_LEN = 10


@pytest.fixture(scope="module")
def samples_dir(tiny_world, tmp_path_factory) -> Path:
    reviews, meta = raw_files(tiny_world)
    root = tmp_path_factory.mktemp("loader")
    ingest("tiny", [reviews], [meta], root / "w.duckdb")
    build_samples(root / "w.duckdb", "tiny", root / "samples", protocol="din", max_len=MAX_LEN, seed=1)
    return root / "samples"


@pytest.fixture(scope="module")
def train(samples_dir) -> SampleSet:
    return SampleSet.from_parquet(samples_dir / "train.parquet", samples_dir / "feature_map.json")


def with_row_ids(s: SampleSet) -> SampleSet:
    """The same set with `user` replaced by the row number, to see which rows a batch holds."""
    return dataclasses.replace(s, user=torch.arange(len(s), dtype=torch.int32))


def test_shapes_and_dtypes(train, samples_dir):
    fmap = load_feature_map(samples_dir)
    n = pl.scan_parquet(samples_dir / "train.parquet").select(pl.len()).collect().item()
    assert len(train) == n == 2 * fmap.counts["samples"]["train"]["positives"]
    assert train.max_len == MAX_LEN and train.hist_items.shape == (n, MAX_LEN)
    assert train.hist_items.dtype == torch.int32 and train.hist_items.is_contiguous()
    batch = next(train.batches(64))
    assert isinstance(batch, Batch) and len(batch) == 64
    for name in ("user", "item", "category", "hist_len"):
        assert getattr(batch, name).shape == (64,) and getattr(batch, name).dtype == torch.int64, name
    for name in ("hist_items", "hist_categories", "hist_neg_items", "hist_neg_categories"):
        assert getattr(batch, name).shape == (64, MAX_LEN) and getattr(batch, name).dtype == torch.int64, name
    assert batch.label.dtype == torch.float32 and set(batch.label.tolist()) <= {0.0, 1.0}
    assert int(batch.item.max()) < fmap.n_items and int(batch.category.max()) < fmap.n_categories
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.hist_items, batch.hist_items)
    assert len(train.user_ids) == len(train.item_ids) == len(train.last_hist_item_ids) == len(train.ts) == n


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_row_exactly_once_per_epoch(train, shuffle):
    s = with_row_ids(train)
    gen = torch.Generator().manual_seed(0)
    seen = torch.cat([b.user for b in s.batches(100, shuffle=shuffle, generator=gen)])
    assert torch.equal(seen.sort().values, torch.arange(len(s)))
    sizes = [len(b) for b in s.batches(100)]
    assert sizes == [100] * (len(s) // 100) + ([len(s) % 100] if len(s) % 100 else [])
    assert len(sizes) == s.num_batches(100)
    dropped = [len(b) for b in s.batches(100, shuffle=shuffle, generator=gen, drop_last=True)]
    assert dropped == [100] * (len(s) // 100) == [100] * s.num_batches(100, drop_last=True)


def test_eval_order_is_file_order(train, samples_dir):
    """Without shuffling, batches follow the file, so row i lines up with user_ids[i] (per-user metrics)."""
    df = pl.read_parquet(samples_dir / "train.parquet")
    batches = list(train.batches(333))
    items = torch.cat([b.item for b in batches])
    assert items.tolist() == df["item"].to_list()
    assert torch.cat([b.label for b in batches]).tolist() == [float(x) for x in df["label"].to_list()]
    assert train.user_ids.tolist() == df["user_id"].to_list()
    assert torch.cat([b.hist_neg_items for b in batches]).tolist() == df["hist_neg_items"].to_list()


def test_left_padding_matches_hist_len(train):
    for b in train.batches(512):
        real = b.hist_items != 0  # (B, T)
        assert torch.equal(real.sum(1), b.hist_len)
        positions = torch.arange(MAX_LEN).expand_as(real)
        assert torch.equal(real, positions >= MAX_LEN - b.hist_len[:, None])  # padding first, most recent last
        assert torch.equal(b.hist_mask, real)
        assert torch.equal(b.hist_categories != 0, real) and torch.equal(b.hist_neg_items != 0, real)
    assert int(train.hist_len.min()) >= 1 and int(train.hist_len.max()) <= MAX_LEN


def test_seeded_shuffling_repeats(train):
    s = with_row_ids(train)

    def order(seed: int) -> list[int]:
        return torch.cat([b.user for b in s.batches(64, shuffle=True, generator=torch.Generator().manual_seed(seed))]).tolist()

    assert order(7) == order(7)
    assert order(7) != order(8)
    assert order(7) != list(range(len(s)))


def test_batches_are_copies_not_views(train):
    before = train.hist_items.clone()
    b = next(train.batches(8))
    b.hist_items.fill_(123)
    assert torch.equal(train.hist_items, before)


def test_mismatched_feature_map_is_an_error(samples_dir, tmp_path):
    fmap = load_feature_map(samples_dir)
    with pytest.raises(MicnError, match=r"column hist_items has shape .* max_len=20"):
        SampleSet.from_parquet(samples_dir / "valid.parquet", dataclasses.replace(fmap, max_len=20))
    with pytest.raises(MicnError, match=r"column item holds ids in \[\d+, \d+\] but the feature map's n_items is 3"):
        SampleSet.from_parquet(samples_dir / "valid.parquet", dataclasses.replace(fmap, n_items=3))
    with pytest.raises(MicnError, match="no such sample file"):
        SampleSet.from_parquet(tmp_path / "nope.parquet", fmap)
    with pytest.raises(MicnError, match="no feature map"):
        load_feature_map(tmp_path)
    with pytest.raises(MicnError, match="batch_size=0 must be a positive integer"):
        next(SampleSet.from_parquet(samples_dir / "test.parquet", fmap).batches(0))


def test_all_splits_load(samples_dir):
    fmap = load_feature_map(samples_dir / "feature_map.json")
    sizes = {s: len(SampleSet.from_parquet(samples_dir / f"{s}.parquet", fmap)) for s in ("train", "valid", "test")}
    assert sizes == {s: fmap.counts["samples"][s]["rows"] for s in sizes}
    test = SampleSet.from_parquet(samples_dir / "test.parquet", fmap)
    assert np.unique(test.user_ids).size == len(test) // 2  # din: one test pair per user


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_truncated_or_foreign_split_file_is_an_error_naming_it(samples_dir, tmp_path, keep):
    data = (samples_dir / "valid.parquet").read_bytes()
    broken = tmp_path / "valid.parquet"
    broken.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(MicnError, match=r"valid\.parquet: cannot read this sample file, it is truncated or not Parquet"):
        SampleSet.from_parquet(broken, samples_dir / "feature_map.json")


def test_random_batch_is_left_padded_and_repeatable():
    from micn.data.batch import random_batch

    def make(seed: int, **kwargs) -> Batch:
        return random_batch(16, 8, 50, 100, 10, torch.Generator().manual_seed(seed), **kwargs)

    a, b = make(3, min_len=1), make(3, min_len=1)
    assert all(torch.equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(Batch))
    assert (a.hist_len >= 1).all() and (a.hist_len <= 8).all()
    real = torch.arange(8).unsqueeze(0) >= (8 - a.hist_len).unsqueeze(1)
    assert (a.hist_items[~real] == 0).all() and (a.hist_items[real] >= 2).all() and (a.item < 100).all()
    assert make(0, alternating_labels=True).label.tolist() == [1.0, 0.0] * 8


@pytest.mark.parametrize("ablation, columns, kept", [
    ("no_item_ids", ("item", "hist_items", "hist_neg_items"), ("category", "hist_categories", "hist_neg_categories")),
    ("one_category", ("category", "hist_categories", "hist_neg_categories"), ("item", "hist_items", "hist_neg_items")),
])
def test_information_ablation_removes_one_kind_of_id_and_keeps_padding(train, ablation, columns, kept):
    ablated = train.ablated(ablation)
    for c in columns:
        before, after = getattr(train, c), getattr(ablated, c)
        assert after.dtype == before.dtype and after.shape == before.shape
        assert torch.equal(after == 0, before == 0)  # padding stays padding: masks and lengths unchanged
        assert set(after.unique().tolist()) <= {0, 1} and (after == 1).any()
    for c in (*kept, "user", "label", "hist_len"):
        assert torch.equal(getattr(ablated, c), getattr(train, c))
    assert (ablated.item_ids == train.item_ids).all() and len(ablated) == len(train)  # raw ids: for the ceilings
    assert train.ablated(None) is train
    with pytest.raises(MicnError, match="unknown ablation 'no_users'"):
        train.ablated("no_users")
