"""The training grid as one Prefect flow: every run of the enabled experiments is a task, fanned
out through the flow's task runner (threads by default; Dask or Ray when a cluster address is set).

A run that raises is retried `grid.retries` times; if it still fails, its failure (error and
traceback) is written to metrics/runs/<run_id>.json with status "failed", the other runs go on,
and the report marks it. Finished runs with an unchanged signature are reused (micn/grid.py).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.runtime import task_run
from prefect.task_runners import ThreadPoolTaskRunner
from tqdm.auto import tqdm

from micn.errors import MicnError
from micn.experiment import Experiment, GridConfig, RunSpec, load_experiment, plan_runs, samples_dir
from micn.grid import failure_record, prune, run_one, samples_hash, write_failure


@task(cache_policy=NO_CACHE, task_run_name="{spec.run_id}")
def train_run(spec: RunSpec, exp: Experiment, root: str, samples_digest: str) -> dict:
    logger = get_run_logger()

    def log_epoch(epoch: int, row: dict) -> None:
        logger.info("%s epoch %d: train loss %.4f, valid AUC %.4f (%.0f samples/s)", spec.run_id, epoch,
                    row["train_loss"], row["valid_auc"], row["samples_per_s"])

    record = run_one(spec, exp, root, samples_digest, attempt=task_run.run_count or 1, on_epoch_end=log_epoch)
    if record["reused"]:
        logger.info("%s: unchanged since its last run; reused (test AUC %.4f)", spec.run_id, record["metrics"]["auc"])
    return record


def task_runner(grid: GridConfig):
    """The flow's task runner from `grid` (and $MICN_GRID_ADDRESS): threads, Dask or Ray."""
    runner, address = grid.resolved()
    if runner == "thread":
        return ThreadPoolTaskRunner(max_workers=grid.max_workers)
    if runner == "dask":
        from prefect_dask import DaskTaskRunner

        check_dask(address, grid.connect_timeout_s)
        return DaskTaskRunner(address=address)
    try:
        from prefect_ray import RayTaskRunner
    except ImportError:
        raise MicnError("grid.runner ray needs prefect-ray: pip install -e '.[ray]'.") from None
    return RayTaskRunner(address=address)


def check_dask(address: str, timeout_s: float) -> int:
    """Connect to the Dask scheduler within `timeout_s`; returns its number of workers."""
    try:
        from distributed import Client
    except ImportError:
        raise MicnError("a Dask address is set but `distributed` is not installed: pip install -e '.[dask]'.") from None
    try:
        with Client(address, timeout=timeout_s, set_as_default=False) as client:
            workers = len(client.scheduler_info().get("workers", {}))
    except (OSError, TimeoutError, ValueError) as e:
        raise MicnError(f"no Dask scheduler answered at {address} within {timeout_s:g} s ({type(e).__name__}: {e}). "
                        "Start one (`dask scheduler` and `dask worker <address>`), fix grid.address / "
                        "$MICN_GRID_ADDRESS, or unset both to run the grid on local threads.") from None
    if workers == 0:
        raise MicnError(f"the Dask scheduler at {address} has no workers; start some with `dask worker {address}`.")
    return workers


def check_samples(exp: Experiment, root: str | Path) -> None:
    files = ("feature_map.json", "train.parquet", "valid.parquet", "test.parquet")
    missing = [str(samples_dir(Path(root), d, n)) for d, n in exp.samples_needed()
               if not all((samples_dir(Path(root), d, n) / f).is_file() for f in files)]
    if missing:
        raise MicnError(f"the grid needs samples that are not built: {', '.join(missing)}; run the samples stage "
                        "(`dvc repro samples`) first.")


@flow(name="grid")
def grid_flow(params: str = "params.yaml", root: str = ".") -> dict:
    """Train every run of the enabled experiments; returns {"runs": [...records], "pruned": [...]}."""
    logger = get_run_logger()
    root = str(Path(root).resolve())  # workers in other processes (Dask, Ray) get an absolute path
    exp = load_experiment(params)
    check_samples(exp, root)
    planned = plan_runs(exp)
    pruned = prune(root, planned)
    if pruned:
        logger.info("removed %d run(s) the grid no longer asks for: %s", len(pruned), ", ".join(pruned))
    digests = {(d, n): samples_hash(samples_dir(Path(root), d, n)) for d, n in exp.samples_needed()}
    attempts = exp.grid.retries + 1
    runner = train_run.with_options(retries=exp.grid.retries, retry_delay_seconds=exp.grid.retry_delay_s)
    futures = {runner.submit(s, exp, root, digests[(s.dataset, s.max_len)]): s for s in planned}

    records = {}
    for future in tqdm(as_completed(list(futures)), total=len(futures), desc="grid", unit="run"):
        spec = futures[future]
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            logger.error("%s failed after %d attempt(s): %s: %s", spec.run_id, attempts, type(outcome).__name__, outcome)
            outcome = failure_record(spec, exp, outcome, attempts)
            write_failure(spec, root, outcome)
        records[spec.run_id] = outcome
    rows = [records[s.run_id] for s in planned]
    create_table_artifact(key="grid-runs", table=[_row(r) for r in rows],
                          description=f"{len(rows)} runs of {exp.path}: status and test metrics")
    return {"runs": rows, "pruned": pruned}


def _row(r: dict) -> dict:
    m = r.get("metrics") or {}
    return {"run_id": r["run_id"], "status": r["status"], "reused": r.get("reused", False),
            "auc": m.get("auc"), "gauc": m.get("gauc"), "logloss": m.get("logloss"), "epochs": r.get("epochs"),
            "seconds": r.get("train_seconds"), "error": r.get("error")}


def run_grid(params: str = "params.yaml", root: str = ".") -> dict:
    """Run `grid_flow` on the task runner `params.yaml` (and $MICN_GRID_ADDRESS) asks for.

    Tasks on Dask or Ray workers talk to the Prefect API from other processes. With no
    PREFECT_API_URL configured, Prefect's temporary server would live only inside this process,
    so one is started here on loopback for the flow's duration (enough for a cluster on this
    host; a remote cluster needs a real `prefect server start` that its workers can reach)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    exp = load_experiment(params)
    check_samples(exp, root)
    runner = task_runner(exp.grid)  # checks the cluster address (bounded timeout) before any work
    flow_ = grid_flow.with_options(task_runner=runner)
    if isinstance(runner, ThreadPoolTaskRunner) or PREFECT_API_URL.value():
        return flow_(params, root)
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start(timeout=120)
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            return flow_(params, root)
    finally:
        server.stop()
