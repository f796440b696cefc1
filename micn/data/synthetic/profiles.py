"""The knobs of a synthetic world (`Profile`), the named sizes (`PROFILES`), and its calendar.

Why a module of its own: every sampler and writer of the package reads a `Profile` and the
calendar, and none of them needs another's code to do so. (The release formats a world can be
written in are `micn.names.FORMATS`; `releases.WRITERS` has one writer per format.)
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

__all__ = ["PROFILES", "Profile"]

# Calendar: day 0 is 2000-01-01; the last usable day is 2014-06-30 ("mid-2014").
DAY0 = _dt.date(2000, 1, 1)
N_DAYS = (_dt.date(2014, 7, 1) - DAY0).days  # 5295 usable days
UNIX_DAY0 = 946_684_800  # 2000-01-01T00:00:00Z
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Profile:
    """Sizes and knobs of one synthetic world.

    Counts are exact: the reviews file holds `n_users` distinct reviewers and `n_reviews`
    distinct (user, item, time) reviews; the ground truth holds `n_items` items in
    `n_categories` categories grouped into `n_topics` topics.
    """

    name: str
    n_users: int
    n_items: int
    n_categories: int
    n_reviews: int
    n_topics: int
    main_category: str = "Electronics"  # root of every category path (and salesRank key)
    rho: float = 0.6  # probability that the next behavior stays in the current topic
    topics_per_user_p: tuple[float, ...] = (0.20, 0.35, 0.27, 0.18)  # P(user holds 1, 2, 3, 4 topics)
    dirichlet_alpha: float = 1.0  # concentration of a user's mixture weights
    topic_zipf: float = 0.6  # exponent of topic popularity
    category_zipf: float = 1.0  # exponent of P(category | topic)
    item_zipf: float = 1.0  # exponent of P(item | category)
    items_per_category_power: float = 0.8  # item counts per category ~ popularity ** power
    length_sigma: float = 1.0  # log-normal sigma of user activity (skew of sequence lengths)
    min_reviews_per_user: int = 5  # the 5-core rule
    max_reviews_per_user: int = 2000  # cap (must fit in the calendar: one review per day at most)
    mean_gap_days: float = 45.0  # mean days between two reviews of a user (>= 1)
    missing_meta_fraction: float = 0.005  # fraction of reviewed items planted without a metadata line
    duplicate_fraction_2018: float = 0.002  # fraction of 2018 reviews repeated with another style
    # Interest signal of item ids: probability that an item serves its category's topic (else a topic
    # drawn by popularity, independently of the category; see the package docstring). Last field, and
    # left out of world.json at 1.0, so that a kappa = 1 world keeps the bytes pinned in
    # tests/data/synthetic_hashes.json.
    kappa: float = 1.0

    def __post_init__(self) -> None:
        problems = [message for ok, message in self._checks() if not ok]
        if problems:
            raise ValueError(f"Profile {self.name!r}: " + "; ".join(problems))

    def _checks(self) -> list[tuple[bool, str]]:
        """(holds, what is expected) for every invariant: a bad profile is reported whole, not one knob per run."""
        lo_n, hi_n = self.min_reviews_per_user * self.n_users, self.max_reviews_per_user * self.n_users
        p = self.topics_per_user_p
        return [
            (self.n_users >= 1, f"n_users must be >= 1, got {self.n_users}"),
            (self.n_topics >= 1, f"n_topics must be >= 1, got {self.n_topics}"),
            (
                self.n_categories >= self.n_topics,
                f"n_categories ({self.n_categories}) must be >= n_topics ({self.n_topics}): "
                "every topic needs a category",
            ),
            (
                self.n_items >= self.n_categories,
                f"n_items ({self.n_items}) must be >= n_categories ({self.n_categories}): every category needs an item",
            ),
            (self.min_reviews_per_user >= 1, f"min_reviews_per_user must be >= 1, got {self.min_reviews_per_user}"),
            (
                self.min_reviews_per_user <= self.max_reviews_per_user <= N_DAYS,
                f"max_reviews_per_user ({self.max_reviews_per_user}) must lie in "
                f"[min_reviews_per_user={self.min_reviews_per_user}, {N_DAYS} days in the calendar]",
            ),
            (
                lo_n <= self.n_reviews <= hi_n,
                f"n_reviews ({self.n_reviews}) must lie in [{self.min_reviews_per_user} * n_users, "
                f"{self.max_reviews_per_user} * n_users] = [{lo_n}, {hi_n}]",
            ),
            (0.0 <= self.rho <= 1.0, f"rho must lie in [0, 1], got {self.rho}"),
            (
                len(p) >= 1 and all(x >= 0 for x in p) and abs(sum(p) - 1.0) < 1e-9 and sum(p[: self.n_topics]) > 0,
                f"topics_per_user_p must be non-negative probabilities summing to 1, got {p}",
            ),
            (self.dirichlet_alpha > 0, f"dirichlet_alpha must be > 0, got {self.dirichlet_alpha}"),
            (self.mean_gap_days >= 1, f"mean_gap_days must be >= 1, got {self.mean_gap_days}"),
            (
                0.0 <= self.missing_meta_fraction < 1.0,
                f"missing_meta_fraction must lie in [0, 1), got {self.missing_meta_fraction}",
            ),
            (
                0.0 <= self.duplicate_fraction_2018 < 1.0,
                f"duplicate_fraction_2018 must lie in [0, 1), got {self.duplicate_fraction_2018}",
            ),
            (0.0 <= self.kappa <= 1.0, f"kappa must lie in [0, 1], got {self.kappa}"),
        ]


PROFILES: dict[str, Profile] = {
    # Tests: generates in a fraction of a second.
    "tiny": Profile("tiny", n_users=300, n_items=400, n_categories=24, n_reviews=3_000, n_topics=6),
    # The `dvc repro` demo on a laptop.
    "default": Profile("default", n_users=20_000, n_items=5_000, n_categories=100, n_reviews=200_000, n_topics=10),
    # The shape of the real Electronics 5-core dump (DIEN / MICN papers), for benchmarks.
    "electronics": Profile(
        "electronics", n_users=192_403, n_items=63_001, n_categories=801, n_reviews=1_689_188, n_topics=40
    ),
    # The shape of the real Books 5-core dump.
    "books": Profile(
        "books",
        n_users=603_668,
        n_items=367_982,
        n_categories=1_600,
        n_reviews=8_898_041,
        n_topics=64,
        main_category="Books",
    ),
}
