"""Training throughput (samples/s) of the CTR backbones, beside DeepCTR-Torch's DIN and DIEN.

One training step = forward + loss (BCE + auxiliary losses) + backward + Adam step, at fixed
shapes: batch 1024, max_len 20 and 100, item embedding 18 + 18, on synthetic random ids
(100k items, 1k categories, 10k users; history lengths uniform in 1..max_len). Warm-up steps,
then rounds of timed steps (cycling over a handful of pre-built batches) that alternate between
the implementations; each reports its best round, since on a shared machine other processes only
ever make a round slower.

DeepCTR-Torch rows run only when `deepctr_torch` imports. It must not go into the project's
virtualenv; make a separate one (torch pinned to the project's version, deepctr-torch without its
dependency resolution so it cannot swap torch):

    python3 -m venv /tmp/bench-venv
    /tmp/bench-venv/bin/pip install torch==2.13.0 scikit-learn tqdm requests
    /tmp/bench-venv/bin/pip install --no-deps deepctr-torch

and run this script with that interpreter and the repository on the path:

    PYTHONPATH=. /tmp/bench-venv/bin/python benchmarks/train_throughput.py --threads 2

With the project's own `.venv/bin/python` the DeepCTR rows are skipped with a note.

Both implementations get identical ids, lengths, labels and negatives (DeepCTR's histories are
right-padded, as it expects; ours left-padded, as `Batch` specifies) and the same thread count.
DeepCTR models are configured as close to ours as it allows: head (200, 80), attention (80, 40)
sigmoid with softmax normalisation, DIEN gru_type="AUGRU", use_negsampling=True. Residual
differences: DeepCTR's head uses PReLU without input BatchNorm (its Dice needs 3-D inputs in the
head), ours Dice + BatchNorm (more work for us); its DNN input lacks Σ history and
item ⊙ Σ history; l2_reg_embedding is set to 0 (its default 1e-6 adds a full-table L2 term per
step that is not part of the model).
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
from micn.nn import ItemEmbedding

try:
    import deepctr_torch
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import DIEN as DeepCTRDIEN
    from deepctr_torch.models import DIN as DeepCTRDIN
except ImportError:
    deepctr_torch = None

N_ITEMS, N_CATEGORIES, N_USERS, D_ID = 100_000, 1_000, 10_000, 18


def best_step_seconds(
    steps_fns: dict[str, Callable[[int], None]], warmup: int, steps: int, rounds: int, device: str
) -> dict[str, float]:
    """Seconds per step of each function: after `warmup` untimed steps, `rounds` rounds of `steps`
    timed steps, alternating between the functions; the best round counts (other processes on a
    shared machine only ever slow a round down)."""
    for fn in steps_fns.values():
        for i in range(warmup):
            fn(i)
    best = {key: float("inf") for key in steps_fns}
    for _ in range(rounds):
        for key, fn in steps_fns.items():
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            for i in range(steps):
                fn(warmup + i)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best[key] = min(best[key], (time.perf_counter() - start) / steps)
    return best


def ours_step_fn(name: str, batches: list[Batch], device: str) -> Callable[[int], None]:
    torch.manual_seed(0)
    model = build_backbone(name, None, ItemEmbedding(N_ITEMS, N_CATEGORIES, D_ID, D_ID), N_USERS).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [b.to(device) for b in batches]

    def step(i: int) -> None:
        batch = batches[i % len(batches)]
        out = model(batch)
        loss = F.binary_cross_entropy_with_logits(out.logits, batch.label)
        for aux in out.aux_losses.values():
            loss = loss + aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def right_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Left-padded (B, T) ids -> right-padded, as DeepCTR-Torch's packed sequences expect."""
    T = x.shape[1]
    idx = (torch.arange(T).unsqueeze(0) + (T - lengths).unsqueeze(1)) % T  # (B, T)
    return x.gather(1, idx)


def deepctr_step_fn(name: str, batches: list[Batch], device: str) -> Callable[[int], None]:
    T = batches[0].hist_items.shape[1]
    columns = [
        SparseFeat("user", N_USERS, embedding_dim=D_ID),
        SparseFeat("item_id", N_ITEMS, embedding_dim=D_ID),
        SparseFeat("cate_id", N_CATEGORIES, embedding_dim=D_ID),
    ]
    seq = [("hist_item_id", N_ITEMS, "item_id"), ("hist_cate_id", N_CATEGORIES, "cate_id")]
    if name == "dien":
        seq += [("neg_hist_item_id", N_ITEMS, "item_id"), ("neg_hist_cate_id", N_CATEGORIES, "cate_id")]
    columns += [
        VarLenSparseFeat(SparseFeat(n, vocab, embedding_dim=D_ID, embedding_name=e), maxlen=T, length_name="seq_length")
        for n, vocab, e in seq
    ]
    common = dict(dnn_hidden_units=(200, 80), dnn_activation="prelu", l2_reg_embedding=0.0, device=device)
    if name == "din":
        model = DeepCTRDIN(columns, ["item_id", "cate_id"], att_hidden_size=(80, 40), att_activation="sigmoid",
                           att_weight_normalization=True, **common)
    else:
        model = DeepCTRDIEN(columns, ["item_id", "cate_id"], gru_type="AUGRU", use_negsampling=True,
                            att_hidden_units=(80, 40), att_activation="sigmoid", att_weight_normalization=True,
                            **common)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    xs, ys = [], []
    for b in batches:
        cols = {
            "user": b.user, "item_id": b.item, "cate_id": b.category, "seq_length": b.hist_len,
            "hist_item_id": right_padded(b.hist_items, b.hist_len),
            "hist_cate_id": right_padded(b.hist_categories, b.hist_len),
            "neg_hist_item_id": right_padded(b.hist_neg_items, b.hist_len),
            "neg_hist_cate_id": right_padded(b.hist_neg_categories, b.hist_len),
        }
        X = torch.zeros(len(b), max(end for _, end in model.feature_index.values()))
        for feat, (start, end) in model.feature_index.items():
            X[:, start:end] = cols[feat].reshape(len(b), -1).float()
        xs.append(X.to(device))
        ys.append(b.label.to(device))

    def step(i: int) -> None:  # the body of DeepCTR-Torch's BaseModel.fit, without metrics
        x, y = xs[i % len(xs)], ys[i % len(ys)]
        y_pred = model(x).squeeze(-1)
        opt.zero_grad()
        loss = F.binary_cross_entropy(y_pred, y, reduction="sum")
        total = loss + model.get_regularization_loss() + model.aux_loss
        total.backward()
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
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-deepctr", action="store_true", help="skip DeepCTR-Torch even if installed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with_deepctr = deepctr_torch is not None and not args.no_deepctr
    rows = []
    for T in args.max_lens:
        g = torch.Generator().manual_seed(T)
        batches = [random_batch(args.batch_size, T, N_USERS, N_ITEMS, N_CATEGORIES, g, min_len=1)
                   for _ in range(4)]  # lengths 1..T
        for name in args.models:
            fns = {"micn": ours_step_fn(name, batches, args.device)}
            if with_deepctr and name in ("din", "dien"):
                fns["deepctr"] = deepctr_step_fn(name, batches, args.device)
            seconds = best_step_seconds(fns, args.warmup, args.steps, args.rounds, args.device)
            sps = {key: args.batch_size / s for key, s in seconds.items()}
            rows.append((name, T, sps["micn"], sps.get("deepctr")))

    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}, best of {args.rounds} alternating rounds of {args.steps} steps "
          f"after {args.warmup} warm-up steps")
    if deepctr_torch is None:
        print("DeepCTR-Torch not importable: its rows are skipped (see this script's docstring to set it up)")
    elif with_deepctr:
        print(f"DeepCTR-Torch {deepctr_torch.__version__}")
    print()
    print("| backbone | max_len | micn samples/s | DeepCTR-Torch samples/s | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, T, ours_sps, ref_sps in rows:
        ref = f"{ref_sps:,.0f}" if ref_sps else "n/a"
        ratio = f"{ours_sps / ref_sps:.2f}x" if ref_sps else "n/a"
        print(f"| {name} | {T} | {ours_sps:,.0f} | {ref} | {ratio} |")
    print()
    print("reproduce: PYTHONPATH=. " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
