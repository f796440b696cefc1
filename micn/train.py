"""Train one backbone on one dataset's samples; select on validation; evaluate on test.

    train(RunConfig(backbone="din", variant="micn", seed=1), RunPaths(samples_dir, out_dir)) -> RunRecord

The loop: Adam; one pass over the shuffled training split per epoch; `train.evals_per_epoch`
times an epoch (evenly spaced, the last at its end) the validation AUC decides the best state
(never the test split: the DIN and DIEN reference code selected on test, this code does not) and
early stopping (`patience` evaluations without improvement). Why several per epoch: on the
default world the backbones peak after 1–1.2 passes over the data and memorise the training rows
from the second on (docs/findings/2026-12-01-training-regime). The loss is assembled here, not in
the models: BCE on the logits plus each named auxiliary loss times its weight. A MICN run may
start with a warm-up of L_micn alone (`train.micn_warmup_epochs`), whose evaluations are recorded
but never selected. Each evaluation also records DIEN's auxiliary loss and MICN's gradient
ratio; the catalogue-wide evidence that MICN learns (`micn.evidence`) is taken at each epoch's
last evaluation and on the selected weights (`Loop.evidence`).

Training reads only its samples directory: the splits, `feature_map.json` and, for the oracle
AUC, what the samples stage writes beside them (`micn.evaluate.oracle_auc`). It never opens the
warehouse or the raw folder, so it runs from any working directory.

Checkpoints (`micn.checkpoint`): after every epoch (and when early stopping ends the run)
`checkpoint.pt` holds the model, optimizer, best weights, MICN's RNG state and the
`TrainingState`. An interrupted run started again with the same arguments continues from its
last finished epoch and ends, on CPU, exactly where an uninterrupted run would (the shuffling order
of epoch e is drawn from a generator seeded by (seed, e), and MICN's generator is restored).

Outputs: the run record (`RunPaths.record`, default `out_dir/metrics.json`), the per-evaluation
history (`RunPaths.history`, default `out_dir/history.json`), `out_dir/model.pt` (best weights with the
backbone, configs and feature map as plain data) and `out_dir/checkpoint.pt`.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from micn.checkpoint import resume, save_checkpoint, save_model
from micn.config import TrainConfig
from micn.data.dataset import SampleSet
from micn.errors import MicnError
from micn.evaluate import ctr_metrics, history_only_auc, oracle_auc
from micn.evidence import EVIDENCE_COLUMNS, Retrieval, at_best, capsule_probe
from micn.models.base import CTRModel, InterestModel
from micn.models.with_micn import item_categories_of
from micn.optim import Optimizers, build_optimizer
from micn.record import GridInfo, RunRecord, TrainingState, write_json, write_record
from micn.run import (RunConfig, RunPaths, build_model, load_splits, make_dir, resolve_device, run_record, signature,
                      warmup_steps)

# Parameter initialisation draws from torch's process-wide RNG; runs started in parallel threads
# (the grid's thread runner) take turns seeding it and building their model.
_INIT_LOCK = threading.Lock()


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
    started = datetime.now(timezone.utc)
    loop, test_rows = prepare_loop(run, paths, grid, progress)
    state = loop.state
    for epoch in range(state.epoch + 1, run.train.epochs + 1):
        if state.stopped:  # early stopping (also when resuming a stopped run)
            break
        loop.run_epoch(epoch)
        state.epoch = epoch
        save_checkpoint(paths.checkpoint, loop.model, loop.optimizer, state, loop.best_state, loop.micn)
        if on_epoch_end is not None:
            on_epoch_end(epoch, state.history[-1])
    return _finish(run, paths, grid, loop, test_rows, started)


def prepare_loop(run: RunConfig, paths: RunPaths, grid: GridInfo | None, progress: bool) -> tuple[Loop, SampleSet]:
    """The loop of this run, at its last checkpoint (or fresh), and the test split with the world's real ids."""
    cfg, micn = run.train, run.micn_config
    fmap, splits = load_splits(paths.samples_dir, run.dataset)
    test_rows = splits["test"]  # the ceilings score the world's real ids, whatever the model is shown
    splits = {name: split.ablated(run.ablation) for name, split in splits.items()}
    make_dir(paths.out_dir)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    item_categories = item_categories_of(splits["train"], fmap.n_items) if run.has_micn else None
    # MICN's own generator (routing logits, sampled candidates): seeded by the run, not the process.
    generator = torch.Generator(device=device).manual_seed(run.seed) if run.has_micn else None
    with _INIT_LOCK:
        torch.manual_seed(run.seed)
        model = build_model(run.backbone, fmap, cfg, micn, item_categories, generator, variant=run.variant)
    model = model.to(device)
    aux: InterestModel | None = model if run.has_micn else None  # build_model gives a WithMICN for "micn"
    optimizer = build_optimizer(model, cfg)
    state, best_state = resume(paths.checkpoint, model, optimizer, signature(run, fmap, grid), aux)
    if aux is not None:
        aux.measure_grad_norms(True)
    loop = Loop(model=model, micn=aux, optimizer=optimizer, data=splits["train"], valid=splits["valid"], cfg=cfg,
                 seed=run.seed, device=device, loss_fn=nn.BCEWithLogitsLoss(),
                 aux_weights=cfg.aux_weights(micn if run.has_micn else None), progress=progress,
                 retrieval=None if aux is None else Retrieval.of(splits["train"], splits["valid"], fmap, micn.retrieval_k),
                 capsules=None if aux is None else capsule_probe(fmap, paths.samples_dir),
                 warmup=warmup_steps(cfg, splits["train"], run.has_micn), state=state, best_state=best_state)
    return loop, test_rows


def _finish(run: RunConfig, paths: RunPaths, grid: GridInfo | None, loop: Loop, test_rows: SampleSet,
            started: datetime) -> RunRecord:
    """Test metrics of the selected weights, the ceilings and the evidence; the run's files."""
    cfg, micn, state, model, device = run.train, run.micn_config, loop.state, loop.model, loop.device
    fmap = test_rows.feature_map
    model.load_state_dict(loop.best_state)
    test = test_rows.ablated(run.ablation)
    metrics = ctr_metrics(test.user_ids, test.label.numpy(), predict(model, test, cfg.eval_batch_size, device))
    metrics["oracle_auc"] = oracle_auc(test_rows, fmap, paths.samples_dir)
    metrics["valid_auc"] = state.best_auc
    metrics["history_only_auc"] = history_only_auc(test_rows, fmap, paths.samples_dir)
    # MICN's evidence on the selected weights (none when no evaluation was selectable)
    selected = {f"valid_{k}": v for k, v in loop.evidence().items()} if state.best_step else {}
    for key, column in EVIDENCE_COLUMNS.items():
        metrics[key] = selected[column] if column in selected else at_best(state.history, state.best_step, column)
    record = run_record(run, paths, fmap, grid, state, metrics, str(device), started)
    save_model(paths.model, loop.best_state, {
        "backbone": run.backbone, "variant": run.variant, "config": dataclasses.asdict(cfg),
        "micn": None if micn is None else dataclasses.asdict(micn), "feature_map": fmap.to_json(),
        "samples_dir": str(paths.samples_dir.resolve())})
    write_json(paths.history_path, state.history)
    write_record(paths.record_path, record)
    return record


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


def evaluation_points(n_batches: int, evals_per_epoch: int) -> set[int]:
    """Batch counts within an epoch after which validation runs: evenly spaced, the last at the
    epoch's end (fewer when the epoch has fewer batches than evaluations)."""
    return {max(1, round(j * n_batches / evals_per_epoch)) for j in range(1, evals_per_epoch + 1)}


def train_step(model: CTRModel, optimizer: torch.optim.Optimizer | Optimizers, batch, loss_fn: nn.Module,
               aux_weights: dict[str, float], window: Window, warm: bool = False,
               micn: InterestModel | None = None) -> None:
    """One optimizer step of the trainer (benchmarks time exactly this). During a MICN warm-up
    (`warm`) only L_micn is in the loss (BCE and DIEN's aux loss are left out, so their parameters
    get no gradient and Adam leaves them untouched). With `micn`, the ratio of the two gradients
    reaching e_aux goes into the window (it reads gradients, never changes them)."""
    out = model(batch)
    loss = None if warm else loss_fn(out.logits, batch.label)
    for name, aux in out.aux_losses.items():
        if name not in aux_weights:
            raise MicnError(f"the model returned an auxiliary loss {name!r} with no weight in the train config")
        window.add(name, aux.item())
        if warm and name != "micn":
            continue
        term = aux_weights[name] * aux
        loss = term if loss is None else loss + term
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if micn is not None and not warm:
        norms = micn.grad_norms()  # (main, micn) of this backward, or None
        if norms is not None and norms[1] > 0:
            window.ratios.append(norms[0] / norms[1])
    optimizer.step()
    window.add("loss", loss.item())
    window.steps += 1
    window.samples += len(batch)


@dataclass
class Loop:
    """The optimisation of one run: epochs of Adam steps with validation `evals_per_epoch` times
    an epoch; the state (`TrainingState`) and the best weights are updated in place."""

    model: CTRModel
    micn: InterestModel | None  # the same model when it trains MICN (gradient ratio, checkpointed RNG)
    optimizer: torch.optim.Optimizer | Optimizers
    data: SampleSet
    valid: SampleSet
    cfg: TrainConfig
    seed: int
    device: torch.device
    loss_fn: nn.Module
    aux_weights: dict[str, float]
    progress: bool
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
        window = Window()
        bar = tqdm(self.data.batches(cfg.batch_size, shuffle=True, generator=generator), total=n_batches,
                   desc=f"epoch {epoch}", disable=not self.progress, leave=False, unit="batch")
        for i, batch in enumerate(bar, 1):
            self.step(batch.to(self.device), window)
            if self.progress and i % 20 == 0:
                bar.set_postfix(loss=f"{window.mean('loss'):.4f}", samples_s=f"{window.rate():,.0f}")
            if i in marks:
                self.evaluate(epoch, window, evidence=i == n_batches)
                window = Window()
                if state.stopped:
                    break

    def step(self, batch, window: Window) -> None:
        train_step(self.model, self.optimizer, batch, self.loss_fn, self.aux_weights, window,
                   warm=self.state.step < self.warmup, micn=self.micn)
        self.state.step += 1

    @torch.no_grad()
    def evaluate(self, epoch: int, window: Window, evidence: bool = True) -> None:
        """Validation after the current step: the history row, then selection and early stopping
        (evaluations inside the warm-up are recorded, never selected, and do not use up patience).
        With `evidence`, the row also holds MICN's retrieval and capsule evidence (`evidence()`)."""
        cfg, state = self.cfg, self.state
        warm = state.step <= self.warmup
        row = {"epoch": epoch, "step": state.step, "warmup": warm, **window.row(self.micn is not None)}
        row.update({f"valid_{k}": v for k, v in evaluate_split(self.model, self.valid, cfg.eval_batch_size,
                                                                self.device).items()})
        if evidence:
            row.update({f"valid_{k}": v for k, v in self.evidence().items()})
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

    @torch.no_grad()
    def evidence(self) -> dict[str, float | None]:
        """MICN's Recall@K beside popularity's and the capsule evidence at the current weights ({}
        for runs without MICN). It costs a scan of the whole catalogue per user, so the loop takes
        it at the last evaluation of each epoch (the learning curves) and once on the selected
        weights (the record); it draws from its own seeded generators, so both are what an
        evaluation at those weights gives."""
        out: dict[str, float | None] = {}
        if self.retrieval is not None:
            out.update(self.retrieval.measure(self.micn, self.valid, self.cfg.eval_batch_size, self.device))
        if self.capsules is not None:
            out.update(self.capsules(self.model, self.valid, self.device))
        self.model.train()
        return out


@dataclass
class Window:
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
