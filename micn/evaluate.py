"""Evaluation metrics (DESIGN §6): AUC, logloss, GAUC, and the oracle AUC on synthetic data.

* AUC and logloss come straight from scikit-learn.
* GAUC is the impression-weighted mean of per-user AUCs over users who have both a positive and
  a negative sample (DIN paper, eq. 8). Per-user AUCs use the rank-sum (Mann-Whitney) form with
  average ranks for ties, computed for all users at once with Polars window expressions; it
  equals scikit-learn's `roc_auc_score` per user (tested).
* The oracle AUC is the AUC of the generator's Bayes-optimal scores on the same test samples:
  the ceiling any model can reach on that synthetic world.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from sklearn.metrics import log_loss, roc_auc_score


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
