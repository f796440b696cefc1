"""The whole pipeline as one Prefect flow, for schedules: `dvc repro` in a repository checkout.

DVC still decides what reruns (its lock file and cache), so a nightly run after new raw data
lands redoes exactly the stages that changed. Each stage's `micn` command runs its own flow; with
PREFECT_API_URL set (a worker or `micn serve` sets it) they report to the same server, so the UI
shows this flow run and the stage flows beside it.

    micn serve --repo . --cron "0 3 * * *"    # registers the deployment and runs its schedule
    micn pipeline --repo .                     # the same flow, once, in this process

Both commands live here (`DESCRIPTIONS`, `add_arguments(parser, command)`, `run(args)`). `micn
serve` asks the Prefect API first, within the repository's `grid.connect_timeout_s`, so a server
that accepts and never answers is an error after the timeout, not a hang.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
from prefect import flow, get_run_logger, serve, task
from prefect.cache_policies import NO_CACHE
from prefect.schedules import Cron

from micn.config import GridConfig, load_section
from micn.errors import MicnError
from micn.experiment import check_raw_data, load_experiment
from flows._prefect import wait_for_api

DEPLOYMENT = "nightly"
DESCRIPTIONS = {
    "serve": "Create the deployment micn-pipeline/NAME, whose flow runs `dvc repro` in REPO, with a cron schedule, "
             "and execute its runs (scheduled or triggered from the UI/CLI) in this process until interrupted. Needs "
             "PREFECT_API_URL pointing at a running Prefect server (asked within grid.connect_timeout_s).",
    "pipeline": "The scheduled deployment's flow, run once in this process: check params.yaml and the raw files, "
                "`dvc repro` (or `dvc repro --force`), then summarise metrics/metrics.duckdb. Fails when a grid run "
                "failed.",
}


@dataclass(frozen=True)
class ServeJob:
    """`micn serve`: the checkout to run, its schedule and the deployment's name."""

    repo: Path
    cron: str = "0 3 * * *"
    timezone: str = "UTC"
    name: str = DEPLOYMENT


@dataclass(frozen=True)
class PipelineJob:
    """`micn pipeline`: the checkout to run and whether every stage reruns."""

    repo: Path
    force: bool = False


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "serve":
        parser.add_argument("--repo", default=".", metavar="DIR",
                            help="repository checkout the flow runs `dvc repro` in (default .)")
        parser.add_argument("--cron", default="0 3 * * *", metavar="EXPR",
                            help="cron schedule (default '0 3 * * *': 03:00 daily)")
        parser.add_argument("--timezone", default="UTC", metavar="TZ", help="time zone of the schedule (default UTC)")
        parser.add_argument("--name", default=DEPLOYMENT, metavar="NAME", help=f"deployment name (default {DEPLOYMENT})")
    elif command == "pipeline":
        parser.add_argument("--repo", default=".", metavar="DIR", help="repository checkout (default .)")
        parser.add_argument("--force", action="store_true", help="rerun every stage (`dvc repro --force`)")
    else:
        raise ValueError(f"flows.pipeline serves the commands serve and pipeline, not {command!r}")


def run(args: argparse.Namespace) -> None:
    if args.command == "serve":
        job = ServeJob(repo=Path(args.repo), cron=args.cron, timezone=args.timezone, name=args.name)
        serve_pipeline(str(job.repo), job.cron, job.timezone, job.name)
        return
    job = PipelineJob(repo=Path(args.repo), force=args.force)
    r = pipeline_flow(str(job.repo), job.force)
    print(f"stages run: {', '.join(r['stages']) or 'none (up to date)'}; {r['ok']} runs ok; metrics in {r['db']}")


def connect_timeout(repo: str | Path) -> float:
    """The repository's `grid.connect_timeout_s` (its default when params.yaml is absent)."""
    params = Path(repo) / "params.yaml"
    return load_section(params, "grid", GridConfig).connect_timeout_s if params.is_file() else GridConfig().connect_timeout_s


@task(cache_policy=NO_CACHE)
def preflight(repo: str) -> list[str]:
    """Parameters valid and every enabled dataset's raw files present, before any work."""
    root = Path(repo)
    if not (root / "dvc.yaml").is_file():
        raise MicnError(f"{root}: not a micn checkout (no dvc.yaml); pass the repository folder as `repo`.")
    exp = load_experiment(root / "params.yaml")
    check_raw_data(exp, root / "data" / "raw")
    return exp.all_datasets


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name  # the environment this flow runs in
    return str(here) if here.exists() else name


@task(cache_policy=NO_CACHE)
def dvc_repro(repo: str, force: bool = False) -> list[str]:
    """`dvc repro` in `repo`, its output streamed to the run's log; returns the stages it ran."""
    logger = get_run_logger()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [_bin("dvc"), "repro", *(["--force"] if force else [])]
    ran, tail = [], []
    with subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-30:]
            if line.startswith("Running stage"):
                ran.append(line.split("'")[1] if "'" in line else line)
            if line:
                logger.info(line)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited with {proc.returncode}:\n" + "\n".join(tail))
    return ran


@task(cache_policy=NO_CACHE)
def summarize(repo: str) -> dict:
    db = Path(repo) / "metrics" / "metrics.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        counts = dict(con.sql("select status, count(*) from runs group by status").fetchall())
        failed = [r[0] for r in con.sql("select run_id from failed_runs").fetchall()]
    return {"ok": counts.get("ok", 0), "failed": failed, "db": str(db)}


@flow(name="micn-pipeline")
def pipeline_flow(repo: str = ".", force: bool = False) -> dict:
    """Check the inputs, `dvc repro` the repository, and summarise its metrics database.
    The flow run fails when any run of the grid failed (the report marks which)."""
    datasets = preflight(repo)
    stages = dvc_repro(repo, force)
    summary = summarize(repo)
    get_run_logger().info("datasets %s; stages run: %s; %d runs ok, %d failed", ", ".join(datasets),
                          ", ".join(stages) or "none (up to date)", summary["ok"], len(summary["failed"]))
    if summary["failed"]:
        raise RuntimeError(f"{len(summary['failed'])} run(s) of the grid failed: {', '.join(summary['failed'])}; "
                           f"see {repo}/reports/report.md")
    return {**summary, "stages": stages, "datasets": datasets}


def serve_pipeline(repo: str, cron: str, timezone: str = "UTC", name: str = DEPLOYMENT) -> None:
    """Register the `micn-pipeline/<name>` deployment with its cron schedule and run its flow
    runs in this process until interrupted. Needs a real Prefect server (PREFECT_API_URL)."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise MicnError("schedules need a Prefect server: start one with `prefect server start` and "
                        "`export PREFECT_API_URL=http://127.0.0.1:4200/api` before `micn serve`.")
    wait_for_api(PREFECT_API_URL.value(), connect_timeout(repo))
    repo = str(Path(repo).resolve())
    deployment = pipeline_flow.to_deployment(
        name=name, schedules=[Cron(cron, timezone=timezone)], parameters={"repo": repo},
        description=f"`dvc repro` of {repo} on the cron schedule {cron!r} ({timezone})", tags=["micn"])
    serve(deployment)
