"""Research driver: train one run with the library's pieces, evaluating every N steps.

python regime.py --name X --backbone din --variant micn --lr 1e-3 --batch 256 --eval-every 25 --max-steps 1000
Writes /work/scratch/regime/<name>.json (curve + selected point + test AUC + wall time).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from micn.config import MICNConfig, TrainConfig
from micn.evaluate import ctr_metrics
from micn.models.with_micn import item_categories_of
from micn.evidence import Retrieval
from micn.run import build_model, load_splits
from micn.train import evaluate_split

p = argparse.ArgumentParser()
p.add_argument("--name", required=True)
p.add_argument("--samples", default="/work/main/data/samples/synthetic/len20")
p.add_argument("--backbone", default="din")
p.add_argument("--variant", default="micn")
p.add_argument("--seed", type=int, default=1)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--batch", type=int, default=256)
p.add_argument("--eval-every", type=int, default=25)
p.add_argument("--max-steps", type=int, default=750)
p.add_argument("--patience", type=int, default=0, help="stop after this many evals without improvement (0 = never)")
p.add_argument("--init-std", type=float, default=None, help="re-init every nn.Embedding with N(0, s^2)")
p.add_argument("--aux-act", default="sigmoid")
p.add_argument("--post-layers", default="")
p.add_argument("--profile", action="store_true")
p.add_argument("--weight-decay", type=float, default=0.0)
p.add_argument("--no-user", action="store_true", help="zero and freeze the backbone's user-id embedding")
p.add_argument("--warmup-steps", type=int, default=0, help="first steps train L_micn only (main loss weight 0); not selectable")
p.add_argument("--warmup-micn-only", action="store_true", help="during the warm-up also weight DIEN's aux loss 0")
p.add_argument("--phi", type=float, default=0.3)
a = p.parse_args()

torch.set_num_threads(1)
t_start = time.perf_counter()
cfg = TrainConfig(batch_size=a.batch, lr=a.lr, dien_aux_activation=a.aux_act, threads=1, device="cpu")
post = tuple(int(x) for x in a.post_layers.split(",") if x)
mcfg = MICNConfig(post_layers=post, user_profile=a.profile, phi=a.phi)
fmap, splits = load_splits(a.samples)
device = torch.device("cpu")
has_micn = a.variant == "micn"
item_cats = item_categories_of(splits["train"], fmap.n_items) if has_micn else None
gen = torch.Generator().manual_seed(a.seed) if has_micn else None
torch.manual_seed(a.seed)
model = build_model(a.backbone, fmap, cfg, mcfg if a.variant != "base" else None, item_cats, gen, variant=a.variant)
if a.init_std is not None:
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=a.init_std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
if a.no_user:
    for n_, m in model.named_modules():
        if n_.endswith("user_embedding") and isinstance(m, nn.Embedding):
            with torch.no_grad():
                m.weight.zero_()
            m.weight.requires_grad_(False)
            print("froze", n_, flush=True)
if a.weight_decay:
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=a.lr, weight_decay=a.weight_decay)
else:
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=a.lr)
aux_w = cfg.aux_weights(mcfg if has_micn else None)
retrieval = Retrieval.of(splits["train"], splits["valid"], fmap, 50) if has_micn else None
train = splits["train"]
# a fixed training subset for train-side metrics (overfitting check)
sub_rows = torch.randperm(len(train), generator=torch.Generator().manual_seed(7))[:8000].sort().values
import dataclasses as _dc
def _take(x):
    if isinstance(x, torch.Tensor):
        return x.index_select(0, sub_rows)
    if isinstance(x, np.ndarray):
        return x[sub_rows.numpy()]
    return x
train_sub = type(train)(**{f.name: _take(getattr(train, f.name)) for f in _dc.fields(train)})
loss_fn = nn.BCEWithLogitsLoss()
steps_per_epoch = train.num_batches(a.batch)

curve, best, best_state, bad = [], -1.0, None, 0
acc: dict[str, float] = {}
n_acc = 0
step = 0
epoch = 0
done = False


def evaluate(step):
    global best, best_state, bad, acc, n_acc
    row = {"step": step, "epoch": round(step / steps_per_epoch, 3)}
    row.update({f"train_{k}": v / max(n_acc, 1) for k, v in acc.items()})
    v = evaluate_split(model, splits["valid"], cfg.eval_batch_size, device)
    row.update({f"valid_{k}": v[k] for k in v if k in ("auc", "logloss", "dien_aux")})
    if train_sub is not None:
        t = evaluate_split(model, train_sub, cfg.eval_batch_size, device)
        row["trainsub_auc"], row["trainsub_logloss"] = t["auc"], t["logloss"]
    if retrieval is not None:
        r = retrieval.measure(model, splits["valid"], cfg.eval_batch_size, device)
        row["valid_recall50"], row["pop_recall50"] = r.get("micn_recall"), r.get("popularity_recall")
    row["wall_s"] = round(time.perf_counter() - t_start, 1)
    curve.append(row)
    print(json.dumps({k: (round(x, 4) if isinstance(x, float) else x) for k, x in row.items()}), flush=True)
    if step <= a.warmup_steps:
        pass
    elif row["valid_auc"] > best:
        best, bad = row["valid_auc"], 0
        best_state = (step, copy.deepcopy(model.state_dict()))
    else:
        bad += 1
    acc, n_acc = {}, 0
    model.train()


while not done:
    epoch += 1
    g = torch.Generator().manual_seed((a.seed * 1_000_003 + epoch) % 2**64)
    model.train()
    for batch in train.batches(a.batch, shuffle=True, generator=g):
        out = model(batch)
        main = loss_fn(out.logits, batch.label)
        loss = main if step >= a.warmup_steps else 0.0 * main
        acc["main"] = acc.get("main", 0.0) + main.item()
        for k, aux in out.aux_losses.items():
            w_ = 0.0 if (a.warmup_micn_only and step < a.warmup_steps and k != "micn") else aux_w[k]
            loss = loss + w_ * aux
            acc[k] = acc.get(k, 0.0) + aux.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n_acc += 1
        step += 1
        if step % a.eval_every == 0:
            evaluate(step)
            if a.patience and bad >= a.patience:
                done = True
                break
        if step >= a.max_steps:
            done = True
            break

sel_step, state = best_state
model.load_state_dict(state)
test = splits["test"]
tm = evaluate_split(model, test, cfg.eval_batch_size, device)
sel = next(r for r in curve if r["step"] == sel_step)
res = {"args": vars(a), "steps_per_epoch": steps_per_epoch, "curve": curve, "selected": sel,
       "test_auc": tm["auc"], "test_logloss": tm["logloss"], "wall_s": round(time.perf_counter() - t_start, 1)}
Path("/work/scratch/regime").mkdir(parents=True, exist_ok=True)
Path(f"/work/scratch/regime/{a.name}.json").write_text(json.dumps(res, indent=1))
print("SELECTED", json.dumps({k: (round(x, 4) if isinstance(x, float) else x) for k, x in sel.items()}))
print("TEST_AUC", round(tm["auc"], 4), "WALL", res["wall_s"])
