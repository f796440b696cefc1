"""The history-only ceiling of a synthetic world: the best scorer that does not know the user's weights.

Why: the oracle (`micn.data.oracle`) knows each user's hidden topic weights w_u, which no model
can see, so the gap "oracle AUC - model AUC" overstates the headroom. `HistoryOnly` is the
Bayes-optimal scorer given what a model is shown: the world's PUBLIC structure (the topic each
item serves, P(i | t), rho, and the prior over user mixtures exactly as
`micn.data.synthetic.sequences.sample_users` draws it) and the user's VISIBLE history (the last
`max_len` behaviors of the sample, as the model sees them). It never reads `users.parquet`.

Prior over a user's mixture (the generator's draws): k ~ `topics_per_user_p` (cut to
K = min(len, T) and renormalised); the held set S is the top k of a Plackett-Luce ordering of the
topics by popularity pi = zipf(T, topic_zipf) (Gumbel-top-k), so
P(S | k) = sum over orderings sigma of S of prod_i pi_sigma_i / (1 - sum_{j<i} pi_sigma_j);
w ~ Dirichlet(alpha, ..., alpha) over S.

Posterior, exactly (no Monte-Carlo, so no sampling error: the standard error is 0):
* The topic chain starts at z_1 ~ w, and w is the stationary law of P(z' | z) = rho 1[z'=z] +
  (1-rho) w[z'], so a window cut out of a longer sequence is distributed like a whole one: the
  truncation to `max_len` changes nothing in the formula, only how much evidence there is.
* Each history item pins its topic (each item serves exactly one topic: items.parquet's `topic`,
  its category's topic when the world's kappa = 1), and P(i | t) does not depend on w, so the
  likelihood of the history given (S, w) is, up to a constant,
      L(w) = w[z_1] * prod_j (rho_j 1[z_j = z_{j-1}] + (1 - rho_j) w[z_j]),   rho_j = rho ** gap_j,
  zero unless S contains every observed topic O. gap_j = 1 between adjacent known positions;
  a position whose topic cannot be read from the sample (an out-of-vocabulary item whose category
  is `default_cat`, or, when kappa < 1, whose category holds items serving different topics) is
  marginalised as if its item told nothing about its topic (two steps of the chain: rho ** 2),
  which is exact for that position's topic but ignores the little its category would tell; they
  are rare (none in the default world's test split; at kappa < 1 an OOV item's category pins its
  topic only if every item of the category serves one topic).
* L(w) is a polynomial in the w_t, t in O. By symmetry of the Dirichlet, E[prod_t w_t^a_t | k] =
  Gamma(k alpha) / Gamma(k alpha + A) * prod_t Gamma(alpha + a_t) / Gamma(alpha), A = sum a_t,
  which depends on S only through k. So the marginal likelihood M_k, the posterior means
  E[w_t | k, history] (for t in O; the same value h_k for every t in S \\ O) are closed forms, and
      P(k | history)       ∝ p_k * Z_k(O) * M_k,         Z_k(O) = P(S ⊇ O | k),
      E[w_t | history]     = sum_k P(k | history) * (E[w_t | k, h] if t in O else h_k * Z_k(O+t) / Z_k(O)).
  Z_k is tabulated once per world over all sets of <= K topics (sum_k C(T, k) 2^k entries: 6k
  for the default world's 10 topics, 1.5M for electronics' 40).
* The next behavior's topic: P(z' | history) = rho^g 1[z' = z_last] + (1 - rho^g) E[w_z' | history]
  (g = 1 when the last history position is known), then times P(i | t) as in the oracle.

Cost (measured, one core): the default world's test split (4,000 rows, L = 20, T = 10) in 0.15 s;
electronics' shape (38,000 test rows, T = 40) in 3 s at L = 20 and 11 s at L = 50, of which 0.9 s
is the Z_k table; books' 64 topics take 7 s for the table.

Dimension glossary: R histories (samples), L history length (`max_len`), T topics, K the most
topics a user can hold (4), P = L + 1 polynomial degrees, I catalogue items.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from micn.data.oracle import NegativeProba, _lookup, negative_q, read_items
from micn.data.synthetic.catalogue import zipf

__all__ = ["HistoryOnly", "DEFAULT_CATEGORY"]

DEFAULT_CATEGORY = "default_cat"  # the ingest's category of an item without metadata (tells no topic)
PUBLIC_FILES = ("world.json", "items.parquet", "categories.parquet")  # never users.parquet


@dataclass(frozen=True, eq=False)
class HistoryOnly:
    """Bayes-optimal next-item probabilities from the public structure and the visible history.

    Build it with `HistoryOnly.load(oracle_dir)` (the samples' `oracle/` folder or a world's
    `ground_truth/`) or `HistoryOnly.build(...)` from arrays."""

    rho: float
    alpha: float  # Dirichlet concentration of the mixture weights
    topic_pop: np.ndarray  # (T,) pi, the Plackett-Luce weights of the topic-set draw
    p_k: np.ndarray  # (K,) P(user holds k topics), k = 1..K
    item_ids: np.ndarray  # (I,) str, sorted ascending
    item_topic: np.ndarray  # (I,) int32, the topic the item serves
    item_base: np.ndarray  # (I,) float64, P(i | topic(i))
    category_names: np.ndarray  # (C,) str, sorted ascending
    category_topic: np.ndarray  # (C,) int32, the one topic all the category's items serve, -1 if several
    z_masks: np.ndarray  # (M,) uint64 sorted: bit sets O of <= K topics
    z_table: np.ndarray  # (M, K) float64: Z_k(O) = P(S ⊇ O | |S| = k)

    @property
    def n_topics(self) -> int:
        return len(self.topic_pop)

    @property
    def k_max(self) -> int:
        return len(self.p_k)

    @classmethod
    def load(cls, oracle_dir: str | Path) -> HistoryOnly:
        """Read world.json, items.parquet and categories.parquet (never users.parquet) of a world."""
        root = Path(oracle_dir)
        gt = root / "ground_truth" if (root / "ground_truth").is_dir() else root
        missing = [str(gt / f) for f in PUBLIC_FILES if not (gt / f).is_file()]
        if missing:
            raise ValueError(f"no synthetic world structure under {str(root)!r}: missing {missing}")
        world = json.loads((gt / "world.json").read_text(encoding="utf-8"))
        params = world["profile_params"]
        item_ids, item_topic, item_category, item_base = read_items(gt)
        cats = pq.read_table(gt / "categories.parquet", columns=["category", "topic"]).sort_by("category")
        category_names = np.asarray(cats.column("category").to_pylist(), dtype=str)
        return cls.build(
            rho=float(world["rho"]),
            topic_pop=zipf(int(world["n_topics"]), float(params["topic_zipf"])),
            topics_per_user_p=params["topics_per_user_p"],
            alpha=float(params["dirichlet_alpha"]),
            item_ids=item_ids,
            item_topic=item_topic,
            item_base=item_base,
            category_names=category_names,
            category_topic=_category_topic(category_names, cats.column("topic").to_numpy(), item_category,
                                           item_topic),
        )

    @classmethod
    def build(cls, rho: float, topic_pop: np.ndarray, topics_per_user_p: Sequence[float], alpha: float,
              item_ids: np.ndarray, item_topic: np.ndarray, item_base: np.ndarray,
              category_names: np.ndarray, category_topic: np.ndarray) -> HistoryOnly:
        """From the world's public parameters (the prior over k is cut to K = min(len, T) like the generator)."""
        pi = np.asarray(topic_pop, dtype=np.float64)
        k_max = min(len(topics_per_user_p), len(pi))
        p_k = np.asarray(topics_per_user_p[:k_max], dtype=np.float64)
        masks, table = _subset_table(pi, k_max)
        return cls(rho=float(rho), alpha=float(alpha), topic_pop=pi, p_k=p_k / p_k.sum(),
                   item_ids=np.asarray(item_ids, dtype=str), item_topic=np.asarray(item_topic, dtype=np.int32),
                   item_base=np.asarray(item_base, dtype=np.float64),
                   category_names=np.asarray(category_names, dtype=str),
                   category_topic=np.asarray(category_topic, dtype=np.int32), z_masks=masks, z_table=table)

    # ----------------------------------------------------------------------------------------
    # What the model sees -> topics
    # ----------------------------------------------------------------------------------------

    def history_topics(self, hist_items: np.ndarray, hist_categories: np.ndarray, item_vocab: Sequence,
                       category_vocab: Sequence) -> np.ndarray:
        """(R, L) int: the topic of every visible history position, -1 where none can be read.

        `hist_items`/`hist_categories` are the samples' vocabulary indexes (0 padding, 1 OOV);
        `item_vocab[j]` / `category_vocab[j]` the raw id / category name of index j (None for 0, 1).
        An in-vocabulary item gives the topic it serves (public structure, like P(i | t)); an OOV item
        gives its category's topic, unless the category is unknown, `default_cat`, or holds items
        serving different topics (kappa < 1; `category_topic` -1).
        """
        item_t = self._topics_of(np.asarray(item_vocab, dtype=object), self.item_ids, self.item_topic)
        cat_t = self._topics_of(np.asarray(category_vocab, dtype=object), self.category_names, self.category_topic)
        hi, hc = np.asarray(hist_items), np.asarray(hist_categories)
        from_item = item_t[hi]  # (R, L)
        return np.where(from_item >= 0, from_item, cat_t[hc]).astype(np.int64)

    @staticmethod
    def _topics_of(vocab: np.ndarray, sorted_ids: np.ndarray, topic: np.ndarray) -> np.ndarray:
        """(V,) topic of each vocabulary index; -1 for padding, OOV, `default_cat` and unknown ids."""
        out = np.full(len(vocab), -1, dtype=np.int64)
        names = np.array(["" if v is None else str(v) for v in vocab], dtype=str)
        pos = np.searchsorted(sorted_ids, names).clip(0, max(len(sorted_ids) - 1, 0))
        found = (names != "") & (len(sorted_ids) > 0) & (sorted_ids[pos] == names) & (names != DEFAULT_CATEGORY)
        out[found] = topic[pos[found]]
        return out

    # ----------------------------------------------------------------------------------------
    # Posterior
    # ----------------------------------------------------------------------------------------

    def posterior_weights(self, topics: np.ndarray) -> np.ndarray:
        """(R, T) E[w_u | visible history] for each row of `topics` ((R, L) int, -1 = unknown/padding,
        most recent last). Rows sum to 1. Exact (closed form, module docstring): the history's
        likelihood as a polynomial in the weights (`_likelihood_coefficients`), its Dirichlet
        moments per number of held topics k (`_moments_per_k`), then P(k | history) and the mean."""
        topics = np.asarray(topics, dtype=np.int64)
        if topics.ndim != 2:
            raise ValueError(f"topics must be (R, L), got shape {topics.shape}")
        R, T, K = len(topics), self.n_topics, self.k_max
        if R == 0:
            return np.zeros((0, T))
        present, n_obs, slot_of = self._observed(topics)
        S = max(int(n_obs.max()), 1)
        log_m, g, h = self._moments_per_k(self._likelihood_coefficients(topics, slot_of, S))

        bits = np.left_shift(np.uint64(1), np.arange(T, dtype=np.uint64))  # (T,)
        mask = (present.astype(np.uint64) * bits).sum(axis=1, dtype=np.uint64)  # (R,)
        z_o = self._z(mask)  # (R, K)
        z_ot = self._z((mask[:, None] | bits[None, :]).ravel()).reshape(R, T, K)  # (R, T, K)
        ks = np.arange(1, K + 1)
        with np.errstate(divide="ignore"):
            log_post = np.log(self.p_k) + np.log(z_o) + np.where(ks[None, :] >= n_obs[:, None], log_m, -np.inf)
        if not np.isfinite(log_post).any(axis=1).all():
            bad = int(np.flatnonzero(~np.isfinite(log_post).any(axis=1))[0])
            raise ValueError(f"history row {bad} is impossible under this world's prior (rho={self.rho}): "
                             "these samples do not come from this world")
        post = np.exp(log_post - _logsumexp(log_post, axis=1)[:, None])  # (R, K) P(k | h)

        ratio = np.divide(z_ot, z_o[:, None, :], out=np.zeros_like(z_ot), where=z_o[:, None, :] > 0)  # (R, T, K)
        w = np.einsum("rk,rk,rtk->rt", post, h, ratio)  # unobserved topics
        g_topic = np.take_along_axis(g, slot_of.clip(0, S - 1)[:, None, :].repeat(K, axis=1), axis=2)  # (R, K, T)
        w_obs = np.einsum("rk,rkt->rt", post, g_topic)
        return np.where(present, w_obs, w)  # (R, T)

    def _observed(self, topics: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(present (R, T) bool, n_obs (R,), slot_of (R, T)): the topics each row of `topics` shows,
        how many, and each observed topic's slot (0, 1, ... in topic order). A ValueError when a row
        shows a topic the world lacks, or more topics than a user can hold."""
        T, K = self.n_topics, self.k_max
        if (topics >= T).any():
            raise ValueError(f"topics hold {int(topics.max())}, but the world has {T} topics")
        known = topics >= 0  # (R, L)
        present = np.zeros((len(topics), T), dtype=bool)
        present[np.nonzero(known)[0], topics[known]] = True
        n_obs = present.sum(axis=1)  # (R,)
        if (n_obs > K).any():
            bad = int(np.flatnonzero(n_obs > K)[0])
            raise ValueError(f"history row {bad} shows {int(n_obs[bad])} topics, but a user holds at most {K}: "
                             "these samples do not come from this world")
        slot_of = np.cumsum(present, axis=1) - 1  # (R, T) slot of each observed topic
        return present, n_obs, slot_of

    def _likelihood_coefficients(self, topics: np.ndarray, slot_of: np.ndarray, n_slots: int) -> np.ndarray:
        """(R, S, P) coef[r, s, a]: coefficient of w_{topic of slot s}^a in the likelihood L(w) of
        row r's history (module docstring), S = `n_slots`, P = L + 1 degrees."""
        R, L = topics.shape
        known = topics >= 0  # (R, L)
        coef = np.zeros((R, n_slots, L + 1))  # (R, S, P)
        coef[:, :, 0] = 1.0
        last_t, last_j = np.full(R, -1), np.full(R, -1)
        for j in range(L):
            r = np.flatnonzero(known[:, j])
            if r.size == 0:
                continue
            t = topics[r, j]
            s = slot_of[r, t]
            c = coef[r, s]  # (n, P)
            shifted = np.zeros_like(c)
            shifted[:, 1:] = c[:, :-1]  # times w_t
            stay = (last_t[r] == t)[:, None]  # (n, 1)
            rho_g = (self.rho ** (j - last_j[r]).astype(np.float64))[:, None]  # (n, 1) gap-step stay probability
            coef[r, s] = np.where(stay, rho_g * c + (1.0 - rho_g) * shifted, shifted)
            last_t[r], last_j[r] = t, j
        return coef

    def _moments_per_k(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """From the likelihood coefficients (R, S, P), per number of held topics k = 1..K:
        (log M_k (R, K), scaled; E[w_{slot s} | k, h] (R, K, S); E[w_t | k, h] (R, K) for each
        held but unobserved topic t)."""
        R, S, P = coef.shape
        K, a = self.k_max, self.alpha
        powers = np.arange(P, dtype=np.float64)
        log_b, log_bumped = _dirichlet_sums(coef, a)  # (R, P), (R, S, P)
        log_m = np.empty((R, K))  # log M_k (scaled)
        g = np.empty((R, K, S))  # E[w_{slot s} | k, h]
        h = np.empty((R, K))  # E[w_t | k, h] for each held but unobserved topic
        for i, k in enumerate(np.arange(1, K + 1)):
            lg0 = math.lgamma(k * a) - np.array([math.lgamma(k * a + x) for x in powers])  # (P,)
            lg1 = math.lgamma(k * a) - np.array([math.lgamma(k * a + x + 1) for x in powers])  # (P,)
            log_m[:, i] = _logsumexp(log_b + lg0, axis=1)
            g[:, i] = np.exp(_logsumexp(log_bumped + lg1, axis=2) - log_m[:, i : i + 1])
            h[:, i] = a * np.exp(_logsumexp(log_b + lg1, axis=1) - log_m[:, i])
        return log_m, g, h

    def _z(self, masks: np.ndarray) -> np.ndarray:
        """(n, K) Z_k(O) for each bit set O (0 for sets of more than K topics)."""
        pos = np.searchsorted(self.z_masks, masks).clip(0, len(self.z_masks) - 1)
        hit = self.z_masks[pos] == masks
        return np.where(hit[:, None], self.z_table[pos], 0.0)

    def next_topic_proba(self, topics: np.ndarray) -> np.ndarray:
        """(R, T) P(next behavior's topic | visible history)."""
        topics = np.asarray(topics, dtype=np.int64)
        w = self.posterior_weights(topics)
        R, L = topics.shape
        known = topics >= 0
        has = known.any(axis=1)
        last_j = np.where(has, L - 1 - np.argmax(known[:, ::-1], axis=1), -1)  # (R,)
        last_t = topics[np.arange(R), last_j.clip(0)]
        rho_g = np.where(has, self.rho ** (L - last_j).astype(np.float64), 0.0)  # (R,)
        p = (1.0 - rho_g)[:, None] * w
        p[np.flatnonzero(has), last_t[has]] += rho_g[has]
        return p

    def score(self, topics: np.ndarray, candidate_item_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """(R,) P(candidate | visible history) for each row; identical histories are solved once."""
        topics = np.asarray(topics, dtype=np.int64)
        c = _lookup(self.item_ids, candidate_item_ids, "item")
        if len(c) != len(topics):
            raise ValueError(f"score: {len(topics)} histories but {len(c)} candidates")
        if len(c) == 0:
            return np.zeros(0)
        unique, inverse = np.unique(topics, axis=0, return_inverse=True)
        p_topic = self.next_topic_proba(unique)[inverse.ravel(), self.item_topic[c]]  # (R,)
        return p_topic * self.item_base[c]

    def click_proba(self, topics: np.ndarray, candidate_item_ids: Sequence[str] | np.ndarray,
                    negative_proba: NegativeProba) -> np.ndarray:
        """(R,) p / (p + q) like `Oracle.click_proba`, with p from the visible history only."""
        cand = np.asarray(candidate_item_ids, dtype=str)
        p = self.score(topics, cand)
        q = negative_q(negative_proba, cand, self.item_ids, p.shape)
        total = p + q
        return np.divide(p, total, out=np.full_like(p, 0.5), where=total > 0)


def _category_topic(names: np.ndarray, topic: np.ndarray, item_category: np.ndarray,
                    item_topic: np.ndarray) -> np.ndarray:
    """(C,) int32 for the sorted category `names`: the category's `topic` where every catalogue item
    of it serves that topic (always at kappa = 1), the one topic its items all serve if another,
    and -1 where they serve several (an item of it then tells nothing certain about its topic)."""
    pos = np.searchsorted(names, np.asarray(item_category, dtype=str))  # (I,) category of each item
    lo = np.full(len(names), np.iinfo(np.int32).max, dtype=np.int64)
    hi = np.full(len(names), -1, dtype=np.int64)
    np.minimum.at(lo, pos, item_topic)
    np.maximum.at(hi, pos, item_topic)
    out = np.asarray(topic, dtype=np.int64).copy()
    has = hi >= 0
    out[has] = np.where(lo[has] == hi[has], hi[has], -1)
    return out.astype(np.int32)


def _dirichlet_sums(coef: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(log B (R, P), log B_s (R, S, P)) of the likelihood coefficients `coef` (R, S, P): B(A) sums,
    over the degrees a_s adding up to A, the product of c_s(a_s) = coef * Gamma(alpha + a) / Gamma(alpha);
    B_s is the same with slot s's moment raised by one (times alpha + a). In logs, each slot scaled
    by its max (the scale cancels in every ratio the posterior takes)."""
    S, P = coef.shape[1], coef.shape[2]
    powers = np.arange(P, dtype=np.float64)
    lg_slot = np.array([math.lgamma(alpha + x) - math.lgamma(alpha) for x in powers])  # (P,)
    with np.errstate(divide="ignore"):
        log_c = np.log(coef) + lg_slot  # (R, S, P)
    log_c -= log_c.max(axis=2, keepdims=True)
    c = np.exp(log_c)  # (R, S, P)
    base = _convolve_slots(c)  # (R, P) B(A) = sum over a_s summing to A of prod_s c_s(a_s)
    bumped = np.stack([_convolve_slots(np.concatenate([c[:, :s], c[:, s:s + 1] * (alpha + powers),
                                                         c[:, s + 1:]], axis=1)) for s in range(S)], axis=1)
    with np.errstate(divide="ignore"):
        return np.log(base), np.log(bumped)  # (R, P), (R, S, P)


def _convolve_slots(c: np.ndarray) -> np.ndarray:
    """(R, P): the product of the S polynomials c[:, s] (coefficients by degree), cut at degree P-1
    (the total degree never exceeds the number of history positions, so nothing is lost)."""
    out = c[:, 0].copy()
    P = c.shape[2]
    for s in range(1, c.shape[1]):
        nxt = np.zeros_like(out)
        for m in range(P):
            nxt[:, m:] += out[:, m : m + 1] * c[:, s, : P - m]
        out = nxt
    return out


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def _subset_table(pi: np.ndarray, k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Z_k(O) = P(S ⊇ O | |S| = k) for every set O of <= k_max topics, S the top k of a
    Plackett-Luce ordering by pi (the generator's Gumbel-top-k). Returns (sorted uint64 bit sets
    (M,), (M, k_max) table)."""
    T = len(pi)
    bits = np.left_shift(np.uint64(1), np.arange(T, dtype=np.uint64))
    masks, values, sizes = [], [], []
    for k in range(1, k_max + 1):
        combos = np.array(list(itertools.combinations(range(T), k)), dtype=np.int64)  # (n, k)
        p_set = np.zeros(len(combos))
        for order in itertools.permutations(range(k)):
            x = pi[combos[:, order]]  # (n, k)
            before = np.cumsum(x, axis=1) - x
            p_set += np.prod(x / (1.0 - before), axis=1)
        combo_bits = bits[combos]  # (n, k)
        for pattern in range(1 << k):
            chosen = [b for b in range(k) if pattern >> b & 1]
            m = np.bitwise_or.reduce(combo_bits[:, chosen], axis=1) if chosen else np.zeros(len(combos), np.uint64)
            masks.append(m)
            values.append(p_set)
            sizes.append(np.full(len(combos), k - 1))
    masks_all = np.concatenate(masks)
    unique, inverse = np.unique(masks_all, return_inverse=True)
    table = np.zeros((len(unique), k_max))
    size_all = np.concatenate(sizes)
    value_all = np.concatenate(values)
    for k in range(k_max):
        sel = size_all == k
        table[:, k] = np.bincount(inverse.ravel()[sel], weights=value_all[sel], minlength=len(unique))
    return unique, table
