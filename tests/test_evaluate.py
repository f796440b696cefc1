"""Metrics: GAUC against a direct per-user scikit-learn computation; AUC/logloss wiring."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from micn.evaluate import ctr_metrics, gauc


def direct_gauc(users, labels, scores) -> float:
    total, weight = 0.0, 0
    for u in np.unique(users):
        m = users == u
        if 0 < labels[m].sum() < m.sum():
            total += roc_auc_score(labels[m], scores[m]) * m.sum()
            weight += m.sum()
    return total / weight


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gauc_equals_per_user_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    users = rng.integers(0, 200, n).astype(str)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.normal(labels * 0.5, 1.0), 1)  # rounding plants ties
    assert gauc(users, labels, scores) == pytest.approx(direct_gauc(users, labels, scores), abs=1e-12)


def test_gauc_ignores_single_label_users_and_pairs():
    users = np.array(["a", "a", "b", "b", "c"])
    labels = np.array([1, 0, 1, 0, 1])  # c has only a positive: excluded
    scores = np.array([0.9, 0.1, 0.2, 0.8, 0.5])
    assert gauc(users, labels, scores) == pytest.approx(0.5)  # a: 1.0, b: 0.0, equal weights
    assert np.isnan(gauc(np.array(["c"]), np.array([1]), np.array([0.3])))


def test_ctr_metrics_from_logits():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    logits = rng.normal(labels, 1.0)
    m = ctr_metrics(np.arange(500) % 50, labels, logits)
    probs = 1 / (1 + np.exp(-logits))
    assert m["auc"] == pytest.approx(roc_auc_score(labels, probs))
    assert m["logloss"] == pytest.approx(log_loss(labels, probs))
    assert 0.5 < m["auc"] < 1 and 0 < m["gauc"] < 1
