"""Ingest at scale: generation time, ingest wall time and peak memory, and two ratios.

* bare scan: DuckDB's `select count(*)` over the same files (read_json for JSON files, a plain
  line count with read_csv for the 2014 metadata, which is not JSON) — the floor for any reader;
* reference: the DIN preprocessing approach (`utils/1_convert_pd.py`): Python `eval` per line
  into a dict of dicts, then `pandas.DataFrame.from_dict` — run on the same files.

Each measurement runs in its own fresh Python process so its peak RSS is its own.

    .venv/bin/python benchmarks/ingest_scale.py --profile electronics [--skip-reference]

Needs pandas for the reference (`pip install -c constraints.txt -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def _step_generate(profile: str, out: str) -> dict:
    from micn.data.synthetic import generate_world

    t = time.perf_counter()
    s = generate_world(profile, out, seed=2022)
    return {"seconds": time.perf_counter() - t, "reviews": s.n_reviews}


def _step_ingest(profile: str, out: str) -> dict:
    from micn.data.ingest.load import ingest

    reviews, meta = _files(out)
    db = Path(out) / "bench.duckdb"
    db.unlink(missing_ok=True)
    t = time.perf_counter()
    r = ingest(profile, [reviews], [meta], db)
    return {"seconds": time.perf_counter() - t, "reviews": r.reviews, "files": [f.__dict__ for f in r.files]}


def _step_bare(profile: str, out: str) -> dict:
    import duckdb

    reviews, meta = _files(out)
    con = duckdb.connect()
    t = time.perf_counter()
    n_reviews = con.execute("select count(*) from read_json($p)", {"p": str(reviews)}).fetchall()[0][0]
    t_reviews = time.perf_counter() - t
    n_meta = con.execute(
        "select count(*) from read_csv($p, columns = {'line': 'VARCHAR'}, delim = chr(1), quote = '', escape = '', "
        "header = false, auto_detect = false)",
        {"p": str(meta)},
    ).fetchall()[0][0]
    return {"seconds": time.perf_counter() - t, "reviews_seconds": t_reviews, "reviews": n_reviews, "meta": n_meta}


def _step_reference(profile: str, out: str) -> dict:
    """DIN's `1_convert_pd.py`: eval every line, dict of dicts, pandas DataFrame (as it does it)."""
    import gzip

    import pandas as pd

    def to_df(path):
        rows = {}
        with gzip.open(path, "rb") as g:
            for i, line in enumerate(g):
                rows[i] = eval(line)  # noqa: S307 — the reference approach under measurement, not ours
        return pd.DataFrame.from_dict(rows, orient="index")

    reviews, meta = _files(out)
    t = time.perf_counter()
    df_reviews, df_meta = to_df(reviews), to_df(meta)
    return {"seconds": time.perf_counter() - t, "reviews": len(df_reviews), "meta": len(df_meta)}


STEPS = {"generate": _step_generate, "ingest": _step_ingest, "bare": _step_bare, "reference": _step_reference}


def _files(out: str) -> tuple[Path, Path]:
    return next(Path(out).glob("*_5.json.gz")), next(Path(out).glob("meta_*.json.gz"))


def _run_child(step: str, profile: str, out: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", step, "--profile", profile, "--out", str(out)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"step {step} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="electronics")
    p.add_argument("--out", type=Path, default=None, help="where the world is written (default benchmarks/out/<profile>)")
    p.add_argument("--skip-reference", action="store_true", help="skip the slow eval+pandas reference")
    p.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    a = p.parse_args()
    out = a.out or OUT / a.profile
    if a.child:
        result = STEPS[a.child](a.profile, str(out))
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    steps = ["generate", "ingest", "bare"] + ([] if a.skip_reference else ["reference"])
    res = {s: _run_child(s, a.profile, out) for s in steps}
    ing, bare = res["ingest"], res["bare"]
    review_file = ing["files"][0]
    print(f"\nIngest benchmark, profile {a.profile!r} ({res['generate']['reviews']:,} reviews), files in {out}\n")
    print(f"| step | seconds | peak RSS (MB) | notes |\n|---|---:|---:|---|")
    print(f"| generate (`micn generate`) | {res['generate']['seconds']:.1f} | {res['generate']['peak_rss_mb']:.0f} | raw files + ground truth |")
    print(f"| ingest (`micn ingest`, library call) | {ing['seconds']:.1f} | {ing['peak_rss_mb']:.0f} | reviews file {review_file['seconds']:.1f} s, metadata {ing['files'][1]['seconds']:.1f} s |")
    print(f"| bare DuckDB scan, count(*) | {bare['seconds']:.1f} | {bare['peak_rss_mb']:.0f} | reviews read_json {bare['reviews_seconds']:.1f} s |")
    if "reference" in res:
        print(f"| reference: eval per line → pandas | {res['reference']['seconds']:.1f} | {res['reference']['peak_rss_mb']:.0f} | DIN's 1_convert_pd.py |")
    print()
    print(f"ingest / bare scan (all files): {ing['seconds'] / bare['seconds']:.2f}x   "
          f"(reviews file alone: {review_file['seconds'] / bare['reviews_seconds']:.2f}x)")
    if "reference" in res:
        print(f"reference / ingest: {res['reference']['seconds'] / ing['seconds']:.1f}x faster")
    print(f"\nreproduce: .venv/bin/python benchmarks/ingest_scale.py --profile {a.profile}")


if __name__ == "__main__":
    main()
