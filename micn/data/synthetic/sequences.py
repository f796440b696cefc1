"""Users (topic sets, mixture weights, sequence lengths) and their review sequences.

Dimensions: U users, K the most topics a user can hold, N reviews, T topics. Everything per
review is vectorised: inverse-CDF sampling through one global `searchsorted` with per-group
offsets, and forward fill of topic switches with `np.maximum.accumulate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from micn.data.synthetic.catalogue import Catalogue
from micn.data.synthetic.profiles import N_DAYS, Profile

GUMBEL_CHUNK = 1 << 16  # users per Gumbel-top-k block (fixed, so results do not depend on RAM)
RATING_P = np.array([0.05, 0.05, 0.09, 0.21, 0.60])  # P(overall = 1..5): skewed to 5 like the real dumps


@dataclass(frozen=True, eq=False)
class Users:
    """Each user's interests and activity (draw stream 1)."""

    topics: np.ndarray  # (U, K) int32, held topics in slot order (most "Gumbel-popular" first), -1 = not held
    weights: np.ndarray  # (U, K) float64, mixture weights w_u, 0 where not held; rows sum to 1
    k: np.ndarray  # (U,) int, number of topics held, in [1, K]
    lengths: np.ndarray  # (U,) int64, reviews per user; sums to n_reviews


@dataclass(frozen=True, eq=False)
class Reviews:
    """Every review, in (user, time) order (draw stream 2)."""

    user: np.ndarray  # (N,) int32, user index, non-decreasing
    topic: np.ndarray  # (N,) int32, the planted topic z_j (= the topic the item serves)
    cat: np.ndarray  # (N,) int32, category index (the item's)
    item: np.ndarray  # (N,) int32, item index
    day: np.ndarray  # (N,) int64, days since 2000-01-01, strictly increasing per user
    rating: np.ndarray  # (N,) int8, 1..5


def sample_users(prof: Profile, catalogue: Catalogue, rng: np.random.Generator) -> Users:
    """Topic sets (Gumbel-top-k: sampling without replacement proportional to topic popularity),
    Dirichlet mixture weights and sequence lengths."""
    U, T = prof.n_users, prof.n_topics
    K = min(len(prof.topics_per_user_p), T)
    p_k = np.asarray(prof.topics_per_user_p[:K], dtype=np.float64)
    k_u = 1 + rng.choice(K, size=U, p=p_k / p_k.sum())  # (U,) number of topics held
    topics = _top_k_topics(np.log(catalogue.topic_pop), U, K, rng)
    held = np.arange(K) < k_u[:, None]  # (U, K)
    topics[~held] = -1
    gam = np.where(held, rng.gamma(prof.dirichlet_alpha, size=(U, K)), 0.0)
    gam[:, 0] = np.maximum(gam[:, 0], 1e-300)  # a Gamma draw can underflow to 0 for tiny alpha
    weights = gam / gam.sum(axis=1, keepdims=True)
    return Users(topics=topics, weights=weights, k=k_u, lengths=_lengths(prof, rng))


def _top_k_topics(log_pop: np.ndarray, U: int, K: int, rng: np.random.Generator) -> np.ndarray:
    """(U, K) int32: K distinct topics per user, drawn without replacement proportionally to
    exp(log_pop), in order of their Gumbel keys. Done in fixed-size blocks to bound memory."""
    T = len(log_pop)
    topics = np.empty((U, K), dtype=np.int32)
    for start in range(0, U, GUMBEL_CHUNK):
        g = log_pop + rng.gumbel(size=(min(GUMBEL_CHUNK, U - start), T))  # (n, T)
        top = np.argpartition(-g, K - 1, axis=1)[:, :K] if K < T else np.tile(np.arange(T), (len(g), 1))
        order = np.argsort(-np.take_along_axis(g, top, axis=1), axis=1, kind="stable")
        topics[start : start + len(g)] = np.take_along_axis(top, order, axis=1)
    return topics


def _lengths(prof: Profile, rng: np.random.Generator) -> np.ndarray:
    """(U,) int64: the 5-core minimum plus a multinomial share of the rest over log-normal
    activities, capped (one review per day at most); the lengths sum to exactly n_reviews."""
    U = prof.n_users
    rest = prof.n_reviews - prof.min_reviews_per_user * U
    activity = rng.lognormal(0.0, prof.length_sigma, size=U)
    extra = rng.multinomial(rest, activity / activity.sum())
    cap = prof.max_reviews_per_user - prof.min_reviews_per_user
    while (over := extra > cap).any():
        excess = int((extra[over] - cap).sum())
        extra[over] = cap
        room = np.where(extra < cap, activity, 0.0)
        extra += rng.multinomial(excess, room / room.sum())
    return (prof.min_reviews_per_user + extra).astype(np.int64)


def sample_reviews(prof: Profile, catalogue: Catalogue, users: Users, rng: np.random.Generator) -> Reviews:
    """Every review, in (user, time) order: the topic chain, item (and its category), day and rating.

    Whatever kappa, the stream draws the same arrays in the same order, so at one seed the users,
    topic chains, days and ratings are those of kappa = 1 and only the items differ."""
    N, U = prof.n_reviews, prof.n_users
    starts = np.cumsum(users.lengths) - users.lengths  # (U,)
    user = np.repeat(np.arange(U, dtype=np.int32), users.lengths)  # (N,)
    pos = np.arange(N, dtype=np.int64) - starts[user]  # (N,) position within the user's sequence
    topic = _topic_chain(prof.rho, users, user, pos, rng)
    if prof.kappa == 1.0:  # c_j ~ P(c | z_j), i_j ~ P(i | c_j): the draws of every world made before kappa
        cat = np.searchsorted(catalogue.cat_cdf, topic + rng.random(N), side="right").astype(np.int32)
        item = np.searchsorted(catalogue.item_cdf, cat + rng.random(N), side="right").astype(np.int32)
    else:  # i_j ~ P(i | z_j) over the items serving z_j; c_j = c(i_j)
        rng.random(N)  # the category uniform of kappa = 1, drawn and unused: days and ratings keep their draws
        at = np.searchsorted(catalogue.topic_item_cdf, topic + rng.random(N), side="right")
        item = catalogue.topic_items[at].astype(np.int32)
        cat = catalogue.item_cat[item].astype(np.int32)
    day = _days(prof.mean_gap_days, users.lengths, starts, user, pos, rng)
    rating = (1 + rng.choice(5, size=N, p=RATING_P)).astype(np.int8)
    return Reviews(user=user, topic=topic, cat=cat, item=item, day=day, rating=rating)


def _topic_chain(
    rho: float, users: Users, user: np.ndarray, pos: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(N,) topics: at a "redraw" position the slot is drawn afresh from w_u, elsewhere it is copied
    from the position before, i.e. forward-filled from the last redraw (the first always redraws)."""
    N = len(user)
    redraw = (pos == 0) | (rng.random(N) >= rho)
    at = np.flatnonzero(redraw)
    cum_w = np.cumsum(users.weights, axis=1)  # (U, K)
    cum_w[np.arange(cum_w.shape[1]) >= users.k[:, None] - 1] = 1.0  # exact 1 at and after the last held slot
    u = rng.random(len(at))
    slot_at = (u[:, None] >= cum_w[user[at], :-1]).sum(axis=1)
    slot_full = np.zeros(N, dtype=np.int8)
    slot_full[at] = slot_at
    src = np.maximum.accumulate(np.where(redraw, np.arange(N), 0))
    return users.topics[user, slot_full[src]]


def _days(
    mean_gap_days: float,
    lengths: np.ndarray,
    starts: np.ndarray,
    user: np.ndarray,
    pos: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """(N,) days since 2000-01-01: position j plus a scaled cumulative sum of extra gaps keeps days
    strictly increasing; each user's span fits the calendar, starts skewed towards later years."""
    N, U = len(user), len(lengths)
    extra = rng.geometric(1.0 / mean_gap_days, size=N) - 1
    extra[pos == 0] = 0
    cum_extra = np.cumsum(extra)
    cum_extra -= cum_extra[starts][user]  # per-user cumulative extra gap (0 at the first review)
    last = starts + lengths - 1
    room = (N_DAYS - 1) - (lengths - 1)  # the most extra days a user's span can hold
    scale = np.where(cum_extra[last] > room, room / np.maximum(cum_extra[last], 1), 1.0)
    rel_day = pos + np.floor(cum_extra * scale[user]).astype(np.int64)
    span = rel_day[last]
    first_day = np.floor(np.sqrt(rng.random(U)) * (N_DAYS - span)).astype(np.int64)  # skewed to later years
    return first_day[user] + rel_day
