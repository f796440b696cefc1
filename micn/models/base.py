"""What every CTR backbone shares: the output type, the interface the trainer uses, the common
config fields, small helpers.

A backbone is an `nn.Module` built as `Backbone(cfg, item_embedding, n_users)` whose
`forward(batch: Batch) -> ModelOutput`. It returns logits and named auxiliary losses; the training
step assembles the total loss (nothing is stashed on the module). The item embedding is injected:
any module with an `out_dim` attribute and `forward(items, categories) -> (..., out_dim)`; the
backbone sizes every layer from `out_dim` and owns only its user embedding.

The trainer talks to every model through `CTRModel`, and to a model trained beside MICN through
`InterestModel` (`micn.models.with_micn.WithMICN` is the one implementation): these two protocols
are the whole surface the training loop, the checkpoints and the evidence may use.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from micn.data.batch import Batch
from micn.names import FIRST_REAL_ID, PADDING_ID
from micn.nn.embedding import init_embedding_
from micn.nn.mlp import ACTIVATIONS


@dataclass(frozen=True)
class ModelOutput:
    logits: torch.Tensor  # (B,) float, pre-sigmoid click score
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> scalar tensor, weighted by the trainer


@runtime_checkable
class CTRModel(Protocol):
    """A trainable CTR model: `nn.Module` semantics plus `forward(Batch) -> ModelOutput`."""

    training: bool

    def __call__(self, batch: Batch) -> ModelOutput: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any: ...


@runtime_checkable
class InterestModel(CTRModel, Protocol):
    """A CTR model trained beside MICN: what the evidence, the gradient ratio and the checkpoints read."""

    def user_capsules(self, batch: Batch, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K_max, d_aux) interest vectors and (B, K_max) active mask, routing logits from `generator`."""
        ...

    def item_table(self) -> torch.Tensor:
        """(n_items, d_aux) e_aux of every item index."""
        ...

    def measure_grad_norms(self, on: bool = True) -> None: ...

    def grad_norms(self) -> tuple[float, float] | None:
        """(main, micn) norms of the two gradients that reached e_aux in the last backward."""
        ...

    def rng_state(self) -> torch.Tensor | None: ...

    def set_rng_state(self, state: torch.Tensor) -> None: ...


@dataclass(frozen=True)
class BackboneConfig:
    """Fields shared by all backbones; defaults follow the DIEN reference (mouna99/dien)."""

    d_user: int = 18  # user-id embedding width (EMBEDDING_DIM in the reference)
    mlp_hidden: tuple[int, ...] = (200, 80)  # prediction head, then a final Linear(80, 1)
    activation: str = "prelu"  # head activation: prelu | dice | sigmoid | relu
    batch_norm: bool = True  # BatchNorm1d on the head's input, as the reference's `bn1`
    dropout: float = 0.0  # after each head activation (the reference has none)

    def __post_init__(self) -> None:
        if self.d_user <= 0:
            raise ValueError(f"{type(self).__name__}.d_user must be positive, got {self.d_user}")
        if not self.mlp_hidden or any(h <= 0 for h in self.mlp_hidden):
            raise ValueError(f"{type(self).__name__}.mlp_hidden must be positive sizes, got {self.mlp_hidden}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"{type(self).__name__}.activation={self.activation!r}; choose one of {', '.join(ACTIVATIONS)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{type(self).__name__}.dropout must be in [0, 1), got {self.dropout}")


def item_embedding_width(item_embedding: nn.Module) -> int:
    """The injected embedding's `out_dim`, checked."""
    out_dim = getattr(item_embedding, "out_dim", None)
    if not isinstance(out_dim, int) or out_dim <= 0:
        raise TypeError(
            f"the injected item embedding {type(item_embedding).__name__} must have a positive int `out_dim` "
            f"(got {out_dim!r}) and forward(items, categories) -> (..., out_dim)"
        )
    return out_dim


def make_user_embedding(n_users: int, d_user: int) -> nn.Embedding:
    assert n_users >= FIRST_REAL_ID, f"n_users must count padding and OOV, so >= {FIRST_REAL_ID}; got {n_users}"
    table = nn.Embedding(n_users, d_user, padding_idx=PADDING_ID)
    init_embedding_(table, std=0.01)
    return table


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of x (B, T, D) over real positions mask (B, T) -> (B, D)."""
    return weighted_sum(x, mask.to(x.dtype))  # (B, D)


def weighted_sum(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_t weights[b, t] · x[b, t]: (B, T, D), (B, T) -> (B, D).

    Broadcast-multiply and sum: for T up to ~50 this is several times faster on CPU than the
    equivalent batched matmul of (1, T) × (T, D) matrices.
    """
    return (x * weights.unsqueeze(-1)).sum(dim=1)  # (B, D)


def embed_target_and_history(item_embedding: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Target item (B, D) and history (B, T, D) embeddings, in one lookup."""
    items = torch.cat([batch.item.unsqueeze(1), batch.hist_items], dim=1)  # (B, 1 + T)
    categories = torch.cat([batch.category.unsqueeze(1), batch.hist_categories], dim=1)  # (B, 1 + T)
    e = item_embedding(items, categories)  # (B, 1 + T, D)
    return e[:, 0], e[:, 1:]
