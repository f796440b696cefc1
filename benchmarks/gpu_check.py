"""The GPU path, checked in one short script: every backbone ± MICN on CUDA against CPU, then throughput.

    PYTHONPATH=. .venv/bin/python benchmarks/gpu_check.py            # on a machine with a CUDA build of torch

1. Agreement: for each backbone (Wide&Deep, DIN, DIEN) and variant (base, control, micn), the same
   model (same seed, same weights) takes `--steps` trainer steps (`micn.train.train_step`, the
   trainer's optimizer) on the same batches on CPU and on CUDA; the losses of every step must agree
   within `--rtol` (float32 kernels differ in reduction order, so not bit for bit). MICN's own random
   draws come from a generator on each device, so the micn variant compares the main loss of a
   forward in evaluation mode (no draws) after the steps instead of the training loss.
2. Throughput: samples/s of the trainer's step at batch 256 and 4096 (T = 20, the default world's
   table sizes), CPU beside CUDA.

Without CUDA it says so and exits 0 after the CPU rows, so it can be run anywhere. Takes about a
minute on an H100 and under a minute on a 2-core CPU (23 s here, with a study running beside it).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from micn.config import MICNConfig, TrainConfig
from micn.data.batch import Batch, random_batch
from micn.data.feature_map import FeatureMap
from micn.names import OOV_ID, PADDING_ID
from micn.optim import build_optimizer
from micn.run import build_model
from micn.train import Window, train_step

BACKBONES, VARIANTS = ("wide_deep", "din", "dien"), ("base", "control", "micn")
N_USERS, N_ITEMS, N_CATEGORIES, T = 20_002, 5_002, 52, 20


def sizes() -> FeatureMap:
    return FeatureMap.from_json({
        "dataset": "gpu-check", "protocol": "dien", "seed": 0, "max_len": T, "valid_frac": 0.1, "test_frac": 0.1,
        "n_users": N_USERS, "n_items": N_ITEMS, "n_categories": N_CATEGORIES, "padding_id": PADDING_ID,
        "oov_id": OOV_ID, "vocab_order": "", "history": "", "splits": {}, "columns": {}, "vocab_files": {},
        "counts": {}, "oracle": None, "source": ""}, "gpu_check")


def trainer(backbone: str, variant: str, device: str, optimizer: str):
    """(model, step(batch) -> None, eval_loss(batch) -> float) built as the trainer builds them."""
    fmap, cfg, micn_cfg = sizes(), TrainConfig(optimizer=optimizer, device=device), MICNConfig()
    categories = torch.arange(N_ITEMS) % (N_CATEGORIES - 2) + 2
    generator = torch.Generator(device=device).manual_seed(1) if variant == "micn" else None
    torch.manual_seed(0)
    model = build_model(backbone, fmap, cfg, None if variant == "base" else micn_cfg,
                        categories if variant == "micn" else None, generator, variant=variant).to(device)
    micn = model if variant == "micn" else None
    opt, loss_fn = build_optimizer(model, cfg), nn.BCEWithLogitsLoss()
    weights, window = cfg.aux_weights(micn_cfg if micn else None), Window()

    def step(batch: Batch) -> float:
        """One trainer step; its loss."""
        model.train()
        before = window.sums.get("loss", 0.0)
        train_step(model, opt, batch.to(device), loss_fn, weights, window, micn=micn)
        return window.sums["loss"] - before

    @torch.no_grad()
    def eval_loss(batch: Batch) -> float:
        model.eval()
        b = batch.to(device)
        return float(loss_fn(model(b).logits, b.label))

    return step, eval_loss


def agreement(steps: int, rtol: float, optimizer: str) -> list[tuple[str, str, float, float, bool]]:
    g = torch.Generator().manual_seed(7)
    batches = [random_batch(256, T, N_USERS, N_ITEMS, N_CATEGORIES, g, min_len=1, alternating_labels=True)
               for _ in range(steps)]
    rows = []
    for backbone in BACKBONES:
        for variant in VARIANTS:
            losses = {}
            for device in ("cpu", "cuda"):
                step, eval_loss = trainer(backbone, variant, device, optimizer)
                train_losses = [step(b) for b in batches]
                losses[device] = eval_loss(batches[0]) if variant == "micn" else train_losses[-1]
            ok = abs(losses["cpu"] - losses["cuda"]) <= rtol * abs(losses["cpu"])
            rows.append((backbone, variant, losses["cpu"], losses["cuda"], ok))
    return rows


def throughput(device: str, batch_size: int, optimizer: str, steps: int = 10) -> dict[tuple[str, str], float]:
    g = torch.Generator().manual_seed(batch_size)
    batches = [random_batch(batch_size, T, N_USERS, N_ITEMS, N_CATEGORIES, g, min_len=1, alternating_labels=True)
               for _ in range(2)]
    out = {}
    for backbone in BACKBONES:
        for variant in VARIANTS:
            step, _ = trainer(backbone, variant, device, optimizer)
            step(batches[0])  # warm-up (CUDA kernels, allocator)
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for i in range(steps):
                step(batches[i % 2])  # each step reads its loss back (`.item()`), as the trainer does
            if device == "cuda":
                torch.cuda.synchronize()
            out[(backbone, variant)] = batch_size * steps / (time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="trainer steps compared between CPU and CUDA")
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--optimizer", default="lazy_adam", choices=["adam", "lazy_adam"])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}; CUDA: {torch.cuda.get_device_name(0) if cuda else 'none'}; "
          f"optimizer {args.optimizer}; CPU threads {args.threads}")
    failed = 0
    if cuda:
        print("\n| backbone | variant | loss CPU | loss CUDA | agree |\n| --- | --- | ---: | ---: | --- |")
        for backbone, variant, cpu, gpu, ok in agreement(args.steps, args.rtol, args.optimizer):
            failed += not ok
            print(f"| {backbone} | {variant} | {cpu:.6f} | {gpu:.6f} | {'yes' if ok else 'NO'} |")
    else:
        print("no CUDA device: the agreement check is skipped; CPU throughput only")
    for batch_size in (256, 4096):
        cpu = throughput("cpu", batch_size, args.optimizer, steps=3 if batch_size > 1000 else 10)
        gpu = throughput("cuda", batch_size, args.optimizer) if cuda else {}
        print(f"\nbatch {batch_size}, T = {T}: samples/s\n| backbone | variant | CPU | CUDA |\n| --- | --- | ---: | ---: |")
        for key, sps in cpu.items():
            print(f"| {key[0]} | {key[1]} | {sps:,.0f} | {f'{gpu[key]:,.0f}' if key in gpu else 'n/a'} |")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
