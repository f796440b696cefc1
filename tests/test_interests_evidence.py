"""MICN's capsule evidence per evaluation (micn.interests.capsule_evidence): purity against the planted
topics beside its shuffled baseline, and how often a user's capsules share their nearest items."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from micn.data.batch import Batch
from micn.data.dataset import SampleSet
from micn.evidence import capsule_evidence, capsule_overlap, capsule_purity, cluster_purity
from micn.interests import describe_user
from micn.models.micn_aux import MICNConfig
from micn.models.with_micn import build_with_micn
from micn.nn.capsule import Routing
from tests.helpers import N_CATEGORIES, N_ITEMS, N_USERS, add_oracle_inputs, planted_batch

pytestmark = pytest.mark.usefixtures("one_thread")

KEYS = {"capsule_purity", "capsule_purity_shuffled", "capsule_overlap"}


def sample_set(batch: Batch) -> SampleSet:
    """A SampleSet holding exactly the rows of `batch` (storage dtypes, as `from_parquet` gives them)."""
    n = len(batch)
    ids = {f: getattr(batch, f).int() for f in ("user", "item", "category", "hist_items", "hist_categories",
                                                 "hist_neg_items", "hist_neg_categories", "hist_len")}
    return SampleSet(**ids, label=batch.label.to(torch.int8), user_ids=np.array([f"u{i}" for i in range(n)]),
                     item_ids=np.array([f"i{i}" for i in range(n)]), last_hist_item_ids=np.array(["x"] * n),
                     ts=np.arange(n), feature_map={})


def numpy_overlap(vectors: np.ndarray, active: np.ndarray, table: np.ndarray, nearest: int) -> float:
    """The definition, one user and one pair at a time: mean over users with a pair of the mean over
    pairs of active capsules of |N(a) ∩ N(b)| / nearest, N over item ids 2 .. I − 1."""
    per_user = []
    for v, a in zip(vectors, active):
        near = [set((np.argsort(-(table[2:] @ v[k]), kind="stable")[:nearest] + 2).tolist())
                for k in np.flatnonzero(a)]
        pairs = list(itertools.combinations(near, 2))
        if pairs:
            per_user.append(np.mean([len(x & y) / nearest for x, y in pairs]))
    return float(np.mean(per_user))


def test_capsule_overlap_equals_the_definition_on_fixed_tensors():
    rng = np.random.default_rng(0)
    U, K, D, I = 30, 4, 6, 40
    vectors = rng.normal(size=(U, K, D))
    active = np.arange(K)[None, :] < rng.integers(1, K + 1, size=U)[:, None]  # 1..4 active slots, first slots
    vectors[~active] = 0.0
    table = rng.normal(size=(I, D))
    table[0] = 0.0
    table[1] = 100 * vectors[0, 0]  # OOV would be every capsule's nearest item: it must not count
    for nearest in (1, 3, 5):
        got = capsule_overlap(torch.tensor(vectors), torch.tensor(active), torch.tensor(table), nearest)
        assert got == pytest.approx(numpy_overlap(vectors, active, table, nearest), abs=1e-12)
    # the two ends of the scale
    same = np.repeat(vectors[:, :1], K, axis=1)
    assert capsule_overlap(torch.tensor(same), torch.tensor(active), torch.tensor(table), 5) == 1.0
    table2 = np.zeros((2 + 2 * K * 5, K))
    for k in range(K):  # capsule k points along axis k; items 2 + 5k .. 6 + 5k lie along it
        table2[2 + 5 * k:7 + 5 * k, k] = np.arange(5, 0, -1)
    apart = np.broadcast_to(np.eye(K), (U, K, K)).copy()
    assert capsule_overlap(torch.tensor(apart), torch.tensor(active), torch.tensor(table2), 5) == 0.0
    assert np.isnan(capsule_overlap(torch.tensor(vectors), torch.zeros(U, K, dtype=torch.bool), torch.tensor(table)))


class FixedMICN:
    """Stands in for MICN's routing: each row's capsules, weights and active slots are fixed by its
    user id, so they do not depend on the batch a row is routed in."""

    def __init__(self, model, U: int, K: int, T: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        D = model.micn.d_aux
        shared = torch.randn(U, 1, D, generator=g)  # a user's capsules near one direction: overlaps of every size
        self.vectors = shared + 0.4 * torch.randn(U, K, D, generator=g)
        self.n_active = torch.randint(1, K + 1, (U,), generator=g)
        self.active = torch.arange(K)[None, :] < self.n_active[:, None]
        self.vectors[~self.active] = 0.0
        self.weights = torch.rand(U, K, T, generator=g) * self.active[:, :, None]  # argmax: an active slot
        self.table = torch.randn(model.micn.n_items, D, generator=g)
        self.calls = []

    def interests(self, batch: Batch, generator=None) -> Routing:
        self.calls.append(generator)
        u = batch.user
        return Routing(capsules=self.vectors[u], active=self.active[u], weights=self.weights[u])


def fixed_setup(monkeypatch, U=60, K=4, T=8, seed=0):
    torch.manual_seed(0)
    model = build_with_micn("din", N_USERS + U, N_ITEMS, N_CATEGORIES, 18, 18, MICNConfig(d_aux=12))
    fixed = FixedMICN(model, U, K, T, seed)
    monkeypatch.setattr(model.micn, "interests", fixed.interests)
    monkeypatch.setattr(model.micn, "item_table", lambda: fixed.table)
    g = torch.Generator().manual_seed(seed + 1)
    hist = torch.randint(2, N_ITEMS, (2 * U, T), generator=g)
    hist[:, :2] = torch.where(torch.arange(2 * U)[:, None] % 5 == 0, 0, hist[:, :2])  # some padded histories
    batch = Batch(user=torch.arange(2 * U) % U, item=torch.randint(2, N_ITEMS, (2 * U,), generator=g),
                  category=torch.randint(2, N_CATEGORIES, (2 * U,), generator=g), hist_items=hist,
                  hist_categories=hist % 3 + 2, hist_neg_items=hist, hist_neg_categories=hist % 3 + 2,
                  hist_len=torch.where(torch.arange(2 * U) % 5 == 0, T - 2, T),
                  label=(torch.arange(2 * U) % 2 == 0).float())  # rows 0, 2, 4, ... positive
    topics = np.full(N_ITEMS, -1)
    topics[2:] = np.arange(2, N_ITEMS) % 3
    topics[7] = -1  # an item of unknown topic is left out of purity
    return model, fixed, sample_set(batch), batch, topics


def test_capsule_evidence_equals_the_definitions_on_a_fixed_routing(monkeypatch):
    model, fixed, data, batch, topics = fixed_setup(monkeypatch)
    max_users = 17
    generator = torch.Generator().manual_seed(123)
    got = capsule_evidence(model, data, topics, generator, batch_size=7, nearest=4, max_users=max_users)
    assert set(got) == KEYS
    # the users: the first 17 positive rows (file order) with >= 2 active capsules
    rows = [r for r in range(len(data)) if batch.label[r] == 1 and fixed.n_active[batch.user[r]] >= 2][:max_users]
    users = batch.user[rows]
    expected = numpy_overlap(fixed.vectors[users].double().numpy(), fixed.active[users].numpy(),
                             fixed.table.double().numpy(), 4)
    assert 0.2 < expected < 0.8 and got["capsule_overlap"] == pytest.approx(expected, abs=1e-12)
    # purity: each behavior to its largest-weight capsule, real positions with a known topic only
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=torch.Generator().manual_seed(123)))
    shuffle = np.random.default_rng(seed)
    purity, shuffled = [], []
    T = batch.hist_items.shape[1]
    for r in rows:
        real = np.arange(T) >= T - int(batch.hist_len[r])
        t = topics[batch.hist_items[r].numpy()]
        keep = real & (t >= 0)
        owner = fixed.weights[batch.user[r]].argmax(dim=0).numpy()[keep]
        purity.append(cluster_purity(owner, t[keep]))
        shuffled.append(cluster_purity(shuffle.permutation(owner), t[keep]))
    assert got["capsule_purity"] == pytest.approx(np.mean(purity), abs=1e-12)
    assert got["capsule_purity_shuffled"] == pytest.approx(np.mean(shuffled), abs=1e-12)
    assert all(g is generator for g in fixed.calls)  # routed with the given generator only
    # batches do not change which users are read, nor what is measured
    again = capsule_evidence(model, data, topics, torch.Generator().manual_seed(123), batch_size=1000, nearest=4,
                             max_users=max_users)
    assert again == got


def test_no_qualifying_user_gives_none(monkeypatch):
    model, fixed, data, batch, topics = fixed_setup(monkeypatch)
    fixed.active[:, 1:] = False  # one capsule each: no pair, no user
    got = capsule_evidence(model, data, topics, torch.Generator().manual_seed(0))
    assert got == dict.fromkeys(KEYS)
    model2, fixed2, data2, _, _ = fixed_setup(monkeypatch)
    unknown = np.full(N_ITEMS, -1)  # no planted topic known: overlap only
    got = capsule_evidence(model2, data2, unknown, torch.Generator().manual_seed(0))
    assert got["capsule_purity"] is None and got["capsule_purity_shuffled"] is None
    assert 0.0 <= got["capsule_overlap"] <= 1.0


def planted(B: int = 40, T: int = 16, seed: int = 0):
    """`planted_batch`'s users mixing two topics (item topic = index mod 2), every fourth row a negative."""
    batch, topics = planted_batch(B, T, seed)
    return dataclasses.replace(batch, label=(torch.arange(B) % 4 != 3).float()), topics


def topic_model(collapsed: bool = False):
    """A capsule-only MICN (no tower) whose e_aux category half separates the two topics; collapsed:
    every item has the same e_aux, so every capsule points the same way."""
    torch.manual_seed(0)
    model = build_with_micn("din", N_USERS, N_ITEMS, N_CATEGORIES, 18, 18,
                            MICNConfig(k_max=2, post_layers=(), n_neg=20), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        model.micn.embedding.item.weight.mul_(0.0)
        model.micn.embedding.category.weight[2] = torch.full((18,), 1.0)
        model.micn.embedding.category.weight[3] = torch.full((18,), 1.0 if collapsed else -1.0)
        model.micn.routing.S.copy_(torch.eye(36))
        if not collapsed:  # items differ a little within a topic, so each topic has its own nearest items
            model.micn.embedding.item.weight.normal_(0, 0.01, generator=torch.Generator().manual_seed(1))
    batch, topics = planted()
    model.train()
    model(batch)  # records item -> category
    return model, batch, topics


def test_capsule_evidence_on_a_built_model_separates_topics_and_changes_nothing():
    model, batch, topics = topic_model()
    model.train()
    model.micn.routing.eval()  # a mixed state, restored module by module
    data = sample_set(batch)
    params = {k: v.clone() for k, v in model.state_dict().items()}
    cpu_rng, np_rng = torch.get_rng_state(), np.random.get_state()
    training_rng = model.rng_state()
    got = capsule_evidence(model, data, topics, torch.Generator().manual_seed(4))
    assert set(got) == KEYS and all(isinstance(v, float) for v in got.values())
    assert got["capsule_purity"] > 0.8 and got["capsule_purity"] > got["capsule_purity_shuffled"] + 0.1
    assert 0.0 <= got["capsule_overlap"] < 0.2  # the two topics' capsules have different nearest items
    assert model.training and model.micn.training and not model.micn.routing.training
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), cpu_rng) and torch.equal(model.rng_state(), training_rng)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_rng))
    assert capsule_evidence(model, data, topics, torch.Generator().manual_seed(4)) == got  # repeatable
    # purity is capsule_purity's: the same users, routed from the same generator state
    g = torch.Generator().manual_seed(4)
    torch.randint(0, 2**31 - 1, (1,), generator=g)  # capsule_evidence's one draw for the shuffle
    positives = Batch(**{f: getattr(batch, f)[batch.label > 0.5] for f in Batch.__dataclass_fields__})
    assert got["capsule_purity"] == capsule_purity(model, [positives], topics, generator=g).purity
    with pytest.raises(ValueError, match="not MICN's training generator"):
        capsule_evidence(model, data, topics, model.micn.generator)


def test_collapsed_capsules_overlap_fully():
    model, batch, topics = topic_model(collapsed=True)
    got = capsule_evidence(model, sample_set(batch), topics, torch.Generator().manual_seed(4))
    assert got["capsule_overlap"] == 1.0


def test_interests_prints_the_overlap_beside_the_purity(tiny_samples, tiny_warehouse, tiny_world, tmp_path):
    import polars as pl

    from micn.data.feature_map import load_feature_map

    samples = add_oracle_inputs(tiny_samples, tiny_warehouse, tiny_world, tmp_path / "samples")
    fmap = load_feature_map(samples)
    model = build_with_micn("din", fmap.n_users, fmap.n_items, fmap.n_categories, 18, 18, MICNConfig())
    torch.save({"model": model.state_dict(), "backbone": "din", "config": {"d_item": 18, "d_category": 18},
                "micn": json_ready(model.micn.cfg), "feature_map": fmap.to_json(), "samples_dir": str(samples)},
               tmp_path / "model.pt")
    test = pl.read_parquet(samples / "test.parquet", columns=["user_id", "label"])
    report = describe_user(tmp_path, test.filter(pl.col("label") == 1)["user_id"][0], items_shown=2).splitlines()
    purity = next(i for i, line in enumerate(report) if line.startswith("capsule purity vs planted topics"))
    overlap = report[purity + 1]
    assert overlap.startswith("capsule overlap, share of the 5 nearest items two capsules of a user have in common")
    assert float(overlap.split(": ")[1].split(" ")[0]) <= 1.0


def json_ready(cfg) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
