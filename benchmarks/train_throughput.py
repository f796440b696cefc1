"""Training throughput (samples/s) of the CTR backbones, beside DeepCTR-Torch's DIN and DIEN.

Our step is the trainer's own (`micn.train.train_step`: forward, BCE + weighted auxiliary losses,
backward, the trainer's optimizer of `--optimizers`, MICN's gradient ratio), on the model
`micn train` builds (`micn.run.build_model`, `--variants` base / control / micn, and micn_history: micn with `supervision: history`), at fixed shapes:
batch 1024 and 256, max_len 20 and 100, item embedding 18 + 18, on synthetic random ids
(`--n-items` 100k, `--n-categories` 1k, `--n-users` 10k by default; history lengths uniform in
1..max_len). Give the table sizes of a dataset to see how a step's cost grows with the catalogue
(Electronics: --n-items 63001 --n-users 192403; Books: --n-items 367982 --n-users 603668). Warm-up steps,
then rounds of timed steps (cycling over a handful of pre-built batches) that alternate between
the implementations; each reports its best round, since on a shared machine other processes only
ever make a round slower.

DeepCTR-Torch rows run only when `deepctr_torch` imports. It must not go into the project's
virtualenv; make a separate one (torch pinned to the project's version, deepctr-torch without its
dependency resolution so it cannot swap torch):

    python3 -m venv /tmp/bench-venv
    /tmp/bench-venv/bin/pip install -c constraints.txt torch scikit-learn tqdm requests pyyaml pydantic polars pyarrow
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
from torch import nn
from torch.nn import functional as F

from micn.config import MICNConfig, TrainConfig
from micn.data.batch import Batch, random_batch
from micn.data.feature_map import FeatureMap
from micn.names import OOV_ID, PADDING_ID
from micn.optim import build_optimizer
from micn.run import build_model
from micn.train import Window, train_step

try:
    import deepctr_torch
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import DIEN as DeepCTRDIEN
    from deepctr_torch.models import DIN as DeepCTRDIN
    from deepctr_torch.models import WDL as DeepCTRWDL
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


def sizes_only(n_users: int, n_items: int, n_categories: int, max_len: int) -> FeatureMap:
    """A feature map with the vocabulary sizes of the benchmark (the rest is what a samples folder says)."""
    return FeatureMap.from_json({
        "dataset": "bench", "protocol": "dien", "seed": 0, "max_len": max_len, "valid_frac": 0.1, "test_frac": 0.1,
        "n_users": n_users, "n_items": n_items, "n_categories": n_categories, "padding_id": PADDING_ID,
        "oov_id": OOV_ID, "vocab_order": "", "history": "", "splits": {}, "columns": {}, "vocab_files": {},
        "counts": {}, "oracle": None, "source": ""}, "benchmark")


def ours_step_fn(name: str, variant: str, optimizer: str, batches: list[Batch], device: str,
                 fmap: FeatureMap) -> Callable[[int], None]:
    """The trainer's own step (`micn.train.train_step`) on the trainer's own model and optimizer.
    Variant `micn_history` is `micn` with `supervision: history`."""
    cfg = TrainConfig(optimizer=optimizer, device=device)
    micn_cfg = MICNConfig(supervision="history" if variant == "micn_history" else "target")
    variant = "micn" if variant == "micn_history" else variant
    item_categories = torch.arange(fmap.n_items) % (fmap.n_categories - 2) + 2 if variant == "micn" else None
    generator = torch.Generator(device=device).manual_seed(0) if variant == "micn" else None
    torch.manual_seed(0)
    model = build_model(name, fmap, cfg, None if variant == "base" else micn_cfg, item_categories, generator,
                        variant=variant).to(device)
    model.train()
    micn = model if variant == "micn" else None
    if micn is not None:
        micn.measure_grad_norms(True)  # as the trainer does: the record's grad_ratio
    opt = build_optimizer(model, cfg)
    loss_fn, aux_weights, window = nn.BCEWithLogitsLoss(), cfg.aux_weights(micn_cfg if micn else None), Window()
    batches = [b.to(device) for b in batches]

    def step(i: int) -> None:
        train_step(model, opt, batches[i % len(batches)], loss_fn, aux_weights, window, micn=micn)

    return step


def right_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Left-padded (B, T) ids -> right-padded, as DeepCTR-Torch's packed sequences expect."""
    T = x.shape[1]
    idx = (torch.arange(T).unsqueeze(0) + (T - lengths).unsqueeze(1)) % T  # (B, T)
    return x.gather(1, idx)


def deepctr_step_fn(name: str, batches: list[Batch], device: str, fmap: FeatureMap) -> Callable[[int], None]:
    T = batches[0].hist_items.shape[1]
    columns = [
        SparseFeat("user", fmap.n_users, embedding_dim=D_ID),
        SparseFeat("item_id", fmap.n_items, embedding_dim=D_ID),
        SparseFeat("cate_id", fmap.n_categories, embedding_dim=D_ID),
    ]
    seq = [("hist_item_id", fmap.n_items, "item_id"), ("hist_cate_id", fmap.n_categories, "cate_id")]
    if name == "dien":
        seq += [("neg_hist_item_id", fmap.n_items, "item_id"), ("neg_hist_cate_id", fmap.n_categories, "cate_id")]
    columns += [
        VarLenSparseFeat(SparseFeat(n, vocab, embedding_dim=D_ID, embedding_name=e), maxlen=T, length_name="seq_length",
                         combiner="sum")
        for n, vocab, e in seq
    ]
    common = dict(dnn_hidden_units=(200, 80), dnn_activation="prelu", l2_reg_embedding=0.0, device=device)
    if name == "wide_deep":  # wide: the ids and the summed history; deep: their embeddings
        model = DeepCTRWDL(columns, columns, l2_reg_linear=0.0, **common)
    elif name == "din":
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
        total = loss + model.get_regularization_loss() + getattr(model, "aux_loss", 0)
        total.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (the trainer's default is 1)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 256])
    parser.add_argument("--max-lens", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--models", nargs="+", default=["wide_deep", "din", "dien"])
    parser.add_argument("--variants", nargs="+", default=["base"], choices=["base", "control", "micn", "micn_history"])
    parser.add_argument("--optimizers", nargs="+", default=["adam", "lazy_adam"], choices=["adam", "lazy_adam"],
                        help="the trainer's train.optimizer values to time")
    parser.add_argument("--n-items", type=int, default=N_ITEMS)
    parser.add_argument("--n-users", type=int, default=N_USERS)
    parser.add_argument("--n-categories", type=int, default=N_CATEGORIES)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds; the best counts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-deepctr", action="store_true", help="skip DeepCTR-Torch even if installed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with_deepctr = deepctr_torch is not None and not args.no_deepctr
    rows = []
    for B in args.batch_sizes:
        for T in args.max_lens:
            fmap = sizes_only(args.n_users, args.n_items, args.n_categories, T)
            g = torch.Generator().manual_seed(T)
            batches = [random_batch(B, T, fmap.n_users, fmap.n_items, fmap.n_categories, g, min_len=1,
                                    alternating_labels=True) for _ in range(4)]  # lengths 1..T
            for name in args.models:
                fns = {(variant, opt): ours_step_fn(name, variant, opt, batches, args.device, fmap)
                       for variant in args.variants for opt in args.optimizers}
                if with_deepctr:
                    fns[("base", "deepctr")] = deepctr_step_fn(name, batches, args.device, fmap)
                seconds = best_step_seconds(fns, args.warmup, args.steps, args.rounds, args.device)
                rows.append((B, T, name, seconds))
    report(args, rows, with_deepctr)


def report(args: argparse.Namespace, rows: list, with_deepctr: bool) -> None:
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, tables: "
          f"{args.n_items:,} items, {args.n_users:,} users, {args.n_categories:,} categories; best of {args.rounds} "
          f"alternating rounds of {args.steps} steps after {args.warmup} warm-up steps")
    if deepctr_torch is None:
        print("DeepCTR-Torch not importable: its rows are skipped (see this script's docstring to set it up)")
    elif with_deepctr:
        print(f"DeepCTR-Torch {deepctr_torch.__version__}")
    print()
    print("| batch | max_len | backbone | variant | optimizer | ms/step | samples/s | vs DeepCTR-Torch |")
    print("| ---: | ---: | --- | --- | --- | ---: | ---: | ---: |")
    for B, T, name, seconds in rows:
        ref = seconds.get(("base", "deepctr"))
        for (variant, opt), s in seconds.items():
            ratio = "–" if ref is None or opt == "deepctr" else f"{ref / s:.2f}x"
            print(f"| {B} | {T} | {name} | {variant} | {opt} | {1e3 * s:.2f} | {B / s:,.0f} | {ratio} |")
    print()
    print("reproduce: PYTHONPATH=. " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
