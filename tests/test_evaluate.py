"""Metrics: GAUC against a direct per-user scikit-learn computation; AUC/logloss wiring."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from micn.evaluate import ctr_metrics, gauc
from tests.helpers import add_oracle_inputs


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


def warehouse_oracle_auc(data, fmap: dict, warehouse, world) -> float:
    """The oracle AUC without the samples folder's oracle inputs: q from the warehouse's review counts,
    the click probabilities from the world's ground truth."""
    import duckdb

    from micn.data.oracle import Oracle
    from micn.evaluate import auc

    with duckdb.connect(str(warehouse), read_only=True) as con:
        counts = con.execute("select item_id, count(*) from reviews where dataset = $d group by item_id",
                             {"d": fmap.dataset}).fetchall()
    if fmap.protocol == "dien":
        total = sum(n for _, n in counts)
        q_of = {item: n / total for item, n in counts}
    else:
        q_of = dict.fromkeys((item for item, _ in counts), 1.0 / len(counts))
    last = [x if x else None for x in data.last_hist_item_ids]
    probs = Oracle.load(world).click_proba(data.user_ids, last, data.item_ids,
                                           lambda ids: np.array([q_of.get(i, 0.0) for i in ids]))
    return auc(data.label.numpy(), probs)


@pytest.mark.parametrize("protocol", ["dien", "din"])
def test_oracle_auc_from_the_samples_equals_the_warehouse_computation(tiny_warehouse, tiny_world, tmp_path, protocol):
    from micn.data.dataset import SampleSet
    from micn.data.feature_map import load_feature_map
    from micn.data.samples.build import build_samples
    from micn.evaluate import oracle_auc

    build_samples(tiny_warehouse, "tiny", tmp_path / "built", protocol=protocol, max_len=10, seed=1)
    samples = add_oracle_inputs(tmp_path / "built", tiny_warehouse, tiny_world, tmp_path / "samples")
    fmap = load_feature_map(samples)
    test = SampleSet.from_parquet(samples / "test.parquet", fmap)
    assert oracle_auc(test, fmap, samples) == warehouse_oracle_auc(test, fmap, tiny_warehouse, tiny_world)  # exactly


def test_oracle_auc_is_none_on_real_data_and_a_missing_sampler_file_is_named(tiny_samples, tiny_warehouse, tiny_world,
                                                                            tmp_path):
    from micn.data.dataset import SampleSet
    from micn.data.feature_map import load_feature_map
    from micn.errors import MicnError
    from micn.evaluate import oracle_auc

    shutil.copytree(tiny_samples, tmp_path / "copy")  # this test deletes a file: never the shared fixture's
    samples = add_oracle_inputs(tmp_path / "copy", tiny_warehouse, tiny_world, tmp_path / "samples")
    fmap = load_feature_map(samples)
    test = SampleSet.from_parquet(samples / "test.parquet", fmap)
    assert oracle_auc(test, dataclasses.replace(fmap, oracle=None), samples) is None  # real data: no ground truth
    (samples / "negative_sampler.parquet").unlink()
    with pytest.raises(MicnError, match=r"negative_sampler\.parquet: no such file"):
        oracle_auc(test, fmap, samples)


def direct_recall(vectors, active, table, targets, k) -> float:
    """Recall@k by the definition, one user at a time: max-over-capsules scores, items 2.. sorted; a
    target tied with others is equally likely at each place its tie group occupies in the sorted list."""
    hits = []
    for v, m, t in zip(vectors, active, targets, strict=True):
        scores = np.array([max(float(v[j] @ table[i]) for j in range(len(v)) if m[j]) for i in range(len(table))])
        if t < 2:
            hits.append(0.0)
            continue
        ranked = np.sort(scores[2:])[::-1]
        places = np.flatnonzero(ranked == scores[t])
        hits.append(float(np.mean(places < k)))
    return float(np.mean(hits))


def test_recall_at_k_equals_a_direct_computation_on_a_hand_built_case():
    from micn.evaluate import recall_at_k

    # 6 catalogue items (ids 2..7) in 2-d; ids 0 (padding) and 1 (OOV) score highest but are no items.
    table = np.array([[9, 9], [8, 8], [1, 0], [0, 1], [0.9, 0.1], [0.1, 0.9], [-1, 0], [0.5, 0.45]], dtype=np.float32)
    vectors = np.array([[[1, 0], [0, 1]],  # capsule 2 active: best items by max(x, y)
                        [[1, 0], [0, 1]],  # capsule 2 masked: ranks by x only
                        [[0, 1], [5, 5]],
                        [[1, 0], [0, 0]]], dtype=np.float32)
    active = np.array([[True, True], [True, False], [True, False], [True, True]])
    targets = np.array([5, 5, 3, 1])  # the last one is OOV: never retrieved
    for k in (1, 2, 3, 6):
        expected = direct_recall(vectors, active, table, targets, k)
        assert recall_at_k(vectors, active, table, targets, k) == pytest.approx(expected), k
    # by hand: user 0 ranks 2,3 (1.0) 4,5 (0.9) 7 (0.5) ...: target 5 is tied 3rd/4th
    assert recall_at_k(vectors[:1], active[:1], table, targets[:1], 3) == pytest.approx(0.5)  # tie in expectation
    assert recall_at_k(vectors[1:2], active[1:2], table, targets[1:2], 3) == 0.0  # x-rank of item 5: 5th
    assert recall_at_k(vectors[1:2], active[1:2], table, targets[1:2], 5) == 1.0


def test_recall_at_k_matches_the_direct_computation_on_random_cases():
    from micn.evaluate import recall_at_k

    rng = np.random.default_rng(0)
    vectors, table = rng.normal(size=(40, 3, 4)), rng.normal(size=(30, 4))
    active = rng.random((40, 3)) < 0.7
    active[:, 0] = True
    targets = rng.integers(0, 30, 40)
    for k in (1, 5, 28):
        assert recall_at_k(vectors, active, table, targets, k) == pytest.approx(
            direct_recall(vectors.astype(np.float32), active, table.astype(np.float32), targets, k))
    import torch

    assert recall_at_k(torch.tensor(vectors), torch.tensor(active), torch.tensor(table, requires_grad=True),
                       torch.tensor(targets), 5) == recall_at_k(vectors, active, table, targets, 5)


def test_popularity_recall_by_hand_and_its_ties():
    from micn.evaluate import popularity_recall

    counts = np.array([0, 999, 50, 40, 40, 30, 10, 10])  # 0: padding, 1: OOV (never retrieved)
    targets = np.array([2, 3, 4, 5, 6, 1])
    # k = 2: item 2 first; 3 and 4 tie for the 2nd place (1/2 each); 5, 6 out; OOV a miss
    assert popularity_recall(counts, targets, 2) == pytest.approx((1 + 0.5 + 0.5) / 6)
    # k = 6 covers the whole 6-item catalogue
    assert popularity_recall(counts, targets, 6) == pytest.approx(5 / 6)
    # a constant scorer gets exactly k / n_items
    assert popularity_recall(np.ones(12), np.arange(2, 12), 3) == pytest.approx(3 / 10)
    with pytest.raises(ValueError, match="k=0"):
        popularity_recall(counts, targets, 0)
