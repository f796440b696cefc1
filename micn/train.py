"""Train one backbone on one dataset's samples; select on validation; evaluate on test.

    run = RunConfig(backbone="din", variant="micn", seed=1, train=TrainConfig(), micn=MICNConfig())
    train(run, RunPaths(samples_dir, out_dir)) -> RunRecord (micn/record.py)

The loop: Adam; one pass over the shuffled training split per epoch; `train.evals_per_epoch`
times an epoch (evenly spaced, the last at its end) the validation AUC decides the best state
(never the test split — the DIN and DIEN reference code selected on test, we do not) and early
stopping (`patience` evaluations without improvement). Why several per epoch: on the default world
the backbones peak after 1–1.2 passes over the data and memorise the training rows from the second
on (docs/findings/2026-12-01-training-regime). The loss is assembled here, not in the models: BCE
on the logits plus each named auxiliary loss times its weight. A MICN run may start with a warm-up
of L_micn alone (`train.micn_warmup_epochs`), whose evaluations are recorded but never selected.

Training reads only its samples directory: the splits, `feature_map.json` and, for the oracle
AUC, what the samples stage writes beside them (`micn.evaluate.oracle_auc`). It never opens the
warehouse or the raw folder, so it runs from any working directory.

Checkpoints: after every epoch (and when early stopping ends the run) `checkpoint.pt` holds the model, optimizer, best weights, MICN's
RNG state and the `TrainingState` (tensors and plain data only: it is read back with
`torch.load(..., weights_only=True)`, so a crafted file cannot run code). An interrupted run
started again with the same arguments continues from its last finished epoch and ends, on CPU,
exactly where an uninterrupted run would (the shuffling order of epoch e is drawn from a
generator seeded by (seed, e), and MICN's generator is restored).

Outputs: the run record (`RunPaths.record`, default `out_dir/metrics.json`), the per-evaluation
history (`RunPaths.history`, default `out_dir/history.json`), `out_dir/model.pt` (best weights with the
backbone, configs and feature map as plain data) and `out_dir/checkpoint.pt`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from micn import evaluate
from micn.data.dataset import SampleSet, load_feature_map
from micn.errors import MicnError
from micn.config import ABLATIONS, SEED_MAX, MICNConfig, TrainConfig
from micn.evaluate import ctr_metrics, oracle_auc
from micn.models import BACKBONES, build_backbone
from micn.models.with_micn import WithMICN, build_with_micn, item_categories_of
from micn.nn.embedding import ItemEmbedding
from micn.record import (VARIANTS, GridInfo, RunRecord, TrainingState, os_reason, plain_config, write_json,
                         write_record)

SPLITS = ("train", "valid", "test")
# Parameter initialisation draws from torch's process-wide RNG; runs started in parallel threads
# (the grid's thread runner) take turns seeding it and building their model.
_INIT_LOCK = threading.Lock()


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
                item_categories: torch.Tensor | None = None, generator: torch.Generator | None = None,
                variant: str | None = None) -> nn.Module:
    """Item embedding (item ⊕ category) built here and injected into the backbone. With a MICN
    config (variant "micn") the injected embedding is e_orig ⊕ e_aux, the model also returns
    L_micn, and MICN draws its training-time randomness from `generator`. Variant "control"
    (needs the MICN config for d_aux and φ) is the same joined width with e_ctrl in place of
    e_aux, trained by the main loss only (`micn.models.with_micn.build_control`).

    `variant` defaults to "micn" when a MICN config is given, else "base"."""
    variant = variant or ("base" if micn is None else "micn")
    backbone_cfg = backbone_config(backbone, cfg)
    if variant == "control":
        if micn is None:
            raise MicnError("variant control needs the micn section (d_aux, phi) for the width of its extra half.")
        try:
            from micn.models.with_micn import build_control
        except ImportError:
            raise MicnError("variant control needs micn.models.with_micn.build_control, which this version of "
                            "micn/models does not have.") from None
        return build_control(backbone, fmap["n_users"], fmap["n_items"], fmap["n_categories"], cfg.d_item,
                             cfg.d_category, micn, backbone_cfg=backbone_cfg)
    if variant == "micn":
        return build_with_micn(backbone, fmap["n_users"], fmap["n_items"], fmap["n_categories"], cfg.d_item,
                               cfg.d_category, micn, backbone_cfg=backbone_cfg, item_categories=item_categories,
                               generator=generator)
    embedding = ItemEmbedding(fmap["n_items"], fmap["n_categories"], cfg.d_item, cfg.d_category)
    return build_backbone(backbone, backbone_cfg, embedding, fmap["n_users"])


def backbone_config(backbone: str, cfg: TrainConfig):
    """The backbone's config where the train section changes it (DIEN's aux activation), else None:
    the backbone's defaults, exactly the modules earlier runs built."""
    if backbone == "dien" and cfg.dien_aux_activation != "sigmoid":
        from micn.models import DIENConfig

        return DIENConfig(aux_activation=cfg.dien_aux_activation)
    return None


@torch.no_grad()
def predict_with_aux(model: nn.Module, data: SampleSet, batch_size: int,
                     device: torch.device) -> tuple[np.ndarray, dict[str, float]]:
    """Logits for every row of `data`, in file order, and the mean of each auxiliary loss the model
    returns in evaluation mode (DIEN's `dien_aux`; MICN's loss is training-only), weighted by rows.

    The losses are computed by the forward pass anyway, so reading them changes nothing."""
    model.eval()
    out, sums, rows = [], {}, 0
    for b in data.batches(batch_size):
        result = model(b.to(device))
        out.append(result.logits.float().cpu())
        for name, value in result.aux_losses.items():
            sums[name] = sums.get(name, 0.0) + float(value) * len(b)
        rows += len(b)
    logits = torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)
    return logits, {name: total / max(rows, 1) for name, total in sums.items()}


def predict(model: nn.Module, data: SampleSet, batch_size: int, device: torch.device) -> np.ndarray:
    """Logits for every row of `data`, in file order."""
    return predict_with_aux(model, data, batch_size, device)[0]


def evaluate_split(model: nn.Module, data: SampleSet, batch_size: int, device: torch.device) -> dict[str, float]:
    """AUC, GAUC and logloss of `data`, and each auxiliary loss the model returns in evaluation
    mode (`dien_aux`: the evidence that DIEN's auxiliary net learned, against 2 ln 2)."""
    logits, aux = predict_with_aux(model, data, batch_size, device)
    return {**ctr_metrics(data.user_ids, data.label.numpy(), logits), **aux}


# --- evidence that the auxiliary tasks learn (issue 11 §2) ------------------------------------------
# Evaluation reads the model and draws from its own generators only: never the training generator,
# never torch's global RNG, and never a training-mode forward, so a run's numbers are the same with
# or without it. The functions it calls (micn.evaluate's recall_at_k, popularity_recall,
# history_only_auc; WithMICN's user_capsules, item_table, grad_norms) are looked up when called:
# where one is missing, its evidence is None and training is unaffected.

EVAL_SEED = 20221  # seed of the routing logits drawn when MICN's capsules are read for evaluation


def _api(name: str):
    """micn.evaluate's function `name`, None when this version has none."""
    return getattr(evaluate, name, None)


@dataclass(frozen=True)
class Retrieval:
    """MICN as the retrieval model it is (MIND's evaluation): Recall@K of each validation user's
    held-out target over the whole catalogue from the user's interest capsules, beside the
    Recall@K of ranking every item by its training popularity, on the same users.

    The users are the validation split's positive rows with a non-empty history and a target in
    the training vocabulary (an out-of-vocabulary target can be retrieved by no model), at most
    `max_users` of them, evenly spaced in file order (2,000: every user of the default world, a
    tenth of Electronics');
    popularity is each item's number of clicks in the training split (positive targets and the
    real history positions of positive rows)."""

    rows: torch.Tensor  # (U,) row numbers of the validation split
    targets: np.ndarray  # (U,) target item index of each row
    counts: np.ndarray  # (I,) training clicks per item index
    k: int

    @classmethod
    def of(cls, train_split: SampleSet, valid: SampleSet, n_items: int, k: int, max_users: int = 2000) -> Retrieval:
        keep = (valid.label == 1) & (valid.hist_len > 0) & (valid.item >= 2)
        rows = torch.nonzero(keep).squeeze(1)  # (U,)
        if len(rows) > max_users:  # evenly spaced, deterministic: Recall@K's cost stays flat at scale
            rows = rows[torch.linspace(0, len(rows) - 1, max_users).round().long().unique()]
        positive = train_split.label == 1
        T = train_split.max_len
        real = torch.arange(T).unsqueeze(0) >= (T - train_split.hist_len.long()).unsqueeze(1)  # (N, T)
        real &= positive.unsqueeze(1)
        clicked = torch.cat([train_split.item[positive].long(), train_split.hist_items[real].long()])
        counts = torch.bincount(clicked, minlength=n_items)[:n_items].numpy()
        counts[:2] = 0  # padding and OOV are not items
        return cls(rows=rows, targets=valid.item[rows].long().numpy(), counts=counts, k=k)

    @torch.no_grad()
    def measure(self, model: nn.Module, data: SampleSet, batch_size: int, device: torch.device) -> dict[str, float]:
        """{"micn_recall", "popularity_recall"} at the model's current weights; {} when an API is missing."""
        recall_at_k, popularity_recall = _api("recall_at_k"), _api("popularity_recall")
        capsules, table = getattr(model, "user_capsules", None), getattr(model, "item_table", None)
        if recall_at_k is None or popularity_recall is None or capsules is None or table is None or not len(self.rows):
            return {}
        model.eval()
        generator = torch.Generator(device=device).manual_seed(EVAL_SEED)  # the same draws at every evaluation
        vectors, active = [], []
        for start in range(0, len(self.rows), batch_size):
            v, a = capsules(data.batch(self.rows[start:start + batch_size]).to(device), generator)
            vectors.append(v.float().cpu())  # (B, K, D)
            active.append(a.cpu())  # (B, K)
        items = table().float().cpu()  # (I, D)
        return {"micn_recall": float(recall_at_k(torch.cat(vectors).numpy(), torch.cat(active).numpy(), items.numpy(),
                                                 self.targets, self.k)),
                "popularity_recall": float(popularity_recall(self.counts, self.targets, self.k))}


def _measures_grads(model: nn.Module) -> bool:
    """Switch on the per-step norms of the two gradients reaching e_aux, where the model has them."""
    switch, norms = getattr(model, "measure_grad_norms", None), getattr(model, "grad_norms", None)
    if not (callable(switch) and callable(norms)):
        return False
    switch(True)
    return True


def _history_only_auc(test: SampleSet, fmap: dict, samples_dir: Path) -> float | None:
    """The history-only ceiling of a synthetic world (None on real data or without the API)."""
    ceiling = _api("history_only_auc")
    return None if ceiling is None else ceiling(test, fmap, samples_dir)


# record metric -> the history column it is read from, at the selected evaluation
EVIDENCE_COLUMNS = {"micn_recall": "valid_micn_recall", "popularity_recall": "valid_popularity_recall",
                    "dien_aux": "valid_dien_aux", "grad_ratio": "train_grad_ratio",
                    "capsule_purity": "valid_capsule_purity", "capsule_purity_shuffled": "valid_capsule_purity_shuffled",
                    "capsule_overlap": "valid_capsule_overlap"}


def _at_best(history: list[dict], best_step: int, key: str) -> float | None:
    """`key` of the selected evaluation's history row (the evidence at the checkpoint that is kept)."""
    row = next((r for r in history if r.get("step") == best_step and not r.get("warmup")), None)
    return None if row is None else row.get(key)


@dataclass(frozen=True)
class RunConfig:
    """What one run trains: the backbone, the variant ("base" | "control" | "micn"), the seed and its settings.

    `micn` holds MICN's settings; a "micn" run uses all of them, a "control" run its width
    `d_aux` and `phi`, a "base" run none (`micn_config`)."""

    backbone: str
    variant: str
    seed: int
    train: TrainConfig = field(default_factory=TrainConfig)
    micn: MICNConfig = field(default_factory=MICNConfig)
    dataset: str | None = None  # when given, must match the samples' feature map
    ablation: str | None = None  # an information ablation of the model's inputs (micn.config.ABLATIONS), base runs only

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise MicnError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(sorted(BACKBONES))}.")
        if self.variant not in VARIANTS:
            raise MicnError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)} "
                            "(micn adds the MICN auxiliary task; control the same width without it).")
        if self.ablation is not None and (self.ablation not in ABLATIONS or self.variant != "base"):
            raise MicnError(f"ablation {self.ablation!r}: choose one of {', '.join(ABLATIONS)}, on a base run "
                            f"(got variant {self.variant!r}).")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= SEED_MAX:
            raise MicnError(f"seed must be an integer in [0, {SEED_MAX}] (a signed 64-bit seed), got {self.seed!r}.")

    @property
    def micn_config(self) -> MICNConfig | None:
        """MICN's settings for a "micn" or "control" run (recorded in its params), None for "base"."""
        return None if self.variant == "base" else self.micn

    @property
    def has_micn(self) -> bool:
        """Whether the run trains MICN's capsule network and L_micn (variant "micn" only)."""
        return self.variant == "micn"


@dataclass(frozen=True)
class RunPaths:
    """Where a run reads its samples and writes its files (record and history default into `out_dir`)."""

    samples_dir: Path
    out_dir: Path
    record: Path | None = None  # default out_dir/metrics.json
    history: Path | None = None  # default out_dir/history.json

    def __post_init__(self) -> None:
        for name in ("samples_dir", "out_dir", "record", "history"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))

    @property
    def record_path(self) -> Path:
        return self.record or self.out_dir / "metrics.json"

    @property
    def history_path(self) -> Path:
        return self.history or self.out_dir / "history.json"

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    @property
    def model(self) -> Path:
        return self.out_dir / "model.pt"


def train(
    run: RunConfig,
    paths: RunPaths,
    *,
    grid: GridInfo | None = None,
    progress: bool = False,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> RunRecord:
    """Train (or resume) one run, write its record, history and model; returns the record.

    `grid` (the grid's run id, experiments, attempt and reuse signature) goes into the record, and
    its signature must match for a checkpoint to be resumed. Every random draw of the run comes
    from its seed (model init under `_INIT_LOCK`, batch order and MICN's sampling from per-run
    generators), so parallel runs in threads give the same results as sequential ones."""
    cfg, micn = run.train, run.micn_config
    fmap, splits = load_splits(paths.samples_dir, run.dataset)
    test_rows = splits["test"]  # the ceilings score the world's real ids, whatever the model is shown
    splits = {name: split.ablated(run.ablation) for name, split in splits.items()}
    _make_dir(paths.out_dir)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    item_categories = item_categories_of(splits["train"], fmap["n_items"]) if run.has_micn else None
    # MICN's own generator (routing logits, sampled candidates): seeded by the run, not the process.
    generator = torch.Generator(device=device).manual_seed(run.seed) if run.has_micn else None
    with _INIT_LOCK:
        torch.manual_seed(run.seed)
        model = build_model(run.backbone, fmap, cfg, micn, item_categories, generator, variant=run.variant)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)  # one fused kernel per step
    signature = _signature(run, fmap, grid)
    state, best_state = _resume(paths.checkpoint, model, optimizer, signature)
    loss_fn = nn.BCEWithLogitsLoss()
    aux_weights = cfg.aux_weights(micn if run.has_micn else None)
    grad_ratio = run.has_micn and _measures_grads(model)
    retrieval = Retrieval.of(splits["train"], splits["valid"], fmap["n_items"], micn.retrieval_k) if run.has_micn else None
    started = datetime.now(timezone.utc)
    loop = _Loop(model=model, optimizer=optimizer, data=splits["train"], valid=splits["valid"], cfg=cfg, seed=run.seed,
                 device=device, loss_fn=loss_fn, aux_weights=aux_weights, progress=progress, grad_ratio=grad_ratio,
                 retrieval=retrieval, capsules=_capsule_probe(run, fmap, paths.samples_dir),
                 warmup=_warmup_steps(cfg, splits["train"], run.has_micn), state=state, best_state=best_state)

    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        if state.stopped:  # early stopping (also when resuming a stopped run)
            break
        loop.run_epoch(epoch)
        state.epoch = epoch
        _save_checkpoint(paths.checkpoint, model, optimizer, state, loop.best_state)
        if on_epoch_end is not None:
            on_epoch_end(epoch, state.history[-1])
    best_state = loop.best_state

    model.load_state_dict(best_state)
    test = splits["test"]
    metrics = ctr_metrics(test.user_ids, test.label.numpy(), predict(model, test, cfg.eval_batch_size, device))
    metrics["oracle_auc"] = oracle_auc(test_rows, fmap, paths.samples_dir)
    metrics["valid_auc"] = state.best_auc
    metrics["history_only_auc"] = _history_only_auc(test_rows, fmap, paths.samples_dir)
    for key, column in EVIDENCE_COLUMNS.items():
        metrics[key] = _at_best(state.history, state.best_step, column)
    record = _record(run, fmap, grid, state, metrics, str(device), started, world_kappa(fmap, paths.samples_dir))
    _save_tensors(paths.model, {"model": best_state, "backbone": run.backbone, "variant": run.variant,
                                "config": dataclasses.asdict(cfg), "micn": None if micn is None else dataclasses.asdict(micn),
                                "feature_map": fmap, "samples_dir": str(paths.samples_dir.resolve())}, "model file")
    write_json(paths.history_path, state.history)
    write_record(paths.record_path, record)
    return record


def world_kappa(fmap: dict, samples_dir: Path) -> float | None:
    """The interest signal κ of the synthetic world behind these samples (its `world.json`, copied
    into the samples' `oracle/`; a world written without the key has κ = 1); None on real data."""
    if fmap.get("oracle") is None:
        return None
    path = Path(samples_dir) / fmap["oracle"] / "world.json"
    try:
        kappa = json.loads(path.read_text()).get("profile_params", {}).get("kappa", 1.0)
    except (OSError, ValueError, AttributeError) as e:
        raise MicnError(f"{path}: cannot read the synthetic world's summary ({e}); rebuild the samples.") from None
    if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not 0.0 <= kappa <= 1.0:
        raise MicnError(f"{path}: profile_params.kappa = {kappa!r} is not a number in [0, 1]; rebuild the samples.")
    return float(kappa)


def _record(run: RunConfig, fmap: dict, grid: GridInfo | None, state: TrainingState, metrics: dict, device: str,
            started: datetime, kappa: float | None = None) -> RunRecord:
    """The run record of a finished run (status ok)."""
    micn, history = run.micn_config, state.history
    seconds = sum(r["seconds"] for r in history)
    return RunRecord(
        run_id=grid.run_id if grid else None,
        dataset=fmap["dataset"],
        protocol=fmap["protocol"],
        backbone=run.backbone,
        variant=run.variant,
        seed=run.seed,
        max_len=grid.max_len if grid else fmap["max_len"],
        phi=grid.phi if grid else (None if micn is None else micn.phi),
        experiments=list(grid.experiments) if grid else [],
        status="ok",
        error=None,
        traceback=None,
        attempts=grid.attempt if grid else 1,
        signature=grid.signature if grid else None,
        params={"train": plain_config(run.train), "micn": plain_config(micn), "max_len": fmap["max_len"],
                "samples_seed": fmap.get("seed")},
        metrics=metrics,
        epochs=state.epoch,
        best_epoch=state.best_epoch,
        best_step=state.best_step,
        train_seconds=round(seconds, 3),
        samples_per_s=round(sum(r["samples"] for r in history) / max(seconds, 1e-9), 1),
        device=device,
        git_revision=_git_revision(),
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        kappa=kappa,
        ablation=run.ablation,
    )


def _signature(run: RunConfig, fmap: dict, grid: GridInfo | None) -> str:
    """Hash of everything a checkpoint must share with this run to be resumed by it."""
    micn = run.micn_config
    inputs = {"backbone": run.backbone, "variant": run.variant, "seed": run.seed, "config": dataclasses.asdict(run.train),
              "micn": None if micn is None else dataclasses.asdict(micn), "ablation": run.ablation,
              "samples": {k: fmap.get(k) for k in ("dataset", "protocol", "seed", "max_len", "n_users", "n_items",
                                                   "n_categories", "counts")},
              "run": grid.signature if grid else None}  # the grid's hash of code + samples + settings
    return hashlib.blake2b(json.dumps(inputs, sort_keys=True).encode(), digest_size=16).hexdigest()


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MicnError(f"{path}: cannot create the run directory ({os_reason(e)}).") from None


def _warmup_steps(cfg: TrainConfig, data: SampleSet, has_micn: bool) -> int:
    """Optimizer steps of the MICN-only warm-up (0 for base and control runs), checked to leave
    selectable steps in the budget."""
    if not has_micn or cfg.micn_warmup_epochs == 0:
        return 0
    per_epoch = data.num_batches(cfg.batch_size)
    steps = round(cfg.micn_warmup_epochs * per_epoch)
    if steps >= cfg.epochs * per_epoch:
        raise MicnError(f"train.micn_warmup_epochs = {cfg.micn_warmup_epochs:g} leaves no step of the "
                        f"{cfg.epochs} epochs (train.epochs) for joint training; make it smaller than train.epochs.")
    return steps


def _capsule_probe(run: RunConfig, fmap: dict, samples_dir: Path) -> Callable | None:
    """A function (model, valid split, device) -> capsule purity / overlap evidence of a MICN run
    on synthetic data (the samples carry the planted topics), else None."""
    if not run.has_micn or fmap.get("oracle") is None:
        return None
    from micn import interests

    evidence = getattr(interests, "capsule_evidence", None)
    if evidence is None:
        return None
    topics = interests.item_topics(samples_dir, samples_dir / fmap["oracle"])

    def probe(model: nn.Module, data: SampleSet, device: torch.device) -> dict[str, float]:
        generator = torch.Generator(device=device).manual_seed(EVAL_SEED)
        return evidence(model, data, topics, generator)

    return probe


def evaluation_points(n_batches: int, evals_per_epoch: int) -> set[int]:
    """Batch counts within an epoch after which validation runs: evenly spaced, the last at the
    epoch's end (fewer when the epoch has fewer batches than evaluations)."""
    return {max(1, round(j * n_batches / evals_per_epoch)) for j in range(1, evals_per_epoch + 1)}


@dataclass
class _Loop:
    """The optimisation of one run: epochs of Adam steps with validation `evals_per_epoch` times
    an epoch; the state (`TrainingState`) and the best weights are updated in place."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: SampleSet
    valid: SampleSet
    cfg: TrainConfig
    seed: int
    device: torch.device
    loss_fn: nn.Module
    aux_weights: dict[str, float]
    progress: bool
    grad_ratio: bool
    retrieval: Retrieval | None
    capsules: Callable | None
    warmup: int  # steps of the MICN-only warm-up
    state: TrainingState
    best_state: dict

    def run_epoch(self, epoch: int) -> None:
        """One pass over the shuffled training split, stopping early when patience runs out. The
        order of epoch e is drawn from a generator seeded by (seed, e), so a resumed run replays
        it exactly (modulo 2^64, torch's seed range: no change for seeds below ~1.8e13)."""
        cfg, state = self.cfg, self.state
        self.model.train()
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**64)
        n_batches = self.data.num_batches(cfg.batch_size)
        marks = evaluation_points(n_batches, cfg.evals_per_epoch)
        window = _Window()
        bar = tqdm(self.data.batches(cfg.batch_size, shuffle=True, generator=generator), total=n_batches,
                   desc=f"epoch {epoch}", disable=not self.progress, leave=False, unit="batch")
        for i, batch in enumerate(bar, 1):
            self._step(batch.to(self.device), window)
            if self.progress and i % 20 == 0:
                bar.set_postfix(loss=f"{window.mean('loss'):.4f}", samples_s=f"{window.rate():,.0f}")
            if i in marks:
                self._evaluate(epoch, window)
                window = _Window()
                if state.stopped:
                    break

    def _step(self, batch, window: _Window) -> None:
        """One Adam step. During the warm-up only L_micn is in the loss (BCE and DIEN's aux loss
        are left out, so their parameters get no gradient and Adam leaves them untouched)."""
        warm = self.state.step < self.warmup
        out = self.model(batch)
        loss = None if warm else self.loss_fn(out.logits, batch.label)
        for name, aux in out.aux_losses.items():
            if name not in self.aux_weights:
                raise MicnError(f"the model returned an auxiliary loss {name!r} with no weight in the train config")
            window.add(name, aux.item())
            if warm and name != "micn":
                continue
            term = self.aux_weights[name] * aux
            loss = term if loss is None else loss + term
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_ratio and not warm:  # the ratio reads gradients, never changes them
            norms = self.model.grad_norms()  # (main, micn) of this backward, or None
            if norms is not None and norms[1] > 0:
                window.ratios.append(norms[0] / norms[1])
        self.optimizer.step()
        window.add("loss", loss.item())
        window.steps += 1
        window.samples += len(batch)
        self.state.step += 1

    @torch.no_grad()
    def _evaluate(self, epoch: int, window: _Window) -> None:
        """Validation after the current step: the history row, then selection and early stopping
        (evaluations inside the warm-up are recorded, never selected, and do not use up patience)."""
        cfg, state = self.cfg, self.state
        warm = state.step <= self.warmup
        row = {"epoch": epoch, "step": state.step, "warmup": warm, **window.row(self.grad_ratio)}
        row.update({f"valid_{k}": v for k, v in evaluate_split(self.model, self.valid, cfg.eval_batch_size,
                                                                self.device).items()})
        if self.retrieval is not None:
            row.update({f"valid_{k}": v for k, v in self.retrieval.measure(self.model, self.valid, cfg.eval_batch_size,
                                                                            self.device).items()})
        if self.capsules is not None:
            row.update({f"valid_{k}": v for k, v in self.capsules(self.model, self.valid, self.device).items()})
        self.model.train()
        state.history.append(row)
        if warm:
            return
        if row["valid_auc"] > state.best_auc:
            state.best_auc, state.best_epoch, state.best_step, state.bad_evals = row["valid_auc"], epoch, state.step, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            state.bad_evals += 1
            state.stopped = state.bad_evals > cfg.patience


@dataclass
class _Window:
    """Training sums between two evaluations (the history row's train_* means are over its steps)."""

    sums: dict[str, float] = field(default_factory=dict)
    ratios: list[float] = field(default_factory=list)
    steps: int = 0
    samples: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def add(self, name: str, value: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value

    def mean(self, name: str) -> float:
        return self.sums.get(name, 0.0) / max(self.steps, 1)

    def rate(self) -> float:
        return self.samples / max(time.perf_counter() - self.t0, 1e-9)

    def row(self, grad_ratio: bool) -> dict:
        seconds = time.perf_counter() - self.t0
        row = {"samples": self.samples, "seconds": round(seconds, 3),
               "samples_per_s": round(self.samples / max(seconds, 1e-9), 1)}
        row.update({f"train_{k}": self.mean(k) for k in ("loss", *sorted(k for k in self.sums if k != "loss"))})
        if grad_ratio:
            row["train_grad_ratio"] = sum(self.ratios) / len(self.ratios) if self.ratios else None
        return row


def load_tensors(path: Path, what: str, map_location: str = "cpu") -> dict:
    """`torch.load(path, weights_only=True)`: tensors and plain data only, never pickled code.

    A file holding anything else (a crafted pickle payload, or a file of an older version) is a
    MicnError naming it; so is a file that is not a torch file at all."""
    try:
        value = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise MicnError(f"{path}: refused to load this {what}: it holds objects other than tensors and plain data "
                        "(loading them could run code from the file). Delete it and train the run again; files "
                        f"written by `micn train` hold tensors only. ({str(e).splitlines()[0]})") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same error to the user
        raise MicnError(f"{path}: cannot read the {what} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        "delete it and train the run again.") from None
    if not isinstance(value, dict):
        raise MicnError(f"{path}: not a {what} of `micn train` (expected a mapping, got {type(value).__name__}).")
    return value


def _resume(path: Path, model: nn.Module, optimizer, signature: str) -> tuple[TrainingState, dict]:
    """(state, best weights) saved in `path` when it holds a checkpoint of this very run, else fresh ones."""
    fresh = TrainingState(signature=signature), copy.deepcopy(model.state_dict())
    if not path.exists():
        return fresh
    ckpt = load_tensors(path, "checkpoint")
    plain = ckpt.get("state")
    if not isinstance(plain, dict) or plain.get("signature") != signature:  # another run's checkpoint: never mix
        return fresh
    state = TrainingState.from_plain(plain, path)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if isinstance(model, WithMICN) and ckpt.get("micn_rng") is not None:
        model.set_rng_state(ckpt["micn_rng"])
    return state, ckpt["best_state"]


def _save_checkpoint(path: Path, model: nn.Module, optimizer, state: TrainingState, best_state: dict) -> None:
    rng = model.rng_state() if isinstance(model, WithMICN) else None
    _save_tensors(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "best_state": best_state,
                         "state": state.to_plain(), "micn_rng": rng}, "checkpoint")


def _save_tensors(path: Path, value: dict, what: str) -> None:
    """`torch.save` through `<name>.tmp` and an atomic rename: a crash never leaves half a file, and
    a failed write (full disk, read-only folder) removes the tmp file and names the file."""
    tmp = path.with_suffix(".tmp")
    try:
        torch.save(value, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch's zip writer reports a full disk as RuntimeError
        _remove(tmp)
        reason = os_reason(e) if isinstance(e, OSError) else _write_failure(path, e)
        raise MicnError(f"{path}: cannot write the {what} ({reason}); nothing was left behind. Free space or "
                        "fix the folder's permissions and run again: training resumes from the last checkpoint.") from None


def _remove(path: Path) -> None:
    """Delete a partial file if there is one (on a read-only file system there cannot be)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _write_failure(path: Path, e: RuntimeError) -> str:
    """A user-facing reason for torch's writer error (it reports errno only as text)."""
    text = str(e)
    for marker, reason in (("No space left", "the disk is full"), ("Read-only file system", "the file system is read-only"),
                           ("Permission denied", "permission denied"), ("Disk quota", "the disk quota is exceeded")):
        if marker in text:
            return reason
    try:
        if shutil.disk_usage(path.parent).free < (1 << 20):
            return "the disk is full"
    except OSError:
        pass
    return f"the write failed: {text.splitlines()[0] if text else type(e).__name__}"


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
