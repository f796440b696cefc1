"""Interests you can look at: a trained MICN's capsules, their nearest items, and their purity.

The MICN paper leaves inspecting the learned interests to future work; this module does it.

    model, ckpt = load_model(run_dir)                       # a run's model.pt, trained with MICN
    vocab = Vocab.load(samples_dir)                         # index <-> raw item id / category
    users = user_interests(model, batch, vocab, top_n=10)   # per row: active capsules, nearest items
    print(format_interests(users))
    print(describe_user(run_dir, user_id))                  # the `micn interests` report

A capsule's nearest items are the items with the largest dot product between the capsule and
their e_aux (the space MICN's sampled softmax scores in), real item ids only; its dominant
categories are the most common categories among those items. On synthetic data the report adds
the capsules' purity and overlap over the test users (`micn.evidence`, which defines both).

This module reads a trained model for people; nothing on the training path imports it, so
rewording what `micn interests` prints retrains nothing.

Routing logits are random (MIND draws them fresh per forward); pass a seeded `generator` for a
repeatable picture. Nothing here changes the model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from micn.checkpoint import read_model_file
from micn.config import MICNConfig, TrainConfig
from micn.data.batch import Batch
from micn.data.dataset import SampleSet
from micn.data.feature_map import FeatureMap, load_feature_map
from micn.data.layout import samples_dir as layout_samples_dir
from micn.errors import MicnError
from micn.evidence import capsule_purity, item_topics, measure_capsules, micn_of
from micn.models.with_micn import WithMICN, build_with_micn
from micn.names import FIRST_REAL_ID
from micn.run import backbone_config

PADDING_NAMES = ("<pad>", "<oov>")  # item / category indexes PADDING_ID and OOV_ID
OVERLAP_NEAREST, OVERLAP_USERS = 5, 2000  # `micn interests`' capsule overlap: nearest items, users


@dataclass(frozen=True)
class Vocab:
    """Index -> raw id, from a samples directory's `vocab_item.parquet` / `vocab_category.parquet`."""

    item_ids: np.ndarray  # (n_items,) str
    categories: np.ndarray  # (n_categories,) str

    @classmethod
    def load(cls, samples_dir: str | Path) -> Vocab:
        samples_dir = Path(samples_dir)
        return cls(_index_to_name(samples_dir / "vocab_item.parquet", "item_id"),
                   _index_to_name(samples_dir / "vocab_category.parquet", "category"))


def _index_to_name(path: Path, column: str) -> np.ndarray:
    if not path.is_file():
        raise MicnError(f"{path}: no such vocabulary file; build the samples first (`micn samples`).")
    df = pl.read_parquet(path, columns=[column, "index"])
    names = np.array([*PADDING_NAMES, *([""] * (int(df["index"].max() or 1) - 1))], dtype=object)
    names[df["index"].to_numpy()] = df[column].to_numpy()
    return names


@dataclass(frozen=True)
class NearItem:
    index: int
    item_id: str | None  # raw id when a Vocab is given
    category: str | int  # raw category name, or its index without a Vocab
    score: float  # capsule · e_aux(item)


@dataclass(frozen=True)
class Interest:
    slot: int  # capsule slot 0 .. K_u − 1
    norm: float  # ‖capsule‖ in [0, 1)
    n_behaviors: int  # history behaviors whose routing weight is largest on this capsule
    items: tuple[NearItem, ...]  # nearest items, best first
    categories: tuple[tuple[str | int, int], ...]  # dominant categories among `items`, (category, count)


@dataclass(frozen=True)
class UserInterests:
    row: int  # row in the batch
    user: int  # user index
    hist_len: int
    interests: tuple[Interest, ...]  # the active capsules only


@torch.no_grad()
def user_interests(
    model: nn.Module, batch: Batch, vocab: Vocab | None = None, top_n: int = 10, n_categories: int = 3,
    generator: torch.Generator | None = None,
) -> list[UserInterests]:
    """Every row's active interest capsules with their `top_n` nearest items and dominant categories."""
    micn = micn_of(model)
    was_training = micn.training
    micn.eval()
    try:
        routing = micn.interests(batch, generator)
    finally:
        micn.train(was_training)
    table = micn.item_table()  # (n_items, D)
    scores = torch.einsum("bkd,nd->bkn", routing.capsules, table)  # (B, K, n_items)
    scores[..., :FIRST_REAL_ID] = float("-inf")  # padding and OOV are not items
    top = scores.topk(min(top_n, micn.n_items - FIRST_REAL_ID), dim=-1)  # (B, K, top_n)
    owner = routing.weights.argmax(dim=1)  # (B, T), capsule holding most of each behavior
    real = batch.hist_mask.cpu()  # (B, T)
    categories = micn.item_category.cpu()
    out = []
    for b in range(len(batch)):
        interests = []
        for k in range(int(routing.active[b].sum())):
            items = []
            for index, score in zip(top.indices[b, k].tolist(), top.values[b, k].tolist()):
                c = int(categories[index])
                items.append(NearItem(index, vocab.item_ids[index] if vocab else None,
                                      vocab.categories[c] if vocab else c, score))
            counts = Counter(it.category for it in items).most_common(n_categories)
            n_behaviors = int(((owner[b].cpu() == k) & real[b]).sum())
            interests.append(Interest(k, float(routing.capsules[b, k].norm()), n_behaviors, tuple(items), tuple(counts)))
        out.append(UserInterests(b, int(batch.user[b]), int(batch.hist_len[b]), tuple(interests)))
    return out


def format_interests(users: list[UserInterests], items_shown: int = 5) -> str:
    """A plain-text report: one block per user, one line per capsule."""
    lines = []
    for u in users:
        lines.append(f"user {u.user} (row {u.row}), {u.hist_len} behaviors, {len(u.interests)} interests")
        for it in u.interests:
            cats = ", ".join(f"{c} ×{n}" for c, n in it.categories)
            near = ", ".join(str(x.item_id if x.item_id is not None else x.index) for x in it.items[:items_shown])
            lines.append(f"  capsule {it.slot}: |v|={it.norm:.2f}, {it.n_behaviors} behaviors; {cats}; items {near}")
    return "\n".join(lines)


def load_model(path: str | Path, map_location: str = "cpu") -> tuple[WithMICN, dict]:
    """The WithMICN model of a run directory (or its `model.pt`), and the whole model file dict.

    Expects `{"model", "backbone", "config", "micn", "feature_map"}`: the state dict, backbone
    name, TrainConfig fields (d_item, d_category), MICNConfig fields and the feature map. The file
    is read with `weights_only=True` (tensors and plain data), so a crafted file cannot run code.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise MicnError(f"{path}: no such model file; train a run with `micn train --variant micn` first.")
    ckpt = read_model_file(path, map_location)
    if ckpt["micn"] is None or ckpt.get("variant") == "control":
        raise MicnError(f"{path}: this run was trained without MICN (variant {ckpt.get('variant') or 'base'}), so it "
                        "has no interest capsules to show; pick a run of variant micn (`micn train --variant micn`, "
                        "or a grid run named <backbone>-micn-...).")
    fmap, cfg = FeatureMap.from_json(ckpt["feature_map"], path), ckpt["config"]
    model = build_with_micn(ckpt["backbone"], fmap.n_users, fmap.n_items, fmap.n_categories,
                            cfg["d_item"], cfg["d_category"], MICNConfig(**ckpt["micn"]),
                            backbone_cfg=backbone_config(ckpt["backbone"], TrainConfig(**cfg)))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def describe_user(run_dir: str | Path, user_id: str, samples_dir: str | Path | None = None, items_shown: int = 5,
                  seed: int = 0) -> str:
    """The `micn interests` report: one user's capsules, and on synthetic data the test users' purity.

    The user's most recent positive sample (test, then valid, then train split) gives the history
    that is routed; `samples_dir` defaults to the one the run was trained on (`samples_of`).
    Everything is read from the run's model file and its samples directory.
    """
    if isinstance(items_shown, bool) or not isinstance(items_shown, int) or items_shown < 1:
        raise MicnError(f"--items {items_shown!r}: the number of nearest items shown per capsule must be >= 1.")
    model, ckpt = load_model(run_dir)
    fmap = FeatureMap.from_json(ckpt["feature_map"], Path(run_dir))
    samples_dir = Path(samples_dir) if samples_dir else samples_of(Path(run_dir), ckpt)
    generator = torch.Generator().manual_seed(seed)  # routing logits are random: a repeatable picture
    for split in ("test", "valid", "train"):
        data = SampleSet.from_parquet(samples_dir / f"{split}.parquet", fmap)
        rows = np.flatnonzero((data.user_ids == user_id) & (data.label.numpy() == 1))
        if len(rows):
            batch = data.batch(torch.as_tensor(rows[-1:], dtype=torch.long))
            users = user_interests(model, batch, Vocab.load(samples_dir), top_n=max(items_shown, 10), generator=generator)
            report = [f"user {user_id} ({split} split): {format_interests(users, items_shown)}"]
            break
    else:
        raise MicnError(f"user {user_id!r} has no positive sample in {samples_dir} (train, valid or test); "
                        "give a raw reviewerID of this dataset.")
    if fmap.oracle is not None:  # synthetic data: the samples carry the world's ground truth
        test = SampleSet.from_parquet(samples_dir / "test.parquet", fmap)
        topics = item_topics(samples_dir, samples_dir / fmap.oracle)
        p = capsule_purity(model, test, topics, generator=generator)
        report.append(f"capsule purity vs planted topics over {p.n_users} test users with >= 2 interests: "
                      f"{p.purity:.3f} (shuffled assignment {p.shuffled:.3f}, one cluster {p.majority:.3f})")
        evidence, n_users = measure_capsules(model, test, topics, generator, 4096, OVERLAP_NEAREST, OVERLAP_USERS)
        if evidence["capsule_overlap"] is not None:
            report.append(f"capsule overlap, share of the {OVERLAP_NEAREST} nearest items two capsules of a user have "
                          f"in common, over the first {n_users} test users with >= 2 interests: "
                          f"{evidence['capsule_overlap']:.3f} (1.0: collapsed capsules, about 0: distinct interests)")
    return "\n".join(report)


def samples_of(run_dir: Path, ckpt: dict) -> Path:
    """The samples directory a run was trained on: the one its model file names, else the grid's
    layout `<root>/data/samples/<dataset>/len<L>` for a run in `<root>/models/<dataset>/<run>/`."""
    fmap = FeatureMap.from_json(ckpt["feature_map"], run_dir)
    run_dir = run_dir.parent if run_dir.suffix == ".pt" else run_dir
    candidates = [Path(ckpt["samples_dir"])] if ckpt.get("samples_dir") else []
    if len(run_dir.resolve().parents) >= 3:  # <root>/models/<dataset>/<run>
        candidates.append(layout_samples_dir(run_dir.resolve().parents[2], fmap.dataset, fmap.max_len))
    for candidate in candidates:
        if _same_samples(candidate, fmap):
            return candidate
    tried = ", ".join(str(c) for c in candidates) or "none"
    raise MicnError(f"cannot find the samples run {run_dir} was trained on (tried: {tried}); pass --samples DIR.")


def _same_samples(samples_dir: Path, fmap: FeatureMap) -> bool:
    if not (samples_dir / "feature_map.json").is_file():
        return False
    found = load_feature_map(samples_dir)
    return all(getattr(found, k) == getattr(fmap, k)
               for k in ("dataset", "protocol", "max_len", "n_users", "n_items", "n_categories"))
