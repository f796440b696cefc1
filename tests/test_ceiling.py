"""The history-only ceiling: exact posterior against a brute-force draw from the generator's own
prior, never reading the hidden weights, between popularity and the oracle on synthetic worlds."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from micn.data.ceiling import HistoryOnly
from micn.data.oracle import Oracle
from micn.data.synthetic.catalogue import zipf
from micn.data.synthetic.profiles import Profile
from micn.data.synthetic.sequences import sample_users
from micn.evaluate import auc


def small_world(n_topics: int, rho: float, topics_per_user_p=(0.20, 0.35, 0.27, 0.18), alpha: float = 1.0,
                topic_zipf: float = 0.6) -> HistoryOnly:
    """A HistoryOnly over a catalogue of one item per topic (the item side plays no part in the posterior)."""
    items = np.array([f"i{t:02d}" for t in range(n_topics)])
    return HistoryOnly.build(rho=rho, topic_pop=zipf(n_topics, topic_zipf), topics_per_user_p=topics_per_user_p,
                             alpha=alpha, item_ids=items, item_topic=np.arange(n_topics), item_base=np.ones(n_topics),
                             category_names=items, category_topic=np.arange(n_topics))


def brute_force_posterior(n_topics, rho, history, p_k, alpha, topic_zipf, n_draws, seed):
    """E[w | history] by importance sampling from the GENERATOR's own user draws (sample_users):
    weight each drawn user by the likelihood of the topic sequence. Returns (mean, standard error)."""
    prof = Profile("bf", n_users=n_draws, n_items=n_topics, n_categories=n_topics, n_reviews=5 * n_draws,
                   n_topics=n_topics, rho=rho, topics_per_user_p=p_k, dirichlet_alpha=alpha, topic_zipf=topic_zipf)
    users = sample_users(prof, SimpleNamespace(topic_pop=zipf(n_topics, topic_zipf)), np.random.default_rng(seed))
    w = np.zeros((n_draws, n_topics))
    held = users.topics >= 0
    w[np.nonzero(held)[0], users.topics[held]] = users.weights[held]
    like = w[:, history[0]].copy()
    for prev, cur in zip(history[:-1], history[1:], strict=True):
        like *= rho * (cur == prev) + (1 - rho) * w[:, cur]
    mean = (like[:, None] * w).sum(0) / like.sum()
    # delta-method standard error of a self-normalised importance-sampling mean
    se = np.sqrt(((like[:, None] * (w - mean)) ** 2).sum(0)) / like.sum()
    return mean, se


@pytest.mark.parametrize(("history", "p_k", "alpha"), [
    ([0, 0, 0, 0, 0, 0], (0.20, 0.35, 0.27, 0.18), 1.0),
    ([2, 2, 0, 0, 2, 4, 4], (0.20, 0.35, 0.27, 0.18), 1.0),
    ([1, 3, 3, 1, 0, 0, 0, 2], (0.1, 0.2, 0.3, 0.4), 0.5),  # four topics seen: k = 4 is pinned
    ([4, 4, 4, 3], (0.5, 0.5), 2.0),
])
def test_posterior_equals_importance_sampling_from_the_generators_prior(history, p_k, alpha):
    n_topics, rho = 5, 0.6
    exact = small_world(n_topics, rho, p_k, alpha).posterior_weights(np.array([history]))[0]
    mean, se = brute_force_posterior(n_topics, rho, np.array(history), p_k, alpha, 0.6, 400_000, seed=1)
    assert exact.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.abs(exact - mean) <= 4.5 * se + 1e-4), (exact, mean, se)


def test_unknown_positions_padding_and_empty_histories():
    world = small_world(6, 0.6)
    prior = world.posterior_weights(np.full((1, 4), -1))[0]
    # empty history: the prior mean E[w_t] = sum_k p_k P(t in S | k) / k
    expected = sum(world.p_k[k - 1] * world._z(np.array([np.uint64(1) << np.uint64(t) for t in range(6)]))[:, k - 1] / k
                   for k in range(1, 5))
    np.testing.assert_allclose(prior, expected, rtol=1e-12)
    # left padding changes nothing
    a = world.posterior_weights(np.array([[-1, -1, 2, 2, 3]]))
    np.testing.assert_allclose(a, world.posterior_weights(np.array([[2, 2, 3]])), rtol=1e-12)
    # an unknown position between two equal topics is two chain steps: stay probability rho ** 2
    gap = world.posterior_weights(np.array([[2, -1, 2]]))
    direct = small_world(6, 0.36).posterior_weights(np.array([[2, 2]]))
    np.testing.assert_allclose(gap, direct, rtol=1e-12)
    # the next topic after a gap at the end stays with rho ** 2
    p = world.next_topic_proba(np.array([[2, 2, -1]]))[0]
    w = world.posterior_weights(np.array([[2, 2]]))[0]
    np.testing.assert_allclose(p, 0.64 * w + 0.36 * np.eye(6)[2], rtol=1e-12)
    with pytest.raises(ValueError, match="at most 4"):
        world.posterior_weights(np.array([[0, 1, 2, 3, 4]]))


def test_a_single_topic_prior_makes_the_history_pin_the_user_and_both_scorers_agree(tiny_world):
    """If every user holds one topic, one visible item reveals the user's whole mixture."""
    oracle = Oracle.load(tiny_world)
    single = np.flatnonzero((oracle.user_topics >= 0).sum(axis=1) == 1)
    assert len(single) > 10
    ceiling = HistoryOnly.load(tiny_world)
    ceiling = HistoryOnly.build(rho=ceiling.rho, topic_pop=ceiling.topic_pop, topics_per_user_p=(1.0,), alpha=1.0,
                                item_ids=ceiling.item_ids, item_topic=ceiling.item_topic, item_base=ceiling.item_base,
                                category_names=ceiling.category_names, category_topic=ceiling.category_topic)
    rng = np.random.default_rng(0)
    users = oracle.user_ids[single]
    t = oracle.user_topics[single, 0]
    items_of = [np.flatnonzero(oracle.item_topic == z) for z in t]
    last = np.array([oracle.item_ids[rng.choice(ix)] for ix in items_of])
    cand = oracle.item_ids[rng.integers(0, len(oracle.item_ids), len(users))]
    topics = np.stack([np.full(len(users), -1), t], axis=1)  # (U, 2): one visible item
    np.testing.assert_allclose(ceiling.score(topics, cand), oracle.score(users, last, cand), rtol=1e-12)


def test_long_single_topic_histories_score_close_to_the_oracle(tiny_world):
    """With the world's real prior, 20 behaviors in one topic nearly pin a single-topic user."""
    oracle = Oracle.load(tiny_world)
    ceiling = HistoryOnly.load(tiny_world)
    single = np.flatnonzero((oracle.user_topics >= 0).sum(axis=1) == 1)
    z = oracle.user_topics[single, 0]
    p = ceiling.next_topic_proba(np.repeat(z[:, None], 20, axis=1))  # (U, T)
    np.testing.assert_allclose(p[np.arange(len(z)), z], 1.0, atol=0.03)  # the oracle's value: 1
    assert p.sum(axis=1) == pytest.approx(1.0)
    last = np.array([oracle.item_ids[np.flatnonzero(oracle.item_topic == t)[0]] for t in z])
    same = np.array([oracle.item_ids[np.flatnonzero(oracle.item_topic == t)[-1]] for t in z])
    np.testing.assert_allclose(ceiling.score(np.repeat(z[:, None], 20, axis=1), same),
                               oracle.score(oracle.user_ids[single], last, same), rtol=0.03)


def world_samples(prof: Profile, seed: int, max_len: int):
    """Per user of a freshly sampled world: its visible history (the last max_len topics before the
    last behavior), the last behavior as positive and a popularity-drawn negative (as `dien`)."""
    from micn.data.synthetic.world import RandomStreams, sample_world

    world = sample_world(prof, RandomStreams.from_seed(seed))
    r = world.reviews
    ends = np.cumsum(world.users.lengths)  # (U,) one past each user's last review
    target = r.item[ends - 1]
    pos = ends[:, None] - 1 - max_len + np.arange(max_len)[None, :]  # (U, L)
    starts = ends - world.users.lengths
    hist_topic = np.where(pos >= starts[:, None], r.topic[pos.clip(0)], -1)
    hist_item = np.where(pos >= starts[:, None], r.item[pos.clip(0)], -1)
    counts = world.item_counts
    negative = np.random.default_rng(seed).choice(len(counts), size=len(target), p=counts / counts.sum())
    return world, hist_topic, hist_item, target, negative, counts / counts.sum()


@pytest.mark.parametrize("kappa", [1.0, 0.3])
def test_on_average_popularity_below_history_only_below_oracle(kappa):
    """AUC over 3 worlds of 4,000 users each (the expectation the ceiling promises, not one noisy draw);
    at kappa < 1 the topics are the items' served topics and P(i | t) replaces P(c | t) P(i | c)."""
    prof = Profile("mid", n_users=4_000, n_items=600, n_categories=30, n_reviews=60_000, n_topics=8, kappa=kappa)
    aucs = {"popularity": [], "history": [], "oracle": []}
    for seed in range(3):
        world, topics, items, target, negative, q = world_samples(prof, seed, max_len=10)
        cat = world.catalogue
        item_ids = np.array([f"i{j:05d}" for j in range(prof.n_items)])
        base = cat.p_item_topic  # kappa = 1: exactly cat.p_cat[cat.item_cat] * cat.p_item
        ceiling = HistoryOnly.build(rho=prof.rho, topic_pop=cat.topic_pop, topics_per_user_p=prof.topics_per_user_p,
                                    alpha=prof.dirichlet_alpha, item_ids=item_ids,
                                    item_topic=cat.item_topic, item_base=base,
                                    category_names=np.array([f"c{c:03d}" for c in range(prof.n_categories)]),
                                    category_topic=cat.cat_topic)
        w = np.zeros((prof.n_users, prof.n_topics))
        held = world.users.topics >= 0
        w[np.nonzero(held)[0], world.users.topics[held]] = world.users.weights[held]
        cand = np.concatenate([target, negative])
        label = np.r_[np.ones(len(target)), np.zeros(len(target))]
        rows = np.r_[np.arange(len(target)), np.arange(len(target))]
        z_last = topics[rows, -1]
        z_cand = ceiling.item_topic[cand]
        p_oracle = (prof.rho * (z_last == z_cand) + (1 - prof.rho) * w[rows, z_cand]) * base[cand]
        p_hist = ceiling.score(topics[rows], item_ids[cand])
        aucs["oracle"].append(auc(label, p_oracle / (p_oracle + q[cand])))
        aucs["history"].append(auc(label, p_hist / (p_hist + q[cand])))
        aucs["popularity"].append(auc(label, q[cand]))
    mean = {name: float(np.mean(v)) for name, v in aucs.items()}
    assert mean["popularity"] + 0.2 < mean["history"] < mean["oracle"], aucs
    assert mean["oracle"] - mean["history"] < 0.05, aucs  # the weights are largely readable from 10 behaviors


@pytest.fixture(scope="module", params=["dien", "din"])
def samples(request, tiny_samples, tiny_warehouse, tiny_world, tmp_path_factory):
    """The tiny samples of each protocol with the oracle's inputs, in a private copy (a test here
    renames a file)."""
    from micn.data.samples.build import build_samples
    from tests.helpers import add_oracle_inputs

    root = tmp_path_factory.mktemp(f"ceiling_{request.param}")
    if request.param == "dien":
        shutil.copytree(tiny_samples, root / "built")
    else:
        build_samples(tiny_warehouse, "tiny", root / "built", protocol="din", max_len=10, seed=1)
    return add_oracle_inputs(root / "built", tiny_warehouse, tiny_world, root / "samples")


def test_history_only_auc_never_reads_the_hidden_weights(samples):
    import dataclasses

    from micn.data.dataset import SampleSet, load_feature_map
    from micn.evaluate import history_only_auc, oracle_auc

    fmap = load_feature_map(samples)
    splits = [SampleSet.from_parquet(samples / f"{s}.parquet", fmap) for s in ("train", "valid", "test")]
    oracle = [oracle_auc(d, fmap, samples) for d in splits]
    before = [history_only_auc(d, fmap, samples) for d in splits]
    (samples / "oracle" / "users.parquet").rename(samples / "oracle" / "users.parquet.hidden")
    try:
        after = [history_only_auc(d, fmap, samples) for d in splits]
        with pytest.raises(Exception, match="users.parquet"):
            oracle_auc(splits[2], fmap, samples)  # the oracle does need them: the file really is gone
    finally:
        (samples / "oracle" / "users.parquet.hidden").rename(samples / "oracle" / "users.parquet")
    assert after == before
    assert all(0.5 < h <= 1.0 for h in after)
    assert history_only_auc(splits[2], dataclasses.replace(fmap, oracle=None), samples) is None  # real data
    # the train split (dien 480 rows, din 4,740) is the least noisy comparison tiny offers; the
    # expectation itself is tested on larger worlds above
    assert after[0] <= oracle[0], (after, oracle)
    assert after[0] > oracle[0] - 0.05, (after, oracle)


def test_history_only_scores_use_the_visible_history_through_the_vocabularies(samples, tiny_world):
    """The topics read through vocab_item/vocab_category equal the generator's topics of the raw items."""
    from micn.data.dataset import SampleSet, load_feature_map
    from micn.evaluate import vocabulary

    fmap = load_feature_map(samples)
    data = SampleSet.from_parquet(samples / "test.parquet", fmap)
    ceiling = HistoryOnly.load(samples / "oracle")
    items = vocabulary(samples, fmap, "item", fmap.n_items)
    cats = vocabulary(samples, fmap, "category", fmap.n_categories)
    topics = ceiling.history_topics(data.hist_items.numpy(), data.hist_categories.numpy(), items, cats)
    real = data.hist_items.numpy() > 0
    assert ((topics >= 0) == real).all()  # every visible position has a topic (OOV items by category), padding none
    oracle = Oracle.load(tiny_world)
    last = oracle.item_topic[oracle.item_index(data.last_hist_item_ids)]
    assert (topics[:, -1] == last).all()


def kappa_rows(world_dir, public_dir, seed: int, max_len: int = 10):
    """Every review after a user's first, of a generated world, as a (positive, popularity negative)
    pair: the oracle's and the history-only click probabilities (the latter from `public_dir`,
    which holds no users.parquet, through history_topics with an item vocabulary) and popularity."""
    import gzip
    import json

    oracle, ceiling = Oracle.load(world_dir), HistoryOnly.load(public_dir)
    summary = json.loads((world_dir / "ground_truth" / "world.json").read_text())
    with gzip.open(world_dir / summary["files"]["reviews"], "rt") as f:
        reviews = sorted((r["reviewerID"], r["unixReviewTime"], r["asin"]) for r in map(json.loads, f))
    user = np.array([r[0] for r in reviews])
    item = oracle.item_index([r[2] for r in reviews])  # (N,)
    first = np.r_[True, user[1:] != user[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(user)), 0))
    rows = np.flatnonzero(~first)  # (R,)
    window = rows[:, None] - max_len + np.arange(max_len)[None, :]  # (R, L)
    hist = np.where(window >= start[rows, None], item[window.clip(0)] + 2, 0)  # vocabulary index = item + 2
    topics = ceiling.history_topics(hist, np.zeros_like(hist), [None, None, *oracle.item_ids], [None, None])
    q = np.bincount(item, minlength=len(oracle.item_ids)) / len(item)
    negative = np.random.default_rng(seed).choice(len(q), size=len(rows), p=q)
    cand = oracle.item_ids[np.r_[item[rows], negative]]
    both = np.r_[rows, rows]
    label = np.r_[np.ones(len(rows)), np.zeros(len(rows))]
    p_oracle = oracle.click_proba(user[both], oracle.item_ids[item[both - 1]], cand, q)
    p_hist = ceiling.click_proba(np.r_[topics, topics], cand, q)
    return label, p_oracle, p_hist, q[oracle.item_index(cand)]


def test_history_only_at_kappa_below_one_reads_served_topics_without_the_users(tmp_path):
    """Three tiny worlds at kappa = 0.3: the ceiling, loaded from a folder without users.parquet,
    sits between popularity and the oracle on average (2,700 pairs a world; 0.871 vs 0.894 at seeds 0-2)."""
    from micn.data.synthetic import generate_world

    aucs = {"popularity": [], "history": [], "oracle": []}
    for seed in range(3):
        world = tmp_path / f"w{seed}"
        generate_world("tiny", world, seed=seed, kappa=0.3)
        public = tmp_path / f"public{seed}"
        public.mkdir()
        for name in ("world.json", "items.parquet", "categories.parquet"):
            shutil.copy(world / "ground_truth" / name, public / name)
        label, p_oracle, p_hist, q = kappa_rows(world, public, seed)
        aucs["oracle"].append(auc(label, p_oracle))
        aucs["history"].append(auc(label, p_hist))
        aucs["popularity"].append(auc(label, q))
    mean = {name: float(np.mean(v)) for name, v in aucs.items()}
    assert mean["popularity"] + 0.2 < mean["history"] < mean["oracle"] < mean["history"] + 0.05, aucs


def test_categories_pin_a_topic_only_when_all_their_items_serve_it(tiny_world, tmp_path):
    """At kappa = 1 every category pins its topic (categories.parquet's); at kappa < 1 an OOV history
    item's category pins one only if every item of the category serves that topic, else it is unknown."""
    import polars as pl

    from micn.data.ceiling import _category_topic
    from micn.data.synthetic import generate_world

    cats = pl.read_parquet(tiny_world / "ground_truth" / "categories.parquet").sort("category")
    np.testing.assert_array_equal(HistoryOnly.load(tiny_world).category_topic, cats["topic"].to_numpy())
    names = np.array(["a", "b", "c", "d"])
    got = _category_topic(names, np.array([0, 1, 2, 3]), np.array(["a", "a", "b", "b", "c"]),
                          np.array([0, 0, 1, 2, 0]))  # a: all 0; b: 1 and 2; c: all 0, not its own 2; d: no item
    np.testing.assert_array_equal(got, [0, -1, 0, 3])

    generate_world("tiny", tmp_path, seed=7, kappa=0.3)
    ceiling = HistoryOnly.load(tmp_path)
    items = pl.read_parquet(tmp_path / "ground_truth" / "items.parquet")
    mixed = items.group_by("category").agg(pl.col("topic").n_unique().alias("n")).filter(pl.col("n") > 1)
    assert mixed.height > 0
    c = int(np.searchsorted(ceiling.category_names, mixed["category"][0]))
    assert ceiling.category_topic[c] == -1
    # an OOV item (index 1) of that category tells no topic; an in-vocabulary item its served topic
    topics = ceiling.history_topics(np.array([[1, 2]]), np.array([[2, 2]]), [None, None, ceiling.item_ids[5]],
                                    [None, None, ceiling.category_names[c]])
    np.testing.assert_array_equal(topics, [[-1, ceiling.item_topic[5]]])
