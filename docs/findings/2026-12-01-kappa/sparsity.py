"""Item sparsity and history lengths of the synthetic profiles vs the real Amazon 5-core releases.

    .venv/bin/python docs/findings/2026-12-01-kappa/sparsity.py tiny default electronics books default@0.3

Samples each world in memory (`sample_world`, seed 0, no files written) and prints one Markdown row
per profile (`name@kappa` for another kappa); also the same statistics of the real 5-core excerpt in
../shared/data/amazon/ if present.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from micn.data.synthetic.profiles import PROFILES
from micn.data.synthetic.world import RandomStreams, sample_world

REAL_SAMPLE = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "amazon" / "2014" / \
    "reviews_Musical_Instruments_5.head50.json"


def row(name: str, per_item: np.ndarray, per_user: np.ndarray, n_catalogue: int) -> str:
    """per_item: reviews of each catalogue item (0 allowed); per_user: reviews of each user."""
    reviewed = per_item[per_item > 0]
    return (f"| {name} | {len(per_user):,} | {n_catalogue:,} | {int(per_item.sum()):,} "
            f"| {(per_item == 0).mean():.3f} | {(per_item < 5).mean():.3f} | {(reviewed < 5).mean():.3f} "
            f"| {np.median(reviewed):.0f} | {reviewed.mean():.1f} | {int(reviewed.max()):,} "
            f"| {np.median(per_user):.0f} | {per_user.mean():.2f} | {int(per_user.max()):,} |")


def main(names: list[str]) -> None:
    print("| world | users | items | reviews | items with 0 reviews | items < 5 (catalogue) | items < 5 (reviewed) "
          "| median / item (reviewed) | mean / item (reviewed) | max / item | median / user | mean / user "
          "| max / user |")
    print("|" + "---|" * 13)
    for name in names:
        started = time.perf_counter()
        profile, _, kappa = name.partition("@")
        prof = dataclasses.replace(PROFILES[profile], kappa=float(kappa or 1.0))
        world = sample_world(prof, RandomStreams.from_seed(0))
        print(row(name if kappa else f"{name} (κ = 1)", world.item_counts, world.users.lengths, prof.n_items))
        print(f"  ({name}: {time.perf_counter() - started:.1f} s)", file=sys.stderr)
    if REAL_SAMPLE.is_file():
        lines = [json.loads(line) for line in REAL_SAMPLE.read_text().splitlines() if line.strip()]
        items = np.unique([r["asin"] for r in lines], return_counts=True)[1]
        users = np.unique([r["reviewerID"] for r in lines], return_counts=True)[1]
        print(row(f"real excerpt: {REAL_SAMPLE.name}", items, users, len(items)))


if __name__ == "__main__":
    main(sys.argv[1:] or ["tiny", "default", "electronics"])
