"""Wide & Deep in the form used as a baseline by the DIEN reference code.

Paper: Cheng et al., "Wide & Deep Learning for Recommender Systems", DLRS 2016.
Reference form: mouna99/dien `Model_WideDeep` (the DIEN and MICN papers' "Wide&Deep" baseline):
    deep = MLP([user, item, Σ history])                       BN -> 200 -> 80 -> out, PReLU
    wide = Linear([item, Σ history, item ⊙ Σ history])
    logit = deep + wide

Deviations from the reference code:
- The history sum is MASKED (padding contributes nothing). The reference sums the padded
  sequence, so padding embeddings leak into the features.
- One logit instead of a 2-way softmax (equivalent: softmax over two logits = sigmoid of their
  difference).
- The input BatchNorm runs in training mode during training (the reference's `bn1` is built
  without `training=True`, so it only ever applied its initial moving statistics).
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
)
from micn.nn.mlp import MLP


@dataclass(frozen=True)
class WideDeepConfig(BackboneConfig):
    activation: str = "prelu"  # the reference's W&D uses PReLU


class WideDeep(nn.Module):
    def __init__(self, cfg: WideDeepConfig, item_embedding: nn.Module, n_users: int) -> None:
        super().__init__()
        D = item_embedding_width(item_embedding)
        self.cfg = cfg
        self.item_embedding = item_embedding
        self.user_embedding = make_user_embedding(n_users, cfg.d_user)
        self.deep = MLP(
            cfg.d_user + 2 * D,
            cfg.mlp_hidden,
            out_dim=1,
            activation=cfg.activation,
            input_batch_norm=cfg.batch_norm,
            dropout=cfg.dropout,
        )
        self.wide = nn.Linear(3 * D, 1)
        assert self.deep.in_dim == cfg.d_user + 2 * D, f"deep input {self.deep.in_dim} != {cfg.d_user + 2 * D}"

    def forward(self, batch: Batch) -> ModelOutput:
        item, hist = embed_target_and_history(self.item_embedding, batch)  # (B, D), (B, T, D)
        hist_sum = masked_sum(hist, batch.hist_mask)  # (B, D)
        user = self.user_embedding(batch.user)  # (B, d_user)
        deep = self.deep(torch.cat([user, item, hist_sum], dim=-1)).squeeze(-1)  # (B,)
        wide = self.wide(torch.cat([item, hist_sum, item * hist_sum], dim=-1)).squeeze(-1)  # (B,)
        return ModelOutput(logits=deep + wide, aux_losses={})
