"""Target attention (DIN's local activation unit) with a padding-masked softmax.

Reference: Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018, and
the DIEN reference code (mouna99/dien `din_attention` / `din_fcn_attention`): an MLP on
[q, k, q − k, q ⊙ k] gives one score per history position; padded positions are masked before a
softmax over positions.

Deviations:
- The first layer is applied in factored form. With W = [W_q | W_k | W_d | W_p] acting on
  [q, k, q − k, q ⊙ k]:  W·x = (W_q + W_d)·q + [W_k − W_d | W_p]·[k, q ⊙ k],
  so the query part is computed once per row instead of once per position, and the per-position
  matmul has K = 2D instead of 4D: half the first layer's FLOPs. (A per-row (D, H1) matrix and a
  batched matmul would halve them again, but small batched matmuls are slower than this one GEMM
  below T ≈ 50 on CPU.) The parameters are one `nn.Linear(4D, h1)`, exactly the reference's
  layer; a test checks equality with the concatenated form.
- Padding is masked with −inf (reference: −2³²+1); a row with no real position gets an all-zero
  attention vector (not NaN, not uniform weights over padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from micn.nn.mlp import MLP, PReLU, make_activation


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim of `scores` restricted to `mask`; rows with no True give zeros.

    scores: (B, T) float, mask: (B, T) bool. Gradients stay finite for empty rows.
    """
    scores = scores.masked_fill(~mask, float("-inf"))  # (B, T)
    # An all-masked row would be softmax(−inf, ..., −inf) = NaN: give it finite scores, then zero it.
    scores = scores.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)  # (B, T)
    return torch.softmax(scores, dim=-1) * mask  # (B, T)


class TargetAttention(nn.Module):
    """Scores each key against the query: `forward(query, keys, mask) -> weights (B, T)`.

    query: (B, d_query), keys: (B, T, d_key), mask: (B, T) bool (True = real behavior).
    With `project_query` the query first goes through Linear(d_query, d_key) + PReLU, as in the
    DIEN reference's `din_fcn_attention` (needed there: queries are item embeddings, keys are GRU
    states of another width); otherwise d_query must equal d_key.
    """

    def __init__(
        self,
        d_query: int,
        d_key: int,
        hidden: Sequence[int] = (80, 40),
        activation: str = "sigmoid",
        project_query: bool = False,
    ) -> None:
        super().__init__()
        assert len(hidden) >= 1, f"attention MLP needs at least one hidden layer, got {tuple(hidden)}"
        assert activation != "dice", "Dice's batch statistics would include padded positions; use sigmoid or prelu"
        if project_query:
            self.query_proj: nn.Module = nn.Sequential(nn.Linear(d_query, d_key), PReLU(d_key))
        else:
            assert d_query == d_key, f"query width {d_query} != key width {d_key}; set project_query=True"
            self.query_proj = nn.Identity()
        self.d_key = d_key
        self.fc1 = nn.Linear(4 * d_key, hidden[0])  # on [q, k, q − k, q ⊙ k], applied factored
        self.act1 = make_activation(activation, hidden[0])
        self.tail = MLP(hidden[0], hidden[1:], out_dim=1, activation=activation)

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Unnormalised scores (B, T), identical to `MLP(cat[q, k, q − k, q ⊙ k])`."""
        q = self.query_proj(query)  # (B, D)
        w_q, w_k, w_d, w_p = self.fc1.weight.split(self.d_key, dim=1)  # 4 × (H1, D)
        h_q = nn.functional.linear(q, w_q + w_d, self.fc1.bias)  # (B, H1)
        kp = torch.cat([keys, q.unsqueeze(1) * keys], dim=-1)  # (B, T, 2D)
        h = nn.functional.linear(kp, torch.cat([w_k - w_d, w_p], dim=1)) + h_q.unsqueeze(1)  # (B, T, H1)
        return self.tail(self.act1(h)).squeeze(-1)  # (B, T)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_softmax(self.scores(query, keys), mask)  # (B, T)
