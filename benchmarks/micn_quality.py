"""Does MICN help? Each backbone with and without MICN on the synthetic `default` world.

Data: generate_world("default", seed=2022) -> ingest -> build_samples(protocol="dien",
max_len=20), built once under `--data` (default benchmarks/out/micn_quality/). For every
backbone, variant (base | control | micn) and seed: Adam, `--epochs` epochs at `--batch-size`, the epoch
with the best validation AUC is kept, and its test AUC / GAUC reported. Seeds pair the variants:
the same seed gives the same training order, so the lift is paired and its 95 % interval is a t
interval over the per-seed differences. The oracle AUC (the generator's Bayes-optimal score on
the test rows) bounds what any model can reach. The control is MICN with λ = 0: the backbone
sees the same wider item vectors e_orig ⊕ e_aux but no MICN loss trains e_aux, which separates
the auxiliary task's effect from the extra embedding width's.

Training: `micn.train.train(RunConfig(backbone, variant, seed, cfg, micn), RunPaths(...))`, the
trainer the pipeline uses (variant "micn" for control and micn). Results of finished runs are kept
in `<data>/results.json` (keyed by the whole configuration), so an interrupted benchmark picks
up where it stopped and a changed setting never reuses stale numbers.

The paper's configuration is λ = 1, φ = 0.3, lr 1e-4; the defaults here keep the machine time
practical (3 epochs, batch 256, lr 1e-3). Options change λ, φ, d_aux, p, K_max, n_neg, the
sampler and routing σ for targeted runs.

    PYTHONPATH=. .venv/bin/python benchmarks/micn_quality.py --seeds 5 --threads 2
    PYTHONPATH=. .venv/bin/python benchmarks/micn_quality.py --seeds 3 --backbones din --phi 0.0
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from micn.config import MICNConfig, TrainConfig
from micn.data.samples.build import build_samples
from micn.evaluate import oracle_auc
from micn.evidence import capsule_purity, item_topics
from micn.interests import load_model
from micn.run import RunConfig, RunPaths
from micn.train import train


def ensure_samples(data: Path) -> Path:
    """The default world's dien samples under `data`, built on first use."""
    samples = data / "samples_dien"
    if (samples / "feature_map.json").is_file():
        return samples
    from micn.data.ingest.load import ingest
    from micn.data.synthetic import generate_world

    world = data / "world"
    generate_world("default", world, seed=2022)
    ingest("default", [next(world.glob("*_5.json.gz"))], [next(world.glob("meta_*.json.gz"))], data / "warehouse.duckdb")
    build_samples(data / "warehouse.duckdb", "default", samples, protocol="dien", max_len=20)
    return samples


def t_quantile_975(df: int) -> float:
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, df))
    except ImportError:  # a table for the few degrees of freedom used here
        table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
        return table.get(df, 1.96)


def purity_of(model: nn.Module, samples: Path) -> dict:
    """Capsule purity vs the planted topics on the test users (see `micn.interests`)."""
    from micn.data.dataset import SampleSet
    from micn.data.feature_map import load_feature_map

    test = SampleSet.from_parquet(samples / "test.parquet", load_feature_map(samples))
    topics = item_topics(samples, samples.parent / "world")
    return dataclasses.asdict(capsule_purity(model.cpu(), test, topics, generator=torch.Generator().manual_seed(0)))


def run_one(samples: Path, backbone: str, seed: int, cfg: TrainConfig, micn: MICNConfig | None) -> dict:
    """One run through the trainer (`micn.train.train`); micn None is variant base."""
    with tempfile.TemporaryDirectory() as out:
        run = RunConfig(backbone, "base" if micn is None else "micn", seed, cfg, micn or MICNConfig())
        record = train(run, RunPaths(samples, Path(out)))
        purity = purity_of(load_model(out)[0], samples) if micn is not None else None
    return {"metrics": record.metrics, "history": [], "seconds": record.train_seconds, "purity": purity}


def summarise(values: list[float]) -> str:
    if not values:
        return "n/a"
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.4f} ± {sd:.4f}"


def paired_lift(base: list[float], micn: list[float]) -> str:
    d = np.asarray(micn) - np.asarray(base)
    if len(d) < 2:
        return f"{d.mean():+.4f}" if len(d) else "n/a"
    half = t_quantile_975(len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return f"{d.mean():+.4f} [{d.mean() - half:+.4f}, {d.mean() + half:+.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("benchmarks/out/micn_quality"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--backbones", nargs="+", default=["wide_deep", "din", "dien"])
    parser.add_argument("--variants", nargs="+", default=["base", "control", "micn"],
                        choices=["base", "control", "micn"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    defaults = MICNConfig()
    parser.add_argument("--lambda-micn", type=float, default=defaults.lambda_micn)
    parser.add_argument("--phi", type=float, default=defaults.phi)
    parser.add_argument("--d-aux", type=int, default=defaults.d_aux)
    parser.add_argument("--pow-p", type=float, default=defaults.pow_p)
    parser.add_argument("--k-max", type=int, default=defaults.k_max)
    parser.add_argument("--n-neg", type=int, default=defaults.n_neg)
    parser.add_argument("--sampler", default=defaults.sampler)
    parser.add_argument("--routing-std", type=float, default=defaults.routing_std)
    args = parser.parse_args()

    samples = ensure_samples(args.data)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, threads=args.threads,
                              patience=args.epochs, device="cpu")
    micn = MICNConfig(d_aux=args.d_aux, k_max=args.k_max, pow_p=args.pow_p, n_neg=args.n_neg,
                      sampler=args.sampler, lambda_micn=args.lambda_micn, phi=args.phi, routing_std=args.routing_std)
    torch.set_num_threads(args.threads)
    results_path = args.data / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))

    # "control" is MICN with λ = 0: the same wider item vectors e_orig ⊕ e_aux, no MICN loss. It
    # separates what the auxiliary task brings from what the extra embedding width brings.
    configs = {"base": None, "control": dataclasses.replace(micn, lambda_micn=0.0), "micn": micn}

    def key(backbone: str, variant: str, seed: int) -> str:
        config = configs[variant]
        setting = {"backbone": backbone, "variant": "base" if config is None else "micn", "seed": seed,
                   "train": dataclasses.asdict(cfg), "micn": dataclasses.asdict(config) if config else None}
        return hashlib.sha1(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:16]

    for seed in seeds:
        for backbone in args.backbones:
            for variant in args.variants:
                k = key(backbone, variant, seed)
                if k in results:
                    continue
                t0 = time.perf_counter()
                run = run_one(samples, backbone, seed, cfg, configs[variant])
                results[k] = {"backbone": backbone, "variant": variant, "seed": seed, **run}
                results_path.write_text(json.dumps(results, indent=1) + "\n")
                m = run["metrics"]
                print(f"{backbone:9s} {variant:7s} seed {seed}: test AUC {m['auc']:.4f} GAUC {m['gauc']:.4f} "
                      f"(valid {m['valid_auc']:.4f}, {time.perf_counter() - t0:.0f} s)", flush=True)

    from micn.data.dataset import SampleSet
    from micn.data.feature_map import load_feature_map

    fmap = load_feature_map(samples)
    oracle = oracle_auc(SampleSet.from_parquet(samples / "test.parquet", fmap), fmap, samples)
    print()
    print(f"default world (seed 2022), dien protocol, max_len 20; {len(seeds)} seeds ({seeds[0]}..{seeds[-1]}); "
          f"Adam lr {args.lr}, batch {args.batch_size}, {args.epochs} epochs (best validation AUC), "
          f"{args.threads} threads; oracle test AUC {'n/a' if oracle is None else f'{oracle:.4f}'}")
    print(f"MICN: λ {micn.lambda_micn}, φ {micn.phi}, d_aux {micn.d_aux}, K_max {micn.k_max}, r {micn.iterations}, "
          f"p {micn.pow_p}, n_neg {micn.n_neg} ({micn.sampler}), σ {micn.routing_std}; "
          "control = the same with λ 0 (wider item vectors, no MICN loss)")
    print()
    print("| backbone | metric | base | control (λ 0) | +MICN | lift vs base [95 % CI] | lift vs control [95 % CI] |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    purities = {}

    def runs_of(backbone: str, variant: str) -> list[dict]:
        return [results[key(backbone, variant, s)] for s in seeds if key(backbone, variant, s) in results]

    for backbone in args.backbones:
        for metric in ("auc", "gauc"):
            values = {v: [r["metrics"][metric] for r in runs_of(backbone, v)] for v in configs}

            def lift(reference: str) -> str:
                same = len(values[reference]) == len(values["micn"]) == len(seeds)
                return paired_lift(values[reference], values["micn"]) if same else "n/a"

            print(f"| {backbone} | {metric.upper()} | {summarise(values['base'])} | {summarise(values['control'])} | "
                  f"{summarise(values['micn'])} | {lift('base')} | {lift('control')} |")
        purities[backbone] = {v: [r["purity"] for r in runs_of(backbone, v) if r.get("purity")]
                              for v in ("control", "micn")}
    if any(p for ps in purities.values() for p in ps.values()):
        print()
        print("Capsule purity vs planted topics, test users with >= 2 interests (micn.evidence.capsule_purity);")
        print("the control's capsules are routed over e_aux that no MICN loss trained:")
        print()
        print("| backbone | variant | runs | purity | shuffled assignment | one cluster (majority) | users |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for backbone, by_variant in purities.items():
            for variant, ps in by_variant.items():
                if ps:
                    print(f"| {backbone} | {variant} | {len(ps)} | {summarise([p['purity'] for p in ps])} | "
                          f"{summarise([p['shuffled'] for p in ps])} | {summarise([p['majority'] for p in ps])} | "
                          f"{ps[0]['n_users']} |")
    print()
    print("reproduce: PYTHONPATH=. " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
