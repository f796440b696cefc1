"""Prefect wiring for `micn report`: per-run files → metrics/metrics.duckdb → reports/report.md.

The paper's tables are also published as Prefect table artifacts (paper-table2/3/4) and the
whole report as a markdown artifact (micn-report), so they show on the flow run's page.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from micn.report import TABLES, Report, build_metrics_db, write_report


@task(cache_policy=NO_CACHE)
def build_db(metrics_dir: str, db: str) -> dict:
    return build_metrics_db(metrics_dir, db)


@task(cache_policy=NO_CACHE)
def render(db: str, out: str) -> Report:
    return write_report(db, out)


@flow(name="report")
def report_flow(metrics_dir: str = "metrics", db: str = "metrics/metrics.duckdb", out: str = "reports") -> dict:
    counts = build_db(metrics_dir, db)
    report = render(db, out)
    for name, rows in report.tables.items():
        create_table_artifact(key=name.replace("_", "-"), table=rows, description=TABLES[name])
    create_markdown_artifact(key="micn-report", markdown=report.markdown, description=str(report.path))
    if report.failed:
        get_run_logger().warning("%d run(s) failed and are marked in %s: %s", len(report.failed), report.path,
                                 ", ".join(r["run_id"] for r in report.failed))
    return {**counts, "report": str(report.path), "figures": [str(f) for f in report.figures],
            "failed": [r["run_id"] for r in report.failed]}
