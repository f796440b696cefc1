"""The trainer's two engines side by side on real samples: `train.optimizer` adam against lazy_adam.

    PYTHONPATH=. .venv/bin/python benchmarks/engine_speed.py --samples DIR [--steps 200] [--threads 1]

For every backbone × variant (base, control, micn), each engine is built exactly as `micn train`
builds a run (`micn.train.prepare_loop`: the same model, optimizer, evidence and batches), then
times `--steps` training steps (`Loop.step`, shuffled batches of the first epoch, the same for
both engines), one validation (`Loop.evaluate` without the evidence: the AUC that selects) and, for
micn runs, one `Loop.evidence()` (MICN's Recall@50 and the capsule evidence, over the catalogue).
The table gives ms per step, the speed-up, and the share of an epoch's time that evaluation takes
as the trainer schedules it: `evals_per_epoch` validations plus the evidence once per epoch.

Samples of the Electronics-shaped world (192,403 users, 63,001 items, history 10):
    micn generate --profile electronics --seed 2022 --out /tmp/elec/raw/synthetic
    micn ingest --dataset synthetic --reviews /tmp/elec/raw/synthetic/reviews_*_5.json.gz \\
        --meta /tmp/elec/raw/synthetic/meta_*.json.gz --db /tmp/elec/warehouse.duckdb
    micn samples --dataset synthetic --max-len 10 --seed 2022 --db /tmp/elec/warehouse.duckdb --out /tmp/elec/len10
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from micn.config import MICNConfig, TrainConfig
from micn.run import RunConfig, RunPaths
from micn.train import Window, prepare_loop

VARIANTS = ("base", "control", "micn")


def time_engine(samples: Path, backbone: str, variant: str, optimizer: str, steps: int, threads: int) -> tuple:
    """(seconds per step, per validation, per evidence, steps per epoch) of one engine."""
    cfg = TrainConfig(optimizer=optimizer, threads=threads, device="cpu")
    run = RunConfig(backbone=backbone, variant=variant, seed=1, train=cfg, micn=MICNConfig())
    with tempfile.TemporaryDirectory() as out:
        loop, _ = prepare_loop(run, RunPaths(samples, Path(out)), None, progress=False)
        generator = torch.Generator().manual_seed(1)
        batches = loop.data.batches(cfg.batch_size, shuffle=True, generator=generator)
        window = Window()
        for _ in range(5):  # warm-up: allocator, first-touch of the tables
            loop.step(next(batches), window)
        start = time.perf_counter()
        for _ in range(steps):
            loop.step(next(batches), window)
        per_step = (time.perf_counter() - start) / steps
        start = time.perf_counter()
        loop.evaluate(1, window, evidence=False)
        per_eval = time.perf_counter() - start
        start = time.perf_counter()
        loop.evidence()
        per_evidence = time.perf_counter() - start
        return per_step, per_eval, per_evidence, loop.data.num_batches(cfg.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["wide_deep", "din", "dien"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    evals = TrainConfig().evals_per_epoch
    print(f"torch {torch.__version__}, {args.threads} thread(s), samples {args.samples}, {args.steps} timed steps "
          f"after 5 warm-up steps; evaluation share of an epoch = {evals} validations + the evidence once")
    print("\n| backbone | variant | adam ms/step | lazy_adam ms/step | speed-up | validation s | evidence s | "
          "eval share (lazy_adam) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for backbone in args.models:
        for variant in args.variants:
            dense = time_engine(args.samples, backbone, variant, "adam", args.steps, args.threads)[0]
            lazy, per_eval, per_evidence, per_epoch = time_engine(args.samples, backbone, variant, "lazy_adam",
                                                                  args.steps, args.threads)
            evaluation = evals * per_eval + per_evidence
            share = evaluation / (evaluation + per_epoch * lazy)
            print(f"| {backbone} | {variant} | {1e3 * dense:.2f} | {1e3 * lazy:.2f} | {dense / lazy:.2f}x | "
                  f"{per_eval:.2f} | {per_evidence:.2f} | {100 * share:.1f} % |", flush=True)
    print("\nreproduce: PYTHONPATH=. " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
