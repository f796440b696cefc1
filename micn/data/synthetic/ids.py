"""Public ids of a synthetic world: reviewerIDs and asins shaped like Amazon's, unsorted.

Vectorised: digits as uint8 arrays viewed as fixed-width strings, so a million ids cost no
per-element Python work. Dimensions: U users, I items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from micn.data.synthetic.profiles import Profile

B36 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
B64 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-", dtype=np.uint8)


@dataclass(frozen=True, eq=False)
class Ids:
    """Ids by internal index, and their ranks in sorted order (the files list items by asin)."""

    user: np.ndarray  # (U,) S14, "A" + 13 base-36 characters
    item: np.ndarray  # (I,) S10, "B00" + 7 base-36 characters
    user_rank: np.ndarray  # (U,) int, position of each user id in ascending order
    item_rank: np.ndarray  # (I,) int, position of each asin in ascending order
    user_pl: pl.Series  # (U,) the user ids as Polars strings (gathered per review line)
    item_pl: pl.Series  # (I,) the asins as Polars strings


def make_ids(prof: Profile, rng: np.random.Generator) -> Ids:
    """reviewerID = "A" + 13 base-36 chars of a 64-bit mix; asin = "B00" + 7 base-36 chars of an affine
    permutation of [0, 36**7) (the multiplier is coprime to 36, so the map is a bijection)."""
    key = rng.integers(0, 2**63, dtype=np.uint64)
    user_ids = fixed_width(b"A", digits(_mix64(np.arange(prof.n_users, dtype=np.uint64) + key), 13, B36))
    space = 36**7
    mult = int(rng.integers(36**5, 36**6)) | 1
    while mult % 3 == 0:
        mult += 2
    add = int(rng.integers(0, space))
    item_vals = (np.arange(prof.n_items, dtype=np.int64) * mult + add) % space
    item_ids = fixed_width(b"B00", digits(item_vals.astype(np.uint64), 7, B36))
    return Ids(
        user=user_ids,
        item=item_ids,
        user_rank=np.argsort(np.argsort(user_ids, kind="stable"), kind="stable"),
        item_rank=np.argsort(np.argsort(item_ids, kind="stable"), kind="stable"),
        user_pl=_to_polars(user_ids),
        item_pl=_to_polars(item_ids),
    )


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijection on uint64, so distinct indices give distinct, unsorted ids."""
    x = x.astype(np.uint64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def digits(values: np.ndarray, width: int, alphabet: np.ndarray) -> np.ndarray:
    """(n,) uint64 -> (n, width) uint8 ASCII digits, most significant first."""
    base = np.uint64(len(alphabet))
    v = values.astype(np.uint64).copy()
    out = np.empty((len(v), width), dtype=np.uint8)
    for k in range(width - 1, -1, -1):
        out[:, k] = alphabet[(v % base).astype(np.intp)]
        v //= base
    return out


def fixed_width(prefix: bytes, digits: np.ndarray) -> np.ndarray:
    """Prefix + digits as a numpy fixed-width bytes array (dtype S<width>)."""
    n, w = digits.shape
    buf = np.empty((n, len(prefix) + w), dtype=np.uint8)
    buf[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    buf[:, len(prefix) :] = digits
    return buf.reshape(-1).view(f"S{len(prefix) + w}")


def _to_polars(fixed: np.ndarray) -> pl.Series:
    """Fixed-width ASCII bytes -> Polars string Series without per-element Python work."""
    width = fixed.dtype.itemsize
    offsets = np.arange(0, (len(fixed) + 1) * width, width, dtype=np.int64)
    arr = pa.LargeStringArray.from_buffers(len(fixed), pa.py_buffer(offsets), pa.py_buffer(fixed.tobytes()))
    return pl.Series(arr).cast(pl.String)
