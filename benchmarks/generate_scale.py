"""Generation time of the synthetic Amazon world per profile (target: `electronics` under 60 s).

Each profile is generated into a temporary directory (deleted afterwards) in this process, one
after the other; the table reports wall-clock seconds as measured by `generate_world` itself,
the sizes written, and the item coverage. `books` (8.9M reviews) is left out by default: add it
with `--profiles tiny,default,electronics,books`.

    .venv/bin/python benchmarks/generate_scale.py
    .venv/bin/python benchmarks/generate_scale.py --profiles electronics --fmt 2018
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile

from micn.data.synthetic import FORMATS, PROFILES, generate_world


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default="tiny,default,electronics", help="comma-separated profile names")
    parser.add_argument("--fmt", default="2014", choices=FORMATS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = [p.strip() for p in args.profiles.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROFILES]
    if unknown:
        parser.error(f"unknown profile(s) {unknown}; valid choices: {sorted(PROFILES)}")

    header = ("profile", "fmt", "users", "items", "categories", "reviews", "lines", "seconds", "reviews/s",
              "reviews MB", "meta MB", "coverage")  # fmt: skip
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"micn-synth-{name}-") as tmp:
            s = generate_world(name, tmp, seed=args.seed, fmt=args.fmt)
            rows.append(
                (name, s.fmt, f"{s.n_users:,}", f"{s.n_items:,}", f"{s.n_categories:,}", f"{s.n_reviews:,}",
                 f"{s.n_review_lines:,}", f"{s.seconds:.2f}", f"{s.n_reviews / s.seconds:,.0f}",
                 f"{s.reviews_path.stat().st_size / 2**20:.1f}", f"{s.meta_path.stat().st_size / 2**20:.1f}",
                 f"{s.item_coverage:.3f}")  # fmt: skip
            )
            print(f"generated {name} in {s.seconds:.2f} s", file=sys.stderr)

    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(v.rjust(w) if i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))) + " |")
    cmd = [".venv/bin/python", "benchmarks/generate_scale.py", "--profiles", ",".join(names), "--fmt", args.fmt]
    if args.seed:
        cmd += ["--seed", str(args.seed)]
    print(f"\nreproduce: {shlex.join(cmd)}")


if __name__ == "__main__":
    main()
