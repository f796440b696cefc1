"""`micn grid`: the training grid as one Prefect flow. Every run of the enabled experiments is a
task, fanned out through the flow's task runner (threads by default; Dask when a cluster address
is set).

    micn grid --params params.yaml --root .

A run that raises is retried `grid.retries` times; if it still fails, its failure (error and
traceback) is written to metrics/runs/<run_id>.json with status "failed", the other runs go on,
and the report marks it. Finished runs with an unchanged signature are reused (micn/grid.py).
Before any work, the cluster and the Prefect API are asked, each within `grid.connect_timeout_s`,
so a wrong address is one paragraph after the timeout, never a hang; and every path a planned run
writes is checked to be absent or the grid's own (micn/grid.py `check_outputs`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.runtime import task_run
from prefect.task_runners import ThreadPoolTaskRunner
from tqdm.auto import tqdm

from flows._prefect import wait_for_api
from micn.config import GridConfig
from micn.data.layout import samples_dir
from micn.errors import MicnError
from micn.experiment import Experiment, RunSpec, load_experiment, plan_runs
from micn.grid import (GridRun, Pruned, check_outputs, failure_record, holding_root, prune, run_one, samples_hash,
                       signature, training_order, wait_for_dask, write_failure)

DESCRIPTION = (
    "Train the grid of params.yaml's enabled experiments (Table 2: backbones as base, width-matched control and MICN; "
    "Table 3: φ; Table 4: max_len) "
    "over grid.seeds, fanned out through the flow's task runner: threads, or Dask when grid.address or "
    "$MICN_GRID_ADDRESS names a cluster (asked within grid.connect_timeout_s). Writes metrics/runs/<dataset>/<run>.json, "
    "metrics/history/<dataset>/<run>.json and models/<dataset>/<run>/. Unchanged finished runs are reused; a run that "
    "fails after its retries is recorded with its error and the others go on. Files of runs the plan leaves out "
    "are deleted when the grid wrote them; anything else under metrics/ and models/ is left alone and listed."
)
SAMPLE_FILES = ("feature_map.json", "train.parquet", "valid.parquet", "test.parquet")


@dataclass(frozen=True)
class GridJob:
    """What `micn grid` was asked for: the parameter file and the repository folder it works in."""

    params: Path
    root: Path


@dataclass(frozen=True)
class GridResult:
    """The grid's outcome: every planned run in plan order, and what pruning did."""

    runs: list[GridRun]
    pruned: Pruned


def add_arguments(parser: argparse.ArgumentParser, command: str = "grid") -> None:
    parser.add_argument("--params", default="params.yaml", metavar="FILE", help="parameter file (default params.yaml)")
    parser.add_argument("--root", default=".", metavar="DIR",
                        help="repository folder holding data/, metrics/, models/ (default .)")


def job_from_args(args: argparse.Namespace) -> GridJob:
    return GridJob(params=Path(args.params), root=Path(args.root))


@task(cache_policy=NO_CACHE, task_run_name="{spec.run_id}")
def train_run(spec: RunSpec, exp: Experiment, root: str, samples_digest: str) -> GridRun:
    logger = get_run_logger()

    def log_epoch(epoch: int, row: dict) -> None:
        logger.info("%s epoch %d: train loss %.4f, valid AUC %.4f (%.0f samples/s)", spec.run_id, epoch,
                    row["train_loss"], row["valid_auc"], row["samples_per_s"])

    outcome = run_one(spec, exp, root, samples_digest, attempt=task_run.run_count or 1, on_epoch_end=log_epoch)
    if outcome.reused:
        logger.info("%s: unchanged since its last run; reused (test AUC %.4f)", spec.run_id,
                    outcome.record.metrics["auc"])
    return outcome


def task_runner(grid: GridConfig):
    """The flow's task runner from `grid` (and $MICN_GRID_ADDRESS): threads, or Dask. A cluster is
    asked first, within grid.connect_timeout_s."""
    runner, address = grid.resolved()
    if runner == "thread":
        return ThreadPoolTaskRunner(max_workers=grid.max_workers)
    from prefect_dask import DaskTaskRunner

    wait_for_dask(address, grid.connect_timeout_s)
    return DaskTaskRunner(address=address)


def check_samples(exp: Experiment, root: str | Path) -> None:
    missing = [str(samples_dir(Path(root), d, n)) for d, n in exp.samples_needed()
               if not all((samples_dir(Path(root), d, n) / f).is_file() for f in SAMPLE_FILES)]
    if missing:
        raise MicnError(f"the grid needs samples that are not built: {', '.join(missing)}; run the samples stage "
                        "(`dvc repro samples`) first.")


@flow(name="grid")
def grid_flow(params: str = "params.yaml", root: str = ".") -> GridResult:
    """Train every run of the enabled experiments."""
    logger = get_run_logger()
    root = str(Path(root).resolve())  # workers in other processes (Dask) get an absolute path
    exp = load_experiment(params)
    check_samples(exp, root)
    planned = plan_runs(exp)
    pruned = prune(root, planned)
    if pruned.removed:
        logger.info("removed %d run(s) the plan leaves out: %s", len(pruned.removed), ", ".join(pruned.removed))
    if pruned.left_alone:
        logger.warning("left alone (not written by the grid): %s", ", ".join(pruned.left_alone))
    digests = {(d, n): samples_hash(samples_dir(Path(root), d, n)) for d, n in exp.samples_needed()}
    attempts = exp.grid.retries + 1
    runner = train_run.with_options(retries=exp.grid.retries, retry_delay_seconds=exp.grid.retry_delay_s)
    futures = {runner.submit(s, exp, root, digests[(s.dataset, s.max_len)]): s for s in training_order(planned)}

    runs: dict[str, GridRun] = {}
    for future in tqdm(as_completed(list(futures)), total=len(futures), desc="grid", unit="run"):
        spec = futures[future]
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            logger.error("%s failed after %d attempt(s): %s: %s", spec.run_id, attempts, type(outcome).__name__,
                         outcome)
            sig = signature(spec, exp, digests[(spec.dataset, spec.max_len)])
            record = failure_record(spec, exp, outcome, attempts, sig)
            write_failure(spec, root, record)
            outcome = GridRun(record)
        runs[spec.run_id] = outcome
    ordered = [runs[s.run_id] for s in planned]
    create_table_artifact(key="grid-runs", table=[_row(r) for r in ordered],
                          description=f"{len(ordered)} runs of {exp.path}: status and test metrics")
    return GridResult(runs=ordered, pruned=pruned)


def _row(run: GridRun) -> dict:
    r, m = run.record, run.record.metrics or {}
    return {"run_id": r.run_id, "status": r.status, "reused": run.reused, "auc": m.get("auc"), "gauc": m.get("gauc"),
            "logloss": m.get("logloss"), "epochs": r.epochs, "seconds": r.train_seconds, "error": r.error}


def run_grid(params: str | Path = "params.yaml", root: str | Path = ".") -> GridResult:
    """Run `grid_flow` on the task runner `params.yaml` (and $MICN_GRID_ADDRESS) asks for.

    Tasks on Dask workers talk to the Prefect API from other processes. With no
    PREFECT_API_URL configured, Prefect's temporary server would live only inside this process,
    so one is started here on loopback for the flow's duration (enough for a cluster on this
    host; a remote cluster needs a real `prefect server start` that its workers can reach)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    params, root = str(params), str(root)
    exp = load_experiment(params)
    check_samples(exp, root)
    check_outputs(root, plan_runs(exp))  # before any work: the grid replaces only its own files
    api = PREFECT_API_URL.value()
    if api:  # a configured server that accepts and never answers would hang the flow's first call
        wait_for_api(api, exp.grid.connect_timeout_s)
    runner = task_runner(exp.grid)  # asks the cluster (bounded) before any work
    flow_ = grid_flow.with_options(task_runner=runner)
    with holding_root(root):  # a second grid on this root is refused: no run is trained twice
        if isinstance(runner, ThreadPoolTaskRunner) or api:
            return flow_(params, root)
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()
        server.start(timeout=120)
        try:
            with temporary_settings({PREFECT_API_URL: server.api_url}):
                return flow_(params, root)
        finally:
            server.stop()


def run(args: argparse.Namespace) -> None:
    """`micn grid`: the table of runs on stdout; failures and files left alone on stderr."""
    job = job_from_args(args)
    out = run_grid(job.params, job.root)
    print(f"{'run':<52} {'status':<7} {'test AUC':>8} {'GAUC':>7} {'epochs':>6} {'train s':>8}")
    for run_ in out.runs:
        r = run_.record
        auc, gauc = (f"{r.metrics['auc']:.4f}", f"{r.metrics['gauc']:.4f}") if r.metrics else ("–", "–")
        status = "reused" if run_.reused else r.status
        print(f"{r.run_id:<52} {status:<7} {auc:>8} {gauc:>7} {r.epochs or '–':>6} {r.train_seconds or 0:>8.1f}")
    failed = [run_.record for run_ in out.runs if run_.record.status == "failed"]
    removed = f"; {len(out.pruned.removed)} old run(s) removed" if out.pruned.removed else ""
    print(f"{len(out.runs) - len(failed)} of {len(out.runs)} runs ok{removed}")
    for path in out.pruned.left_alone:
        print(f"left alone (not written by the grid): {path}", file=sys.stderr)
    for r in failed:
        print(f"FAILED {r.run_id} after {r.attempts} attempt(s): {r.error}", file=sys.stderr)
    if failed:
        print(f"the failures are recorded in {job.root}/metrics/runs and marked in the report; once fixed, retrain "
              "only them with `dvc repro --force --single-item train && dvc repro`", file=sys.stderr)
