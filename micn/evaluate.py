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


def oracle_auc(data, feature_map: dict) -> float | None:
    """AUC of the generator's Bayes-optimal click probabilities on `data` (a SampleSet), or None
    when the dataset is not synthetic (no `ground_truth/` beside its raw review files).

    The negative sampler's distribution q comes from the protocol: popularity over review rows
    (`dien`) or uniform over the dataset's items (`din`); the oracle scores p / (p + q).
    """
    import duckdb

    from micn.data.oracle import Oracle

    raw_dir = _ground_truth_dir(feature_map)
    if raw_dir is None or len(data) == 0:
        return None
    oracle = Oracle.load(raw_dir)
    with duckdb.connect(str(feature_map["warehouse"]), read_only=True) as con:
        counts = con.execute(
            "select item_id, count(*) from reviews where dataset = $d group by item_id", {"d": feature_map["dataset"]}
        ).fetchall()
    if feature_map["protocol"] == "dien":
        total = sum(n for _, n in counts)
        q_of = {item: n / total for item, n in counts}
    else:
        q_of = dict.fromkeys((item for item, _ in counts), 1.0 / len(counts))
    last = [x if x else None for x in data.last_hist_item_ids]
    probs = oracle.click_proba(data.user_ids, last, data.item_ids,
                               lambda ids: np.array([q_of.get(i, 0.0) for i in ids]))
    return auc(data.label.numpy(), probs)


def _ground_truth_dir(feature_map: dict):
    from pathlib import Path

    import duckdb

    warehouse = Path(str(feature_map.get("warehouse", "")))
    if not warehouse.is_file():
        return None
    with duckdb.connect(str(warehouse), read_only=True) as con:
        sources = con.execute(
            "select source_file from ingest_log where dataset = $d and kind = 'reviews'", {"d": feature_map["dataset"]}
        ).fetchall()
    for (source,) in sources:
        raw_dir = Path(source).parent
        if (raw_dir / "ground_truth" / "world.json").is_file():
            return raw_dir
    return None
