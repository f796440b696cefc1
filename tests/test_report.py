"""metrics/metrics.duckdb from per-run files, its paper views against a reference computation,
and the markdown/PNG report."""

from __future__ import annotations

import json
import os

import duckdb
import numpy as np
import pytest
from scipy import stats

from micn.errors import MicnError
from micn.report import build_metrics_db, write_report

RNG = np.random.default_rng(0)


def record(dataset, backbone, variant, seed, auc, max_len=20, phi=None, experiments=("table2",), status="ok"):
    name = f"{backbone}-{variant}{'' if phi is None else f'-phi{phi:g}'}-len{max_len}-seed{seed}"
    r = {"run_id": f"{dataset}/{name}", "dataset": dataset, "protocol": "dien", "backbone": backbone,
         "variant": variant, "seed": seed, "max_len": max_len, "phi": phi, "experiments": list(experiments),
         "status": status, "error": None, "attempts": 1,
         "params": {"train": {"lr": 1e-3, "batch_size": 256, "epochs": 5}, "micn": None, "max_len": max_len,
                    "samples_seed": 2022},
         "metrics": None if auc is None else {"auc": auc, "gauc": auc - 0.01, "logloss": 0.5, "oracle_auc": 0.94,
                                              "valid_auc": auc},
         "epochs": 3, "best_epoch": 2, "train_seconds": 10.0, "samples_per_s": 5000.0, "device": "cpu",
         "git_revision": "abc", "started": "2026-11-27T10:00:00+00:00", "finished": "2026-11-27T10:01:00+00:00"}
    if status == "failed":
        r.update(metrics=None, error="RuntimeError: boom", attempts=2, epochs=None)
    return r


def write_run(metrics_dir, r, epochs=3):
    path = metrics_dir / "runs" / f"{r['run_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r))
    if r["status"] == "ok":
        h = metrics_dir / "history" / f"{r['run_id']}.json"
        h.parent.mkdir(parents=True, exist_ok=True)
        h.write_text(json.dumps([{"epoch": e, "samples": 100, "seconds": 1.0, "samples_per_s": 100.0,
                                  "train_loss": 0.6, "valid_auc": 0.5 + 0.01 * e, "valid_gauc": 0.5,
                                  "valid_logloss": 0.6} for e in range(1, epochs + 1)]))


@pytest.fixture()
def metrics_dir(tmp_path):
    """3 seeds x {wide_deep, dien} x {base, micn}; dien-micn seed 3 failed; plus a φ sweep and a length sweep."""
    d = tmp_path / "metrics"
    aucs = {}
    for backbone in ("wide_deep", "dien"):
        for seed in (1, 2, 3):
            base = 0.80 + RNG.normal(0, 0.01)
            aucs[(backbone, "base", seed)] = base
            exps = ("table2", "table3", "table4") if backbone == "dien" else ("table2",)
            write_run(d, record("synthetic", backbone, "base", seed, base, experiments=exps))
            micn_auc = base + 0.01 + RNG.normal(0, 0.005)
            failed = backbone == "dien" and seed == 3
            write_run(d, record("synthetic", backbone, "micn", seed, None if failed else micn_auc, phi=0.3,
                                experiments=exps, status="failed" if failed else "ok"))
            if not failed:
                aucs[(backbone, "micn", seed)] = micn_auc
            if backbone == "dien":
                write_run(d, record("synthetic", "dien", "micn", seed, base + 0.02, phi=0.7, experiments=("table3",)))
                for n in (10, 50):
                    write_run(d, record("synthetic", "dien", "base", seed, base - 0.01, max_len=n, experiments=("table4",)))
    return d, aucs


def test_views_match_a_reference_computation(metrics_dir, tmp_path):
    d, aucs = metrics_dir
    db = tmp_path / "metrics.duckdb"
    counts = build_metrics_db(d, db)
    n_records = len(list((d / "runs").rglob("*.json")))
    assert counts == {"ok": n_records - 1, "failed": 1, "history_rows": 3 * (n_records - 1)}
    with duckdb.connect(str(db), read_only=True) as con:
        t2 = {(r[0], r[1]): r[2:] for r in con.sql(
            "select backbone, variant, n_runs, n_failed, auc_mean, auc_std, lift_mean, lift_ci_low, lift_ci_high, n_pairs "
            "from paper_table2").fetchall()}
        assert [r[0] for r in con.sql("select run_id from failed_runs").fetchall()] == ["synthetic/dien-micn-phi0.3-len20-seed3"]
        assert con.sql("select count(*) from runs").fetchall()[0][0] == n_records
        assert con.sql("select count(distinct run_id) from history").fetchall()[0][0] == n_records - 1
        t3 = con.sql("select variant, phi, n_runs from paper_table3").fetchall()
        t4 = con.sql("select variant, max_len, n_runs from paper_table4").fetchall()
    for backbone in ("wide_deep", "dien"):
        seeds = [s for s in (1, 2, 3) if (backbone, "micn", s) in aucs]
        base = np.array([aucs[(backbone, "base", s)] for s in (1, 2, 3)])
        micn = np.array([aucs[(backbone, "micn", s)] for s in seeds])
        n_runs, n_failed, mean, std, *_ = t2[(backbone, "base")]
        assert (n_runs, n_failed) == (3, 0)
        assert mean == pytest.approx(base.mean()) and std == pytest.approx(base.std(ddof=1))
        n_runs, n_failed, mean, std, lift, low, high, n_pairs = t2[(backbone, "micn")]
        assert (n_runs, n_failed, n_pairs) == (len(seeds), 3 - len(seeds), len(seeds))
        assert mean == pytest.approx(micn.mean())
        diffs = micn - np.array([aucs[(backbone, "base", s)] for s in seeds])  # paired by seed
        half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
        assert lift == pytest.approx(diffs.mean())
        assert (low, high) == (pytest.approx(diffs.mean() - half), pytest.approx(diffs.mean() + half))
    assert sorted(t3, key=str) == sorted([("base", None, 3), ("micn", 0.3, 2), ("micn", 0.7, 3)], key=str)
    assert sorted(t4) == [("base", 10, 3), ("base", 20, 3), ("base", 50, 3), ("micn", 20, 2)]


def test_report_marks_failures_and_draws_the_figures(metrics_dir, tmp_path):
    d, _ = metrics_dir
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


def test_bad_record_is_named_and_the_previous_database_survives(metrics_dir, tmp_path):
    d, _ = metrics_dir
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    before = db.read_bytes()
    bad = d / "runs" / "synthetic" / "zz-stray.json"
    bad.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(MicnError, match="zz-stray.json: not a run record"):
        build_metrics_db(d, db)
    assert db.read_bytes() == before
    bad.write_text(json.dumps({"run_id": "synthetic/zz-stray", "metrics": {"auc": 0.7}}))  # no status
    with pytest.raises(MicnError, match="zz-stray.json: not a run record"):
        build_metrics_db(d, db)
    bad.write_text("{not json")
    with pytest.raises(MicnError, match="not valid JSON"):
        build_metrics_db(d, db)
    assert db.read_bytes() == before and not any(p.name.endswith(".tmp") for p in db.parent.iterdir())


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(MicnError, match="holds no run records"):
        build_metrics_db(tmp_path, tmp_path / "m.duckdb")


def test_database_opens_in_a_fresh_connection_without_python(metrics_dir, tmp_path):
    """Views use only SQL (the t quantiles are a table), so the DuckDB CLI can query them."""
    d, _ = metrics_dir
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    env_free = duckdb.connect(str(db), read_only=True)
    try:
        for view in ("paper_table2", "paper_table3", "paper_table4", "failed_runs"):
            assert env_free.sql(f"select count(*) from {view}").fetchall()[0][0] > 0
    finally:
        env_free.close()
    assert os.path.getsize(db) > 0
