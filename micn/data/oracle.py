"""The oracle scorer of a synthetic world: the true next-item probabilities of its generative model.

Why: a model's AUC on synthetic data is only meaningful next to the best AUC any model could
reach. `micn.data.synthetic` writes the ground truth of its generative model beside the raw
files; this module reads it back and scores samples exactly as the model generated them.

Under that model the topic chain is the only hidden state, and the topic of the last behavior is
fully determined by the last history item (each item serves exactly one topic, topic(i), the
items.parquet `topic`), so

    P(i | u, hist) = P(topic(i) | u, z_last) * P(i | topic(i)),
    P(z' | u, z)   = rho * 1[z' = z] + (1 - rho) * w_u[z'],     z = topic(last history item),
    P(z' | u, [])  = w_u[z']                                     (empty history),

where w_u is the user's mixture weight (0 for topics the user does not hold), and P(i | t) is
items.parquet's `p_item_given_topic` when the world has kappa < 1, else (kappa = 1, categories
partition the topics) P(cat(i) | topic(i)) * P(i | cat(i)) from the category and item tables,
the very same number. Every topic keeps at least one item and P(i | t) sums to 1 over the items
serving t, so the formula is a proper distribution over the catalogue, even if the last item's
topic is not one of the user's.

Dimension glossary: S samples, I catalogue items (`Oracle.item_ids` order), T topics,
K topics held per user at most (4).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

__all__ = ["Oracle"]

NegativeProba = Callable[[np.ndarray], np.ndarray] | np.ndarray


@dataclass(frozen=True, eq=False)
class Oracle:
    """True next-item probabilities of one synthetic world (build it with `Oracle.load`)."""

    rho: float
    n_topics: int
    user_ids: np.ndarray  # (U,) str, sorted ascending
    user_topics: np.ndarray  # (U, K) int32, the user's topics, -1 = padding
    user_weights: np.ndarray  # (U, K) float64, mixture weights, 0 at padding; rows sum to 1
    item_ids: np.ndarray  # (I,) str, sorted ascending: the order of every per-item array returned
    item_topic: np.ndarray  # (I,) int32, the topic the item serves
    item_category: np.ndarray  # (I,) str, the item's true category (also for items without metadata)
    item_base: np.ndarray  # (I,) float64, P(i | topic(i)) (kappa = 1: P(cat(i) | topic(i)) * P(i | cat(i)))

    @classmethod
    def load(cls, raw_dir: str | Path) -> Oracle:
        """Read `<raw_dir>/ground_truth/` (or `raw_dir` itself if it is the ground-truth folder)."""
        root = Path(raw_dir)
        gt = root / "ground_truth" if (root / "ground_truth").is_dir() else root
        needed = [gt / f for f in ("world.json", "users.parquet", "items.parquet", "categories.parquet")]
        missing = [str(p) for p in needed if not p.is_file()]
        if missing:
            raise ValueError(
                f"no synthetic ground truth under {str(root)!r}: missing {missing}; "
                "pass the out_dir given to micn.data.synthetic.generate_world"
            )
        world = json.loads((gt / "world.json").read_text(encoding="utf-8"))
        users = pq.read_table(gt / "users.parquet")

        user_ids = np.asarray(users.column("user_id").to_pylist(), dtype=str)
        topics_col = users.column("topics").combine_chunks()
        weights_col = users.column("weights").combine_chunks()
        lengths = topics_col.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)  # (U,)
        k = max(int(lengths.max(initial=1)), 1)
        mask = np.arange(k) < lengths[:, None]  # (U, K), row-major order matches the flattened lists
        user_topics = np.full((len(user_ids), k), -1, dtype=np.int32)
        user_weights = np.zeros((len(user_ids), k), dtype=np.float64)
        user_topics[mask] = topics_col.flatten().to_numpy()
        user_weights[mask] = weights_col.flatten().to_numpy()

        if len(user_ids) > 1 and not (user_ids[1:] > user_ids[:-1]).all():
            raise ValueError(f"{gt / 'users.parquet'}: ids must be unique and sorted ascending")
        item_ids, item_topic, item_category, item_base = read_items(gt)
        return cls(
            rho=float(world["rho"]),
            n_topics=int(world["n_topics"]),
            user_ids=user_ids,
            user_topics=user_topics,
            user_weights=user_weights,
            item_ids=item_ids,
            item_topic=item_topic,
            item_category=item_category,
            item_base=item_base,
        )

    # ----------------------------------------------------------------------------------------
    # Look-ups
    # ----------------------------------------------------------------------------------------

    def user_index(self, user_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Positions in `self.user_ids`; ValueError naming the first unknown id."""
        return _lookup(self.user_ids, user_ids, "user")

    def item_index(self, item_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Positions in `self.item_ids`; ValueError naming the first unknown id."""
        return _lookup(self.item_ids, item_ids, "item")

    # ----------------------------------------------------------------------------------------
    # Probabilities
    # ----------------------------------------------------------------------------------------

    def topic_proba(self, user_id: str, last_item_id: str | None) -> np.ndarray:
        """(T,) P(z' | u, z_last): the distribution of the next behavior's topic."""
        u = int(self.user_index([user_id])[0])
        held = self.user_topics[u] >= 0
        w = np.zeros(self.n_topics, dtype=np.float64)
        w[self.user_topics[u, held]] = self.user_weights[u, held]
        if last_item_id is None:
            return w
        z = int(self.item_topic[self.item_index([last_item_id])[0]])
        p = (1.0 - self.rho) * w
        p[z] += self.rho
        return p

    def next_item_proba(self, user_id: str, history_item_ids: Sequence[str]) -> np.ndarray:
        """(I,) P(i | user, history) over the whole catalogue, in `self.item_ids` order; sums to 1.

        Only the last history item matters (the chain is first-order in the topic), but every
        history id is checked, so a typo anywhere is reported.
        """
        history = list(history_item_ids)
        if history:
            self.item_index(history)
        p_topic = self.topic_proba(user_id, history[-1] if history else None)
        return p_topic[self.item_topic] * self.item_base

    def score(
        self,
        user_ids: Sequence[str] | np.ndarray,
        last_item_ids: Sequence[str | None] | np.ndarray,
        candidate_item_ids: Sequence[str] | np.ndarray,
    ) -> np.ndarray:
        """(S,) P(candidate | user, history) for many samples at once.

        `last_item_ids[s]` is the most recent history item of sample s, or None for an empty
        history. Equals `next_item_proba(user, hist)[item_index(candidate)]` entry for entry.
        """
        u = self.user_index(user_ids)  # (S,)
        c = self.item_index(candidate_item_ids)  # (S,)
        last = np.empty(len(last_item_ids), dtype=object)  # (S,) str or None; built so None survives
        last[:] = list(last_item_ids)
        if not (len(u) == len(c) == len(last)):
            raise ValueError(
                f"score: user_ids ({len(u)}), last_item_ids ({len(last)}) and candidate_item_ids ({len(c)}) "
                "must have the same length"
            )
        empty = np.fromiter((x is None for x in last), dtype=bool, count=len(last))  # (S,)
        li = np.zeros(len(last), dtype=np.int64)
        if (~empty).any():
            li[~empty] = self.item_index(last[~empty].astype(str))
        z_cand = self.item_topic[c]  # (S,)
        # w_u[topic(candidate)]: the user's topics are distinct, so at most one slot matches.
        w = (self.user_weights[u] * (self.user_topics[u] == z_cand[:, None])).sum(axis=1)  # (S,)
        stay = (self.item_topic[li] == z_cand).astype(np.float64)  # (S,)
        p_topic = np.where(empty, w, (1.0 - self.rho) * w + self.rho * stay)
        # Same arithmetic as next_item_proba ((1-rho)*w, then + rho), so the two agree bit for bit.
        return p_topic * self.item_base[c]

    def click_proba(
        self,
        user_ids: Sequence[str] | np.ndarray,
        last_item_ids: Sequence[str | None] | np.ndarray,
        candidate_item_ids: Sequence[str] | np.ndarray,
        negative_proba: NegativeProba,
    ) -> np.ndarray:
        """(S,) P(label = 1 | user, history, candidate) = p / (p + q).

        This is the Bayes-optimal scorer for the task "is the candidate the true next item, or a
        sampled negative?" when positives and negatives are balanced (one negative per positive):
        p = `score(...)`, the probability that the true next item is the candidate, and q the
        probability that the negative sampler draws the candidate. `negative_proba` is either an
        (I,) array aligned with `self.item_ids`, or a callable taking the (S,) candidate ids and
        returning their (S,) q. (Samplers that reject the positive itself, as DIEN's does, shift
        q by a factor 1 / (1 - q_pos), negligible for catalogues of realistic size; it is ignored
        here.) Where p + q = 0 the answer is 0.5.
        """
        cand = np.asarray(candidate_item_ids, dtype=str)
        p = self.score(user_ids, last_item_ids, cand)
        q = negative_q(negative_proba, cand, self.item_ids, p.shape)
        total = p + q
        return np.divide(p, total, out=np.full_like(p, 0.5), where=total > 0)


def read_items(gt: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(item_ids (I,) str sorted, item_topic (I,) int32 (served), item_category (I,) str, item_base (I,)
    float64 = P(i | topic(i))) from `<gt>/items.parquet` and `<gt>/categories.parquet`: the world's
    public structure, shared by the oracle and the history-only ceiling (`micn.data.ceiling`).
    P(i | topic(i)) is the `p_item_given_topic` column where the world has one (kappa < 1), else
    P(cat(i) | topic(i)) * P(i | cat(i)) (kappa = 1, whose files predate the column)."""
    items = pq.read_table(gt / "items.parquet")
    item_ids = np.asarray(items.column("item_id").to_pylist(), dtype=str)
    item_category = np.asarray(items.column("category").to_pylist(), dtype=object)
    if "p_item_given_topic" in items.column_names:
        item_base = items.column("p_item_given_topic").to_numpy().astype(np.float64)
    else:
        cats = pq.read_table(gt / "categories.parquet")
        p_cat_by_name = dict(
            zip(cats.column("category").to_pylist(), cats.column("p_category_given_topic").to_pylist(), strict=True)
        )
        p_cat = np.array([p_cat_by_name[c] for c in item_category], dtype=np.float64)
        item_base = p_cat * items.column("p_item_given_category").to_numpy()
    if len(item_ids) > 1 and not (item_ids[1:] > item_ids[:-1]).all():
        raise ValueError(f"{gt / 'items.parquet'}: ids must be unique and sorted ascending")
    return item_ids, items.column("topic").to_numpy().astype(np.int32), item_category.astype(str), item_base


def negative_q(negative_proba: NegativeProba, cand: np.ndarray, item_ids: np.ndarray, shape: tuple) -> np.ndarray:
    """(S,) q of each candidate: `negative_proba` is an (I,) array aligned with `item_ids` or a callable
    on the candidate ids; checked for shape and sign."""
    if callable(negative_proba):
        q = np.asarray(negative_proba(cand), dtype=np.float64)
    else:
        q_all = np.asarray(negative_proba, dtype=np.float64)
        if q_all.shape != item_ids.shape:
            raise ValueError(
                f"negative_proba has shape {q_all.shape}; an array must be aligned with oracle.item_ids, "
                f"shape {item_ids.shape}"
            )
        q = q_all[_lookup(item_ids, cand, "item")]
    if q.shape != shape:
        raise ValueError(f"negative_proba returned shape {q.shape}; expected {shape} (one q per candidate)")
    if (q < 0).any():
        raise ValueError("negative_proba must be non-negative probabilities")
    return q


def _lookup(sorted_ids: np.ndarray, ids: Sequence[str] | np.ndarray, what: str) -> np.ndarray:
    """Vectorised id -> position by bisection in a sorted id array."""
    query = np.asarray(ids)
    if query.dtype == object:
        bad = [x for x in query.tolist() if not isinstance(x, str)]
        if bad:
            raise ValueError(f"unknown {what} id {bad[0]!r}: {what} ids must be strings")
        query = query.astype(str)
    if query.size == 0:
        return np.zeros(0, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, query)
    found = pos < len(sorted_ids)
    found[found] = sorted_ids[pos[found]] == query[found]
    if not found.all():
        first = query[~found][0]
        raise ValueError(
            f"unknown {what} id {str(first)!r} ({int((~found).sum())} unknown in total); "
            f"the ground truth holds {len(sorted_ids)} {what}s"
        )
    return pos.astype(np.int64)
