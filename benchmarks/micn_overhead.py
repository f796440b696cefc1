"""Step-time overhead of MICN: each backbone with the auxiliary capsule network, against the
width-matched control and against the plain backbone.

One training step = forward + loss (BCE + auxiliary losses, MICN's weighted by λ = 1) + backward
+ Adam step, at fixed shapes: batch 1024, max_len 20 and 100, e_orig 18 + 18, d_aux 36 (so the
backbone with MICN sees 72-wide items), K_max 4, 3 routing iterations, 100 sampled negatives, on
synthetic random ids (100k items, 1k categories, 10k users; history lengths uniform in
1..max_len; half the rows positive). Warm-up steps, then rounds of timed steps (cycling over a
handful of pre-built batches) that alternate between the two variants; each reports its best
round, since on a shared machine other processes only ever make a round slower.

Three variants per backbone, as in the experiments: `base` (e_orig only, 36-wide items),
`control` (`build_control`: e_orig ⊕ e_ctrl, 72-wide items, a second 100k-row table trained by
the main loss, no capsules) and `micn`. The target (DESIGN §8) is MICN's step <= 1.15x the
control's: the doubled width and the second table are the method's cost, which the control pays
too; what MICN adds beyond it is the capsule network and L_micn. The ratio to base is printed as
well (earlier target <= 1.3x), and the control's own ratio to base shows the width's share.
With dense embedding gradients the per-step work on the tables (gradient fill, Adam) is a large
share of a light backbone's step on CPU; `--fused` uses Adam(fused=True), which does that update
several times faster than the default foreach implementation (the trainer uses the default).

    PYTHONPATH=. .venv/bin/python benchmarks/micn_overhead.py --threads 1
    PYTHONPATH=. .venv/bin/python benchmarks/micn_overhead.py --threads 2
    PYTHONPATH=. .venv/bin/python benchmarks/micn_overhead.py --threads 1 --fused
    PYTHONPATH=. .venv/bin/python benchmarks/micn_overhead.py --threads 1 --user-profile --post-layers 64
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from micn.data.batch import Batch, random_batch
from micn.models import build_backbone
from micn.config import MICNConfig
from micn.models.with_micn import build_control, build_with_micn
from micn.nn import ItemEmbedding

N_ITEMS, N_CATEGORIES, N_USERS, D_ID = 100_000, 1_000, 10_000, 18


def best_step_seconds(fns: dict[str, Callable[[int], None]], warmup: int, steps: int, rounds: int) -> dict[str, float]:
    for fn in fns.values():
        for i in range(warmup):
            fn(i)
    best = {key: float("inf") for key in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            start = time.perf_counter()
            for i in range(steps):
                fn(warmup + i)
            best[key] = min(best[key], (time.perf_counter() - start) / steps)
    return best


def step_fn(model: torch.nn.Module, batches: list[Batch], fused: bool) -> Callable[[int], None]:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)

    def step(i: int) -> None:
        batch = batches[i % len(batches)]
        out = model(batch)
        loss = F.binary_cross_entropy_with_logits(out.logits, batch.label)
        for aux in out.aux_losses.values():
            loss = loss + aux  # λ = 1 and DIEN's weight 1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--max-lens", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--models", nargs="+", default=["wide_deep", "din", "dien"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds; the best counts")
    parser.add_argument("--fused", action="store_true", help="Adam(fused=True) instead of the foreach default")
    parser.add_argument("--user-profile", action="store_true", help="MICN with the paper's profile join")
    parser.add_argument("--post-layers", type=int, nargs="*", default=list(MICNConfig().post_layers),
                        help="MIND's ReLU layers after the capsules (default: micn.post_layers' default, 64; "
                        "give none for the capsule-only ablation)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    micn_cfg = MICNConfig(d_aux=2 * D_ID, user_profile=args.user_profile, post_layers=tuple(args.post_layers))

    rows = []
    for T in args.max_lens:
        g = torch.Generator().manual_seed(T)
        batches = [random_batch(args.batch_size, T, N_USERS, N_ITEMS, N_CATEGORIES, g, min_len=1,
                                alternating_labels=True)
                   for _ in range(4)]  # lengths 1..T
        for name in args.models:
            torch.manual_seed(0)
            fns = {
                "base": step_fn(build_backbone(name, None, ItemEmbedding(N_ITEMS, N_CATEGORIES, D_ID, D_ID), N_USERS),
                                batches, args.fused),
                "control": step_fn(build_control(name, N_USERS, N_ITEMS, N_CATEGORIES, D_ID, D_ID, micn_cfg), batches,
                                   args.fused),
                "micn": step_fn(build_with_micn(name, N_USERS, N_ITEMS, N_CATEGORIES, D_ID, D_ID, micn_cfg), batches,
                                args.fused),
            }
            ms = {k: 1e3 * s for k, s in best_step_seconds(fns, args.warmup, args.steps, args.rounds).items()}
            rows.append((name, T, ms))

    print(f"torch {torch.__version__}, cpu, threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"Adam {'fused' if args.fused else 'foreach'}, best of {args.rounds} alternating rounds of {args.steps} steps after {args.warmup} warm-up steps; "
          f"MICN d_aux {micn_cfg.d_aux}, K_max {micn_cfg.k_max}, r {micn_cfg.iterations}, n_neg {micn_cfg.n_neg}, "
          f"user_profile {micn_cfg.user_profile}, post_layers {list(micn_cfg.post_layers)}")
    print()
    print("| backbone | max_len | base ms/step | control ms/step | micn ms/step | micn / control (target <= 1.15x) "
          "| micn / base | control / base |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, T, ms in rows:
        print(f"| {name} | {T} | {ms['base']:.1f} | {ms['control']:.1f} | {ms['micn']:.1f} "
              f"| {ms['micn'] / ms['control']:.2f}x | {ms['micn'] / ms['base']:.2f}x "
              f"| {ms['control'] / ms['base']:.2f}x |")
    print()
    print("reproduce: PYTHONPATH=. " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
