"""DIEN: Deep Interest Evolution Network.

Paper: Zhou et al., "Deep Interest Evolution Network for Click-Through Rate Prediction", AAAI 2019.
Reference form: mouna99/dien `Model_DIN_V2_Gru_Vec_attGru_Neg`:
    states   = GRU(history)                                   interest extractor, hidden 36
    aux loss = BCE(MLP_100-50-1([states_t, e(clicked_{t+1})]), 1) + BCE(MLP(..., e(negative_{t+1})), 0)
    a        = masked softmax_t(att_80-40-1(PReLU(Linear(item)), states_t))
    h_T      = AUGRU(states, a)                               interest evolution
    logit    = MLP([user, item, Σ history, item ⊙ Σ history, h_T])   BN -> 200 -> 80 -> out, Dice

Histories arrive LEFT-padded (`Batch`); DIEN right-aligns them internally with one gather
(row b's real behaviors move to positions 0 .. L_b − 1, trailing all-padding columns are cut).
The extractor GRU is causal, so its states at real positions never see padding; the AUGRU runs
only over real steps. Padding never enters a result, so results do not depend on T.

Implementation differences from DeepCTR-Torch (the speed baseline): no packed sequences for the
extractor (their CPU backward copies the whole packed tensor once per step); the AUGRU has four
distinct parameter tensors and computes its input projections once for all steps.

Deviations from the reference code:
- AUGRU follows the paper (ũ = a·u, a = 0 keeps the state); the reference's VecAttGRUCell uses
  u = (1 − a)·u_keep, under which a = 0 is a plain GRU step (see micn/nn/augru.py).
- The aux loss is averaged over real (t, t+1) pairs only; the reference averages over all
  B × (T − 1) positions, padding included (with zeros there), so its scale shrinks with padding.
  Per pair it is the sum of the clicked and the negative BCE, as in the reference.
- The aux MLP has no input BatchNorm (the reference's was never in training mode) and ends in one
  logit instead of a 2-way softmax.
- Masked history sum; −inf masking; empty histories give a zero evolved state; the head's
  BatchNorm trains; the item embedding is injected (`item_embedding.out_dim` wide).

Why the aux loss stays at 2 ln 2 with the reference's aux net (measured): the aux MLP
uses SIGMOID hidden layers (reference `auxiliary_net`, our default `aux_activation`) on
near-zero inputs (N(0, 0.01²) embeddings, small GRU states), where σ(x) = 1/2 + x/4 − x³/48 + …
has no second-order term: the net is additive in [state, candidate] up to third order, and an
additive function of the candidate can only learn the candidate's marginal rate of being the
clicked one, which popularity-drawn negatives make the same for positives and negatives. So
there is no first- or second-order signal and the loss does not move (larger embedding init,
std 0.1, does not help either). A kinked activation learns the (state, candidate) interaction:
on the default synthetic world `aux_activation="prelu"` takes the validation aux loss from
1.386 to 0.81 in two epochs (relu: 0.88), sigmoid stays at 1.3863
(tests/test_models.py::test_dien_aux_loss_learns_only_with_a_kinked_activation). The default
stays sigmoid, the reference's net; choose prelu (`train.dien_aux_activation`) to let DIEN's aux task learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from micn.data.batch import Batch
from micn.models.base import (
    BackboneConfig,
    ModelOutput,
    embed_target_and_history,
    item_embedding_width,
    make_user_embedding,
    masked_sum,
)
from micn.nn.attention import TargetAttention
from micn.nn.augru import AUGRU
from micn.nn.mlp import ACTIVATIONS, MLP


@dataclass(frozen=True)
class DIENConfig(BackboneConfig):
    activation: str = "dice"  # head activation (reference: Dice for DIN/DIEN)
    hidden: int = 36  # GRU / AUGRU state width (HIDDEN_SIZE)
    attention_hidden: tuple[int, ...] = (80, 40)
    attention_activation: str = "sigmoid"  # reference `din_fcn_attention`
    aux_hidden: tuple[int, ...] = (100, 50)
    aux_activation: str = "sigmoid"  # reference `auxiliary_net`; cannot learn here, prelu does (module docstring)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden <= 0:
            raise ValueError(f"DIENConfig.hidden must be positive, got {self.hidden}")
        for key in ("attention_hidden", "aux_hidden"):
            sizes = getattr(self, key)
            if not sizes or any(h <= 0 for h in sizes):
                raise ValueError(f"DIENConfig.{key} must be positive sizes, got {sizes}")
        if self.attention_activation not in ACTIVATIONS or self.attention_activation == "dice":
            raise ValueError(
                f"DIENConfig.attention_activation={self.attention_activation!r}; choose prelu, sigmoid or relu"
            )
        if self.aux_activation not in ACTIVATIONS or self.aux_activation == "dice":
            raise ValueError(f"DIENConfig.aux_activation={self.aux_activation!r}; choose prelu, sigmoid or relu")


def right_align(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Move each row's last `lengths[b]` positions (the real ones of a left-padded row) to the front.

    x: (B, T) or (B, T, ...); padding ends up at positions lengths[b] .. T − 1.
    """
    B, T = x.shape[:2]
    idx = (torch.arange(T, device=x.device).unsqueeze(0) + (T - lengths).unsqueeze(1)) % T  # (B, T)
    idx = idx.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, idx)


class DIEN(nn.Module):
    def __init__(self, cfg: DIENConfig, item_embedding: nn.Module, n_users: int) -> None:
        super().__init__()
        D = item_embedding_width(item_embedding)
        H = cfg.hidden
        self.cfg = cfg
        self.item_embedding = item_embedding
        self.user_embedding = make_user_embedding(n_users, cfg.d_user)
        self.extractor = nn.GRU(D, H, batch_first=True)
        self.aux_net = MLP(H + D, cfg.aux_hidden, out_dim=1, activation=cfg.aux_activation)
        self.attention = TargetAttention(D, H, cfg.attention_hidden, cfg.attention_activation, project_query=True)
        self.evolution = AUGRU(H, H)
        self.head = MLP(
            cfg.d_user + 3 * D + H,
            cfg.mlp_hidden,
            out_dim=1,
            activation=cfg.activation,
            input_batch_norm=cfg.batch_norm,
            dropout=cfg.dropout,
        )
        assert self.head.in_dim == cfg.d_user + 3 * D + H, f"head input {self.head.in_dim} != {cfg.d_user + 3 * D + H}"

    def forward(self, batch: Batch) -> ModelOutput:
        mask = batch.hist_mask  # (B, T), left-padded
        lengths = batch.hist_len  # (B,)
        item, hist = embed_target_and_history(self.item_embedding, batch)  # (B, D), (B, T, D)
        hist_sum = masked_sum(hist, mask)  # (B, D)

        # Right-align: real behaviors first. Columns past the longest history are all padding, so
        # they are dropped (at least one is kept so an all-empty batch still has shapes).
        T_run = max(int(lengths.max()), 1)
        hist_r = right_align(hist, lengths)[:, :T_run]  # (B, T_run, D)
        mask_r = torch.arange(T_run, device=mask.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T_run)

        # Interest extractor. The GRU is causal and real steps come first, so states at real
        # positions never see padding; states at padded positions are masked everywhere below.
        # (Packing gives the same states but its CPU backward is O(T²) in copies.)
        states, _ = self.extractor(hist_r)  # (B, T_run, H)

        neg_items_r = right_align(batch.hist_neg_items, lengths)[:, :T_run]  # (B, T_run)
        neg_categories_r = right_align(batch.hist_neg_categories, lengths)[:, :T_run]  # (B, T_run)
        aux = self.aux_loss(states, hist_r, neg_items_r, neg_categories_r, mask_r)

        # Interest evolution: attention of the target over extractor states, then AUGRU.
        att = self.attention(item, states, mask_r)  # (B, T_run), zero on padding
        evolved = self.evolution(states, att, lengths)  # (B, H), zeros for empty histories

        user = self.user_embedding(batch.user)  # (B, d_user)
        features = torch.cat([user, item, hist_sum, item * hist_sum, evolved], dim=-1)  # (B, d_user + 3D + H)
        return ModelOutput(logits=self.head(features).squeeze(-1), aux_losses={"dien_aux": aux})

    def aux_loss(
        self,
        states: torch.Tensor,
        hist_r: torch.Tensor,
        neg_items_r: torch.Tensor,
        neg_categories_r: torch.Tensor,
        mask_r: torch.Tensor,
    ) -> torch.Tensor:
        """Next-behavior loss on right-aligned tensors: states[:, t] predicts behavior t + 1.

        states (B, T, H), hist_r (B, T, D), neg ids (B, T), mask_r (B, T). A pair (t, t+1) counts
        iff behavior t + 1 is real (then t is real too). Returns mean over pairs of
        BCE(clicked, 1) + BCE(negative, 0); 0 when the batch has no pair.
        """
        pair = mask_r[:, 1:]  # (B, T-1)
        s = states[:, :-1][pair]  # (N, H)
        pos = hist_r[:, 1:][pair]  # (N, D)
        neg = self.item_embedding(neg_items_r[:, 1:][pair], neg_categories_r[:, 1:][pair])  # (N, D)
        pairs = torch.cat([torch.cat([s, pos], dim=-1), torch.cat([s, neg], dim=-1)])  # (2N, H + D)
        logits = self.aux_net(pairs).squeeze(-1)  # (2N,)
        n = s.shape[0]
        targets = torch.cat([logits.new_ones(n), logits.new_zeros(n)])  # (2N,)
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / max(n, 1)
