"""The typed mini-batch that flows from the sample files into every model.

Dimension glossary (used in shape comments across `micn/`):
    B  batch size
    T  history length (`max_len`), histories are LEFT-padded: the most recent
       behavior is at position T-1, padding (id 0) fills the front.
    D  embedding width
    K  number of interest capsules (MICN)

Index conventions (`micn.names`: PADDING_ID, OOV_ID, FIRST_REAL_ID; `micn.data.feature_map.FeatureMap`
checks that a samples folder follows them): padding fills empty history positions, OOV stands for
every value outside the training vocabulary, real ids follow. Embedding tables are sized
vocabulary + 2 and keep the padding row at zero.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from micn.names import FIRST_REAL_ID

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

    def __len__(self) -> int:
        return self.item.shape[0]

    @property
    def hist_mask(self) -> torch.Tensor:
        """(B, T) bool, True at real history positions (`history_mask` of this batch)."""
        return history_mask(self.hist_len, self.hist_items.shape[1])


def random_batch(
    B: int,
    T: int,
    n_users: int,
    n_items: int,
    n_categories: int,
    generator: torch.Generator,
    *,
    lengths: torch.Tensor | None = None,
    min_len: int = 0,
    alternating_labels: bool = False,
) -> Batch:
    """A left-padded random `Batch` for tests and benchmarks (one builder, so they agree).

    Real ids are uniform in 2 .. n − 1 (0 padding, 1 OOV); history lengths are `lengths`, or
    uniform in `min_len` .. T; labels are random 0/1, or 1, 0, 1, 0, ... with
    `alternating_labels` (positive / negative pairs, like the sample files). Every draw comes from
    `generator`, in a fixed order: the same generator state gives the same batch."""
    if lengths is None:
        lengths = torch.randint(min_len, T + 1, (B,), generator=generator)  # (B,)
    mask = history_mask(lengths, T)  # (B, T), True at real positions

    def ids(n: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(FIRST_REAL_ID, n, shape, generator=generator)

    return Batch(
        user=ids(n_users, (B,)),
        item=ids(n_items, (B,)),
        category=ids(n_categories, (B,)),
        hist_items=ids(n_items, (B, T)) * mask,
        hist_categories=ids(n_categories, (B, T)) * mask,
        hist_neg_items=ids(n_items, (B, T)) * mask,
        hist_neg_categories=ids(n_categories, (B, T)) * mask,
        hist_len=lengths,
        label=(torch.arange(B) % 2 == 0).float() if alternating_labels
        else torch.randint(0, 2, (B,), generator=generator).float(),
    )


def history_mask(hist_len: torch.Tensor, max_len: int) -> torch.Tensor:
    """(N, T) bool, True on the last `hist_len` positions of each left-padded history.

    The one definition of "a real history position": built from the lengths, never from the ids,
    so whatever sits in padded positions is ignored (`hist_len` (N,) of any integer dtype)."""
    positions = torch.arange(max_len, device=hist_len.device)  # (T,)
    return positions.unsqueeze(0) >= (max_len - hist_len.long()).unsqueeze(1)  # (N, T)
