"""report.md from the metrics database: the paper tables with both lifts, the ceilings, failed runs
marked, and at the top, in words, every auxiliary task that has not learned."""

from __future__ import annotations

import json

import pytest

from micn.report import write_report
from micn.report.database import build_metrics_db
from tests.helpers import capsule_run


def test_report_shows_both_lifts_the_ceilings_and_says_when_an_aux_task_has_not_learned(report_control_dir, tmp_path):
    d, _ = report_control_dir
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    md = write_report(db, tmp_path / "reports").markdown
    top = md.split("## Table 2")[0]
    assert "MICN's auxiliary task has not learned at the selected checkpoint in 2 of 8 MICN runs" in top
    assert "synthetic DIN MICN φ 0.3 len 20: 1 run; synthetic DIN MICN φ 0.7 len 20: 1 run" in top
    assert "DIEN's auxiliary loss has not learned at the selected checkpoint in 8 of 8 DIEN runs" in top
    assert "| − base [95 % CI] | MICN − control [95 % CI] |" in md
    table3 = md.split("## Table 3")[1].split("##")[0]
    assert "(control φ 0.3)" in table3  # micn φ 0.7 against the sweep's one control
    assert "## Ceilings" in md and "| synthetic | 20 | 0.9400 | 0.9200 |" in md
    evidence = md.split("## Did the auxiliary tasks learn?")[1].split("## Figures")[0]
    assert "(**not above**)" not in evidence.split("DIN | MICN | 0.7")[1].split("\n")[0]
    assert "(**at chance**)" in evidence and "2 ln 2 = 1.3863" in evidence


def test_no_warning_when_every_aux_task_learned(report_control_dir, tmp_path):
    d, _ = report_control_dir
    for path in (d / "runs" / "synthetic").glob("*.json"):
        r = json.loads(path.read_text())
        if r["metrics"].get("micn_recall") is not None:
            r["metrics"]["micn_recall"] = 0.3
        if r["metrics"].get("dien_aux") is not None:
            r["metrics"]["dien_aux"] = 1.2
        path.write_text(json.dumps(r))
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    md = write_report(db, tmp_path / "reports").markdown
    assert "has not learned" not in md and "**not above**" not in md and "at chance**" not in md


def test_report_marks_failures_and_draws_the_figures(report_metrics_dir, tmp_path):
    d, _ = report_metrics_dir
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    report = write_report(db, tmp_path / "reports")
    md = (tmp_path / "reports" / "report.md").read_text()
    assert md == report.markdown
    assert "## Table 2" in md and "## Table 3" in md and "## Table 4" in md and "Not run" not in md
    assert "**1 failed**" in md and "## Failed runs" in md and "RuntimeError: boom" in md
    assert "synthetic/dien-micn-phi0.3-len20-seed3" in md
    names = sorted(p.name for p in report.figures)
    assert names == ["auc_by_backbone.png", "learning_curves.png", "max_len.png", "phi_sweep.png"]
    for p in report.figures:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
        assert f"figures/{p.name}" in md
    bars = json.loads((tmp_path / "reports" / "auc.json").read_text())
    assert len(bars) == 4 and {b["runs"] for b in bars} == {2, 3}
    assert set(report.tables) == {"paper_table2", "paper_table3", "paper_table4"}
    assert [r["run_id"] for r in report.failed] == ["synthetic/dien-micn-phi0.3-len20-seed3"]


@pytest.mark.parametrize(("purity", "shuffled", "overlap", "flat", "collapsed"), [
    (0.70, 0.50, 0.20, False, False),  # grouped by topic, distinct capsules: no warning
    (0.505, 0.50, 0.20, True, False),  # purity above shuffled by less than 0.01
    (0.70, 0.50, 0.85, False, True),  # capsules share most of their nearest items
    (0.49, 0.50, 0.80, True, True),  # both, the overlap exactly at the threshold
])
def test_report_says_when_the_capsules_did_not_learn_topics_or_collapsed(tmp_path, purity, shuffled, overlap, flat,
                                                                         collapsed):
    d = tmp_path / "metrics"
    for seed in (1, 2):  # the cell's means: seed 1 and 2 differ, their means are the parameters
        capsule_run(d, seed, purity + (0.002 if seed == 1 else -0.002), shuffled, overlap + (0.01 if seed == 1 else -0.01))
    capsule_run(d, 1, 0.9, 0.4, 0.1, backbone="dien")  # a cell that learned: never named
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    md = write_report(db, tmp_path / "reports").markdown
    top = md.split("## Table 2")[0]
    assert ("do not group behaviours by planted topic in 1 of 2 MICN cells" in top) == flat
    assert ("MICN's capsules collapsed in 1 of 2 MICN cells" in top) == collapsed
    if flat:
        assert f"synthetic DIN MICN φ 0.3 len 20: purity {purity:.3f} vs shuffled {shuffled:.3f} over 2 runs" in top
    if collapsed:
        assert f"synthetic DIN MICN φ 0.3 len 20: overlap {overlap:.3f} over 2 runs" in top
    assert "DIEN MICN" not in top
    evidence = md.split("## Did the auxiliary tasks learn?")[1].split("## Figures")[0]
    assert "| capsule purity vs shuffled | capsule overlap | selected epoch (step) |" in evidence
    din = next(line for line in evidence.splitlines() if line.startswith("| synthetic | 20 | DIN | MICN"))
    assert f"| {purity:.3f} vs {shuffled:.3f}{' (**not above**)' if flat else ''} |" in din
    assert f"| {overlap:.3f}{' (**collapsed**)' if collapsed else ''} |" in din
    assert "(step 200)" in din
    dien = next(line for line in evidence.splitlines() if line.startswith("| synthetic | 20 | DIEN | MICN"))
    assert "| 0.900 vs 0.400 | 0.100 |" in dien and "**" not in dien
