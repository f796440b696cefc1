"""Interests you can look at: a trained MICN's capsules, their nearest items, and their purity.

The MICN paper leaves inspecting the learned interests to future work; this module does it.

    model, ckpt = load_model(run_dir)                       # a run's model.pt, trained with MICN
    vocab = Vocab.load(samples_dir)                         # index <-> raw item id / category
    users = user_interests(model, batch, vocab, top_n=10)   # per row: active capsules, nearest items
    print(format_interests(users))
    topics = item_topics(samples_dir, samples_dir / "oracle")  # synthetic worlds: item index -> planted topic
    capsule_purity(model, test_split, topics)               # Purity(purity, shuffled, majority, n_users)
    capsule_evidence(model, valid_split, topics, generator)  # per evaluation: purity, shuffled, overlap

A capsule's nearest items are the items with the largest dot product between the capsule and
their e_aux (the space MICN's sampled softmax scores in), ids 2 .. n_items − 1; its dominant
categories are the most common categories among those items.

Purity (synthetic data): for each user with at least `min_interests` active capsules, every real
history behavior is assigned to the capsule that holds most of its routing weight; the purity of
that clustering w.r.t. the planted topics is Σ_capsules max_topic |capsule ∩ topic| / n. Two
baselines on the same users: `shuffled` permutes the assignment within each user (same capsule
sizes, no relation to the items), `majority` puts every behavior in one cluster. Purity above
`shuffled` means the routing groups behaviors by topic.

Overlap: for a user's active capsules a, b, |N(a) ∩ N(b)| / n, N the n nearest items of a capsule;
1.0 means the capsules collapsed into one interest, about 0 that they point at different items.
`capsule_evidence` gives purity, shuffled and overlap on one routing, for the trainer's evaluations.

Routing logits are random (MIND draws them fresh per forward); pass a seeded `generator` for a
repeatable picture. Nothing here changes the model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from micn.data.batch import Batch
from micn.errors import MicnError
from micn.models.micn_aux import MICNAux, MICNConfig
from micn.models.with_micn import WithMICN, build_with_micn

PADDING_NAMES = ("<pad>", "<oov>")  # item / category indexes 0 and 1
OVERLAP_NEAREST, OVERLAP_USERS = 5, 2000  # `micn interests`' capsule overlap: nearest items, users


@dataclass(frozen=True)
class Vocab:
    """Index -> raw id, from a samples directory's `vocab_item.parquet` / `vocab_category.parquet`."""

    item_ids: np.ndarray  # (n_items,) str
    categories: np.ndarray  # (n_categories,) str

    @classmethod
    def load(cls, samples_dir: str | Path) -> Vocab:
        samples_dir = Path(samples_dir)
        return cls(_index_to_name(samples_dir / "vocab_item.parquet", "item_id"),
                   _index_to_name(samples_dir / "vocab_category.parquet", "category"))


def _index_to_name(path: Path, column: str) -> np.ndarray:
    if not path.is_file():
        raise MicnError(f"{path}: no such vocabulary file; build the samples first (`micn samples`).")
    df = pl.read_parquet(path, columns=[column, "index"])
    names = np.array([*PADDING_NAMES, *([""] * (int(df["index"].max() or 1) - 1))], dtype=object)
    names[df["index"].to_numpy()] = df[column].to_numpy()
    return names


@dataclass(frozen=True)
class NearItem:
    index: int
    item_id: str | None  # raw id when a Vocab is given
    category: str | int  # raw category name, or its index without a Vocab
    score: float  # capsule · e_aux(item)


@dataclass(frozen=True)
class Interest:
    slot: int  # capsule slot 0 .. K_u − 1
    norm: float  # ‖capsule‖ in [0, 1)
    n_behaviors: int  # history behaviors whose routing weight is largest on this capsule
    items: tuple[NearItem, ...]  # nearest items, best first
    categories: tuple[tuple[str | int, int], ...]  # dominant categories among `items`, (category, count)


@dataclass(frozen=True)
class UserInterests:
    row: int  # row in the batch
    user: int  # user index
    hist_len: int
    interests: tuple[Interest, ...]  # the active capsules only


def _micn_of(model: nn.Module) -> MICNAux:
    micn = model.micn if isinstance(model, WithMICN) else model
    if not isinstance(micn, MICNAux):
        raise TypeError(f"expected a WithMICN or MICNAux model, got {type(model).__name__}")
    return micn


@torch.no_grad()
def item_table(model: nn.Module) -> torch.Tensor:
    """e_aux of every item index (n_items, d_aux), each with its recorded category."""
    micn = _micn_of(model)
    items = torch.arange(micn.n_items, device=micn.item_category.device)
    return micn.embed(items, micn.item_category)


@torch.no_grad()
def user_interests(
    model: nn.Module, batch: Batch, vocab: Vocab | None = None, top_n: int = 10, n_categories: int = 3,
    generator: torch.Generator | None = None,
) -> list[UserInterests]:
    """Every row's active interest capsules with their `top_n` nearest items and dominant categories."""
    micn = _micn_of(model)
    was_training = micn.training
    micn.eval()
    try:
        routing = micn.interests(batch, generator)
    finally:
        micn.train(was_training)
    table = item_table(micn)  # (n_items, D)
    scores = torch.einsum("bkd,nd->bkn", routing.capsules, table)  # (B, K, n_items)
    scores[..., :2] = float("-inf")  # padding and OOV are not items
    top = scores.topk(min(top_n, micn.n_items - 2), dim=-1)  # (B, K, top_n)
    owner = routing.weights.argmax(dim=1)  # (B, T), capsule holding most of each behavior
    T = batch.hist_items.shape[1]
    real = torch.arange(T).unsqueeze(0) >= (T - batch.hist_len.cpu()).unsqueeze(1)  # (B, T)
    categories = micn.item_category.cpu()
    out = []
    for b in range(len(batch)):
        interests = []
        for k in range(int(routing.active[b].sum())):
            items = []
            for index, score in zip(top.indices[b, k].tolist(), top.values[b, k].tolist()):
                c = int(categories[index])
                items.append(NearItem(index, vocab.item_ids[index] if vocab else None,
                                      vocab.categories[c] if vocab else c, score))
            counts = Counter(it.category for it in items).most_common(n_categories)
            n_behaviors = int(((owner[b].cpu() == k) & real[b]).sum())
            interests.append(Interest(k, float(routing.capsules[b, k].norm()), n_behaviors, tuple(items), tuple(counts)))
        out.append(UserInterests(b, int(batch.user[b]), int(batch.hist_len[b]), tuple(interests)))
    return out


def format_interests(users: list[UserInterests], items_shown: int = 5) -> str:
    """A plain-text report: one block per user, one line per capsule."""
    lines = []
    for u in users:
        lines.append(f"user {u.user} (row {u.row}), {u.hist_len} behaviors, {len(u.interests)} interests")
        for it in u.interests:
            cats = ", ".join(f"{c} ×{n}" for c, n in it.categories)
            near = ", ".join(str(x.item_id if x.item_id is not None else x.index) for x in it.items[:items_shown])
            lines.append(f"  capsule {it.slot}: |v|={it.norm:.2f}, {it.n_behaviors} behaviors; {cats}; items {near}")
    return "\n".join(lines)


def load_model(path: str | Path, map_location: str = "cpu") -> tuple[WithMICN, dict]:
    """The WithMICN model of a run directory (or its `model.pt`), and the whole model file dict.

    Expects `{"model", "backbone", "config", "micn", "feature_map"}`: the state dict, backbone
    name, TrainConfig fields (d_item, d_category), MICNConfig fields and the feature map. The file
    is read with `weights_only=True` (tensors and plain data), so a crafted file cannot run code.
    """
    from micn.config import TrainConfig
    from micn.train import backbone_config, load_tensors

    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise MicnError(f"{path}: no such model file; train a run with `micn train --variant micn` first.")
    ckpt = load_tensors(path, "model file", map_location)
    missing = [k for k in ("model", "backbone", "config", "micn", "feature_map") if k not in ckpt]
    if missing:
        raise MicnError(f"{path}: keys {missing} are missing; it is not a model file written by `micn train`.")
    if ckpt["micn"] is None or ckpt.get("variant") == "control":
        raise MicnError(f"{path}: this run was trained without MICN (variant {ckpt.get('variant') or 'base'}), so it "
                        "has no interest capsules to show; pick a run of variant micn (`micn train --variant micn`, "
                        "or a grid run named <backbone>-micn-...).")
    fmap, cfg = ckpt["feature_map"], ckpt["config"]
    model = build_with_micn(ckpt["backbone"], fmap["n_users"], fmap["n_items"], fmap["n_categories"],
                            cfg["d_item"], cfg["d_category"], MICNConfig(**ckpt["micn"]),
                            backbone_cfg=backbone_config(ckpt["backbone"], TrainConfig(**cfg)))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


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
    micn = _micn_of(model)
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
    T = batch.hist_items.shape[1]
    real = (np.arange(T)[None, :] >= (T - batch.hist_len.cpu().numpy())[:, None])  # (B, T)
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


EVIDENCE_KEYS = ("capsule_purity", "capsule_purity_shuffled", "capsule_overlap")


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
                               capsules of |N(a) ∩ N(b)| / nearest, N(a) the `nearest` items (ids
                               2 .. n_items − 1) with the largest inner product with capsule a over
                               the whole e_aux table: 1.0 collapsed capsules, about 0 distinct ones.
    A value is None when no user qualifies (purity also needs a behavior of known topic).

    Reads MICN through `interests(batch, generator)` (its capsules after the tower, their routing
    weights and active mask, from one routing) and `item_table()`. The routing logits and the
    shuffle come from `generator` only (on the model's device; never MICN's training generator,
    never the global RNG), every module's train/eval mode is restored, and no weight changes.
    """
    result, _ = _capsule_evidence(model, data, item_topic, generator, batch_size, nearest, max_users)
    return result


def _capsule_evidence(model, data, item_topic, generator, batch_size, nearest, max_users):
    micn = _micn_of(model)
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
    n = min(nearest, n_items - 2)
    if n < 1:
        raise ValueError(f"the item table has {n_items} rows: no item besides padding and OOV to be nearest")
    table = table.to(vectors.dtype)
    chunk = max(1, 2**24 // max(1, K * n_items))  # users per chunk: scores of at most 16 M floats at once
    tops = []
    for start in range(0, U, chunk):
        scores = torch.einsum("ukd,id->uki", vectors[start:start + chunk], table)  # (u, K, I)
        scores[..., :2] = float("-inf")  # padding and OOV are not items
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


def describe_user(run_dir: str | Path, user_id: str, samples_dir: str | Path | None = None, items_shown: int = 5,
                  seed: int = 0) -> str:
    """The `micn interests` report: one user's capsules, and on synthetic data the test users' purity.

    The user's most recent positive sample (test, then valid, then train split) gives the history
    that is routed; `samples_dir` defaults to the one the run was trained on (`samples_of`).
    Everything is read from the run's model file and its samples directory.
    """
    from micn.data.dataset import SampleSet

    if isinstance(items_shown, bool) or not isinstance(items_shown, int) or items_shown < 1:
        raise MicnError(f"--items {items_shown!r}: the number of nearest items shown per capsule must be >= 1.")
    model, ckpt = load_model(run_dir)
    fmap = ckpt["feature_map"]
    samples_dir = Path(samples_dir) if samples_dir else samples_of(Path(run_dir), ckpt)
    generator = torch.Generator().manual_seed(seed)  # routing logits are random: a repeatable picture
    for split in ("test", "valid", "train"):
        data = SampleSet.from_parquet(samples_dir / f"{split}.parquet", fmap)
        rows = np.flatnonzero((data.user_ids == user_id) & (data.label.numpy() == 1))
        if len(rows):
            batch = data.batch(torch.as_tensor(rows[-1:], dtype=torch.long))
            users = user_interests(model, batch, Vocab.load(samples_dir), top_n=max(items_shown, 10), generator=generator)
            report = [f"user {user_id} ({split} split): {format_interests(users, items_shown)}"]
            break
    else:
        raise MicnError(f"user {user_id!r} has no positive sample in {samples_dir} (train, valid or test); "
                        "give a raw reviewerID of this dataset.")
    if fmap.get("oracle") is not None:  # synthetic data: the samples carry the world's ground truth
        test = SampleSet.from_parquet(samples_dir / "test.parquet", fmap)
        topics = item_topics(samples_dir, samples_dir / fmap["oracle"])
        p = capsule_purity(model, test, topics, generator=generator)
        report.append(f"capsule purity vs planted topics over {p.n_users} test users with >= 2 interests: "
                      f"{p.purity:.3f} (shuffled assignment {p.shuffled:.3f}, one cluster {p.majority:.3f})")
        evidence, n_users = _capsule_evidence(model, test, topics, generator, 4096, OVERLAP_NEAREST, OVERLAP_USERS)
        if evidence["capsule_overlap"] is not None:
            report.append(f"capsule overlap, share of the {OVERLAP_NEAREST} nearest items two capsules of a user have "
                          f"in common, over the first {n_users} test users with >= 2 interests: "
                          f"{evidence['capsule_overlap']:.3f} (1.0: collapsed capsules, about 0: distinct interests)")
    return "\n".join(report)


def samples_of(run_dir: Path, ckpt: dict) -> Path:
    """The samples directory a run was trained on: the one its model file names, else the grid's
    layout `<root>/data/samples/<dataset>/len<L>` for a run in `<root>/models/<dataset>/<run>/`."""
    fmap = ckpt["feature_map"]
    run_dir = run_dir.parent if run_dir.suffix == ".pt" else run_dir
    candidates = [Path(ckpt["samples_dir"])] if ckpt.get("samples_dir") else []
    if len(run_dir.resolve().parents) >= 3:  # <root>/models/<dataset>/<run>
        from micn.data.layout import samples_dir

        candidates.append(samples_dir(run_dir.resolve().parents[2], str(fmap["dataset"]), int(fmap["max_len"])))
    for candidate in candidates:
        if _same_samples(candidate, fmap):
            return candidate
    tried = ", ".join(str(c) for c in candidates) or "none"
    raise MicnError(f"cannot find the samples run {run_dir} was trained on (tried: {tried}); pass --samples DIR.")


def _same_samples(samples_dir: Path, fmap: dict) -> bool:
    from micn.data.dataset import load_feature_map

    if not (samples_dir / "feature_map.json").is_file():
        return False
    found = load_feature_map(samples_dir)
    return all(found.get(k) == fmap.get(k) for k in ("dataset", "protocol", "max_len", "n_users", "n_items", "n_categories"))
