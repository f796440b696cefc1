"""`micn ingest`: raw Amazon files → the DuckDB warehouse (its flags, typed config, flow and output).

Two ways to say what to ingest, one typed result (`IngestConfig`): flags name one dataset's
files (`--dataset --reviews --meta`); `--params` ingests every dataset enabled in params.yaml
from `RAW/<dataset>/`. The library call is `micn.data.ingest.load.ingest`; this module only wires it.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from micn.data.ingest.accounting import IngestReport
from micn.data.ingest.inputs import check_inputs
from micn.data.ingest.load import ingest
from micn.data.ingest.publish import SHRINK_FLOOR
from micn.errors import MicnError

DESCRIPTION = (
    "Load raw Amazon files (2014 or 2018 release, plain or gzip, format detected from the content) into the "
    "DuckDB warehouse: tables reviews, items, rejects, ingest_log. Lines of the wrong shape or type are rows of "
    "`rejects` with their reason. Re-ingesting a dataset replaces its rows in one transaction; a failed ingest "
    "leaves the warehouse as it was, and one that would keep no reviews, or under "
    f"{SHRINK_FLOOR:.0%} of the dataset's current reviews, is refused unless --allow-shrink."
)


@dataclass(frozen=True)
class IngestJob:
    """One dataset's raw files."""

    dataset: str
    reviews: tuple[Path, ...]
    meta: tuple[Path, ...]


@dataclass(frozen=True)
class IngestConfig:
    """Everything `micn ingest` does, whichever way it was asked (flags or --params)."""

    db: Path
    jobs: tuple[IngestJob, ...]
    allow_shrink: bool = False


def add_arguments(parser: argparse.ArgumentParser, command: str = "ingest") -> None:
    parser.add_argument("--params", default=None, metavar="FILE",
                        help="pipeline mode: ingest every dataset enabled in the file's `datasets` section from "
                        "RAW/<dataset>/ (*_5.json[.gz] reviews, meta_*.json[.gz] metadata) instead of --dataset/--reviews/--meta")
    parser.add_argument("--raw", default="data/raw", metavar="DIR",
                        help="with --params: folder of the raw datasets (default data/raw)")
    parser.add_argument("--dataset", metavar="NAME", help="dataset name in the warehouse, e.g. electronics")
    parser.add_argument("--reviews", nargs="+", metavar="FILE", help="one or more review files (JSON lines)")
    parser.add_argument("--meta", nargs="+", metavar="FILE",
                        help="one or more metadata files (2014 Python-literal lines or 2018 JSON lines)")
    parser.add_argument("--db", required=True, metavar="PATH", help="DuckDB warehouse file (created if missing)")
    parser.add_argument("--allow-shrink", action="store_true",
                        help=f"replace a dataset even when this ingest accepts no review, or under {SHRINK_FLOOR:.0%}% "
                        "of the reviews the warehouse holds for it now (refused by default: broken input must not "
                        "silently replace good data)")


def config_from_args(args: argparse.Namespace) -> IngestConfig:
    """The typed config of either mode; MicnError when the flags mix or miss the two modes."""
    if args.params:
        if args.dataset or args.reviews or args.meta:
            raise MicnError("--params ingests the datasets enabled in the file; drop --dataset/--reviews/--meta.")
        jobs = _jobs_from_params(args.params, Path(args.raw))
    else:
        if not (args.dataset and args.reviews and args.meta):
            raise MicnError("give --dataset, --reviews and --meta (one dataset), or --params (every enabled dataset).")
        jobs = (IngestJob(args.dataset, tuple(map(Path, args.reviews)), tuple(map(Path, args.meta))),)
    return IngestConfig(db=Path(args.db), jobs=jobs, allow_shrink=bool(getattr(args, "allow_shrink", False)))


def _jobs_from_params(params: str, raw: Path) -> tuple[IngestJob, ...]:
    from micn.data.layout import raw_dir
    from micn.experiment import check_raw_data, load_experiment, raw_files

    exp = load_experiment(params)
    check_raw_data(exp, raw)
    jobs = []
    for name in exp.all_datasets:
        folder = raw_dir(raw, name)
        reviews, meta = raw_files(folder)
        if not (reviews and meta):
            raise MicnError(f"{folder}/ has no *_5.json[.gz] review file or no meta_*.json[.gz] file; for "
                            "the synthetic datasets run the generate stage (`dvc repro generate`).")
        jobs.append(IngestJob(name, tuple(reviews), tuple(meta)))
    return tuple(jobs)


@task(cache_policy=NO_CACHE)  # DVC decides what reruns, not Prefect's cache
def load_warehouse(dataset: str, reviews: list[str], meta: list[str], db: str, allow_shrink: bool = False) -> IngestReport:
    return ingest(dataset, reviews, meta, db, allow_shrink=allow_shrink)


@flow(name="ingest")
def ingest_flow(dataset: str, reviews: list[str], meta: list[str], db: str, allow_shrink: bool = False) -> IngestReport:
    report = load_warehouse(dataset, reviews, meta, db, allow_shrink)
    log = get_run_logger()
    for f in report.files:
        log.info("%s (%s): %d lines read, %d accepted, %d rejected, %d duplicates, %.2f s",
                 f.source_file, f.format, f.lines_read, f.accepted, f.rejected, f.duplicates, f.seconds)
    create_table_artifact(
        key=f"ingest-{dataset.lower().replace('_', '-')}",
        table=[asdict(f) for f in report.files],
        description=f"Ingest of dataset {dataset} into {db}",
    )
    return report


def run(args: argparse.Namespace) -> None:
    """`micn ingest`: check every job's files first (fail before Prefect starts), then ingest each."""
    config = config_from_args(args)
    for job in config.jobs:
        check_inputs(job.dataset, job.reviews, job.meta)
    for job in config.jobs:
        report = ingest_flow(job.dataset, [str(p) for p in job.reviews], [str(p) for p in job.meta], str(config.db),
                             config.allow_shrink)
        print(format_report(report))


def format_report(r: IngestReport) -> str:
    lines = [f"{'file':<50} {'format':<13} {'read':>10} {'accepted':>10} {'rejected':>9} {'dups':>7} {'sec':>6}"]
    for f in r.files:
        lines.append(f"{f.source_file[-50:]:<50} {f.format:<13} {f.lines_read:>10,} {f.accepted:>10,} {f.rejected:>9,} "
                     f"{f.duplicates:>7,} {f.seconds:>6.2f}")
    lines.append(f"dataset {r.dataset!r} in {r.db}: {r.reviews:,} reviews, {r.users:,} users, {r.items:,} items "
                 f"({r.items_without_meta:,} without metadata → 'default_cat'), {r.rejects:,} rejects; {r.seconds:.1f} s")
    return "\n".join(lines)
