"""Topics, categories and items of a synthetic world, with their probabilities.

Dimensions: T topics, C categories, I items. Internal indices are grouped (categories by topic,
items by category, most popular first); the public ids are scrambled (`ids.py`), so this order
never shows in the files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from micn.data.synthetic.profiles import Profile
from micn.data.synthetic.vocab import VOCAB


@dataclass(frozen=True, eq=False)
class Catalogue:
    """The world's taxonomy and its probabilities (draw stream 0)."""

    topic_pop: np.ndarray  # (T,) float64, topic popularity pi_t, sums to 1
    topic_names: list[str]  # (T,) department names
    cat_topic: np.ndarray  # (C,) int, the topic of each category, non-decreasing
    p_cat: np.ndarray  # (C,) float64, P(c | topic(c)); sums to 1 within each topic
    cat_cdf: np.ndarray  # (C,) float64, grouped CDF over categories (see `grouped_cdf`)
    cat_names: list[str]  # (C,) unique "<modifier> <noun>" names
    cat_noun: list[str]  # (C,) the noun of each category name (used in titles)
    cat_has_mid: np.ndarray  # (C,) bool, the category path has an extra "Accessories" level
    item_cat: np.ndarray  # (I,) int, the category of each item, non-decreasing
    p_item: np.ndarray  # (I,) float64, P(i | cat(i)); sums to 1 within each category
    item_cdf: np.ndarray  # (I,) float64, grouped CDF over items
    item_rank_in_cat: np.ndarray  # (I,) int, 0 = the most popular item of its category
    vocab: dict[str, list[str]]  # word lists of the profile's main category
    # The topic each item serves and the sequences' P(i | t) (`serve_topics`; at kappa = 1 the
    # category's topic and P(c | t) P(i | c), with no draw).
    item_topic: np.ndarray  # (I,) int, the topic item i serves, s_i
    p_item_topic: np.ndarray  # (I,) float64, P(i | s_i); sums to 1 over the items serving each topic
    topic_items: np.ndarray  # (I,) int, item indices grouped by served topic (stable: index order within)
    topic_item_cdf: np.ndarray  # (I,) float64, grouped CDF over `topic_items` (see `grouped_cdf`)

    @property
    def n_topics(self) -> int:
        return len(self.topic_pop)


def sample_catalogue(prof: Profile, rng: np.random.Generator) -> Catalogue:
    """Topics, categories and items with their probabilities."""
    T, C, I = prof.n_topics, prof.n_categories, prof.n_items
    topic_pop = zipf(T, prof.topic_zipf)
    cats_per_topic = 1 + rng.multinomial(C - T, np.full(T, 1.0 / T))
    cat_topic = np.repeat(np.arange(T), cats_per_topic)  # (C,)
    p_cat = grouped_zipf(cats_per_topic, prof.category_zipf)  # (C,) P(c | topic(c))
    pop = (topic_pop[cat_topic] * p_cat) ** prof.items_per_category_power
    items_per_cat = 1 + rng.multinomial(I - C, pop / pop.sum())
    item_cat = np.repeat(np.arange(C), items_per_cat)  # (I,)
    p_item = grouped_zipf(items_per_cat, prof.item_zipf)  # (I,) P(i | cat(i))

    vocab = VOCAB.get(prof.main_category, VOCAB["Electronics"])
    deps = vocab["departments"]
    topic_names = [deps[t % len(deps)] + ("" if t < len(deps) else f" {t // len(deps) + 1}") for t in range(T)]
    combos = [f"{m} {n}" for m in vocab["modifiers"] for n in vocab["nouns"]]
    perm = rng.permutation(max(C, len(combos)))
    cat_names = [combos[j % len(combos)] + ("" if j < len(combos) else f" {j // len(combos) + 1}") for j in perm[:C]]
    assert len(set(cat_names)) == C, "category names must be unique (the vocabulary holds a duplicate combination)"
    # Some categories sit one level deeper in the path, so that readers must take the LAST element.
    cat_has_mid = rng.random(C) < 0.25
    home = cat_topic[item_cat]  # (I,) the topic of each item's category
    return Catalogue(
        topic_pop=topic_pop,
        topic_names=topic_names,
        cat_topic=cat_topic,
        p_cat=p_cat,
        cat_cdf=grouped_cdf(cat_topic, p_cat),
        cat_names=cat_names,
        cat_noun=[name.split(" ", 1)[1] if " " in name else name for name in cat_names],
        cat_has_mid=cat_has_mid,
        item_cat=item_cat,
        p_item=p_item,
        item_cdf=grouped_cdf(item_cat, p_item),
        item_rank_in_cat=np.arange(I) - np.repeat(np.cumsum(items_per_cat) - items_per_cat, items_per_cat),
        vocab=vocab,
        **_served(home, p_cat[item_cat] * p_item, normalise=False),  # grouped by category, so by topic
    )


def serve_topics(prof: Profile, catalogue: Catalogue, rng: np.random.Generator) -> Catalogue:
    """The catalogue with each item's served topic s_i (draw stream `interests`, used only when kappa < 1).

    s_i = topic(c_i) with probability kappa, else a topic drawn by popularity pi independently of
    the category (it may be topic(c_i) again). Both draws are made for every item whatever kappa,
    so two kappas < 1 of one seed share them (a smaller kappa only moves more items). Then every
    topic that no item serves gets its anchor item back (the most popular item of the topic's most
    popular category, which serves it at kappa = 1), repeated until no topic is empty (at most T
    rounds: an anchor put back is never moved again, since its topic then has an item).
    P(i | t) is P(c_i | topic(c_i)) P(i | c_i) renormalised over the items serving t.
    At kappa = 1 the catalogue is returned as it is and `rng` is not touched.
    """
    if prof.kappa == 1.0:
        return catalogue
    cat, T, I = catalogue, prof.n_topics, prof.n_items
    home = cat.cat_topic[cat.item_cat]  # (I,)
    keep = rng.random(I) < prof.kappa
    drawn = np.searchsorted(np.cumsum(cat.topic_pop), rng.random(I), side="right").clip(max=T - 1)
    served = np.where(keep, home, drawn)
    anchor = np.searchsorted(cat.item_cat, np.searchsorted(cat.cat_topic, np.arange(T)))  # (T,) rank-0 items
    while (empty := np.flatnonzero(np.bincount(served, minlength=T) == 0)).size:
        served[anchor[empty]] = empty
    return replace(cat, **_served(served, cat.p_cat[cat.item_cat] * cat.p_item, normalise=True))


def _served(served: np.ndarray, base: np.ndarray, normalise: bool) -> dict[str, np.ndarray]:
    """The served-topic fields of `Catalogue` from s_i (I,) and the weights P(c_i | topic(c_i)) P(i | c_i)
    (I,). Without `normalise` the weights are taken as P(i | s_i) as they are (kappa = 1: they sum to 1
    over each topic's items by construction)."""
    order = np.argsort(served, kind="stable")
    p = base
    if normalise:
        p = base / np.bincount(served, weights=base, minlength=int(served.max()) + 1)[served]
    return {
        "item_topic": served,
        "p_item_topic": p,
        "topic_items": order,
        "topic_item_cdf": grouped_cdf(served[order], p[order]),
    }


def zipf(n: int, s: float) -> np.ndarray:
    """(n,) probabilities proportional to 1 / rank ** s."""
    p = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return p / p.sum()


def grouped_zipf(group_sizes: np.ndarray, s: float) -> np.ndarray:
    """Zipf-like probabilities within consecutive groups (rank = position in the group), each summing to 1."""
    starts = np.cumsum(group_sizes) - group_sizes
    rank = np.arange(int(group_sizes.sum())) - np.repeat(starts, group_sizes)
    w = 1.0 / (rank + 1.0) ** s
    sums = np.add.reduceat(w, starts)
    return w / np.repeat(sums, group_sizes)


def grouped_cdf(group_of: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Global CDF for inverse sampling inside groups: element k of group g holds g + cumsum_in_group.

    One `np.searchsorted(cdf, g + u, side="right")` then draws an element of group g for many
    (g, u) at once. The last element of each group is set to exactly g + 1, so rounding can never
    spill a draw into the next group.
    """
    sizes = np.bincount(group_of)
    starts = np.cumsum(sizes) - sizes
    within = np.cumsum(p) - np.repeat(np.cumsum(p)[starts] - p[starts], sizes)
    within[starts + sizes - 1] = 1.0
    return group_of.astype(np.float64) + within
