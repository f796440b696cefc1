"""Evaluation metrics (DESIGN §6): AUC, logloss, GAUC, and the oracle AUC on synthetic data.

* AUC and logloss come straight from scikit-learn.
* GAUC is the impression-weighted mean of per-user AUCs over users who have both a positive and
  a negative sample (DIN paper, eq. 8). Per-user AUCs use the rank-sum (Mann-Whitney) form with
  average ranks for ties, computed for all users at once with Polars window expressions; it
  equals scikit-learn's `roc_auc_score` per user (tested).
* The oracle AUC is the AUC of the generator's Bayes-optimal scores on the same test samples:
  the ceiling any model can reach on that synthetic world. Its inputs (the world's ground truth
  and the negative sampler's distribution) are read from the samples directory only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import log_loss, roc_auc_score

from micn.errors import MicnError


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


def oracle_auc(data, feature_map: Mapping, samples_dir: str | Path) -> float | None:
    """AUC of the generator's Bayes-optimal click probabilities on `data` (a SampleSet), or None
    when the dataset is not synthetic (`feature_map["oracle"]` is null or absent).

    Everything comes from the samples directory, never from the warehouse or the raw folder:
    `<samples_dir>/<feature_map["oracle"]>/` holds the world's ground truth (world.json,
    users/items/categories.parquet) and `negative_sampler.parquet` the review rows per raw item
    id. The negative sampler's distribution q comes from the protocol: popularity over review rows
    (`dien`, q = count / total) or uniform over the dataset's items (`din`, q = 1 / n_items); the
    oracle scores p / (p + q).
    """
    from micn.data.oracle import Oracle

    folder = feature_map.get("oracle")
    if folder is None or len(data) == 0:
        return None
    samples_dir = Path(samples_dir)
    try:
        oracle = Oracle.load(samples_dir / folder)
    except ValueError as e:
        raise MicnError(f"{samples_dir / 'feature_map.json'}: oracle: {folder!r}, but {e}; rebuild the samples "
                        "(`micn samples`).") from None
    q_of = negative_proba(samples_dir / NEGATIVE_SAMPLER, feature_map["protocol"])
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
