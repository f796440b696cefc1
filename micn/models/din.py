"""DIN: Deep Interest Network.

Paper: Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018.
Reference form: mouna99/dien `Model_DIN` (the baseline of the DIEN and MICN papers):
    attended = Σ_t softmax_t(MLP_80-40-1([q, k_t, q − k_t, q ⊙ k_t])) · k_t      (q = target item)
    logit = MLP([user, item, Σ history, item ⊙ Σ history, attended])         BN -> 200 -> 80 -> out, Dice

Deviations from the reference code:
- The history sum is masked (the reference sums padding embeddings too).
- Padding is masked with −inf before the softmax, and a user with an empty history gets a zero
  attention vector (the reference would spread weight uniformly over padding).
- One logit instead of a 2-way softmax; the input BatchNorm trains (the reference's never did).
- Dice in the head as the reference; the attention MLP keeps the reference's sigmoid (Dice there
  would compute batch statistics over padded positions).
- The item embedding is injected (`item_embedding.out_dim` wide), not built here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from micn.data.batch import Batch
from micn.models.base import (
    BackboneConfig,
    ModelOutput,
    embed_target_and_history,
    item_embedding_width,
    make_user_embedding,
    masked_sum,
    weighted_sum,
)
from micn.nn.attention import TargetAttention
from micn.nn.mlp import ACTIVATIONS, MLP


@dataclass(frozen=True)
class DINConfig(BackboneConfig):
    activation: str = "dice"  # head activation (reference: Dice for DIN/DIEN)
    attention_hidden: tuple[int, ...] = (80, 40)
    attention_activation: str = "sigmoid"  # reference `din_attention`; dice is refused (see module docstring)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.attention_hidden or any(h <= 0 for h in self.attention_hidden):
            raise ValueError(f"DINConfig.attention_hidden must be positive sizes, got {self.attention_hidden}")
        if self.attention_activation not in ACTIVATIONS or self.attention_activation == "dice":
            raise ValueError(
                f"DINConfig.attention_activation={self.attention_activation!r}; choose prelu, sigmoid or relu"
            )


class DIN(nn.Module):
    def __init__(self, cfg: DINConfig, item_embedding: nn.Module, n_users: int) -> None:
        super().__init__()
        D = item_embedding_width(item_embedding)
        self.cfg = cfg
        self.item_embedding = item_embedding
        self.user_embedding = make_user_embedding(n_users, cfg.d_user)
        self.attention = TargetAttention(D, D, cfg.attention_hidden, cfg.attention_activation)
        self.head = MLP(
            cfg.d_user + 4 * D,
            cfg.mlp_hidden,
            out_dim=1,
            activation=cfg.activation,
            input_batch_norm=cfg.batch_norm,
            dropout=cfg.dropout,
        )
        assert self.head.in_dim == cfg.d_user + 4 * D, f"head input {self.head.in_dim} != {cfg.d_user + 4 * D}"

    def forward(self, batch: Batch) -> ModelOutput:
        item, hist = embed_target_and_history(self.item_embedding, batch)  # (B, D), (B, T, D)
        mask = batch.hist_mask  # (B, T)
        hist_sum = masked_sum(hist, mask)  # (B, D)
        weights = self.attention(item, hist, mask)  # (B, T), zero on padding
        attended = weighted_sum(hist, weights)  # (B, D)
        user = self.user_embedding(batch.user)  # (B, d_user)
        features = torch.cat([user, item, hist_sum, item * hist_sum, attended], dim=-1)  # (B, d_user + 4D)
        return ModelOutput(logits=self.head(features).squeeze(-1), aux_losses={})
