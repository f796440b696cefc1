"""Prefect wiring for `micn ingest`: raw Amazon files → the DuckDB warehouse."""

from __future__ import annotations

from dataclasses import asdict

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from micn.data.ingest import IngestReport, ingest


@task(cache_policy=NO_CACHE)  # DVC decides what reruns (DESIGN §7)
def load_warehouse(dataset: str, reviews: list[str], meta: list[str], db: str) -> IngestReport:
    return ingest(dataset, reviews, meta, db)


@flow(name="ingest")
def ingest_flow(dataset: str, reviews: list[str], meta: list[str], db: str) -> IngestReport:
    report = load_warehouse(dataset, reviews, meta, db)
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
