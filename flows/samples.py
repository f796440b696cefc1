"""`micn samples`: warehouse → train/valid/test sample files, as a Prefect flow.

    micn samples --dataset electronics --max-len 10 --db data/warehouse.duckdb --out data/samples/electronics/len10
    micn samples --params params.yaml --db data/warehouse.duckdb --out data/samples     # the DVC stage

Both modes become one typed `SamplesPlan`: the warehouse and one `SamplesBuild` (a
`micn.data.samples.job.SamplesJob` and its output folder) per samples folder. Flag mode builds one;
`--params` mode builds `OUT/<dataset>/len<max_len>` for every enabled dataset and every history
length the enabled experiments train on, with the file's `samples` section. Every job is
validated before the first one starts.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from micn.config import seed_argument
from micn.data.layout import samples_subdir
from micn.data.samples.build import build_job
from micn.data.samples.files import check_out_folder
from micn.data.samples.job import SamplesJob, SamplesReport
from micn.data.samples.warehouse import check_warehouse
from micn.errors import MicnError
from micn.names import PROTOCOLS

DESCRIPTION = (
    "Build one dataset's samples from the DuckDB warehouse (read-only): per-user behavior sequences, sampled "
    "negatives, user-disjoint (dien) or leave-last-out (din) splits, vocabularies fitted on train. Writes "
    "train/valid/test.parquet, feature_map.json, vocab_*.parquet, samples_summary.parquet, negative_sampler.parquet "
    "and, for a synthetic world, oracle/ (its ground truth): everything training reads."
)


@dataclass(frozen=True)
class SamplesBuild:
    """One samples folder to build: what (`job`) and where (`out`)."""

    job: SamplesJob
    out: Path


@dataclass(frozen=True)
class SamplesPlan:
    """What `micn samples` was asked for, in either mode: the warehouse and the folders to build."""

    db: Path
    builds: tuple[SamplesBuild, ...]


def add_arguments(parser: argparse.ArgumentParser, command: str = "samples") -> None:
    parser.add_argument("--params", default=None, metavar="FILE",
                        help="pipeline mode: build OUT/<dataset>/len<max_len> for every enabled dataset and every "
                        "history length the enabled experiments train on, with the file's `samples` section")
    parser.add_argument("--dataset", metavar="NAME", help="dataset name in the warehouse")
    parser.add_argument("--db", required=True, metavar="PATH", help="DuckDB warehouse file written by `micn ingest`")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory for this dataset's samples")
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="dien",
                        help="dien (default): last behavior per user, users split into train/valid/test; "
                        "din: every prefix is a training sample, each user's last behavior is the test pair")
    parser.add_argument("--max-len", type=int, default=20, metavar="N",
                        help="history length kept (most recent N, left-padded); paper: 10 Electronics, 20 Books")
    parser.add_argument("--seed", type=seed_argument, default=0, metavar="N",
                        help="seed of splits and negatives (default 0)")
    parser.add_argument("--valid-frac", type=float, default=0.1, metavar="F",
                        help="fraction of users for validation (dien)")
    parser.add_argument("--test-frac", type=float, default=0.1, metavar="F", help="fraction of users for test (dien)")


def plan_from_args(args: argparse.Namespace) -> SamplesPlan:
    """The typed plan of either mode; every bad value is a MicnError here, before any work (the
    warehouse is checked by `run`, so that a plan can be made without one)."""
    if args.params:
        return _plan_from_params(args)
    if not args.dataset:
        raise MicnError("give --dataset (one dataset) or --params (every enabled dataset).")
    job = SamplesJob.of(args.dataset, args.max_len, protocol=args.protocol, seed=args.seed,
                        valid_frac=args.valid_frac, test_frac=args.test_frac)
    return SamplesPlan(Path(args.db), (SamplesBuild(job, Path(args.out)),))


def _plan_from_params(args: argparse.Namespace) -> SamplesPlan:
    from micn.experiment import load_experiment

    if args.dataset:
        raise MicnError("--params builds the samples of every enabled dataset; drop --dataset.")
    exp = load_experiment(args.params)
    out = Path(args.out)
    builds = tuple(SamplesBuild(SamplesJob(dataset, max_len, exp.samples), out / samples_subdir(dataset, max_len))
                   for dataset, max_len in exp.samples_needed())
    return SamplesPlan(Path(args.db), builds)


@task(cache_policy=NO_CACHE)
def build(db: Path, one: SamplesBuild) -> SamplesReport:
    """One samples folder (a task, so that each folder's run and failure show in the Prefect UI)."""
    return build_job(db, one.job, one.out)


@flow(name="samples")
def samples_flow(plan: SamplesPlan) -> list[SamplesReport]:
    """Every folder of the plan in order; each one's kept/dropped counts as a log and a table artifact."""
    reports = []
    log = get_run_logger()
    for one in plan.builds:
        report = build(plan.db, one)
        for subject, outcome, reason, n in report.summary_rows():
            log.info("%s %s%s: %d", subject, outcome, f" ({reason})" if reason else "", n)
        job = one.job
        create_table_artifact(
            key=f"samples-{job.dataset.lower().replace('_', '-')}-len{job.max_len}",
            table=[{"subject": s, "outcome": o, "reason": r, "n": n} for s, o, r, n in report.summary_rows()],
            description=f"Samples of {job.dataset} ({job.config.protocol}, max_len {job.max_len})",
        )
        reports.append(report)
    return reports


def run(args: argparse.Namespace) -> None:
    plan = plan_from_args(args)
    check_warehouse(plan.db)  # a missing or non-DuckDB file is one error before any flow run
    for one in plan.builds:  # a file the samples did not write, in any folder, stops them all before the first
        check_out_folder(one.out)
    for r in samples_flow(plan):
        print(f"{'subject':<8} {'outcome':<18} {'reason':<52} {'n':>10}")
        for subject, outcome, reason, n in r.summary_rows():
            print(f"{subject:<8} {outcome:<18} {reason[:52]:<52} {n:>10,}")
        print(f"samples of {r.dataset!r} ({r.protocol}) written to {r.out_dir} in {r.seconds:.1f} s")
