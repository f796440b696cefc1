"""Evaluation metrics (docs/architecture.md, "Training regime"): AUC, logloss, GAUC, the two ceilings on synthetic data, Recall@K.

* AUC and logloss come straight from scikit-learn.
* GAUC is the impression-weighted mean of per-user AUCs over users who have both a positive and
  a negative sample (DIN paper, eq. 8). Per-user AUCs use the rank-sum (Mann-Whitney) form with
  average ranks for ties, computed for all users at once with Polars window expressions; it
  equals scikit-learn's `roc_auc_score` per user (tested).
* The oracle AUC is the AUC of the generator's Bayes-optimal scores on the same test samples:
  the ceiling any model can reach on that synthetic world. Its inputs (the world's ground truth
  and the negative sampler's distribution) are read from the samples directory only.
* The history-only AUC is the AUC of `micn.data.ceiling.HistoryOnly`, the Bayes-optimal scorer
  that sees what a model sees (the world's public structure and the visible history, not the
  user's hidden weights). Read the two ceilings as: oracle - history-only is what no model can
  gain (the hidden weights); history-only - model is what a model could still learn.
* Recall@K (MIND's retrieval evidence for MICN's capsules) and popularity's Recall@K on the same
  users. Ties are counted in expectation over a uniformly random tie-break, so a constant scorer
  gets exactly k / n_items and the number never depends on the order of the catalogue.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import log_loss, roc_auc_score

from micn.data.feature_map import FeatureMap
from micn.errors import MicnError
from micn.names import FIRST_REAL_ID


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(log_loss(labels, np.clip(probs, 1e-7, 1 - 1e-7), labels=[0, 1]))


def gauc(user_ids: Sequence | np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Impression-weighted mean per-user AUC over users with both labels (NaN when there are none)."""
    df = pl.DataFrame({"user": np.asarray(user_ids), "label": np.asarray(labels, dtype=np.int8),
                       "score": np.asarray(scores, dtype=np.float64)})
    per_user = (
        df.with_columns(pl.col("score").rank("average").over("user").alias("rank"))
        .group_by("user")
        .agg(
            n=pl.len(),
            n_pos=pl.col("label").sum().cast(pl.Int64),
            pos_rank_sum=(pl.col("rank") * pl.col("label")).sum(),
        )
        .with_columns(n_neg=pl.col("n") - pl.col("n_pos"))
        .filter((pl.col("n_pos") > 0) & (pl.col("n_neg") > 0))
        .with_columns(
            user_auc=(pl.col("pos_rank_sum") - pl.col("n_pos") * (pl.col("n_pos") + 1) / 2)
            / (pl.col("n_pos") * pl.col("n_neg"))
        )
    )
    if per_user.height == 0:
        return float("nan")
    return float((per_user["user_auc"] * per_user["n"]).sum() / per_user["n"].sum())


def ctr_metrics(user_ids: Sequence | np.ndarray, labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """The metrics of every run: auc, gauc, logloss (from pre-sigmoid scores)."""
    probs = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    return {"auc": auc(labels, probs), "gauc": gauc(user_ids, labels, probs), "logloss": logloss(labels, probs)}


def oracle_auc(data, feature_map: FeatureMap, samples_dir: str | Path) -> float | None:
    """AUC of the generator's Bayes-optimal click probabilities on `data` (a SampleSet), or None
    when the dataset is not synthetic (`feature_map.oracle` is None).

    Everything comes from the samples directory, never from the warehouse or the raw folder:
    `<samples_dir>/<feature_map.oracle>/` holds the world's ground truth (world.json,
    users/items/categories.parquet) and `negative_sampler.parquet` the review rows per raw item
    id. The negative sampler's distribution q comes from the protocol: popularity over review rows
    (`dien`, q = count / total) or uniform over the dataset's items (`din`, q = 1 / n_items); the
    oracle scores p / (p + q).
    """
    from micn.data.oracle import Oracle

    folder = feature_map.oracle
    if folder is None or len(data) == 0:
        return None
    samples_dir = Path(samples_dir)
    try:
        oracle = Oracle.load(samples_dir / folder)
    except ValueError as e:
        raise MicnError(f"{samples_dir / 'feature_map.json'}: oracle: {folder!r}, but {e}; rebuild the samples "
                        "(`micn samples`).") from None
    q_of = negative_proba(samples_dir / NEGATIVE_SAMPLER, feature_map.protocol)
    last = [x if x else None for x in data.last_hist_item_ids]
    probs = oracle.click_proba(data.user_ids, last, data.item_ids,
                               lambda ids: np.array([q_of.get(i, 0.0) for i in ids]))
    return auc(data.label.numpy(), probs)


NEGATIVE_SAMPLER = "negative_sampler.parquet"  # item_id (raw), count (review rows), written by `micn samples`


def negative_proba(path: Path, protocol: str) -> dict[str, float]:
    """Raw item id -> probability that the protocol's negative sampler draws it.

    `dien` draws by popularity over review rows (count / total), `din` uniformly over the items."""
    try:
        table = pl.read_parquet(path, columns=["item_id", "count"])
    except FileNotFoundError:
        raise MicnError(f"{path}: no such file; the oracle AUC needs the negative sampler's distribution, which "
                        "`micn samples` writes beside the samples. Rebuild the samples.") from None
    except (OSError, pl.exceptions.PolarsError) as e:
        raise MicnError(f"{path}: cannot read the negative sampler's distribution ({type(e).__name__}: {e}); "
                        "rebuild the samples.") from None
    items, counts = table["item_id"].to_list(), table["count"].to_list()
    if not items:
        raise MicnError(f"{path}: no items; rebuild the samples.")
    if protocol == "dien":
        total = sum(counts)
        return {item: n / total for item, n in zip(items, counts, strict=True)}
    return dict.fromkeys(items, 1.0 / len(items))


def history_only_auc(data, feature_map: FeatureMap, samples_dir: str | Path) -> float | None:
    """AUC of the history-only ceiling (`micn.data.ceiling.HistoryOnly`) on `data` (a SampleSet), or
    None when the dataset is not synthetic. Mirrors `oracle_auc`: the same folder, the same q from
    `negative_sampler.parquet`, but never the users' hidden weights (users.parquet is not read).

    The scorer sees the VISIBLE history only (the sample's `max_len` positions, as a model does):
    each position's topic comes from its item through `vocab_item.parquet` (or, for an
    out-of-vocabulary item, from its category through `vocab_category.parquet`). Exact: no
    Monte-Carlo error."""
    from micn.data.ceiling import HistoryOnly

    folder = feature_map.oracle
    if folder is None or len(data) == 0:
        return None
    samples_dir = Path(samples_dir)
    try:
        ceiling = HistoryOnly.load(samples_dir / folder)
    except ValueError as e:
        raise MicnError(f"{samples_dir / 'feature_map.json'}: oracle: {folder!r}, but {e}; rebuild the samples "
                        "(`micn samples`).") from None
    item_vocab = vocabulary(samples_dir, feature_map, "item", feature_map.n_items)
    category_vocab = vocabulary(samples_dir, feature_map, "category", feature_map.n_categories)
    topics = ceiling.history_topics(data.hist_items.numpy(), data.hist_categories.numpy(), item_vocab, category_vocab)
    q_of = negative_proba(samples_dir / NEGATIVE_SAMPLER, feature_map.protocol)
    probs = ceiling.click_proba(topics, data.item_ids, lambda ids: np.array([q_of.get(i, 0.0) for i in ids]))
    return auc(data.label.numpy(), probs)


def vocabulary(samples_dir: Path, feature_map: FeatureMap, kind: str, size: int) -> np.ndarray:
    """(size,) object: the raw id of every vocabulary index of `kind` ("item" | "category"); None at
    padding, OOV and any index the file does not name."""
    column = {"item": "item_id", "category": "category"}[kind]
    path = Path(samples_dir) / feature_map.vocab_files[kind]
    try:
        table = pl.read_parquet(path, columns=[column, "index"])
    except FileNotFoundError:
        raise MicnError(f"{path}: no such file; the history-only ceiling maps the samples' {kind} indexes back to "
                        "raw ids through it. Rebuild the samples (`micn samples`).") from None
    except (OSError, pl.exceptions.PolarsError) as e:
        raise MicnError(f"{path}: cannot read the {kind} vocabulary ({type(e).__name__}: {e}); rebuild the samples.") \
            from None
    index = table["index"].to_numpy()
    if index.size and (index.min() < 0 or index.max() >= size):
        raise MicnError(f"{path}: indexes in [{index.min()}, {index.max()}] but the feature map's n_{kind}s is {size}; "
                        "the file and feature_map.json come from different builds.")
    out = np.full(size, None, dtype=object)
    out[index] = table[column].to_list()
    return out


def recall_at_k(user_vectors, active, item_table, targets, k: int) -> float:
    """Recall@k of each user's target over the whole catalogue (MIND's retrieval evaluation).

    user_vectors (U, K, D) interest capsules, active (U, K) bool mask (at least one per user),
    item_table (I, D) item embeddings by vocabulary index, targets (U,) vocabulary indexes. A user's
    score of an item is the max over its active capsules of the dot product; padding and OOV
    (ids below FIRST_REAL_ID) are not in the catalogue, so a target with such an id is a miss. The target is retrieved
    when it is in the top k; a tie at the cut-off counts in expectation over a uniformly random
    tie-break, i.e. min(1, max(0, (k - n_higher) / (1 + n_tied_others))). Mean over the U users."""
    vectors = _numpy(user_vectors, np.float32)  # (U, K, D)
    mask = _numpy(active, bool)  # (U, K)
    table = _numpy(item_table, np.float32)  # (I, D)
    tgt = _numpy(targets, np.int64)  # (U,)
    if vectors.ndim != 3 or mask.shape != vectors.shape[:2] or table.ndim != 2 or table.shape[1] != vectors.shape[2] \
            or tgt.shape != vectors.shape[:1]:
        raise ValueError(f"recall_at_k: shapes user_vectors {vectors.shape}, active {mask.shape}, item_table "
                         f"{table.shape}, targets {tgt.shape}; expected (U, K, D), (U, K), (I, D), (U,)")
    n_users, n_items = len(tgt), table.shape[0]
    if n_users == 0:
        return float("nan")
    hits = np.zeros(n_users)
    chunk = max(1, (1 << 24) // max(1, vectors.shape[1] * n_items))  # bound the (chunk, K, I) scores to 64 MB
    for start in range(0, n_users, chunk):
        v, m = vectors[start : start + chunk], mask[start : start + chunk]
        scores = (v.reshape(-1, v.shape[2]) @ table.T).reshape(len(v), v.shape[1], n_items)  # (c, K, I), one GEMM
        scores[~m] = -np.inf  # inactive capsules never win the max
        hits[start : start + chunk] = _expected_hits(scores.max(axis=1), tgt[start : start + chunk], k)  # (c, I)
    return float(hits.mean())


def popularity_recall(counts, targets, k: int) -> float:
    """Recall@k of ranking every user's catalogue by `counts` (I,) (e.g. training frequency by
    vocabulary index): the baseline MICN's Recall@k must beat. Same rules as `recall_at_k`."""
    c = _numpy(counts, np.float64)  # (I,)
    tgt = _numpy(targets, np.int64)  # (U,)
    if c.ndim != 1 or tgt.ndim != 1:
        raise ValueError(f"popularity_recall: counts {c.shape} must be (I,) and targets {tgt.shape} (U,)")
    if len(tgt) == 0:
        return float("nan")
    _check_k_and_targets(k, tgt, len(c))
    catalogue = np.sort(c[FIRST_REAL_ID:])  # (I - 2,) ascending: one ranking shared by every user
    own = c[tgt]  # (U,)
    higher = len(catalogue) - np.searchsorted(catalogue, own, side="right")
    valid = tgt >= FIRST_REAL_ID
    tied = np.searchsorted(catalogue, own, side="right") - np.searchsorted(catalogue, own, side="left") - valid
    p = np.clip((k - higher) / (1.0 + tied), 0.0, 1.0)
    return float(np.where(valid, p, 0.0).mean())


def _expected_hits(scores: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """(U,) P(target in the top k) for scores (U, I) over the real item ids (padding and OOV are not items)."""
    _check_k_and_targets(k, targets, scores.shape[1])
    valid = targets >= FIRST_REAL_ID
    catalogue = scores[:, FIRST_REAL_ID:]  # (U, I - 2)
    own = scores[np.arange(len(targets)), targets][:, None]  # (U, 1)
    higher = (catalogue > own).sum(axis=1)
    tied = (catalogue == own).sum(axis=1) - valid  # other items with the target's score
    p = np.clip((k - higher) / (1.0 + tied), 0.0, 1.0)
    return np.where(valid, p, 0.0)


def _check_k_and_targets(k: int, targets: np.ndarray, n_items: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k={k!r} must be a positive integer")
    if targets.size and ((targets < 0) | (targets >= n_items)).any():
        raise ValueError(f"targets must be vocabulary indexes in [0, {n_items}); got {targets.min()}..{targets.max()}")


def _numpy(x, dtype) -> np.ndarray:
    """A numpy copy of an array or a (possibly GPU, grad-tracking) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)
