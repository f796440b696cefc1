"""The experiment report: per-run result files → `metrics/metrics.duckdb` → `reports/report.md`
with PNG plots. `micn report` (flows/report.py) runs the two steps, one writer after the grid:

    micn.report.database.build_metrics_db("metrics", "metrics/metrics.duckdb") -> counts
    micn.report.write_report("metrics/metrics.duckdb", "reports") -> Report   markdown, figures, auc.json

Where each part lives:

    database.py    builds the DuckDB file (checks every record and learning curve, runs the SQL
                   in sql/metrics/, creates the paper views) and reads the views back
    labels.py      the views' titles, the backbones' and variants' display labels and colours
    evidence.py    whether the auxiliary tasks learned, and the ceilings: warnings and table rows
    formatting.py  numbers, intervals and markdown tables as report.md writes them
    markdown.py    report.md, one function per section
    mechanism.py   report.md's section on the mechanism experiment (the interest-signal sweep)
    figures.py     the PNG plots, and auc.json for DVC's bar plot

The report says at the top, in words, when an auxiliary task has not learned at the selected
checkpoint: a lift of a model whose auxiliary task learned nothing measures something else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from micn.errors import MicnError
from micn.record import os_reason
from micn.report.database import read_views
from micn.report.figures import auc_bars, draw_figures, remove_figures
from micn.report.markdown import render_markdown


@dataclass
class Report:
    markdown: str
    path: Path
    figures: list[Path] = field(default_factory=list)
    tables: dict[str, list[dict]] = field(default_factory=dict)  # view name -> rows (for artifacts)
    failed: list[dict] = field(default_factory=list)


def write_report(db_path: str | Path, out_dir: str | Path) -> Report:
    """reports/report.md, reports/figures/*.png and reports/auc.json (DVC bar plot data); a file that
    cannot be written (full disk, read-only folder) is a MicnError naming it."""
    try:
        return _write_report(Path(db_path), Path(out_dir))
    except OSError as e:
        raise MicnError(f"{e.filename or out_dir}: cannot write the report ({os_reason(e)}).") from None


def _write_report(db_path: Path, out_dir: Path) -> Report:
    figures_dir = out_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    remove_figures(figures_dir)
    tables, runs, history, failed = read_views(db_path)
    figures = draw_figures(tables, runs, history, figures_dir)
    (out_dir / "auc.json").write_text(json.dumps(auc_bars(tables["paper_table2"]), indent=2) + "\n")
    markdown = render_markdown(tables, runs, failed, [f.relative_to(out_dir) for f in figures], db_path.as_posix())
    path = out_dir / "report.md"
    path.write_text(markdown)
    return Report(markdown=markdown, path=path, figures=figures,
                  tables={k: _plain(v) for k, v in tables.items() if v.height},
                  failed=failed.to_dicts())


def _plain(df: pl.DataFrame) -> list[dict]:
    """Rows with floats rounded to 5 decimals, as the Prefect table artifacts show them."""
    return [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()} for row in df.to_dicts()]
