"""metrics/metrics.duckdb from per-run files: its paper views against a reference computation
(numpy/SciPy), and what reaches the `runs` and `history` tables."""

from __future__ import annotations

import os

import duckdb
import numpy as np
import polars as pl
import pytest
from scipy import stats

from micn.report import write_report
from micn.report.database import build_metrics_db
from tests.helpers import capsule_run, mechanism_run, record, t_interval, write_run


def test_views_match_a_reference_computation(report_metrics_dir, tmp_path):
    d, aucs = report_metrics_dir
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


def test_both_paired_lifts_match_a_reference_computation(report_control_dir, tmp_path):
    d, aucs = report_control_dir
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    seeds = np.arange(1, 5)
    base = np.array([aucs[("base", None, s)] for s in seeds])
    control = np.array([aucs[("control", 0.3, s)] for s in seeds])
    micn = {phi: np.array([aucs[("micn", phi, s)] for s in seeds]) for phi in (0.3, 0.7)}
    with duckdb.connect(str(db), read_only=True) as con:
        t2 = {r["variant"]: r for r in con.sql("select * from paper_table2 where backbone = 'din'").pl().to_dicts()}
        t3 = {(r["variant"], r["phi"]): r for r in con.sql("select * from paper_table3 where backbone = 'din'").pl().to_dicts()}

    def lift(row, kind=""):
        return row[f"lift{kind}_mean"], row[f"lift{kind}_ci_low"], row[f"lift{kind}_ci_high"]

    assert lift(t2["base"]) == lift(t2["base"], "_control") == (None, None, None)  # base: no lift of either kind
    assert (t2["control"]["n_pairs"], lift(t2["control"])) == (4, t_interval(control - base))  # control − base
    assert lift(t2["control"], "_control") == (None, None, None) and t2["control"]["control_phi"] is None
    assert t2["control"]["history_only_auc"] == pytest.approx(0.92)
    micn_row = t2["micn"]
    assert (micn_row["n_pairs"], lift(micn_row)) == (4, t_interval(micn[0.3] - base))  # micn − base
    assert (micn_row["control_phi"], micn_row["n_pairs_control"], lift(micn_row, "_control")) == (
        0.3, 4, t_interval(micn[0.3] - control))  # micn − control
    assert micn_row["micn_recall_mean"] == pytest.approx((0.05 + 0.2 * 3) / 4)
    assert micn_row["popularity_recall_mean"] == pytest.approx(0.1) and micn_row["grad_ratio_mean"] == 2.0
    # Table 3: one control φ for the sweep, so micn at φ 0.7 is paired with the control at φ 0.3
    sweep = t3[("micn", 0.7)]
    assert (sweep["n_pairs"], lift(sweep)) == (4, t_interval(micn[0.7] - base))
    assert (sweep["control_phi"], sweep["n_pairs_control"], lift(sweep, "_control")) == (
        0.3, 4, t_interval(micn[0.7] - control))
    assert set(t3) == {("base", None), ("control", 0.3), ("micn", 0.3), ("micn", 0.7)}


def test_control_pairs_its_own_phi_when_the_experiment_has_several(report_control_dir, tmp_path):
    d, aucs = report_control_dir
    for seed in (1, 2, 3, 4):  # with a second control φ, micn at 0.7 pairs with the control at 0.7
        auc = aucs[("base", None, seed)] + 0.001 * seed
        aucs[("control", 0.7, seed)] = auc
        write_run(d, record("synthetic", "din", "control", seed, auc, phi=0.7, experiments=("table3",)))
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql("select phi, control_phi, lift_control_mean from paper_table3 where variant = 'micn' "
                       "order by phi").fetchall()
    diffs = {phi: np.mean([aucs[("micn", phi, s)] - aucs[("control", phi, s)] for s in (1, 2, 3, 4)])
             for phi in (0.3, 0.7)}
    assert rows == [(0.3, 0.3, pytest.approx(diffs[0.3])), (0.7, 0.7, pytest.approx(diffs[0.7]))]


def test_database_opens_in_a_fresh_connection_without_python(report_metrics_dir, tmp_path):
    """Views use only SQL (the t quantiles are a table), so the DuckDB CLI can query them."""
    d, _ = report_metrics_dir
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    env_free = duckdb.connect(str(db), read_only=True)
    try:
        for view in ("paper_table2", "paper_table3", "paper_table4", "failed_runs"):
            assert env_free.sql(f"select count(*) from {view}").fetchall()[0][0] > 0
    finally:
        env_free.close()
    assert os.path.getsize(db) > 0


# --- capsule evidence and per-evaluation history rows ------------------------------------------------


def test_capsule_evidence_and_steps_reach_runs_history_and_paper_cells(tmp_path):
    d = tmp_path / "metrics"
    for seed, purity in ((1, 0.70), (2, 0.60)):
        capsule_run(d, seed, purity, 0.50, 0.20 + 0.1 * seed)
    per_epoch = record("synthetic", "din", "base", 1, 0.79)  # a run with a per-epoch history, no step
    write_run(d, per_epoch)
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    with duckdb.connect(str(db), read_only=True) as con:
        runs = con.sql("select seed, capsule_purity, capsule_purity_shuffled, capsule_overlap, best_step from runs "
                       "where variant = 'micn' order by seed").fetchall()
        history = con.sql("select run_id, epoch, step, warmup, valid_capsule_purity, valid_capsule_purity_shuffled, "
                          "valid_capsule_overlap from history order by run_id, epoch, step").fetchall()
        types = dict(con.sql("select column_name, data_type from information_schema.columns "
                             "where table_name = 'history'").fetchall())
        cell = con.sql("select capsule_purity_mean, capsule_purity_shuffled_mean, capsule_overlap_mean, best_step_mean "
                       "from paper_table2 where variant = 'micn'").fetchall()
    assert runs == [(1, 0.70, 0.50, pytest.approx(0.30), 200), (2, 0.60, 0.50, pytest.approx(0.40), 200)]
    assert types["step"] in ("BIGINT", "INTEGER") and types["warmup"] == "BOOLEAN"
    base = [h for h in history if h[0] == per_epoch["run_id"]]
    assert [h[1:] for h in base] == [(e, None, None, None, None, None) for e in (1, 2, 3)]  # per-epoch rows: nulls
    seed1 = [h[1:] for h in history if h[0] == "synthetic/din-micn-phi0.3-len20-seed1"]
    assert seed1 == [(1, 100, True, pytest.approx(0.67), 0.5, pytest.approx(0.3)),
                     (1, 200, False, pytest.approx(0.68), 0.5, pytest.approx(0.3)),
                     (2, 300, False, pytest.approx(0.69), 0.5, pytest.approx(0.3)),
                     (2, 400, False, pytest.approx(0.70), 0.5, pytest.approx(0.3))]
    assert cell == [(pytest.approx(0.65), pytest.approx(0.5), pytest.approx(0.35), 200.0)]


# --- the mechanism experiment's view and section ------------------------------------------------------


def test_paper_mechanism_matches_a_reference_computation(tmp_path):
    """Hand-made records over two worlds: MICN − control per κ, backbone and supervision (both
    supervisions paired with the same control), ablation − base for DIN, each with the 95 % t
    interval of numpy/SciPy; the section and the figure in the report."""
    rng = np.random.default_rng(0)
    d = tmp_path / "metrics"
    seeds = (1, 2, 3, 4)
    aucs = {}
    for kappa in (1.0, 0.5):
        for backbone in ("din", "dien"):
            for variant in ("base", "control", "micn"):
                for seed in seeds:
                    aucs[kappa, backbone, variant, None, seed] = auc = float(rng.uniform(0.80, 0.90))
                    mechanism_run(d, kappa, backbone, variant, seed, auc)
            for seed in seeds:
                aucs[kappa, backbone, "micn", "history", seed] = auc = float(rng.uniform(0.80, 0.90))
                mechanism_run(d, kappa, backbone, "micn", seed, auc, supervision="history")
        for ablation in ("no_item_ids", "one_category"):
            for seed in seeds:
                aucs[kappa, "din", "base", ablation, seed] = auc = float(rng.uniform(0.70, 0.80))
                mechanism_run(d, kappa, "din", "base", seed, auc, ablation)
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql("select * from paper_mechanism").pl().to_dicts()
        t2 = con.sql("select * from paper_table2").pl()
    assert [(r["kappa"], r["backbone"], r["variant"], r["ablation"] or r["supervision"]) for r in rows] == [
        (k, b, v, a) for k in (1.0, 0.5) for b in ("din", "dien")
        for v, a in [("base", None), *((("base", x) for x in ("no_item_ids", "one_category")) if b == "din" else ()),
                     ("control", None), ("micn", "target"), ("micn", "history")]]
    series = lambda k, b, v, a=None: np.array([aucs[k, b, v, a, s] for s in seeds])  # noqa: E731
    for r in rows:
        k, b, v = r["kappa"], r["backbone"], r["variant"]
        a = r["ablation"] or (r["supervision"] if r["supervision"] == "history" else None)
        assert r["auc_mean"] == pytest.approx(series(k, b, v, a).mean()) and r["n_runs"] == 4
        assert r["oracle_auc"] == pytest.approx(0.95 - 0.02 * k) and r["history_only_auc"] == pytest.approx(0.9 - 0.01 * k)
        lift = (r["lift_mean"], r["lift_ci_low"], r["lift_ci_high"])
        if v == "base" and a is None:
            assert lift == (None, None, None)
        else:  # control − base, micn − base, ablation − base (the unablated base of the same seed)
            assert lift == t_interval(series(k, b, v, a) - series(k, b, "base"))
        control = (r["lift_control_mean"], r["lift_control_ci_low"], r["lift_control_ci_high"])
        if v == "micn":
            assert control == t_interval(series(k, b, "micn", a) - series(k, b, "control"))
            assert r["micn_recall_mean"] == pytest.approx(0.3)
        else:
            assert control == (None, None, None)
        target = (r["lift_target_mean"], r["lift_target_ci_low"], r["lift_target_ci_high"])
        if v == "micn" and a == "history":  # ours against the paper's form, seed by seed
            assert target == t_interval(series(k, b, "micn", "history") - series(k, b, "micn"))
            assert r["n_pairs_target"] == len(seeds)
        else:
            assert target == (None, None, None)
    assert t2.height == 8 and set(t2["dataset"]) == {"synthetic"}  # κ = 1 cells are Table 2's too, no ablations
    assert t2.filter(pl.col("variant") == "base")["auc_mean"].to_list() == pytest.approx(
        [series(1.0, b, "base").mean() for b in ("din", "dien")])
    report = write_report(db, tmp_path / "reports")
    assert "## Where MICN can help" in report.markdown and "fixed in params.yaml before" in report.markdown
    assert "| MICN (history) |" in report.markdown
    assert "figures/mechanism.png" in report.markdown
    figure = tmp_path / "reports" / "figures" / "mechanism.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 5000


def test_a_database_the_report_did_not_make_is_never_replaced(report_metrics_dir, tmp_path):
    """A user's own DuckDB database at --db is refused and left as it was; the report's own
    database is rebuilt; a link is followed (its target rebuilt, the link kept)."""
    from micn.errors import MicnError

    metrics, _ = report_metrics_dir
    mine = tmp_path / "mine.duckdb"
    with duckdb.connect(str(mine)) as con:
        con.execute("create table notes as select 'keep me' as text")
    with pytest.raises(MicnError, match=r"mine\.duckdb: a DuckDB database that `micn report` did not make"):
        build_metrics_db(metrics, mine)
    with duckdb.connect(str(mine), read_only=True) as con:
        assert con.sql("select text from notes").fetchall() == [("keep me",)]

    ours = tmp_path / "metrics.duckdb"
    first = build_metrics_db(metrics, ours)
    assert build_metrics_db(metrics, ours) == first  # the report's own database: rebuilt
    link = tmp_path / "link.duckdb"
    link.symlink_to(ours)
    build_metrics_db(metrics, link)
    assert link.is_symlink() and link.resolve() == ours.resolve()
    with duckdb.connect(str(ours), read_only=True) as con:
        assert con.sql("select made_by from micn_report").fetchall() == [("micn report",)]
    mine_link = tmp_path / "to-mine.duckdb"
    mine_link.symlink_to(mine)
    with pytest.raises(MicnError, match="did not make"):
        build_metrics_db(metrics, mine_link)
    assert mine_link.is_symlink()
