"""The typed mini-batch that flows from the sample files into every model.

Dimension glossary (used in shape comments across `micn/`):
    B  batch size
    T  history length (`max_len`), histories are LEFT-padded: the most recent
       behavior is at position T-1, padding (id 0) fills the front.
    D  embedding width
    K  number of interest capsules (MICN)

Index conventions (the `feature_map.json` contract): 0 = padding, 1 = out-of-vocabulary,
real ids start at 2.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass(frozen=True)
class Batch:
    user: torch.Tensor  # (B,) int64
    item: torch.Tensor  # (B,) int64, target item
    category: torch.Tensor  # (B,) int64, target item's category
    hist_items: torch.Tensor  # (B, T) int64, left-padded with 0
    hist_categories: torch.Tensor  # (B, T) int64
    hist_neg_items: torch.Tensor  # (B, T) int64, one sampled negative per history position (DIEN aux loss)
    hist_neg_categories: torch.Tensor  # (B, T) int64
    hist_len: torch.Tensor  # (B,) int64, number of real (non-padding) history positions
    label: torch.Tensor  # (B,) float32, 1 = clicked / reviewed, 0 = sampled negative

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return Batch(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)})

    @property
    def hist_mask(self) -> torch.Tensor:
        """(B, T) bool, True where the history position holds a real behavior."""
        return self.hist_items != 0

    def __len__(self) -> int:
        return self.item.shape[0]
