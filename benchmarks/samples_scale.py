"""Sample building at scale: wall time and peak memory of `build_job`, per protocol.

The synthetic world of each profile (`electronics`: the real Electronics 5-core shape, 1.7M
reviews; `books` with --books: 8.9M reviews) is generated and ingested once under
benchmarks/out/samples/<profile>/ (reused when its warehouse exists), then every
`build_job` call runs in its own fresh Python process so that its peak RSS
(`ru_maxrss`, DuckDB included: it runs in-process) is its own.

    .venv/bin/python benchmarks/samples_scale.py [--books] [--protocols dien din]

Targets (DESIGN §8 and the samples issue): electronics < 30 s and < 4 GB; books < 3 min and < 8 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "samples"
MAX_LEN = {"electronics": 10, "books": 20}  # the paper's history lengths
TARGETS = {"electronics": (30, 4096), "books": (180, 8192)}  # seconds, MB


def _step_prepare(profile: str, out: str, _protocol: str, _max_len: int) -> dict:
    from micn.data.ingest.load import ingest
    from micn.data.synthetic import generate_world

    t = time.perf_counter()
    generate_world(profile, out, seed=2022)
    generated = time.perf_counter() - t
    reviews, meta = next(Path(out).glob("*_5.json.gz")), next(Path(out).glob("meta_*.json.gz"))
    db = Path(out) / "warehouse.duckdb"
    db.unlink(missing_ok=True)
    r = ingest(profile, [reviews], [meta], db)
    return {"generate_seconds": generated, "ingest_seconds": time.perf_counter() - t - generated, "reviews": r.reviews}


def _step_samples(profile: str, out: str, protocol: str, max_len: int) -> dict:
    from micn.config import SamplesConfig
    from micn.data.samples.build import build_job
    from micn.data.samples.job import SamplesJob

    t = time.perf_counter()
    job = SamplesJob(profile, max_len, SamplesConfig(protocol=protocol, seed=0))
    r = build_job(Path(out) / "warehouse.duckdb", job, Path(out) / f"samples_{protocol}")
    return {"seconds": time.perf_counter() - t, "users": r.users, "users_kept": r.users_kept,
            "rows": r.samples_per_split, "vocab": r.vocab_sizes, "checks": r.checks}


STEPS = {"prepare": _step_prepare, "samples": _step_samples}


def _run_child(step: str, profile: str, out: Path, protocol: str = "", max_len: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--child", step, "--profile", profile, "--out", str(out), "--protocol", protocol,
           "--max-len", str(max_len)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    if done.returncode != 0:
        raise SystemExit(f"step {step} ({profile}, {protocol}) failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--books", action="store_true", help="also the books profile (8.9M reviews; generating it takes minutes)")
    p.add_argument("--protocols", nargs="+", default=["dien", "din"], choices=["dien", "din"])
    p.add_argument("--repeat", type=int, default=1, help="runs per (profile, protocol); the table shows each")
    p.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    p.add_argument("--profile", default="electronics", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--protocol", default="", help=argparse.SUPPRESS)
    p.add_argument("--max-len", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        result = STEPS[a.child](a.profile, str(a.out), a.protocol, a.max_len)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result["peak_rss_mb"] = usage.ru_maxrss / 1024
        result["cpu_seconds"] = usage.ru_utime + usage.ru_stime  # all threads; load-independent, unlike wall time
        print(json.dumps(result))
        return

    profiles = ["electronics"] + (["books"] if a.books else [])
    rows = []
    for profile in profiles:
        out = OUT / profile
        if not (out / "warehouse.duckdb").is_file():
            prep = _run_child("prepare", profile, out)
            print(f"{profile}: generated in {prep['generate_seconds']:.0f} s, ingested {prep['reviews']:,} reviews in "
                  f"{prep['ingest_seconds']:.0f} s", file=sys.stderr)
        for protocol in a.protocols:
            for _ in range(a.repeat):
                r = _run_child("samples", profile, out, protocol, MAX_LEN[profile])
                rows.append((profile, protocol, r))
                print(f"{profile} {protocol}: {r['seconds']:.1f} s", file=sys.stderr)

    print(f"\nSample building (`build_job`, one fresh process per run; {os.cpu_count()} CPUs)\n")
    print("| profile | protocol | max_len | users kept / total | rows train / valid / test | wall s | CPU s | peak RSS (MB) | target |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for profile, protocol, r in rows:
        seconds, mb = TARGETS[profile]
        ok = "met" if r["seconds"] < seconds and r["peak_rss_mb"] < mb else "MISSED"
        split_rows = " / ".join(f"{r['rows'][s]:,}" for s in ("train", "valid", "test"))
        print(f"| {profile} | {protocol} | {MAX_LEN[profile]} | {r['users_kept']:,} / {r['users']:,} | {split_rows} | "
              f"{r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['peak_rss_mb']:.0f} | < {seconds} s, < {mb / 1024:.0f} GB: {ok} |")
    load = os.getloadavg()[0]
    print(f"\nload average (1 min) at the end: {load:.1f} on {os.cpu_count()} CPUs: wall times are inflated when it exceeds "
          "the CPU count (CPU s counts every thread's work, so it can exceed wall s on an idle machine)")
    flags = (" --books" if a.books else "") + (f" --protocols {' '.join(a.protocols)}" if a.protocols != ["dien", "din"] else "")
    print(f"\nreproduce: .venv/bin/python benchmarks/samples_scale.py{flags}")


if __name__ == "__main__":
    main()
