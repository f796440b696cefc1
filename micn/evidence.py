"""Evidence that the auxiliary tasks learn, measured at every validation of a run.

The trainer records, beside the validation AUC, what shows whether MICN's own task learned:

    Retrieval.of(train, valid, fmap, k).measure(model, valid, ...)  # MICN Recall@K vs popularity's
    capsule_evidence(model, valid, item_topics(...), generator)     # purity vs shuffled, overlap

`Retrieval` reads MICN as the retrieval model it is (MIND's evaluation): Recall@K of each
validation user's held-out target over the whole catalogue from the user's interest capsules,
beside ranking every item by its training popularity, on the same users.

Purity (synthetic data): for each user with at least `min_interests` active capsules, every real
history behavior is assigned to the capsule that holds most of its routing weight; the purity of
that clustering w.r.t. the planted topics is Σ_capsules max_topic |capsule ∩ topic| / n. Two
baselines on the same users: `shuffled` permutes the assignment within each user (same capsule
sizes, no relation to the items), `majority` puts every behavior in one cluster. Purity above
`shuffled` means the routing groups behaviors by topic.

Overlap: for a user's active capsules a, b, |N(a) ∩ N(b)| / n, N the n nearest items of a capsule;
1.0 means the capsules collapsed into one interest, about 0 that they point at different items.

Evaluation reads the model and draws from its own generators only: never MICN's training
generator, never torch's global RNG, never a training-mode forward, so a run's numbers are the
same with or without it. Every module's train/eval mode is restored and no weight changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from micn.data.batch import Batch, history_mask
from micn.data.dataset import SampleSet
from micn.data.feature_map import FeatureMap
from micn.errors import MicnError
from micn.evaluate import popularity_recall, recall_at_k
from micn.models.base import InterestModel
from micn.models.micn_aux import MICNAux
from micn.models.with_micn import WithMICN
from micn.names import FIRST_REAL_ID

EVAL_SEED = 20221  # seed of the routing logits drawn when MICN's capsules are read for evaluation

# record metric -> the history column it is read from, at the selected evaluation
EVIDENCE_COLUMNS = {"micn_recall": "valid_micn_recall", "popularity_recall": "valid_popularity_recall",
                    "dien_aux": "valid_dien_aux", "grad_ratio": "train_grad_ratio",
                    "capsule_purity": "valid_capsule_purity", "capsule_purity_shuffled": "valid_capsule_purity_shuffled",
                    "capsule_overlap": "valid_capsule_overlap"}


def at_best(history: list[dict], best_step: int, key: str) -> float | None:
    """`key` of the selected evaluation's history row (the evidence at the checkpoint that is kept)."""
    row = next((r for r in history if r.get("step") == best_step and not r.get("warmup")), None)
    return None if row is None else row.get(key)


@dataclass(frozen=True)
class Retrieval:
    """MICN's Recall@K and popularity's, on a fixed set of validation users.

    The users are the validation split's positive rows with a non-empty history and a target in
    the training vocabulary (an out-of-vocabulary target can be retrieved by no model), at most
    `max_users` of them, evenly spaced in file order (2,000: every user of the default world, a
    tenth of Electronics'); popularity is each item's number of clicks in the training split
    (positive targets and the real history positions of positive rows)."""

    rows: torch.Tensor  # (U,) row numbers of the validation split
    targets: np.ndarray  # (U,) target item index of each row
    counts: np.ndarray  # (I,) training clicks per item index
    k: int

    @classmethod
    def of(cls, train_split: SampleSet, valid: SampleSet, fmap: FeatureMap, k: int, max_users: int = 2000) -> Retrieval:
        keep = (valid.label == 1) & (valid.hist_len > 0) & (valid.item >= fmap.first_real_id)
        rows = torch.nonzero(keep).squeeze(1)  # (U,)
        if len(rows) > max_users:  # evenly spaced, deterministic: Recall@K's cost stays flat at scale
            rows = rows[torch.linspace(0, len(rows) - 1, max_users).round().long().unique()]
        positive = train_split.label == 1
        real = history_mask(train_split.hist_len, train_split.max_len) & positive.unsqueeze(1)  # (N, T)
        clicked = torch.cat([train_split.item[positive].long(), train_split.hist_items[real].long()])
        counts = torch.bincount(clicked, minlength=fmap.n_items)[:fmap.n_items].numpy()
        counts[[fmap.padding_id, fmap.oov_id]] = 0  # padding and OOV are not items
        return cls(rows=rows, targets=valid.item[rows].long().numpy(), counts=counts, k=k)

    @torch.no_grad()
    def measure(self, model: InterestModel, data: SampleSet, batch_size: int, device: torch.device) -> dict[str, float]:
        """{"micn_recall", "popularity_recall"} at the model's current weights ({} without users)."""
        if not len(self.rows):
            return {}
        model.eval()
        generator = torch.Generator(device=device).manual_seed(EVAL_SEED)  # the same draws at every evaluation
        vectors, active = [], []
        for start in range(0, len(self.rows), batch_size):
            v, a = model.user_capsules(data.batch(self.rows[start:start + batch_size]).to(device), generator)
            vectors.append(v.float().cpu())  # (B, K, D)
            active.append(a.cpu())  # (B, K)
        items = model.item_table().float().cpu()  # (I, D)
        return {"micn_recall": float(recall_at_k(torch.cat(vectors).numpy(), torch.cat(active).numpy(), items.numpy(),
                                                 self.targets, self.k)),
                "popularity_recall": float(popularity_recall(self.counts, self.targets, self.k))}


def capsule_probe(fmap: FeatureMap, samples_dir: Path) -> Callable | None:
    """A function (model, valid split, device) -> capsule purity / overlap evidence of a MICN run
    on synthetic data (the samples carry the planted topics), else None."""
    if fmap.oracle is None:
        return None
    topics = item_topics(samples_dir, samples_dir / fmap.oracle)

    def probe(model: nn.Module, data: SampleSet, device: torch.device) -> dict[str, float | None]:
        generator = torch.Generator(device=device).manual_seed(EVAL_SEED)
        return capsule_evidence(model, data, topics, generator)

    return probe


def micn_of(model: nn.Module) -> MICNAux:
    """The MICN module of a `WithMICN` model (or the module itself)."""
    micn = model.micn if isinstance(model, WithMICN) else model
    if not isinstance(micn, MICNAux):
        raise TypeError(f"expected a WithMICN or MICNAux model, got {type(model).__name__}")
    return micn


def item_topics(samples_dir: str | Path, truth_dir: str | Path) -> np.ndarray:
    """(n_items,) planted topic of every item index, −1 where unknown (padding, OOV).

    `truth_dir` is the synthetic world's ground truth (its `items.parquet`, item_id -> topic): the
    samples' `oracle/` folder, or a raw world folder holding `ground_truth/`."""
    truth_dir = Path(truth_dir)
    items = (truth_dir / "ground_truth" if (truth_dir / "ground_truth").is_dir() else truth_dir) / "items.parquet"
    if not items.is_file():
        raise MicnError(f"{items}: no ground truth; purity needs a synthetic world (`micn generate`).")
    truth = pl.read_parquet(items, columns=["item_id", "topic"])
    vocab = pl.read_parquet(Path(samples_dir) / "vocab_item.parquet", columns=["item_id", "index"])
    joined = vocab.join(truth, on="item_id", how="left")
    topics = np.full(int(vocab["index"].max()) + 1, -1, dtype=np.int64)
    topics[joined["index"].to_numpy()] = joined["topic"].fill_null(-1).to_numpy()
    return topics


@dataclass(frozen=True)
class Purity:
    purity: float  # mean over users of capsule-cluster purity w.r.t. the planted topics
    shuffled: float  # same capsule sizes, assignment permuted within the user
    majority: float  # one cluster: share of the user's most common topic
    n_users: int


def cluster_purity(assignment: np.ndarray, topics: np.ndarray) -> float:
    """Σ_clusters max_topic |cluster ∩ topic| / n for one user's behaviors."""
    pairs = Counter(zip(assignment.tolist(), topics.tolist()))
    best: dict[int, int] = {}
    for (cluster, _), n in pairs.items():
        best[cluster] = max(best.get(cluster, 0), n)
    return sum(best.values()) / len(topics)


@torch.no_grad()
def capsule_purity(
    model: nn.Module, data, item_topic: np.ndarray, batch_size: int = 4096, min_interests: int = 2,
    generator: torch.Generator | None = None, shuffle_seed: int = 0,
) -> Purity:
    """Purity of capsule clusters vs planted topics over the users (label-1 rows) of `data`
    (a SampleSet, or an iterable of Batches) with at least `min_interests` active capsules."""
    micn = micn_of(model)
    was_training = micn.training
    micn.eval()
    rng = np.random.default_rng(shuffle_seed)
    scores: dict[str, list[np.ndarray]] = {"purity": [], "shuffled": [], "majority": []}
    batches = data.batches(batch_size) if hasattr(data, "batches") else data
    try:
        for batch in batches:
            rows = (batch.label > 0.5).nonzero().squeeze(1)
            batch = Batch(**{f: getattr(batch, f)[rows] for f in Batch.__dataclass_fields__})
            routing = micn.interests(batch, generator)
            users = (routing.active.sum(dim=1) >= min_interests).cpu().numpy()  # (B,)
            for key, values in _user_purities(routing, batch, item_topic, users, rng).items():
                scores[key].append(values)
    finally:
        micn.train(was_training)
    per_user = {k: np.concatenate(v) if v else np.zeros(0) for k, v in scores.items()}
    n = len(per_user["purity"])
    mean = {k: float(np.mean(v)) if n else float("nan") for k, v in per_user.items()}
    return Purity(mean["purity"], mean["shuffled"], mean["majority"], n)


def _user_purities(routing, batch: Batch, item_topic: np.ndarray, users: np.ndarray,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per user (rows of `batch` where `users` is true and at least one real behavior has a known
    topic, in row order): purity of the capsule clusters, of the same clusters shuffled within the
    user (one `rng.permutation` per user, in row order), and of one cluster (majority topic).

    Each behavior belongs to the capsule holding most of its routing weight; purity is
    Σ_capsules max_topic |capsule ∩ topic| / n, exactly `cluster_purity` per user, counted at once."""
    owner = routing.weights.argmax(dim=1).cpu().numpy()  # (B, T), capsule holding most of each behavior
    real = batch.hist_mask.cpu().numpy()  # (B, T)
    topic_of = np.asarray(item_topic)
    topics = topic_of[np.minimum(batch.hist_items.cpu().numpy(), len(topic_of) - 1)]  # (B, T)
    keep = real & (topics >= 0)
    rows = np.flatnonzero(users & keep.any(axis=1))
    if not len(rows):
        return {"purity": np.zeros(0), "shuffled": np.zeros(0), "majority": np.zeros(0)}
    owner, topics, keep = owner[rows], topics[rows], keep[rows]
    shuffled = owner.copy()
    for b in range(len(rows)):  # a permutation of each user's own assignment: same capsule sizes
        shuffled[b, keep[b]] = rng.permutation(owner[b, keep[b]])
    _, topic = np.unique(topics[keep], return_inverse=True)  # topics as 0 .. n_topics − 1
    n_topics, K = int(topic.max()) + 1, routing.weights.shape[1]
    user = np.broadcast_to(np.arange(len(rows))[:, None], keep.shape)[keep]
    n = keep.sum(axis=1)

    def purity(assignment: np.ndarray) -> np.ndarray:
        counts = np.bincount((user * K + assignment[keep]) * n_topics + topic, minlength=len(rows) * K * n_topics)
        return counts.reshape(len(rows), K, n_topics).max(axis=2).sum(axis=1) / n

    majority = np.bincount(user * n_topics + topic, minlength=len(rows) * n_topics).reshape(len(rows), n_topics)
    return {"purity": purity(owner), "shuffled": purity(shuffled), "majority": majority.max(axis=1) / n}


@torch.no_grad()
def capsule_evidence(
    model: nn.Module, data, item_topic: np.ndarray, generator: torch.Generator, batch_size: int = 4096,
    nearest: int = 5, max_users: int = 2000,
) -> dict[str, float | None]:
    """Evidence, per evaluation, that MICN's capsules hold distinct interests (synthetic data).

    Users: the first `max_users` positive rows of `data` (a SampleSet, file order) with at least 2
    active capsules. Returns
      capsule_purity           mean purity of the users' capsule clusters vs the planted topics
                               (`item_topic`, item index -> topic, −1 unknown), as `capsule_purity`;
      capsule_purity_shuffled  the same clusters permuted within each user (same capsule sizes);
      capsule_overlap          mean over users of the mean over pairs (a, b) of the user's active
                               capsules of |N(a) ∩ N(b)| / nearest, N(a) the `nearest` items (real ids
                               only) with the largest inner product with capsule a over
                               the whole e_aux table: 1.0 collapsed capsules, about 0 distinct ones.
    A value is None when no user qualifies (purity also needs a behavior of known topic).

    Reads MICN through `interests(batch, generator)` (its capsules after the tower, their routing
    weights and active mask, from one routing) and `item_table()`. The routing logits and the
    shuffle come from `generator` only (on the model's device; never MICN's training generator,
    never the global RNG), every module's train/eval mode is restored, and no weight changes.
    """
    result, _ = measure_capsules(model, data, item_topic, generator, batch_size, nearest, max_users)
    return result


def measure_capsules(model: nn.Module, data, item_topic: np.ndarray, generator: torch.Generator, batch_size: int,
                     nearest: int, max_users: int) -> tuple[dict[str, float | None], int]:
    """`capsule_evidence` and the number of users it was measured on."""
    micn = micn_of(model)
    if micn.generator is not None and generator is micn.generator:
        raise ValueError("capsule_evidence needs an evaluation generator, not MICN's training generator: drawing "
                         "from it would change the training run's routing logits and negatives")
    if nearest < 1 or max_users < 1:
        raise ValueError(f"nearest ({nearest}) and max_users ({max_users}) must be >= 1")
    device = micn.item_category.device
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        # one draw of the given generator seeds the shuffle: deterministic, and no other RNG is touched
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))
        rng = np.random.default_rng(seed)
        positive = torch.nonzero(data.label > 0).squeeze(1)
        scores: dict[str, list[np.ndarray]] = {"purity": [], "shuffled": []}
        vectors, active, n_users = [], [], 0
        for start in range(0, len(positive), batch_size):
            if n_users >= max_users:
                break
            batch = data.batch(positive[start:start + batch_size]).to(device)
            routing = micn.interests(batch, generator)
            users = (routing.active.sum(dim=1) >= 2).cpu().numpy()  # (B,)
            users &= np.cumsum(users) <= max_users - n_users  # the first max_users of them
            n_users += int(users.sum())
            for key, values in _user_purities(routing, batch, item_topic, users, rng).items():
                if key in scores:
                    scores[key].append(values)
            rows = torch.as_tensor(np.flatnonzero(users), device=device)
            vectors.append(routing.capsules[rows])  # (u, K, D)
            active.append(routing.active[rows])  # (u, K)
        overlap = _overlap(torch.cat(vectors), torch.cat(active), micn.item_table(), nearest) if n_users else None
    finally:
        for module, mode in modes:
            module.training = mode
    purity = {k: np.concatenate(v) for k, v in scores.items()}
    has_purity = bool(n_users) and len(purity["purity"]) > 0
    return {"capsule_purity": float(np.mean(purity["purity"])) if has_purity else None,
            "capsule_purity_shuffled": float(np.mean(purity["shuffled"])) if has_purity else None,
            "capsule_overlap": overlap}, n_users


def capsule_overlap(vectors: torch.Tensor, active: torch.Tensor, table: torch.Tensor, nearest: int = 5) -> float:
    """Mean over users of the mean over pairs of active capsules of |N(a) ∩ N(b)| / nearest.

    vectors (U, K, D) interest vectors, active (U, K) bool, table (I, D) item embeddings by index
    (rows 0 and 1, padding and OOV, are never nearest). Users with fewer than 2 active capsules
    have no pair and are left out; NaN when no user has a pair."""
    value = _overlap(vectors, active.bool(), table, nearest)
    return float("nan") if value is None else value


def _overlap(vectors: torch.Tensor, active: torch.Tensor, table: torch.Tensor, nearest: int) -> float | None:
    U, K, _ = vectors.shape
    n_items = table.shape[0]
    n = min(nearest, n_items - FIRST_REAL_ID)
    if n < 1:
        raise ValueError(f"the item table has {n_items} rows: no item besides padding and OOV to be nearest")
    table = table.to(vectors.dtype)
    chunk = max(1, 2**24 // max(1, K * n_items))  # users per chunk: scores of at most 16 M floats at once
    tops = []
    for start in range(0, U, chunk):
        v = vectors[start:start + chunk]  # (u, K, D)
        scores = (v.reshape(-1, v.shape[-1]) @ table.T).view(v.shape[0], K, n_items)  # (u, K, I), one GEMM
        scores[..., :FIRST_REAL_ID] = float("-inf")  # padding and OOV are not items
        tops.append(scores.topk(n, dim=-1).indices)  # (u, K, n), distinct items per capsule
    top = torch.cat(tops)  # (U, K, n)
    shared = (top[:, :, None, :, None] == top[:, None, :, None, :]).sum(dim=(-1, -2))  # (U, K, K) = |N(a) ∩ N(b)|
    pairs = active[:, :, None] & active[:, None, :] & torch.ones(K, K, dtype=torch.bool, device=top.device).triu(1)
    n_pairs = pairs.sum(dim=(1, 2))  # (U,)
    users = n_pairs > 0
    if not bool(users.any()):
        return None
    per_user = (shared * pairs).sum(dim=(1, 2))[users].double() / (n_pairs[users].double() * n)
    return float(per_user.mean())
