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

Paper configuration: λ = 1, φ = 0.3, K from log2 of the history length (K_max = 4 here, as
MIND), r = 3 routing iterations, Adam with lr 1e-4, 5 repeats. λ is the trainer's weight of the
"micn" auxiliary loss; φ lives here because it shapes the gradient, not the loss.

    MICNConfig(d_aux, k_max, iterations, pow_p, n_neg, sampler, lambda_micn, phi, routing_std)
    MICNAux(cfg, n_items, n_categories, item_categories=None, generator=None)
        .embed(items, categories) -> e_aux (..., d_aux)
        .interests(batch, generator=None) -> Routing (capsules, active, weights)
        .loss(batch) -> L_micn (scalar)

L_micn, per batch: rows with label 1 and a non-empty history (the paper computes MICN's loss on
positive samples only; a user with no behavior has no interest to learn from); for each, the
capsules of its history, v_u by label-aware attention towards the clicked item, and a sampled
softmax of that item against `n_neg` candidates drawn once per batch (uniform or log-uniform
over ids 2 .. n_items − 1, with logQ correction and accidental hits masked); mean over rows, 0
when there is no such row.

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

import torch
from torch import nn

from micn.config import MICNConfig  # noqa: F401 - moved to micn.config, re-exported here
from micn.data.batch import Batch
from micn.models.base import history_mask
from micn.nn.capsule import (
    B2IRouting,
    Routing,
    label_aware_attention,
    sample_candidates,
    sampled_softmax_loss,
    scale_grad,
)
from micn.nn.embedding import ItemEmbedding


class MICNAux(nn.Module):
    """The auxiliary capsule network: its e_aux table, B2I routing, label-aware attention, L_micn."""

    def __init__(
        self, cfg: MICNConfig, n_items: int, n_categories: int, item_categories: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
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
        real = history_mask(batch)  # (B, T), from hist_len: ids at padded positions are not trusted
        items = torch.cat([batch.item, batch.hist_items[real]])
        categories = torch.cat([batch.category, batch.hist_categories[real]])
        known = items >= 2  # OOV (1) stands for many items with different categories
        self.item_category[items[known]] = categories[known]

    def interests(self, batch: Batch, generator: torch.Generator | None = None) -> Routing:
        """Interest capsules of every row's history (no gradient scaling; for inspection)."""
        hist = self.embed(batch.hist_items, batch.hist_categories)  # (B, T, D)
        return self.routing(hist, batch.hist_len, generator)

    def loss(self, batch: Batch) -> torch.Tensor:
        """L_micn of the batch's positive rows with a history; gradients into e_aux scaled by 1 − φ."""
        if self.training:
            self.observe(batch)
        rows = ((batch.label > 0.5) & (batch.hist_len > 0)).nonzero().squeeze(1)  # (N,)
        if rows.numel() == 0:
            return self.routing.S.new_zeros(())
        lengths = batch.hist_len[rows]  # (N,)
        L = int(lengths.max())
        T = batch.hist_items.shape[1]
        hist_items = batch.hist_items[rows, T - L :]  # (N, L): the window that holds every real behavior
        hist_categories = batch.hist_categories[rows, T - L :]
        targets = batch.item[rows]  # (N,)
        neg_ids, neg_log_count = sample_candidates(self.cfg.n_neg, self.n_items, self.cfg.sampler,
                                                   generator=self.generator, device=targets.device)  # (M,), (M,)

        # One lookup for history, targets and candidates: one embedding backward instead of three.
        N, M = rows.numel(), neg_ids.numel()
        items = torch.cat([hist_items.reshape(-1), targets, neg_ids])
        categories = torch.cat([hist_categories.reshape(-1), batch.category[rows], self.item_category[neg_ids]])
        e = scale_grad(self.embed(items, categories), 1.0 - self.cfg.phi)  # (N·L + N + M, D)
        hist, target, sampled = e.split([N * L, N, M])  # split, not slices: its backward is one cat
        hist = hist.view(N, L, -1)  # (N, L, D); target (N, D), sampled (M, D)

        routing = self.routing(hist, lengths, self.generator)
        user, _ = label_aware_attention(routing.capsules, routing.active, target, self.cfg.pow_p)  # (N, D)
        return sampled_softmax_loss(user, target, targets, sampled, neg_ids, neg_log_count).mean()
