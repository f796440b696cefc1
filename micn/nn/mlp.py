"""Multi-layer perceptrons and the activations the CTR backbones use.

Activations (chosen by name so configs stay plain data):
    "prelu"    PReLU with one learnable slope per unit (DIEN reference: Wide&Deep / DNN heads).
    "dice"     Dice from the DIN paper (Zhou et al., KDD 2018, eq. 7): p = sigmoid(BN(x)),
               out = p * x + (1 - p) * alpha * x. Its BatchNorm has no affine part; in eval mode it
               uses running statistics, so a sample's output never depends on the rest of its batch
               (and never on labels). Only for (N, D) inputs: inside target attention, batch
               statistics would be computed over padded positions too, so attention MLPs use
               "sigmoid" or "prelu" instead.
    "sigmoid"  DIEN reference choice for the attention MLP and the auxiliary-loss MLP.
    "relu"
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = ("prelu", "dice", "sigmoid", "relu")


class PReLU(nn.Module):
    """PReLU with one slope per feature of the LAST dim (torch's nn.PReLU uses dim 1, which is T
    for (B, T, D) inputs)."""

    def __init__(self, dim: int, init: float = 0.25) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, x * self.alpha)  # (..., D)


class Dice(nn.Module):
    """Data-adaptive activation (DIN paper, eq. 7) for (N, D) inputs."""

    def __init__(self, dim: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, eps=eps, affine=False)
        self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(self.bn(x))  # (N, D)
        return x * (p + (1.0 - p) * self.alpha)  # (N, D)


def make_activation(name: str, dim: int) -> nn.Module:
    """An activation module by name; `dim` sizes the per-unit parameters of PReLU and Dice."""
    if name == "prelu":
        return PReLU(dim)
    if name == "dice":
        return Dice(dim)
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


class MLP(nn.Module):
    """Linear -> activation blocks, then an optional linear output layer without activation.

    `input_batch_norm` puts a BatchNorm1d on the input features, as the DIEN reference does before
    its 200-80-2 head (it normalises sums of embeddings whose scale grows with history length).
    Inputs may have any leading shape (..., in_dim) unless "dice" or `input_batch_norm` is used,
    which need (N, in_dim).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int | None = 1,
        activation: str = "prelu",
        input_batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        assert in_dim > 0, f"MLP in_dim must be positive, got {in_dim}"
        assert all(h > 0 for h in hidden), f"MLP hidden sizes must be positive, got {tuple(hidden)}"
        assert 0.0 <= dropout < 1.0, f"MLP dropout must be in [0, 1), got {dropout}"
        layers: list[nn.Module] = []
        if input_batch_norm:
            layers.append(nn.BatchNorm1d(in_dim))
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), make_activation(activation, h)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        if out_dim is not None:
            layers.append(nn.Linear(width, out_dim))
            width = out_dim
        self.net = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (..., out_dim)
