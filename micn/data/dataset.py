"""Sample files (`micn.data.samples`) → typed `Batch`es for training and evaluation.

A split's Parquet file is read ONCE into whole-epoch tensors (Polars → numpy → `torch.from_numpy`,
zero-copy for every numeric column) and mini-batches are gathered from them by a permutation
(training: shuffled with a seeded `torch.Generator`) or taken as contiguous slices in file order
(evaluation). That is far faster than a per-row `Dataset.__getitem__` plus collation.

Tensors are kept in their storage dtypes (int32 ids, int8 labels: half the memory of int64) and
each batch is converted to the `Batch` contract (int64 ids, float32 labels), so a batch is always
a fresh tensor, never a view that a model could write through into the epoch tensors.

Dimension glossary: N rows in the split, B batch size, T history length (`max_len`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from micn.data.batch import Batch
from micn.data.feature_map import FeatureMap, load_feature_map
from micn.errors import MicnError
from micn.names import OOV_ID, PADDING_ID

ID_COLUMNS = ("user", "item", "category")  # (N,) int32
HISTORY_COLUMNS = ("hist_items", "hist_categories", "hist_neg_items", "hist_neg_categories")  # (N, T) int32
# The index columns each information ablation (micn.names.ABLATIONS) overwrites with the OOV index.
ABLATED_COLUMNS = {"no_item_ids": ("item", "hist_items", "hist_neg_items"),
                   "one_category": ("category", "hist_categories", "hist_neg_categories")}
RAW_COLUMNS = ("user_id", "item_id", "last_hist_item_id", "ts")  # raw ids, for per-user metrics and the oracle
VOCAB_OF = {"user": "n_users", "item": "n_items", "category": "n_categories", "hist_items": "n_items",
            "hist_categories": "n_categories", "hist_neg_items": "n_items", "hist_neg_categories": "n_categories"}


def _tensor(array: np.ndarray) -> torch.Tensor:
    """Zero-copy numpy → torch. Polars hands out read-only views of its buffers; torch warns that
    writing to them would be undefined. Nothing writes to them: every batch is a gathered copy."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


@dataclass(frozen=True, eq=False)
class SampleSet:
    """One split's samples as whole-epoch tensors, plus the raw ids of every row (file order)."""

    user: torch.Tensor  # (N,) int32
    item: torch.Tensor  # (N,) int32
    category: torch.Tensor  # (N,) int32
    label: torch.Tensor  # (N,) int8, 1 = positive, 0 = sampled negative
    hist_items: torch.Tensor  # (N, T) int32, left-padded with 0, most recent last
    hist_categories: torch.Tensor  # (N, T) int32
    hist_neg_items: torch.Tensor  # (N, T) int32
    hist_neg_categories: torch.Tensor  # (N, T) int32
    hist_len: torch.Tensor  # (N,) int32
    user_ids: np.ndarray  # (N,) str, raw user id of every row: group by it for per-user metrics (GAUC)
    item_ids: np.ndarray  # (N,) str, raw target item id (the negative's id on a label-0 row)
    last_hist_item_ids: np.ndarray  # (N,) str, raw id of the most recent history item
    ts: np.ndarray  # (N,) int64, the target's timestamp
    feature_map: FeatureMap

    @classmethod
    def from_parquet(cls, path: str | Path, feature_map: FeatureMap | str | Path) -> SampleSet:
        """Read a split file; `feature_map` is the loaded FeatureMap or the path of `feature_map.json`."""
        fmap = feature_map if isinstance(feature_map, FeatureMap) else load_feature_map(feature_map)
        path = Path(path)
        if not path.is_file():
            raise MicnError(f"{path}: no such sample file; build the samples first (`micn samples`).")
        wanted = [*ID_COLUMNS, "label", *HISTORY_COLUMNS, "hist_len", *RAW_COLUMNS]
        df = _read_split(path, wanted)
        t = fmap.max_len
        arrays = {c: df[c].to_numpy() for c in (*ID_COLUMNS, "label", *HISTORY_COLUMNS, "hist_len")}
        for c in HISTORY_COLUMNS:
            if arrays[c].ndim != 2 or arrays[c].shape[1] != t:
                raise MicnError(f"{path}: column {c} has shape {arrays[c].shape}, but the feature map says max_len={t}; "
                                "the file and feature_map.json come from different builds.")
        _check_ids(path, arrays, fmap)
        return cls(
            **{c: _tensor(arrays[c]) for c in (*ID_COLUMNS, "label", *HISTORY_COLUMNS, "hist_len")},
            user_ids=df["user_id"].to_numpy(),
            item_ids=df["item_id"].to_numpy(),
            last_hist_item_ids=df["last_hist_item_id"].to_numpy(),
            ts=df["ts"].to_numpy(),
            feature_map=fmap,
        )

    def __len__(self) -> int:
        return self.item.shape[0]

    def ablated(self, ablation: str | None) -> SampleSet:
        """The same rows with one kind of information removed from the model's inputs (the
        mechanism experiment's information ablations; the raw ids and labels are untouched):

        no_item_ids   every item index (target, history, history negatives) becomes the OOV
                      index: the model sees categories and positions, not which item;
        one_category  every category index becomes the OOV index: one category for every item.
        Padding stays padding, so history lengths and masks are unchanged."""
        if ablation is None:
            return self
        columns = ABLATED_COLUMNS.get(ablation)
        if columns is None:
            raise MicnError(f"unknown ablation {ablation!r}; choose one of {', '.join(ABLATED_COLUMNS)}.")
        return dataclasses.replace(self, **{c: torch.where(getattr(self, c) != PADDING_ID, OOV_ID, PADDING_ID)
                                            .to(getattr(self, c).dtype) for c in columns})

    @property
    def max_len(self) -> int:
        return self.hist_items.shape[1]

    def batch(self, index: torch.Tensor | slice) -> Batch:
        """The rows at `index` (a LongTensor of row numbers, or a slice) as a `Batch`."""

        def take(t: torch.Tensor) -> torch.Tensor:
            return t[index] if isinstance(index, slice) else t.index_select(0, index)

        return Batch(
            user=take(self.user).long(),  # (B,)
            item=take(self.item).long(),  # (B,)
            category=take(self.category).long(),  # (B,)
            hist_items=take(self.hist_items).long(),  # (B, T)
            hist_categories=take(self.hist_categories).long(),  # (B, T)
            hist_neg_items=take(self.hist_neg_items).long(),  # (B, T)
            hist_neg_categories=take(self.hist_neg_categories).long(),  # (B, T)
            hist_len=take(self.hist_len).long(),  # (B,)
            label=take(self.label).float(),  # (B,)
        )

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """One epoch of batches: every row exactly once (unless `drop_last` drops a short tail).

        shuffle=False: contiguous slices in file order (evaluation; rows line up with `user_ids`).
        shuffle=True: a permutation drawn from `generator` (seed it for a repeatable order).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise MicnError(f"batch_size={batch_size!r} must be a positive integer.")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else None
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            end = min(start + batch_size, n)
            yield self.batch(order[start:end] if order is not None else slice(start, end))

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)


def _read_split(path: Path, wanted: list[str]) -> pl.DataFrame:
    """The `wanted` columns of a split file; a truncated or foreign file is a MicnError naming it."""
    try:
        schema = pl.read_parquet_schema(path)
        missing = [c for c in wanted if c not in schema]
        if missing:
            raise MicnError(f"{path}: columns {missing} are missing; it is not a sample file of this version, rebuild it.")
        # rechunk: one contiguous buffer per column, so to_numpy() is a view, not a copy
        return pl.read_parquet(path, columns=wanted).rechunk()
    except (OSError, pl.exceptions.PolarsError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MicnError(f"{path}: cannot read this sample file, it is truncated or not Parquet ({reason}); rebuild "
                        "the samples (`micn samples`, or `dvc repro samples`).") from None


def _check_ids(path: Path, arrays: dict[str, np.ndarray], fmap: FeatureMap) -> None:
    """Every id must index its embedding table: 0 <= id < the feature map's vocabulary size."""
    for column, size_key in VOCAB_OF.items():
        a, size = arrays[column], getattr(fmap, size_key)
        if a.size and (int(a.min()) < 0 or int(a.max()) >= size):
            raise MicnError(f"{path}: column {column} holds ids in [{int(a.min())}, {int(a.max())}] but the feature map's "
                            f"{size_key} is {size}; the file and feature_map.json come from different builds.")
