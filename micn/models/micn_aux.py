"""MICN: a multi-interest capsule network trained as an AUXILIARY task beside a CTR backbone.

Paper: "MICN: Multi-Interest Capsule Network as an auxiliary task for CTR prediction" (ICLR 2022
submission; later published as IaCN, Jaiswal & Xiong, RecSys 2023, arXiv 2308.09202). MICN owns
an item ⊕ category embedding table producing e_aux (width d_aux). A MIND-style capsule network
(B2I dynamic routing + label-aware attention, `micn/nn/capsule.py`) reads a user's history in
e_aux and is trained with a sampled softmax to predict the clicked item; the backbone sees
e = e_orig ⊕ e_aux wherever it embeds an item (`micn/models/with_micn.py`). So e_aux learns from
both losses:

    L = L_main + λ · L_micn              ∇ reaching e_aux = (1 − φ)·∇_aux + φ·∇_main

implemented with `scale_grad` (identity forward, grad·s backward) on the two copies of e_aux,
never by editing optimizers. e_orig only ever receives the main gradient.

Paper configuration: λ = 1, φ = 0.3, K from log2 of the history length (capped at k_max, 5 by
default, so that a history of 50 gets its 5 interests), r = 3 routing iterations, Adam with lr 1e-4, 5 repeats. λ is the trainer's weight of the
"micn" auxiliary loss; φ lives here because it shapes the gradient, not the loss.

    MICNConfig(d_aux, k_max, iterations, pow_p, n_neg, sampler, lambda_micn, phi, routing_std,
               user_profile, post_layers, retrieval_k)
    MICNAux(cfg, n_items, n_categories, item_categories=None, generator=None, n_users=None)
        .embed(items, categories) -> e_aux (..., d_aux)
        .interests(batch, generator=None) -> Routing (user vectors, active, weights)
        .user_capsules(batch, generator) -> (user vectors (B, K, d_aux), active (B, K))  evaluation
        .item_table() -> e_aux of every item index (n_items, d_aux)                   evaluation
        .loss(batch) -> L_micn (scalar)
        .measure_grads / .grad_norms() -> ‖gradient reaching the e_aux table‖ from the main loss
                                          and from L_micn in the last backward (off by default)

The user tower. The capsule-only form (`post_layers: []`, `user_profile: false`: the ABLATION,
the earlier default, bit for bit): the squashed capsules ARE the user's interest vectors. The
paper's form (Fig. 1, following MIND §3.3) through two `MICNConfig` fields; the default is
`post_layers: [64]` without the profile (why: micn/config.py and the training-regime findings):
- `user_profile: true` joins the user profile to every capsule, [capsule_k ⊕ profile]. Our data
  has no profile features beside the user id (Amazon reviews carry none; the synthetic world
  hides its users' weights), so the profile is a user-id embedding OWNED BY MICN (n_users ×
  ⌈d_aux/2⌉, init N(0, 0.01²) like every table; the backbone keeps its own user embedding). What
  it holds per protocol: under `din` the validation and test users are training users, so it
  is their trained row; under `dien` users are split by user, every validation and test user is
  out-of-vocabulary (index 1) and no training user is, so for them the profile is the OOV row,
  which no training row updates: a constant at its initialisation, i.e. evaluation sees the
  tower with a fixed, uninformative profile. Only MICN's own evidence (Recall@K of
  `user_capsules`) reads the tower at evaluation; the CTR logits never do (they read e_aux only).
- `post_layers: [h1, h2, ...]` applies MIND's ReLU layers to each capsule (joined or not):
  Linear(in, h1) ReLU ... Linear(h_last, d_aux), the final Linear without activation so that the
  user vector lives in e_aux's space and is not bounded: without it the squashed capsule has
  norm < 1 and every MICN logit is below ‖e_aux‖ (about 0.06 at init), so L_micn learns slowly.
  `user_profile` alone implies the projection Linear(d_aux + ⌈d_aux/2⌉, d_aux).
  Inactive capsule slots are zeroed after the tower too (the tower would map them to
  f(0 ⊕ profile)), so K_u, the attention mask and the evidence are unchanged by it.
The tower's modules are created AFTER everything the capsule-only form creates, and only when
asked for, so with the ablation flag the module tree, the parameter creation order and the RNG
draws are exactly the capsule-only form's
(tests/test_micn_release.py::test_capsule_only_ablation_matches_the_reference_commit_bit_for_bit).

L_micn, per batch: a set of (behaviours -> positive item) pairs; for each, the capsules of the
behaviours, v_u by label-aware attention towards the positive, and a sampled softmax of the
positive against `n_neg` candidates drawn once per batch (uniform or log-uniform over the real
item ids, with logQ correction and accidental hits masked); mean over pairs, 0 when there is
none. Which pairs is `supervision`:
- `target` (the paper, default): rows with label 1 and a non-empty history -> the clicked item
  (the paper computes MICN's loss on positive samples only; a user with no behavior has no
  interest to learn from). One pair per positive row and pass.
- `history` (ours, MIND's feed): every row with at least two behaviours, whatever its label,
  gives one pair: a prefix of its history -> the behaviour that follows it, the prefix length
  drawn uniformly by MICN's generator. Only the history is read, never the row's target.

Choices the paper leaves open (see `micn/nn/capsule.py` for the routing ones):
- d_aux is split item ⌈d_aux/2⌉ ⊕ category ⌊d_aux/2⌋ (36 = 18 + 18, like e_orig); init N(0, 0.01²).
- Capsules have width d_aux (S is d_aux × d_aux), so v_u lives in the item space.
- pow_p defaults to 2 (soft attention; p multiplies the score, see capsule.py). MIND's default
  p = 100 is hard argmax here too: set pow_p: 100 (or .inf) for it.
- Sampled candidates need their category: `item_category` (n_items,) is a persistent buffer,
  filled from `item_categories` if given and, in training mode, from every batch's (item,
  category) pairs (an item's category never changes). Items not seen yet use category 0 (the
  zero padding vector) for their category half.

Dimension glossary: B batch, T history length, D = d_aux, K = k_max, M = n_neg.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from micn.config import MICNConfig
from micn.data.batch import Batch
from micn.nn.capsule import (
    B2IRouting,
    Routing,
    label_aware_attention,
    sample_candidates,
    sampled_softmax_loss,
    scale_grad,
)
from micn.names import FIRST_REAL_ID, PADDING_ID
from micn.nn.embedding import ItemEmbedding, init_embedding_, sum_rows

GRAD_PATHS = ("main", "micn")  # the two gradients reaching e_aux: backbone's losses, L_micn


def capsule_tower(d_in: int, hidden: tuple[int, ...], d_out: int) -> nn.Sequential:
    """MIND's ReLU layers on each capsule: Linear(d_in, h1) ReLU ... Linear(h_last, d_out);
    one Linear(d_in, d_out) when `hidden` is empty. Applies to the last dimension, (..., d_in)."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d_in, h), nn.ReLU()]
        d_in = h
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


class MICNAux(nn.Module):
    """The auxiliary capsule network: its e_aux table, B2I routing, the user tower (capsules only,
    or the paper's profile join and ReLU layers), label-aware attention, L_micn."""

    def __init__(
        self, cfg: MICNConfig, n_items: int, n_categories: int, item_categories: torch.Tensor | None = None,
        generator: torch.Generator | None = None, n_users: int | None = None,
    ) -> None:
        super().__init__()
        assert n_items >= 3, f"MICN samples candidates from ids 2 .. n_items − 1, so n_items >= 3; got {n_items}"
        self.cfg = cfg
        self.n_items = n_items
        self.d_aux = cfg.d_aux
        self.embedding = ItemEmbedding(n_items, n_categories, cfg.d_aux - cfg.d_aux // 2, cfg.d_aux // 2)
        assert self.embedding.out_dim == cfg.d_aux, f"e_aux width {self.embedding.out_dim} != d_aux {cfg.d_aux}"
        self.routing = B2IRouting(cfg.d_aux, cfg.d_aux, cfg.k_max, cfg.iterations, cfg.routing_std)
        self.register_buffer("item_category", torch.zeros(n_items, dtype=torch.long))  # item index -> category index
        # Source of the training-time randomness (routing logits, sampled candidates), on the device
        # the model runs on. The trainer gives each run its own seeded generator, so runs in parallel
        # threads stay deterministic; None falls back to torch's process-wide RNG.
        self.generator = generator
        if item_categories is not None:
            assert item_categories.shape == (n_items,), (
                f"item_categories must be ({n_items},), one category per item index; got {tuple(item_categories.shape)}"
            )
            self.item_category.copy_(item_categories)
        # The paper's tower, created last so that the capsule-only form draws exactly what it draws alone.
        self.profile: nn.Embedding | None = None
        self.tower: nn.Sequential | None = None
        d_tower = cfg.d_aux
        if cfg.user_profile:
            assert n_users is not None and n_users >= FIRST_REAL_ID, (
                f"user_profile needs n_users (padding and OOV included, so >= {FIRST_REAL_ID}); got {n_users}")
            self.profile = nn.Embedding(n_users, cfg.d_aux - cfg.d_aux // 2, padding_idx=PADDING_ID)
            init_embedding_(self.profile, std=0.01)
            d_tower += self.profile.embedding_dim
        if cfg.user_profile or cfg.post_layers:
            self.tower = capsule_tower(d_tower, tuple(cfg.post_layers), cfg.d_aux)
        # Gradient-norm measurement (off unless asked): per path, the gradient reaching each half
        # of the e_aux table, accumulated by tensor hooks during backward (`grad_norms`).
        self.measure_grads = False
        self._grad_tables: dict[str, list[tuple[torch.Tensor, ...]]] = {}

    def rng_state(self) -> torch.Tensor | None:
        """The state of MICN's generator (for checkpoints), None when it uses torch's global RNG."""
        return None if self.generator is None else self.generator.get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        """Restore a state from `rng_state` (a resumed run continues MICN's random draws exactly)."""
        if self.generator is None:
            raise ValueError("this MICN draws from torch's global RNG (no generator given at construction); "
                             "there is no generator state to restore")
        self.generator.set_state(state)

    def embed(self, items: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        """e_aux: (...) ids -> (..., d_aux). No gradient scaling here: callers scale their copy."""
        return self.embedding(items, categories)

    @torch.no_grad()
    def observe(self, batch: Batch) -> None:
        """Record the (item, category) pairs of a batch in `item_category` (targets and real behaviors)."""
        real = batch.hist_mask  # (B, T), from hist_len: ids at padded positions are not trusted
        items = torch.cat([batch.item, batch.hist_items[real]])
        categories = torch.cat([batch.category, batch.hist_categories[real]])
        known = items >= FIRST_REAL_ID  # OOV stands for many items with different categories
        self.item_category[items[known]] = categories[known]

    def user_vectors(self, routing: Routing, users: torch.Tensor) -> torch.Tensor:
        """The tower on the capsules: (B, K, D) capsules, (B,) user ids -> (B, K, D) interest
        vectors, zero on inactive slots. Identity in the capsule-only form (no profile, no layers)."""
        if self.tower is None:
            return routing.capsules
        x = routing.capsules  # (B, K, D)
        if self.profile is not None:
            profile = self.profile(users)  # (B, P)
            x = torch.cat([x, profile.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=-1)  # (B, K, D + P)
        return self.tower(x) * routing.active.unsqueeze(-1).to(x.dtype)  # (B, K, D)

    def interests(self, batch: Batch, generator: torch.Generator | None = None) -> Routing:
        """Interest vectors of every row's history (capsules through the tower; no gradient
        scaling; for inspection). Draws routing logits from `generator` (global RNG if None)."""
        hist = self.embed(batch.hist_items, batch.hist_categories)  # (B, T, D)
        routing = self.routing(hist, batch.hist_len, generator)
        if self.tower is None:
            return routing
        return dataclasses.replace(routing, capsules=self.user_vectors(routing, batch.user))

    @torch.no_grad()
    def user_capsules(
        self, batch: Batch, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluation: every row's interest vectors (B, K_max, d_aux) and active mask (B, K_max).

        The vectors label-aware attention reads (after the tower). Routing logits come from
        `generator`, never from MICN's training generator, so evaluating leaves the training draws
        untouched (a generator lives on one device: give one on the batch's device); None means
        a fresh generator seeded 0 on the batch's device (deterministic, and the global RNG is
        not touched either). Rows with an empty history get one active
        slot (K_u = 1) holding the tower's image of a zero capsule (zero in the capsule-only form).
        """
        if generator is None:
            generator = torch.Generator(device=batch.item.device).manual_seed(0)
        if self.generator is not None and generator is self.generator:
            raise ValueError("user_capsules needs an evaluation generator, not MICN's training generator: drawing "
                             "from it would change the training run's routing logits and negatives")
        routing = self.interests(batch, generator)
        return routing.capsules, routing.active

    @torch.no_grad()
    def item_table(self) -> torch.Tensor:
        """e_aux of every item index (n_items, d_aux), each with its recorded category (as training
        embeds it: `item_category`, filled from the data and from every training batch). Rows 0
        (padding, zero) and 1 (OOV) are not items: retrieval must exclude them."""
        items = torch.arange(self.n_items, device=self.item_category.device)
        return self.embed(items, self.item_category)

    # -----------------------------------------------------------------------------------------
    # Gradient norms of the two paths into e_aux

    def track_grad(self, e: torch.Tensor, items: torch.Tensor, categories: torch.Tensor, path: str) -> None:
        """When `measure_grads` is on, keep the gradient that reaches the lookup `e` (..., d_aux)
        (already scaled by φ or 1 − φ) with the ids it was looked up by; `grad_norms` sums it per
        table row, as the embedding backward does. Called by the two readers of e_aux, on the
        tensor BEFORE scale_grad. Costs O(lookups), never O(table)."""
        if not (self.measure_grads and e.requires_grad):
            return
        d_item = self.embedding.item.embedding_dim

        def hook(grad: torch.Tensor) -> None:
            g = grad.detach().reshape(-1, grad.shape[-1])  # (N, D)
            self._grad_tables.setdefault(path, []).append((items.reshape(-1), categories.reshape(-1),
                                                           g[:, :d_item], g[:, d_item:]))

        e.register_hook(hook)

    def reset_grad_norms(self) -> None:
        """Forget the last step's gradients (WithMICN calls this at every training forward)."""
        self._grad_tables = {}

    def grad_norms(self) -> tuple[float, float] | None:
        """(‖∇ from the main loss‖, ‖∇ from L_micn‖) on the e_aux table (item and category halves
        together, padding row excluded, as the optimizer receives them: the main one scaled by φ,
        L_micn's by (1 − φ) and by the trainer's λ) of the last backward; None when nothing was
        measured (measurement off, or no backward since the last training forward). Divide by φ
        and 1 − φ for the unscaled gradients. One host sync per call."""
        if not self._grad_tables:
            return None
        norms = []
        for path in GRAD_PATHS:
            lookups = self._grad_tables.get(path, [])
            sq = 0.0
            for half in (0, 1):  # the item half (ids, grads) and the category half of e_aux
                if lookups:
                    ids = torch.cat([lookup[half] for lookup in lookups])  # (N,)
                    grads = torch.cat([lookup[2 + half] for lookup in lookups])  # (N, D_half)
                    rows, sums = sum_rows(ids, grads)  # what the table's gradient holds, per touched row
                    sq += float((sums[rows != PADDING_ID] ** 2).sum())
            norms.append(sq**0.5)
        return norms[0], norms[1]

    def loss(self, batch: Batch) -> torch.Tensor:
        """L_micn of the batch (`cfg.supervision`); gradients into e_aux scaled by 1 − φ."""
        if self.training:
            self.observe(batch)
        if self.cfg.supervision == "history":
            pairs = next_behaviour_pairs(batch, self.generator)
        else:
            pairs = clicked_target_pairs(batch)
        if pairs.rows.numel() == 0:
            return self.routing.S.new_zeros(())
        return self._sampled_loss(pairs, batch.user[pairs.rows])

    def _sampled_loss(self, pairs: Pairs, users: torch.Tensor) -> torch.Tensor:
        """Mean sampled softmax of each pair's positive against `n_neg` candidates, from the capsules
        of its behaviours and label-aware attention towards the positive."""
        targets = pairs.items  # (N,)
        neg_ids, neg_log_count = sample_candidates(self.cfg.n_neg, self.n_items, self.cfg.sampler,
                                                   generator=self.generator, device=targets.device)  # (M,), (M,)

        # One lookup for history, targets and candidates: one embedding backward instead of three.
        (N, L), M = pairs.hist_items.shape, neg_ids.numel()
        items = torch.cat([pairs.hist_items.reshape(-1), targets, neg_ids])
        categories = torch.cat([pairs.hist_categories.reshape(-1), pairs.categories, self.item_category[neg_ids]])
        e = self.embed(items, categories)  # (N·L + N + M, D)
        self.track_grad(e, items, categories, "micn")
        e = scale_grad(e, 1.0 - self.cfg.phi)
        hist, target, sampled = e.split([N * L, N, M])  # split, not slices: its backward is one cat
        hist = hist.view(N, L, -1)  # (N, L, D); target (N, D), sampled (M, D)

        routing = self.routing(hist, pairs.lengths, self.generator)
        vectors = self.user_vectors(routing, users)  # (N, K, D); the capsules in the capsule-only form
        user, _ = label_aware_attention(vectors, routing.active, target, self.cfg.pow_p)  # (N, D)
        return sampled_softmax_loss(user, target, targets, sampled, neg_ids, neg_log_count).mean()


@dataclasses.dataclass(frozen=True)
class Pairs:
    """L_micn's training pairs: behaviours (N, L) left-padded (their last `lengths` positions are
    real) -> the positive item and its category (N,), for the batch rows `rows` (N,)."""

    rows: torch.Tensor
    hist_items: torch.Tensor
    hist_categories: torch.Tensor
    lengths: torch.Tensor
    items: torch.Tensor
    categories: torch.Tensor


def clicked_target_pairs(batch: Batch) -> Pairs:
    """The paper's supervision: each positive row with a history -> its clicked target (the paper
    computes MICN's loss on positive samples only; a user with no behaviour has no interest)."""
    rows = ((batch.label > 0.5) & (batch.hist_len > 0)).nonzero().squeeze(1)  # (N,)
    lengths = batch.hist_len[rows]
    L = int(lengths.max()) if rows.numel() else 1
    T = batch.hist_items.shape[1]
    return Pairs(rows, batch.hist_items[rows, T - L:], batch.hist_categories[rows, T - L:], lengths,
                 batch.item[rows], batch.category[rows])


def next_behaviour_pairs(batch: Batch, generator: torch.Generator | None = None) -> Pairs:
    """MIND's feed: for every row with at least two behaviours, whatever its label, one position k
    drawn uniformly from 1 .. n − 1 of its n behaviours; the first k behaviours -> the (k+1)-th.

    Over a run, every (prefix -> next behaviour) pair of the training histories can be drawn. Only
    the row's history is read, never its target or label: the positive is a behaviour that came
    before the sample's target, and its prefix only what came before the positive
    (`check_before_positive` holds this on every batch)."""
    T = batch.hist_items.shape[1]
    rows = (batch.hist_len >= 2).nonzero().squeeze(1)  # (N,)
    n = batch.hist_len[rows].long()  # (N,) behaviours of each row
    k = draw_prefix_lengths(n, generator)  # (N,)
    positive = T - n + k  # (N,) index of the positive in the left-padded history
    check_before_positive(positive, k, n, T)
    L = int(k.max()) if rows.numel() else 1
    # Prefix j of each row, right-aligned in an (N, L) window: window slot i holds index positive − L + i.
    index = positive.unsqueeze(1) - L + torch.arange(L, device=rows.device).unsqueeze(0)  # (N, L)
    real = torch.arange(L, device=rows.device).unsqueeze(0) >= (L - k).unsqueeze(1)  # (N, L)
    index = index.clamp(min=0)
    hist_items = batch.hist_items[rows].gather(1, index).masked_fill(~real, PADDING_ID)
    hist_categories = batch.hist_categories[rows].gather(1, index).masked_fill(~real, PADDING_ID)
    items = batch.hist_items[rows, positive]
    categories = batch.hist_categories[rows, positive]
    return Pairs(rows, hist_items, hist_categories, k, items, categories)


def draw_prefix_lengths(n: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N,) k uniform on 1 .. n − 1 for rows of n >= 2 behaviours: how many behaviours precede the positive."""
    u = torch.rand(n.shape, generator=generator, device=n.device, dtype=torch.float64)
    return torch.minimum(1 + (u * (n - 1)).long(), n - 1)


def check_before_positive(positive: torch.Tensor, k: torch.Tensor, n: torch.Tensor, T: int) -> None:
    """Every pair reads only the past: the positive is a real behaviour (inside the row's n, so
    before the sample's target) after at least one behaviour, and its prefix (k behaviours)
    ends just before it. A violation is a bug that would leak the future into L_micn."""
    first = T - n  # (N,) index of each row's first behaviour
    ok = (positive >= first + 1) & (positive <= T - 1) & (k == positive - first)
    if not bool(ok.all()):
        bad = int((~ok).nonzero()[0, 0])
        raise AssertionError(f"L_micn pair {bad} would read past its positive: positive index {int(positive[bad])}, "
                             f"prefix length {int(k[bad])}, behaviours {int(n[bad])} of a {T}-long history")
