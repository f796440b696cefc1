"""Table 2 across scales: MICN − base and MICN − control per backbone for several studies (the
default world, the Electronics- and Books-shaped ones), beside the paper's own Table 2 lifts.

    build_scales_db({"default": "metrics", "electronics": "studies/electronics/metrics"}, "scales.duckdb")
    write_scales_report("scales.duckdb", "studies/scales") -> Path of scales.md (with its figure)

Each study's run records go through the same checks and SQL as its own report (a metrics
database built in a temporary folder by `build_metrics_db`); the MICN rows of its `paper_table2`
view (the paper's supervision) are copied into the table `scale_cells` with the study's name as
`scale`, in the order given. The view `paper_scales` (sql/scales/) joins the paper's lifts
(table `paper_lifts`) to the studies named `electronics` and `books`. The database is written to a
temporary file and renamed, and replaces only a database this module made (table `micn_scales`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from micn.data.sql import run_script  # noqa: E402
from micn.errors import MicnError  # noqa: E402
from micn.report.database import build_metrics_db, check_own_database, write_database  # noqa: E402
from micn.report.formatting import fmt, interval, markdown_table  # noqa: E402
from micn.report.labels import BACKBONE_LABELS  # noqa: E402

OWN_TABLE = "micn_scales"  # marks a database this module made (and may rebuild)
VIEW = "paper_scales"
FIGURE = "scales.png"
HEADERS = ["backbone", "scale", "runs", "MICN − base [95 % CI]", "MICN − control [95 % CI]", "paper: MICN − base",
           "MICN Recall@K vs popularity"]
TEXT = (
    "MICN − base and MICN − control (test AUC, mean over seeds of the paired differences, 95 % t interval) of "
    "each study's Table 2, the paper's supervision, beside the paper's own Table 2 lift (MICN − base; the paper "
    "has no width-matched control) at the matching column. Each study is one synthetic world shaped like a "
    "dataset (users, items, categories, reviews) at the paper's history length: it asks whether the lift "
    "grows with data as the paper's Books column suggests, not what the real Amazon dumps would give."
)


def build_scales_db(studies: dict[str, str | Path], db_path: str | Path) -> int:
    """Build the cross-scale database from each study's metrics folder (runs/ and history/);
    returns the number of rows of `scale_cells`."""
    if not studies:
        raise MicnError("no study given: name at least one metrics folder, e.g. --study default=metrics.")
    db_path = Path(db_path)
    db_path = db_path.resolve() if db_path.is_symlink() else db_path
    check_own_database(db_path, OWN_TABLE, "scales")
    frames = []
    with tempfile.TemporaryDirectory(prefix="micn-scales-") as tmp:
        for order, (name, metrics) in enumerate(studies.items()):
            study_db = Path(tmp) / f"{order}.duckdb"
            build_metrics_db(metrics, study_db)
            with duckdb.connect(str(study_db), read_only=True) as con:
                cells = con.sql("select * from paper_table2 where variant = 'micn' "
                                "and coalesce(supervision, 'target') = 'target'").pl()
            frames.append(cells.with_columns(scale=pl.lit(name), scale_order=pl.lit(order)))
    cells = pl.concat(frames, how="diagonal_relaxed")

    def fill(con: duckdb.DuckDBPyConnection) -> int:
        con.register("cells", cells.to_arrow())
        con.execute("create table scale_cells as select * from cells")
        con.execute(f"create table {OWN_TABLE} as select 'micn scales' as made_by")
        run_script(con, "scales/paper_lifts")
        run_script(con, "scales/paper_scales")
        return cells.height

    return write_database(db_path, "the cross-scale database", fill)


def read_scales(db_path: str | Path) -> pl.DataFrame:
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.sql(f"select * from {VIEW}").pl()


def scales_rows(df: pl.DataFrame) -> list[list[str]]:
    """One markdown row per (backbone, scale) of `paper_scales`."""
    rows = []
    for r in df.iter_rows(named=True):
        recall = "–" if r["micn_recall_mean"] is None else (
            f"{r['micn_recall_mean']:.3f} vs {fmt(r['popularity_recall_mean'], 3)}")
        rows.append([BACKBONE_LABELS.get(r["backbone"], r["backbone"]), f"{r['scale']} (len {r['max_len']})",
                     str(r["n_runs"]), interval(r["lift_mean"], r["lift_ci_low"], r["lift_ci_high"], r["n_pairs"]),
                     interval(r["lift_control_mean"], r["lift_control_ci_low"], r["lift_control_ci_high"],
                              r["n_pairs_control"]),
                     "–" if r["paper_lift"] is None else f"{r['paper_lift']:+.4f}", recall])
    return rows


def scales_figure(df: pl.DataFrame, path: Path) -> Path | None:
    """Per backbone (one panel each): MICN − base (circles) and MICN − control (squares) with their
    95 % intervals against the study, and the paper's MICN − base (stars) where it has the column."""
    if not df.height:
        return None
    backbones = list(dict.fromkeys(df["backbone"]))
    scales = df.select("scale", "scale_order").unique().sort("scale_order")["scale"].to_list()
    fig, axes = plt.subplots(1, len(backbones), figsize=(4.2 * len(backbones), 3.8), squeeze=False, sharey=True)
    for ax, backbone in zip(axes[0], backbones):
        g = df.filter(pl.col("backbone") == backbone)
        x = [scales.index(s) for s in g["scale"]]
        for column, marker, shift, label in (("lift", "o", -0.08, "MICN − base"),
                                              ("lift_control", "s", 0.08, "MICN − control")):
            mean = g[f"{column}_mean"]
            low = (mean - g[f"{column}_ci_low"]).fill_null(0)
            high = (g[f"{column}_ci_high"] - mean).fill_null(0)
            ax.errorbar([v + shift for v in x], mean, yerr=[low, high], marker=marker, ls="", capsize=3, label=label)
        paper = g.filter(pl.col("paper_lift").is_not_null())
        ax.plot([scales.index(s) for s in paper["scale"]], paper["paper_lift"], "k*", ms=10, ls="",
                label="paper: MICN − base")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(scales)), scales)
        ax.set_title(BACKBONE_LABELS.get(backbone, backbone))
    axes[0][0].set_ylabel("test AUC lift")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Table 2 across scales: MICN's lifts with 95 % paired intervals")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_scales_report(db_path: str | Path, out: str | Path) -> Path:
    """out/scales.md (the table and the figure) from the cross-scale database."""
    out = Path(out)
    df = read_scales(db_path)
    figure = scales_figure(df, out / "figures" / FIGURE)
    lines = ["# Table 2 across scales", "", TEXT, "", markdown_table(HEADERS, scales_rows(df)), ""]
    if figure is not None:
        lines += [f"![Table 2 across scales](figures/{FIGURE})", ""]
    path = out / "scales.md"
    path.write_text("\n".join(lines))
    return path
