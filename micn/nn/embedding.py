"""Item embedding = item-id embedding ⊕ category embedding (DIEN reference: 18 + 18 = 36).

Backbones never build this themselves: it is built outside and injected, and every backbone sizes
its layers from `out_dim`. Any module with an `out_dim` attribute and a
`forward(items, categories) -> (..., out_dim)` can be injected instead (the MICN wrapper injects
`e_orig ⊕ e_aux`, which is wider).
"""

from __future__ import annotations

import torch
from torch import nn

from micn.names import FIRST_REAL_ID, PADDING_ID


def init_embedding_(table: nn.Embedding, std: float) -> None:
    """N(0, std²) weights with the padding row (id 0) set to zero."""
    nn.init.normal_(table.weight, std=std)
    if table.padding_idx is not None:
        with torch.no_grad():
            table.weight[table.padding_idx].zero_()


class ItemEmbedding(nn.Module):
    """`forward(items, categories)`: (...) int64 ids -> (..., d_item + d_category).

    Id 0 is padding (`padding_idx=0`: a zero vector that receives no gradient), 1 is
    out-of-vocabulary. `init_std` is small, like the reference's TF Glorot-uniform default on
    large vocabularies, so that summed histories start near zero.
    """

    def __init__(
        self, n_items: int, n_categories: int, d_item: int = 18, d_category: int = 18, init_std: float = 0.01
    ) -> None:
        super().__init__()
        assert n_items >= FIRST_REAL_ID, f"n_items must count padding and OOV, so >= {FIRST_REAL_ID}; got {n_items}"
        assert n_categories >= FIRST_REAL_ID, (
            f"n_categories must count padding and OOV, so >= {FIRST_REAL_ID}; got {n_categories}")
        assert d_item > 0 and d_category > 0, f"embedding widths must be positive, got {d_item} and {d_category}"
        self.item = nn.Embedding(n_items, d_item, padding_idx=PADDING_ID)
        self.category = nn.Embedding(n_categories, d_category, padding_idx=PADDING_ID)
        init_embedding_(self.item, init_std)
        init_embedding_(self.category, init_std)
        self.out_dim = d_item + d_category

    def forward(self, items: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        assert items.shape == categories.shape, f"items {tuple(items.shape)} vs categories {tuple(categories.shape)}"
        return torch.cat([self.item(items), self.category(categories)], dim=-1)  # (..., D)


def sum_rows(ids: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of a table's gradient that lookups by `ids` (N,) with gradients `values` (N, D) touch:
    the distinct ids in ascending order (U,) and each one's summed gradient (U, D), as the
    embedding backward adds the gradients of a repeated id."""
    rows, inverse = torch.unique(ids, return_inverse=True)  # (U,), (N,)
    return rows, values.new_zeros(len(rows), values.shape[1]).index_add_(0, inverse, values)
