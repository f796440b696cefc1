"""The report's PNG figures: it replaces only its own files, and the learning curves are drawn
against the optimizer step where the history has one."""

from __future__ import annotations

import json

from micn.report import figures, write_report
from micn.report.database import build_metrics_db
from micn.report.figures import FIGURES
from tests.helpers import capsule_run, record, write_run


def test_report_leaves_user_pngs_alone(report_metrics_dir, tmp_path):
    d, _ = report_metrics_dir
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    figures_dir = tmp_path / "reports" / "figures"
    figures_dir.mkdir(parents=True)
    mine = {name: f"user bytes {name}".encode() for name in ("my_poster.png", "auc_by_backbone_v1.png", "notes.PNG")}
    for name, data in mine.items():
        (figures_dir / name).write_bytes(data)
    for run in (d / "runs" / "synthetic").glob("*phi0.7*"):  # Table 3 is not in this grid...
        run.unlink()
    for run in (d / "history" / "synthetic").glob("*phi0.7*"):
        run.unlink()
    for run in (d / "runs" / "synthetic").glob("dien-*.json"):
        r = json.loads(run.read_text())
        r["experiments"] = [e for e in r["experiments"] if e != "table3"]
        run.write_text(json.dumps(r))
    (figures_dir / "phi_sweep.png").write_bytes(b"the report's own figure, of a grid with Table 3")
    build_metrics_db(d, db)
    report = write_report(db, tmp_path / "reports")
    assert not (figures_dir / "phi_sweep.png").exists()  # ...so its stale figure goes
    assert {p.name for p in report.figures} == {"auc_by_backbone.png", "learning_curves.png", "max_len.png"}
    assert {name: (figures_dir / name).read_bytes() for name in mine} == mine
    assert set(FIGURES) >= {p.name for p in report.figures}


def test_learning_curves_plot_against_the_step_where_the_history_has_one(tmp_path, monkeypatch):
    d = tmp_path / "metrics"
    capsule_run(d, 1, 0.7, 0.5, 0.2)  # steps 100..400
    write_run(d, record("synthetic", "din", "base", 1, 0.79))  # epochs 1..3, no step
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    drawn = []
    real_plot = figures.plt.Axes.plot

    def plot(ax, *args, **kwargs):
        if len(args) >= 2 and len(args[0]):
            drawn.append((list(args[0]), kwargs.get("mfc")))
        return real_plot(ax, *args, **kwargs)

    monkeypatch.setattr(figures.plt.Axes, "plot", plot)
    figure = write_report(db, tmp_path / "reports").figures
    assert any(f.name == "learning_curves.png" for f in figure)
    assert ([100, 200, 300, 400], None) in drawn  # the MICN run against its steps
    assert ([100], "white") in drawn  # its warm-up evaluation, hollow
    assert ([1, 2, 3], None) in drawn  # the per-epoch run falls back to its epochs
