"""Two sets of run records, cell by cell: is every new Table 2 mean inside the old 95 % interval?

    .venv/bin/python benchmarks/compare_runs.py --old OLD/metrics/runs --new metrics/runs [--metric auc]

The check that a change of numerics (another optimizer, another kernel, another reduction order)
keeps the results: for every (dataset, backbone, variant, max_len, φ, κ, ablation) cell with runs on
both sides, the old runs' mean and its 95 % t-interval over seeds, the new mean, and whether it lies
inside. Exit status 1 when a cell's new mean falls outside (or a cell is missing on one side).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from scipy import stats

from micn.record import RunRecord, read_records


def cells(folder: Path, metric: str) -> dict[tuple, list[float]]:
    out: dict[tuple, list[float]] = defaultdict(list)
    records: list[RunRecord] = read_records(sorted(folder.rglob("*.json")))
    for r in records:
        if r.status == "ok":
            key = (r.dataset, r.backbone, r.variant, r.max_len, r.phi, r.kappa, r.ablation)
            out[key].append(r.metrics[metric])
    return out


def interval(values: list[float]) -> tuple[float, float, float]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean, mean - half, mean + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--new", type=Path, required=True)
    parser.add_argument("--metric", default="auc")
    args = parser.parse_args()
    old, new = cells(args.old, args.metric), cells(args.new, args.metric)
    print("| dataset | backbone | variant | old mean [95 % CI] (n) | new mean (n) | new − old | inside |")
    print("| --- | --- | --- | --- | --- | ---: | --- |")
    outside = 0
    for key in sorted(set(old) | set(new), key=str):
        if key not in old or key not in new:
            outside += 1
            print(f"| {key[0]} | {key[1]} | {key[2]} | {'–' if key not in old else len(old[key])} | "
                  f"{'–' if key not in new else len(new[key])} | – | missing |")
            continue
        mean, low, high = interval(old[key])
        new_mean = statistics.fmean(new[key])
        inside = low <= new_mean <= high
        outside += not inside
        print(f"| {key[0]} | {key[1]} | {key[2]} | {mean:.4f} [{low:.4f}, {high:.4f}] ({len(old[key])}) | "
              f"{new_mean:.4f} ({len(new[key])}) | {new_mean - mean:+.4f} | {'yes' if inside else 'NO'} |")
    print(f"\n{args.metric}: {len(old)} cells; {outside} outside the old interval or missing")
    sys.exit(1 if outside else 0)


if __name__ == "__main__":
    main()
