"""Generation time of the synthetic Amazon world per profile (target: `electronics` under 60 s).

Each profile is generated into a temporary directory (deleted afterwards) in this process, one
after the other; the table reports wall-clock seconds as measured by `generate_world` itself,
the sizes written, and the item coverage. `books` (8.9M reviews) is left out by default: add it
with `--profiles tiny,default,electronics,books`.

`--check` also compares every written file's sha256 with tests/data/synthetic_hashes.json where
that file records the (profile, seed, format) generated (the pipeline's world: `--profiles default
--seed 2022 --check`), and exits 1 on a difference: the generator's bytes must not drift.

    .venv/bin/python benchmarks/generate_scale.py
    .venv/bin/python benchmarks/generate_scale.py --profiles electronics --format 2018
    .venv/bin/python benchmarks/generate_scale.py --profiles default --seed 2022 --check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path

from micn.data.synthetic import generate_world
from micn.data.synthetic.profiles import PROFILES
from micn.data.synthetic.summary import WorldSummary
from micn.names import FORMATS

RECORDED = Path(__file__).resolve().parents[1] / "tests" / "data" / "synthetic_hashes.json"


def check_hashes(s: WorldSummary) -> str:
    """"same" / "DIFFERENT: <files>" against the recorded hashes of (profile, seed, format), or "-" if none."""
    worlds = json.loads(RECORDED.read_text())["worlds"]
    key = f"{s.profile.name}-seed{s.seed}-{s.format}"
    if key not in worlds:
        return "-"
    files = sorted(p for p in s.out_dir.rglob("*") if p.is_file())
    found = {str(p.relative_to(s.out_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    expected = worlds[key]["sha256"]
    different = sorted(name for name in found.keys() | expected.keys() if found.get(name) != expected.get(name))
    return "DIFFERENT: " + ", ".join(different) if different else "same"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default="tiny,default,electronics", help="comma-separated profile names")
    parser.add_argument("--format", default="2014", choices=FORMATS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="compare the files with the recorded sha256")
    args = parser.parse_args(argv)
    names = [p.strip() for p in args.profiles.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROFILES]
    if unknown:
        parser.error(f"unknown profile(s) {unknown}; valid choices: {sorted(PROFILES)}")

    header = ("profile", "format", "users", "items", "categories", "reviews", "lines", "seconds", "reviews/s",
              "reviews MB", "meta MB", "coverage") + (("sha256 vs recorded",) if args.check else ())  # fmt: skip
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"micn-synth-{name}-") as tmp:
            s = generate_world(name, tmp, seed=args.seed, format=args.format)
            rows.append(
                (name, s.format, f"{s.n_users:,}", f"{s.n_items:,}", f"{s.n_categories:,}", f"{s.n_reviews:,}",
                 f"{s.n_review_lines:,}", f"{s.seconds:.2f}", f"{s.n_reviews / s.seconds:,.0f}",
                 f"{s.reviews_path.stat().st_size / 2**20:.1f}", f"{s.meta_path.stat().st_size / 2**20:.1f}",
                 f"{s.item_coverage:.3f}") + ((check_hashes(s),) if args.check else ())  # fmt: skip
            )
            print(f"generated {name} in {s.seconds:.2f} s", file=sys.stderr)

    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(v.rjust(w) if i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))) + " |")
    cmd = [".venv/bin/python", "benchmarks/generate_scale.py", "--profiles", ",".join(names), "--format", args.format]
    if args.seed:
        cmd += ["--seed", str(args.seed)]
    if args.check:
        cmd += ["--check"]
    print(f"\nreproduce: {shlex.join(cmd)}")
    if args.check and any(r[-1].startswith("DIFFERENT") for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
