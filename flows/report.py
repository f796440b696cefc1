"""`micn report`: per-run files → metrics/metrics.duckdb → reports/report.md, as a Prefect flow.

    micn report --metrics metrics --db metrics/metrics.duckdb --out reports

The paper's tables are also published as Prefect table artifacts (paper-table2/3/4) and the
whole report as a markdown artifact (micn-report), so they show on the flow run's page.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from micn.outputs import anything, claim, first_line, json_rows_with
from micn.report import Report, write_report
from micn.report.database import build_metrics_db, check_db_path
from micn.report.figures import FIGURES
from micn.report.labels import TITLES

DESCRIPTION = (
    "Build the metrics database (tables runs and history; views paper_table2, paper_table3, paper_table4, "
    "failed_runs) from the grid's per-run files in one step, then write the report (the three tables, PNG plots, "
    "failed runs marked) and publish the tables as Prefect artifacts. Every run record is checked first (a run "
    "counted twice, an AUC outside [0, 1] or an empty file stops the build, naming the file; the previous database "
    "stays). Only the report's own figures in OUT/figures are replaced; other files there are left alone."
)


@dataclass(frozen=True)
class ReportJob:
    """What `micn report` was asked for: where the per-run files are and where the outputs go."""

    metrics_dir: Path = Path("metrics")
    db: Path = Path("metrics/metrics.duckdb")
    out: Path = Path("reports")


@dataclass(frozen=True)
class ReportResult:
    """Counts of the database build and the report's files."""

    ok: int
    failed: list[str]
    history_rows: int
    report: str
    figures: list[str] = field(default_factory=list)


def add_arguments(parser: argparse.ArgumentParser, command: str = "report") -> None:
    parser.add_argument("--metrics", default="metrics", metavar="DIR", help="folder with runs/ and history/ (default metrics)")
    parser.add_argument("--db", default="metrics/metrics.duckdb", metavar="PATH",
                        help="database to (re)build (default metrics/metrics.duckdb)")
    parser.add_argument("--out", default="reports", metavar="DIR", help="report folder (default reports)")


def job_from_args(args: argparse.Namespace) -> ReportJob:
    return ReportJob(metrics_dir=Path(args.metrics), db=Path(args.db), out=Path(args.out))


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
        create_table_artifact(key=name.replace("_", "-"), table=rows, description=TITLES[name])
    create_markdown_artifact(key="micn-report", markdown=report.markdown, description=str(report.path))
    if report.failed:
        get_run_logger().warning("%d run(s) failed and are marked in %s: %s", len(report.failed), report.path,
                                 ", ".join(r["run_id"] for r in report.failed))
    return {**counts, "report": str(report.path), "figures": [str(f) for f in report.figures],
            "failed": [r["run_id"] for r in report.failed]}


REPORT_TITLE = "# MICN experiment report"  # the first line of every report.md (micn/report/markdown.py)


def check_report_files(out: Path) -> None:
    """Before any work: report.md and auc.json in `out` are absent or the report's own (written in
    place, so a link is followed and its target checked), and no figure the report draws is a link
    (it is deleted and drawn again); else a MicnError naming the path. The database is checked by
    its builder."""
    fix = "pass another --out"
    claim(out / "report.md", first_line(REPORT_TITLE), what="the report", command="report", follow_links=True, fix=fix)
    claim(out / "auc.json", json_rows_with("cell", "auc_mean"), what="the report's bar-plot data", command="report",
          follow_links=True, fix=fix)
    figures = claim(out / "figures", anything, what="the report's figures folder", command="report", folder=True,
                    follow_links=True, fix=fix)
    for name in FIGURES:
        claim(figures / name, anything, what=f"the report's figure {name}", command="report", fix=fix)


def run_report(job: ReportJob) -> ReportResult:
    """The report flow for `job`, its result typed."""
    check_report_files(job.out)
    db = job.db.resolve() if job.db.is_symlink() else job.db
    check_db_path(db)  # before the flow starts: a database the report did not make is never touched
    r = report_flow(str(job.metrics_dir), str(job.db), str(job.out))
    return ReportResult(ok=r["ok"], failed=r["failed"], history_rows=r["history_rows"], report=r["report"],
                        figures=r["figures"])


def run(args: argparse.Namespace) -> None:
    """`micn report`: counts and files on stdout, failed runs on stderr."""
    job = job_from_args(args)
    r = run_report(job)
    print(f"{job.db}: {r.ok} runs ok, {len(r.failed)} failed, {r.history_rows} evaluations of history")
    print(f"{r.report} with {len(r.figures)} figures: " + ", ".join(r.figures))
    for run_id in r.failed:
        print(f"FAILED {run_id} (marked in {r.report})", file=sys.stderr)
