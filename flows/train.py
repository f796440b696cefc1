"""`micn train`: one backbone, one variant, one seed on one dataset's samples, as a Prefect flow.

    micn train --dataset tiny --samples data/samples/tiny/len10 --backbone din --variant micn \
               --seed 1 --out models/tiny/din-micn

The command's flags become one typed `TrainJob` (the run's `RunConfig` and `RunPaths`); the
`train` and `micn` sections of the parameter file supply the settings. The flow returns the
run's `RunRecord` (micn/record.py), which is also written to OUT/metrics.json.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from micn.config import MICNConfig, TrainConfig, load_section, seed_argument
from micn.record import RunRecord
from micn.names import SUPERVISIONS, VARIANTS
from micn.errors import MicnError
from micn.outputs import TORCH_HEADER, anything, claim, json_rows_with, starts_with
from micn.run import RunConfig, RunPaths, load_splits, other_run
from micn.train import train

DESCRIPTION = (
    "Train one CTR backbone with Adam, select the best of its evaluations (train.evals_per_epoch a pass) on "
    "validation AUC (early stopping), and evaluate on test (AUC, GAUC, logloss, and the oracle AUC on synthetic data). Training parameters come from the `train` "
    "section of the parameter file, MICN's from its `micn` section. Reads only the samples directory (works from "
    "any working directory). Resumes from OUT/checkpoint.pt when present."
)


@dataclass(frozen=True)
class TrainJob:
    """What `micn train` was asked for: the run's settings and where it reads and writes."""

    run: RunConfig
    paths: RunPaths
    replace: bool = False  # overwrite another run's files in the output folder


def add_arguments(parser: argparse.ArgumentParser, command: str = "train") -> None:
    parser.add_argument("--dataset", required=True, metavar="NAME", help="dataset name (must match the samples' feature map)")
    parser.add_argument("--samples", required=True, metavar="DIR", help="samples directory written by `micn samples`")
    parser.add_argument("--backbone", required=True, choices=["wide_deep", "din", "dien"], help="the CTR model to train")
    parser.add_argument("--variant", choices=list(VARIANTS), default="base",
                        help="base (default): the backbone alone; micn: with the MICN auxiliary task, whose settings "
                        "(d_aux, k_max, iterations, pow_p, n_neg, sampler, lambda_micn, phi, user_profile, "
                        "post_layers, retrieval_k) are the parameter file's `micn` section; control: the backbone "
                        "with the same joined width as micn, its extra half (micn.d_aux wide) trained by the main "
                        "loss only, scaled by micn.phi (no capsule network, no L_micn). Replaces --micn/--no-micn.")
    parser.add_argument("--supervision", choices=list(SUPERVISIONS), default=None,
                        help="what L_micn predicts in a micn run (default: the parameter file's micn.supervision): "
                        "target, the paper's (the history -> the clicked target of each positive row); history "
                        "(a prefix of each row's history -> the behaviour after it, MIND's feed)")
    parser.add_argument("--seed", type=seed_argument, required=True, metavar="N", help="seed of initialisation and batch order")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="run directory: metrics.json, history.json, model.pt, checkpoint.pt")
    parser.add_argument("--params", default="params.yaml", metavar="FILE", help="parameter file (default params.yaml)")
    parser.add_argument("--replace", action="store_true",
                        help="overwrite the files of another run in --out (without it, a folder holding another "
                        "run's record or checkpoint is refused; this run's own files are resumed)")


def job_from_args(args: argparse.Namespace) -> TrainJob:
    """The typed job; bad parameter values are rejected here, before any work."""
    cfg = load_section(args.params, "train", TrainConfig)
    micn = load_section(args.params, "micn", MICNConfig)
    if args.supervision is not None:
        micn = dataclasses.replace(micn, supervision=args.supervision)
    run = RunConfig(backbone=args.backbone, variant=args.variant, seed=args.seed, train=cfg, micn=micn,
                    dataset=args.dataset)
    return TrainJob(run, RunPaths(samples_dir=Path(args.samples), out_dir=Path(args.out)), bool(args.replace))


@task(cache_policy=NO_CACHE)
def fit(job: TrainJob) -> RunRecord:
    return train(job.run, job.paths, progress=True)


@flow(name="train")
def train_flow(job: TrainJob) -> RunRecord:
    record = fit(job)
    m = record.metrics
    get_run_logger().info(
        "%s %s (%s) seed %d: test AUC %.4f, GAUC %.4f, logloss %.4f (oracle %s), %d epochs, %.0f samples/s",
        record.dataset, record.backbone, record.variant, record.seed, m["auc"], m["gauc"], m["logloss"],
        "n/a" if m.get("oracle_auc") is None else f"{m['oracle_auc']:.4f}", record.epochs, record.samples_per_s,
    )
    return record


def check_run_files(job: TrainJob) -> None:
    """The run's files in --out are absent or a run's own (`other_run` tells this run's record and
    checkpoint from another's), else a MicnError naming the file; --replace accepts any file. Every
    file is written by renaming a finished one over it, so a link there is refused either way."""
    paths, fix = job.paths, "choose another --out, or pass --replace to overwrite it"
    history = anything if job.replace else json_rows_with("epoch")
    model = anything if job.replace else starts_with(TORCH_HEADER, "a torch file")
    for path, check in ((paths.record_path, anything), (paths.checkpoint, anything), (paths.history_path, history),
                        (paths.model, model)):
        claim(path, check, what=f"a run's {path.name}", command="train", fix=fix)


def run(args: argparse.Namespace) -> None:
    job = job_from_args(args)
    fmap, _ = load_splits(job.paths.samples_dir, job.run.dataset)  # fail fast on a missing or mismatched samples
    check_run_files(job)
    other = None if job.replace else other_run(job.paths, job.run, fmap)
    if other is not None:
        raise MicnError(f"{job.paths.out_dir}: holds {other}; choose another --out, or pass --replace to overwrite "
                        "them.")
    r = train_flow(job)
    m = r.metrics
    oracle = "n/a" if m.get("oracle_auc") is None else f"{m['oracle_auc']:.4f}"
    print(f"{r.dataset} {r.backbone} ({r.variant}) seed {r.seed}: test AUC {m['auc']:.4f}  GAUC {m['gauc']:.4f}  "
          f"logloss {m['logloss']:.4f}  oracle AUC {oracle}  ({r.epochs} epochs, best at epoch {r.best_epoch}, "
          f"{r.samples_per_s:,.0f} samples/s) → {job.paths.record_path}")
    evidence = []
    if m.get("history_only_auc") is not None:
        evidence.append(f"history-only AUC {m['history_only_auc']:.4f}")
    if m.get("micn_recall") is not None:
        evidence.append(f"MICN Recall@{job.run.micn.retrieval_k} {m['micn_recall']:.4f} vs popularity "
                        f"{m['popularity_recall']:.4f}")
    if m.get("dien_aux") is not None:
        evidence.append(f"DIEN aux (valid) {m['dien_aux']:.4f} vs 2 ln 2 = 1.3863")
    if m.get("grad_ratio") is not None:
        evidence.append(f"‖∇main‖/‖∇micn‖ into e_aux {m['grad_ratio']:.2f}")
    if evidence:
        print("  at the selected epoch: " + "; ".join(evidence))
