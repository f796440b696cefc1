"""Train one backbone on one dataset's samples; select on validation; evaluate on test.

    train(samples_dir, "din", out_dir, seed=1, cfg=TrainConfig()) -> metrics dict
    train(samples_dir, "din", out_dir, seed=1, micn=MICNConfig(enabled=True)) -> the same with MICN

The loop: Adam; one pass over the shuffled training split per epoch; after each epoch the
validation AUC decides the best state (never the test split — the DIN and DIEN reference code
selected on test, we do not) and early stopping. The loss is assembled here, not in the models:
BCE on the logits plus each named auxiliary loss times its weight.

Checkpoints: after every epoch `checkpoint.pt` holds the model, optimizer, best state, history
and RNG state; an interrupted run started again with the same arguments continues from its last
finished epoch and ends, on CPU, exactly where an uninterrupted run would (the shuffling order
of epoch e is drawn from a generator seeded by (seed, e), and MICN's generator is restored).

Outputs in `out_dir`: `metrics.json` (one run: dataset, protocol, backbone, variant, seed,
params, test metrics, epochs, timings, git revision), `history.json` (per epoch), `model.pt`
(best weights), `checkpoint.pt`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from micn.data.dataset import SampleSet, load_feature_map
from micn.errors import MicnError
from micn.evaluate import ctr_metrics, oracle_auc
from micn.models import BACKBONES, build_backbone
from micn.models.micn_aux import MICNConfig
from micn.models.with_micn import build_with_micn, item_categories_of
from micn.nn.embedding import ItemEmbedding

SPLITS = ("train", "valid", "test")
# Parameter initialisation draws from torch's process-wide RNG; runs started in parallel threads
# (the grid's thread runner) take turns seeding it and building their model.
_INIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 256
    eval_batch_size: int = 4096
    epochs: int = 10
    lr: float = 1e-3
    patience: int = 2  # epochs without a better validation AUC before stopping
    dien_aux_weight: float = 1.0  # weight of DIEN's auxiliary loss (reference: 1)
    d_item: int = 18  # item-id embedding width (DIEN reference: 18)
    d_category: int = 18  # category embedding width
    threads: int = 0  # torch.set_num_threads; 0 keeps torch's default
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda

    def __post_init__(self) -> None:
        for key in ("batch_size", "eval_batch_size", "epochs", "d_item", "d_category"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.patience < 0 or self.threads < 0 or self.dien_aux_weight < 0:
            raise ValueError("patience, threads and dien_aux_weight must be >= 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")

    def aux_weights(self, micn: MICNConfig | None = None) -> dict[str, float]:
        """Weight of each auxiliary loss a model may return; an unknown name is an error."""
        weights = {"dien_aux": self.dien_aux_weight}
        if micn is not None and micn.enabled:
            weights["micn"] = micn.lambda_micn  # L = L_main + λ·L_micn
        return weights


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MicnError("device: cuda was asked for but torch sees no CUDA device; use device: auto or cpu.")
    return torch.device(name)


def load_splits(samples_dir: str | Path, dataset: str | None = None) -> tuple[dict, dict[str, SampleSet]]:
    """The feature map and the three splits, checked against each other and the dataset name."""
    samples_dir = Path(samples_dir)
    if not samples_dir.is_dir():
        raise MicnError(f"{samples_dir}: no such samples directory; build it with `micn samples --out {samples_dir}`.")
    fmap = load_feature_map(samples_dir)
    if dataset is not None and fmap.get("dataset") != dataset:
        raise MicnError(f"{samples_dir}/feature_map.json is for dataset {fmap.get('dataset')!r}, not {dataset!r}; "
                        "pass the matching --samples directory.")
    return fmap, {s: SampleSet.from_parquet(samples_dir / f"{s}.parquet", fmap) for s in SPLITS}


def build_model(backbone: str, fmap: dict, cfg: TrainConfig, micn: MICNConfig | None = None,
                item_categories: torch.Tensor | None = None) -> nn.Module:
    """Item embedding (item ⊕ category) built here and injected into the backbone; with MICN
    enabled the injected embedding is e_orig ⊕ e_aux and the model also returns L_micn."""
    if micn is not None and micn.enabled:
        return build_with_micn(backbone, fmap["n_users"], fmap["n_items"], fmap["n_categories"], cfg.d_item,
                               cfg.d_category, micn, item_categories=item_categories)
    embedding = ItemEmbedding(fmap["n_items"], fmap["n_categories"], cfg.d_item, cfg.d_category)
    return build_backbone(backbone, None, embedding, fmap["n_users"])


@torch.no_grad()
def predict(model: nn.Module, data: SampleSet, batch_size: int, device: torch.device) -> np.ndarray:
    """Logits for every row of `data`, in file order."""
    model.eval()
    out = [model(b.to(device)).logits.float().cpu() for b in data.batches(batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def evaluate_split(model: nn.Module, data: SampleSet, batch_size: int, device: torch.device) -> dict[str, float]:
    logits = predict(model, data, batch_size, device)
    return ctr_metrics(data.user_ids, data.label.numpy(), logits)


def train(
    samples_dir: str | Path,
    backbone: str,
    out_dir: str | Path,
    seed: int,
    cfg: TrainConfig = TrainConfig(),
    micn: MICNConfig | None = None,
    dataset: str | None = None,
    progress: bool = False,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    metrics_path: str | Path | None = None,
    history_path: str | Path | None = None,
    extra: dict | None = None,
) -> dict:
    """Train (or resume) one run and write its outputs; returns the metrics.json content.

    `metrics_path`/`history_path` default to `out_dir`/metrics.json and history.json; `extra`
    fields (e.g. the grid's run id) are added to the metrics record, and its "signature" (the
    grid's hash of code, samples and settings) must match for a checkpoint to be resumed. Every random draw of the run
    comes from its seed (model init under `_INIT_LOCK`, batch order and MICN's sampling from
    per-run generators), so parallel runs in threads give the same results as sequential ones."""
    if backbone not in BACKBONES:
        raise MicnError(f"unknown backbone {backbone!r}; choose one of {', '.join(sorted(BACKBONES))}.")
    fmap, splits = load_splits(samples_dir, dataset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    with_micn = micn is not None and micn.enabled
    item_categories = item_categories_of(splits["train"], fmap["n_items"]) if with_micn else None
    with _INIT_LOCK:
        torch.manual_seed(seed)
        model = build_model(backbone, fmap, cfg, micn, item_categories)
    model = model.to(device)
    if with_micn:
        model.micn.generator = torch.Generator(device=device).manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)  # one fused kernel per step
    signature = {"backbone": backbone, "seed": seed, "config": dataclasses.asdict(cfg),
                 "micn": dataclasses.asdict(micn) if with_micn else None,
                 "samples": {k: fmap.get(k) for k in ("dataset", "protocol", "seed", "max_len", "n_users", "n_items",
                                                      "n_categories", "counts")},
                 "run": (extra or {}).get("signature")}  # the grid's hash of code + samples + settings
    state = _resume(out_dir / "checkpoint.pt", model, optimizer, signature)
    loss_fn = nn.BCEWithLogitsLoss()
    aux_weights = cfg.aux_weights(micn)
    started = datetime.now(timezone.utc)

    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        if state["bad_epochs"] > cfg.patience:  # early stopping (also when resuming a stopped run)
            break
        row = _train_epoch(model, optimizer, splits["train"], cfg, seed, epoch, device, loss_fn, aux_weights, progress)
        row.update({f"valid_{k}": v for k, v in evaluate_split(model, splits["valid"], cfg.eval_batch_size, device).items()})
        state["history"].append(row)
        if row["valid_auc"] > state["best_auc"]:
            state.update(best_auc=row["valid_auc"], best_epoch=epoch, bad_epochs=0,
                         best_state=copy.deepcopy(model.state_dict()))
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        _save_checkpoint(out_dir / "checkpoint.pt", model, optimizer, state)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)

    model.load_state_dict(state["best_state"])
    test = splits["test"]
    logits = predict(model, test, cfg.eval_batch_size, device)
    metrics = ctr_metrics(test.user_ids, test.label.numpy(), logits)
    metrics["oracle_auc"] = oracle_auc(test, fmap)
    metrics["valid_auc"] = state["best_auc"]
    history = state["history"]
    result = {
        "dataset": fmap["dataset"],
        "protocol": fmap["protocol"],
        "backbone": backbone,
        "variant": "micn" if with_micn else "base",
        "seed": seed,
        "params": {"train": dataclasses.asdict(cfg), "micn": dataclasses.asdict(micn) if with_micn else None,
                   "max_len": fmap["max_len"], "samples_seed": fmap.get("seed")},
        "metrics": metrics,
        "epochs": len(history),
        "best_epoch": state["best_epoch"],
        "train_seconds": round(sum(r["seconds"] for r in history), 3),
        "samples_per_s": round(sum(r["samples"] for r in history) / max(sum(r["seconds"] for r in history), 1e-9), 1),
        "device": str(device),
        "git_revision": _git_revision(),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    torch.save({"model": state["best_state"], "backbone": backbone, "config": dataclasses.asdict(cfg),
                "micn": dataclasses.asdict(micn) if with_micn else None, "feature_map": fmap}, out_dir / "model.pt")
    write_json(Path(history_path or out_dir / "history.json"), history)
    write_json(Path(metrics_path or out_dir / "metrics.json"), result)
    return result


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)  # readers never see half a file


def _train_epoch(model, optimizer, data: SampleSet, cfg: TrainConfig, seed: int, epoch: int, device, loss_fn,
                 aux_weights: dict[str, float], progress: bool) -> dict:
    model.train()
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)  # the order of epoch e, resumable
    sums: dict[str, float] = {"loss": 0.0}
    n_batches = 0
    t0 = time.perf_counter()
    bar = tqdm(data.batches(cfg.batch_size, shuffle=True, generator=generator), total=data.num_batches(cfg.batch_size),
               desc=f"epoch {epoch}", disable=not progress, leave=False, unit="batch")
    for batch in bar:
        batch = batch.to(device)
        out = model(batch)
        loss = loss_fn(out.logits, batch.label)
        for name, aux in out.aux_losses.items():
            if name not in aux_weights:
                raise MicnError(f"the model returned an auxiliary loss {name!r} with no weight in the train config")
            loss = loss + aux_weights[name] * aux
            sums[name] = sums.get(name, 0.0) + aux.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sums["loss"] += loss.item()
        n_batches += 1
        if progress and n_batches % 20 == 0:
            elapsed = time.perf_counter() - t0
            bar.set_postfix(loss=f"{sums['loss'] / n_batches:.4f}", samples_s=f"{n_batches * cfg.batch_size / elapsed:,.0f}")
    seconds = time.perf_counter() - t0
    row = {"epoch": epoch, "samples": len(data), "seconds": round(seconds, 3),
           "samples_per_s": round(len(data) / max(seconds, 1e-9), 1)}
    row.update({f"train_{k}": v / max(n_batches, 1) for k, v in sums.items()})
    return row


def _resume(path: Path, model: nn.Module, optimizer, signature: dict) -> dict:
    """The saved training state when `path` holds a checkpoint of this very run, else a fresh one."""
    fresh = {"epoch": 0, "best_auc": float("-inf"), "best_epoch": 0, "bad_epochs": 0,
             "best_state": copy.deepcopy(model.state_dict()), "history": [], "signature": signature}
    if not path.exists():
        return fresh
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same error to the user
        raise MicnError(f"{path}: cannot read the checkpoint ({type(e).__name__}: {e}); delete it to train "
                        "this run from scratch.") from e
    if ckpt["state"].get("signature") != signature:  # another run's checkpoint: never mix them
        return fresh
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    generator = _micn_generator(model)
    if generator is not None and ckpt.get("micn_rng") is not None:
        generator.set_state(ckpt["micn_rng"])
    return ckpt["state"]


def _micn_generator(model: nn.Module) -> torch.Generator | None:
    micn = getattr(model, "micn", None)
    return getattr(micn, "generator", None)


def _save_checkpoint(path: Path, model: nn.Module, optimizer, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    generator = _micn_generator(model)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state,
                "micn_rng": None if generator is None else generator.get_state()}, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written checkpoint


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
