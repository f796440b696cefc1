"""The typed synthetic world: everything sampled before any file is written.

Dimension glossary (the comments on every array use it):
    T topics, C categories, I items, U users, K the most topics a user holds
    (min(len(topics_per_user_p), T)), N reviews (distinct (user, item, time)).

Draws come from seven independent streams spawned from the seed (`RandomStreams`); each part of the
world takes its own stream, so the bytes written for a seed depend only on the seed and on the
order of draws inside each stream, which this package keeps fixed (tests/data/synthetic_hashes.json).
The seventh, `interests`, is drawn from only when kappa < 1; child i of a SeedSequence does not
depend on how many children are spawned, so the first six are those of the worlds made before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from micn.data.synthetic.catalogue import Catalogue, sample_catalogue, serve_topics
from micn.data.synthetic.ids import Ids, make_ids
from micn.data.synthetic.profiles import Profile
from micn.data.synthetic.sequences import Reviews, Users, sample_reviews, sample_users


@dataclass(frozen=True)
class RandomStreams:
    """The seven draw streams of one seed, in spawn order (changing the order changes every byte)."""

    catalogue: np.random.Generator
    users: np.random.Generator
    reviews: np.random.Generator
    ids: np.random.Generator  # the ids, then the items planted without metadata
    review_fields: np.random.Generator  # names, texts, votes, styles of the review lines
    meta_fields: np.random.Generator  # titles, prices, ranks, related items of the metadata lines
    interests: np.random.Generator  # the items' served topics (only when kappa < 1)

    @classmethod
    def from_seed(cls, seed: int) -> RandomStreams:
        return cls(*(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)))


@dataclass(frozen=True, eq=False)
class World:
    """A sampled world: the generative model's parameters, its users and every review."""

    profile: Profile
    catalogue: Catalogue
    users: Users
    reviews: Reviews
    ids: Ids
    missing_meta: np.ndarray  # (I,) bool, reviewed items planted without a metadata line

    @property
    def item_counts(self) -> np.ndarray:
        """(I,) int64, reviews per item."""
        return np.bincount(self.reviews.item, minlength=self.profile.n_items)


def sample_world(prof: Profile, streams: RandomStreams) -> World:
    """Sample the whole world from its streams (the two writer streams are left untouched)."""
    catalogue = serve_topics(prof, sample_catalogue(prof, streams.catalogue), streams.interests)
    users = sample_users(prof, catalogue, streams.users)
    reviews = sample_reviews(prof, catalogue, users, streams.reviews)
    ids = make_ids(prof, streams.ids)
    missing_meta = _plant_missing_meta(prof, catalogue, reviews.item, streams.ids)
    return World(prof, catalogue, users, reviews, ids, missing_meta)


def _plant_missing_meta(
    prof: Profile, catalogue: Catalogue, item: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(I,) bool: reviewed items that get no metadata line, so that the ingest's `default_cat` rule
    is exercised. The most popular item of every category always keeps its line, so every category
    still appears in the metadata file."""
    reviewed = np.bincount(item, minlength=prof.n_items) > 0
    candidates = np.flatnonzero(reviewed & (catalogue.item_rank_in_cat > 0))
    n = int(round(prof.missing_meta_fraction * int(reviewed.sum())))
    if prof.missing_meta_fraction > 0:
        n = max(n, 1)
    n = min(n, len(candidates))
    missing = np.zeros(prof.n_items, dtype=bool)
    missing[rng.choice(candidates, size=n, replace=False)] = True
    return missing
