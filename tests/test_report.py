"""metrics/metrics.duckdb from per-run files, its paper views against a reference computation,
and the markdown/PNG report."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from datetime import datetime

import duckdb
import numpy as np
import polars as pl
import pytest
from scipy import stats

from micn.config import MICNConfig, TrainConfig
from micn.errors import MicnError
from micn.record import METRIC_KEYS, RunRecord, write_record
from micn.report import FIGURES, build_metrics_db, write_report

RNG = np.random.default_rng(0)


def record(dataset, backbone, variant, seed, auc, max_len=20, phi=None, experiments=("table2",), status="ok",
           **evidence):
    name = f"{backbone}-{variant}{'' if phi is None else f'-phi{phi:g}'}-len{max_len}-seed{seed}"
    r = {"run_id": f"{dataset}/{name}", "dataset": dataset, "protocol": "dien", "backbone": backbone,
         "variant": variant, "seed": seed, "max_len": max_len, "phi": phi, "experiments": list(experiments),
         "status": status, "error": None, "attempts": 1,
         "params": {"train": {"lr": 1e-3, "batch_size": 256, "epochs": 5}, "micn": None, "max_len": max_len,
                    "samples_seed": 2022},
         "metrics": None if auc is None else {"auc": auc, "gauc": auc - 0.01, "logloss": 0.5, "oracle_auc": 0.94,
                                              "valid_auc": auc, **evidence},
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


@pytest.fixture()
def control_dir(tmp_path):
    """DIN over 4 seeds as base, control (φ 0.3) and micn (φ 0.3) in tables 2 and 3, micn at φ 0.7 in
    table 3 only (paired with the one control φ), with learning evidence; DIEN base/micn whose
    auxiliary loss stays at 2 ln 2."""
    d = tmp_path / "metrics"
    rng = np.random.default_rng(1)
    aucs = {}
    for seed in (1, 2, 3, 4):
        base = 0.85 + rng.normal(0, 0.01)
        runs = {("base", None): base, ("control", 0.3): base + 0.004 + rng.normal(0, 0.002),
                ("micn", 0.3): base + 0.006 + rng.normal(0, 0.002), ("micn", 0.7): base + 0.002 + rng.normal(0, 0.002)}
        for (variant, phi), auc in runs.items():
            aucs[(variant, phi, seed)] = auc
            evidence = {"history_only_auc": 0.92}
            if variant == "micn":  # seed 1's capsules retrieve no better than popularity
                evidence |= {"micn_recall": 0.05 if seed == 1 else 0.2, "popularity_recall": 0.1, "grad_ratio": 2.0}
            exps = ("table3",) if phi == 0.7 else ("table2", "table3")
            write_run(d, record("synthetic", "din", variant, seed, auc, phi=phi, experiments=exps, **evidence))
        for variant, phi in (("base", None), ("micn", 0.3)):
            write_run(d, record("synthetic", "dien", variant, seed, base, phi=phi, dien_aux=1.3863,
                                history_only_auc=0.92))
    return d, aucs


def _interval(diffs):
    half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
    return pytest.approx(diffs.mean()), pytest.approx(diffs.mean() - half), pytest.approx(diffs.mean() + half)


def test_both_paired_lifts_match_a_reference_computation(control_dir, tmp_path):
    d, aucs = control_dir
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
    assert (t2["control"]["n_pairs"], lift(t2["control"])) == (4, _interval(control - base))  # control − base
    assert lift(t2["control"], "_control") == (None, None, None) and t2["control"]["control_phi"] is None
    assert t2["control"]["history_only_auc"] == pytest.approx(0.92)
    micn_row = t2["micn"]
    assert (micn_row["n_pairs"], lift(micn_row)) == (4, _interval(micn[0.3] - base))  # micn − base
    assert (micn_row["control_phi"], micn_row["n_pairs_control"], lift(micn_row, "_control")) == (
        0.3, 4, _interval(micn[0.3] - control))  # micn − control
    assert micn_row["micn_recall_mean"] == pytest.approx((0.05 + 0.2 * 3) / 4)
    assert micn_row["popularity_recall_mean"] == pytest.approx(0.1) and micn_row["grad_ratio_mean"] == 2.0
    # Table 3: one control φ for the sweep, so micn at φ 0.7 is paired with the control at φ 0.3
    sweep = t3[("micn", 0.7)]
    assert (sweep["n_pairs"], lift(sweep)) == (4, _interval(micn[0.7] - base))
    assert (sweep["control_phi"], sweep["n_pairs_control"], lift(sweep, "_control")) == (
        0.3, 4, _interval(micn[0.7] - control))
    assert set(t3) == {("base", None), ("control", 0.3), ("micn", 0.3), ("micn", 0.7)}


def test_control_pairs_its_own_phi_when_the_experiment_has_several(control_dir, tmp_path):
    d, aucs = control_dir
    for seed in (1, 2, 3, 4):  # a second control φ: micn at 0.7 now pairs with the control at 0.7
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


def test_report_shows_both_lifts_the_ceilings_and_says_when_an_aux_task_has_not_learned(control_dir, tmp_path):
    d, _ = control_dir
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


def test_no_warning_when_every_aux_task_learned(control_dir, tmp_path):
    d, _ = control_dir
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
    with pytest.raises(MicnError, match="zz-stray.json: .*run record"):
        build_metrics_db(d, db)
    assert db.read_bytes() == before
    bad.write_text(json.dumps({"run_id": "synthetic/zz-stray", "metrics": {"auc": 0.7}}))  # no status
    with pytest.raises(MicnError, match="zz-stray.json: .*missing; it is not a run record"):
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


# --- records are checked, not trusted (issue 13 §4) ---------------------------------------------


def built(metrics_dir, tmp_path):
    """The fixture's database, built once, and its bytes (a failed rebuild must leave them as they are)."""
    d, _ = metrics_dir
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    return d, db, db.read_bytes()


def test_a_copy_of_a_record_under_another_name_is_an_error_naming_both_files(metrics_dir, tmp_path):
    d, db, before = built(metrics_dir, tmp_path)
    original = d / "runs" / "synthetic" / "dien-base-len20-seed1.json"
    copy = d / "runs" / "synthetic" / "dien-base-len20-seed1 (copy).json"
    shutil.copy(original, copy)
    with pytest.raises(MicnError) as e:
        build_metrics_db(d, db)
    assert str(original) in str(e.value) and str(copy) in str(e.value) and "synthetic/dien-base-len20-seed1" in str(e.value)
    assert db.read_bytes() == before


def test_a_record_under_another_runs_path_is_refused(metrics_dir, tmp_path):
    d, db, before = built(metrics_dir, tmp_path)
    path = d / "runs" / "synthetic" / "dien-base-len20-seed1.json"
    moved = path.with_name("dien-base-len20-seed9.json")
    path.rename(moved)
    with pytest.raises(MicnError, match=r"dien-base-len20-seed9.json: holds run_id 'synthetic/dien-base-len20-seed1'"):
        build_metrics_db(d, db)
    assert db.read_bytes() == before


@pytest.mark.parametrize(("key", "value"), [("auc", 7.5), ("gauc", -0.1), ("logloss", -1.0), ("auc", None)])
def test_a_metric_out_of_range_is_refused_naming_file_and_key(metrics_dir, tmp_path, key, value):
    d, db, before = built(metrics_dir, tmp_path)
    path = d / "runs" / "synthetic" / "dien-base-len20-seed2.json"
    r = json.loads(path.read_text())
    r["metrics"][key] = value
    path.write_text(json.dumps(r))
    with pytest.raises(MicnError, match=rf"dien-base-len20-seed2.json: metrics.{key} = "):
        build_metrics_db(d, db)
    assert db.read_bytes() == before


def test_an_empty_record_is_an_error_not_a_skip(metrics_dir, tmp_path):
    d, db, before = built(metrics_dir, tmp_path)
    empty = d / "runs" / "synthetic" / "wide_deep-base-len20-seed1.json"
    empty.write_bytes(b"")
    with pytest.raises(MicnError, match="wide_deep-base-len20-seed1.json: the run record is empty"):
        build_metrics_db(d, db)
    assert db.read_bytes() == before


@pytest.mark.parametrize("text", ['[{"epoch": 1, "valid_auc": 0.7}, {"epoch": 2,', "", '{"epoch": 1}', '[{"epoch": "one"}]'])
def test_a_malformed_learning_curve_is_one_paragraph_naming_the_file(metrics_dir, tmp_path, text):
    d, db, before = built(metrics_dir, tmp_path)
    curve = d / "history" / "synthetic" / "dien-base-len20-seed1.json"
    curve.write_text(text)
    with pytest.raises(MicnError) as e:
        build_metrics_db(d, db)
    message = str(e.value)
    assert message.startswith(f"{curve}: ") and "\n" not in message and "rerun the grid" in message
    assert db.read_bytes() == before and not any(p.name.endswith(".tmp") for p in db.parent.iterdir())


def test_db_path_that_is_not_a_database_is_not_replaced(metrics_dir, tmp_path):
    d, _ = metrics_dir
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(MicnError, match="notes.txt: not a DuckDB database"):
        build_metrics_db(d, notes)
    assert notes.read_text() == "my notes\n"
    with pytest.raises(MicnError, match="is a directory"):
        build_metrics_db(d, tmp_path)


# --- the report owns only its figures (issue 13 §2) -----------------------------------------------


def test_report_leaves_user_pngs_alone(metrics_dir, tmp_path):
    d, _ = metrics_dir
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    figures = tmp_path / "reports" / "figures"
    figures.mkdir(parents=True)
    mine = {name: f"user bytes {name}".encode() for name in ("my_poster.png", "auc_by_backbone_v1.png", "notes.PNG")}
    for name, data in mine.items():
        (figures / name).write_bytes(data)
    for run in (d / "runs" / "synthetic").glob("*phi0.7*"):  # Table 3 is no longer in the grid...
        run.unlink()
    for run in (d / "history" / "synthetic").glob("*phi0.7*"):
        run.unlink()
    for run in (d / "runs" / "synthetic").glob("dien-*.json"):
        r = json.loads(run.read_text())
        r["experiments"] = [e for e in r["experiments"] if e != "table3"]
        run.write_text(json.dumps(r))
    (figures / "phi_sweep.png").write_bytes(b"the report's own figure of an earlier grid")
    build_metrics_db(d, db)
    report = write_report(db, tmp_path / "reports")
    assert not (figures / "phi_sweep.png").exists()  # ...so its stale figure goes
    assert {p.name for p in report.figures} == {"auc_by_backbone.png", "learning_curves.png", "max_len.png"}
    assert {name: (figures / name).read_bytes() for name in mine} == mine
    assert set(FIGURES) >= {p.name for p in report.figures}


# --- the run record and the metrics SQL cannot drift (issue 10 §2) --------------------------------

# RunRecord field -> the `runs` columns it fills, as (column, how the value is found in the record).
PARAM_COLUMNS = {
    "samples_seed": ("samples_seed",), "lr": ("train", "lr"), "batch_size": ("train", "batch_size"),
    "max_epochs": ("train", "epochs"), "patience": ("train", "patience"), "d_item": ("train", "d_item"),
    "evals_per_epoch": ("train", "evals_per_epoch"), "micn_warmup_epochs": ("train", "micn_warmup_epochs"),
    "d_category": ("train", "d_category"), "dien_aux_weight": ("train", "dien_aux_weight"),
    "dien_aux_activation": ("train", "dien_aux_activation"),
    "micn_d_aux": ("micn", "d_aux"), "micn_k_max": ("micn", "k_max"), "micn_iterations": ("micn", "iterations"),
    "micn_pow_p": ("micn", "pow_p"), "micn_n_neg": ("micn", "n_neg"), "micn_sampler": ("micn", "sampler"),
    "lambda_micn": ("micn", "lambda_micn"), "micn_routing_std": ("micn", "routing_std"),
    "micn_user_profile": ("micn", "user_profile"), "micn_post_layers": ("micn", "post_layers"),
    "micn_retrieval_k": ("micn", "retrieval_k"),
}
METRIC_COLUMNS = METRIC_KEYS
NESTED = {"metrics": METRIC_COLUMNS, "params": ("params", *PARAM_COLUMNS)}


def _dig(value, keys):
    for key in keys:
        value = None if value is None else value.get(key)
    return value


def expected_columns(r: RunRecord) -> dict:
    """The row `runs` must hold for record `r`, column by column."""
    row = {f.name: getattr(r, f.name) for f in dataclasses.fields(RunRecord) if f.name not in NESTED}
    row.update(started=datetime.fromisoformat(r.started) if r.started else None,
               finished=datetime.fromisoformat(r.finished) if r.finished else None)
    row.update({m: _dig(r.metrics, [m]) for m in METRIC_COLUMNS})
    row.update({column: _dig(r.params, keys) for column, keys in PARAM_COLUMNS.items()})
    row["params"] = r.params
    return row


def agreement_records() -> list[RunRecord]:
    """An ok MICN run, an ok base run on real data (no oracle) and a failed run, every value distinct."""
    train = dataclasses.asdict(TrainConfig(lr=0.002, batch_size=128, epochs=7, patience=3, d_item=12, d_category=6,
                                           dien_aux_weight=0.5, dien_aux_activation="relu", evals_per_epoch=4,
                                           micn_warmup_epochs=1.5))
    micn = dataclasses.asdict(MICNConfig(d_aux=20, k_max=3, iterations=2, pow_p=1.5, n_neg=40, sampler="uniform",
                                         lambda_micn=0.25, phi=0.4, routing_std=0.5, user_profile=True,
                                         post_layers=(64, 32), retrieval_k=20))
    micn = json.loads(json.dumps(micn))  # as a record file holds it: post_layers a list
    ok = RunRecord(
        run_id="synthetic/dien-micn-phi0.4-len20-seed7", dataset="synthetic", protocol="dien", backbone="dien",
        variant="micn", seed=7, max_len=20, phi=0.4, experiments=["table2", "table3"], status="ok", error=None,
        traceback=None, attempts=2, signature="5f0c", params={"train": train, "micn": micn, "max_len": 20, "samples_seed": 11},
        metrics={"auc": 0.81, "gauc": 0.79, "logloss": 0.47, "oracle_auc": 0.93, "valid_auc": 0.8,
                 "history_only_auc": 0.91, "micn_recall": 0.12, "popularity_recall": 0.07, "dien_aux": 1.21,
                 "grad_ratio": 2.5, "capsule_purity": 0.64, "capsule_purity_shuffled": 0.47,
                 "capsule_overlap": 0.23}, epochs=5,
        best_epoch=4, best_step=3210, train_seconds=12.5, samples_per_s=3456.7, device="cpu", git_revision="deadbeef",
        started="2026-11-27T10:00:00+00:00", finished="2026-11-27T10:01:02+00:00", kappa=0.35)
    real = dataclasses.replace(ok, run_id="books/din-base-len10-seed3", dataset="books", protocol="din", backbone="din",
                               variant="base", seed=3, max_len=10, phi=None, experiments=["table2"], attempts=1,
                               params={"train": train, "micn": None, "max_len": 10, "samples_seed": 12},
                               metrics={"auc": 0.7, "gauc": 0.69, "logloss": 0.55, "oracle_auc": None, "valid_auc": 0.71},
                               best_step=None, kappa=None, ablation="one_category")  # an older record: no step
    failed = RunRecord(
        run_id="synthetic/wide_deep-micn-phi0.4-len20-seed8", dataset="synthetic", protocol=None, backbone="wide_deep",
        variant="micn", seed=8, max_len=20, phi=0.4, experiments=["table2"], status="failed",
        error="RuntimeError: boom", traceback="Traceback (most recent call last): ...", attempts=3, signature="77aa",
        params={"train": train, "micn": micn, "max_len": 20}, metrics=None)
    return [ok, real, failed]


def test_every_run_record_field_has_its_column(tmp_path):
    """Records written by micn.record, loaded through sql/metrics: each RunRecord field lands in its
    column(s) with its value, and each column of `runs` comes from a field (so no stale column such
    as `micn_lambda` survives a rename)."""
    records = agreement_records()
    for r in records:
        write_record(tmp_path / "metrics" / "runs" / f"{r.run_id}.json", r)
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(tmp_path / "metrics", db)
    with duckdb.connect(str(db), read_only=True) as con:
        rel = con.sql("select * from runs order by run_id")
        columns, rows = rel.columns, rel.fetchall()
    expected = {r.run_id: expected_columns(r) for r in records}
    assert set(columns) == set(next(iter(expected.values()))) | {"source_file"}
    assert "lambda_micn" in columns and "micn_lambda" not in columns
    for values in rows:
        row = dict(zip(columns, values))
        row["params"] = json.loads(row["params"])
        assert row.pop("source_file").endswith(f"{row['run_id']}.json")
        assert row == expected[row["run_id"]]


# --- capsule evidence, per-evaluation history rows (issue 11) ---------------------------------------


def capsule_run(d, seed, purity, shuffled, overlap, backbone="din", phi=0.3, steps=True):
    """A synthetic MICN run with capsule evidence in its record and (per evaluation) in its history."""
    r = record("synthetic", backbone, "micn", seed, 0.8 + 0.001 * seed, phi=phi, micn_recall=0.3,
               popularity_recall=0.1, capsule_purity=purity, capsule_purity_shuffled=shuffled, capsule_overlap=overlap)
    r["best_step"] = 200 if steps else None
    write_run(d, r)
    rows = [{"epoch": 1 + i // 2, **({"step": 100 * (i + 1), "warmup": i == 0} if steps else {}),
             "valid_auc": 0.7 + 0.01 * i, "valid_capsule_purity": purity - 0.01 * (3 - i),
             "valid_capsule_purity_shuffled": shuffled, "valid_capsule_overlap": overlap} for i in range(4)]
    (d / "history" / f"{r['run_id']}.json").write_text(json.dumps(rows))
    return r


def test_capsule_evidence_and_steps_reach_runs_history_and_paper_cells(tmp_path):
    d = tmp_path / "metrics"
    for seed, purity in ((1, 0.70), (2, 0.60)):
        capsule_run(d, seed, purity, 0.50, 0.20 + 0.1 * seed)
    old = record("synthetic", "din", "base", 1, 0.79)  # an older run: per-epoch history, no step
    write_run(d, old)
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
    base = [h for h in history if h[0] == old["run_id"]]
    assert [h[1:] for h in base] == [(e, None, None, None, None, None) for e in (1, 2, 3)]  # old rows: nulls
    seed1 = [h[1:] for h in history if h[0] == "synthetic/din-micn-phi0.3-len20-seed1"]
    assert seed1 == [(1, 100, True, pytest.approx(0.67), 0.5, pytest.approx(0.3)),
                     (1, 200, False, pytest.approx(0.68), 0.5, pytest.approx(0.3)),
                     (2, 300, False, pytest.approx(0.69), 0.5, pytest.approx(0.3)),
                     (2, 400, False, pytest.approx(0.70), 0.5, pytest.approx(0.3))]
    assert cell == [(pytest.approx(0.65), pytest.approx(0.5), pytest.approx(0.35), 200.0)]


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


def test_learning_curves_plot_against_the_step_where_the_history_has_one(tmp_path, monkeypatch):
    from micn import report

    d = tmp_path / "metrics"
    capsule_run(d, 1, 0.7, 0.5, 0.2)  # steps 100..400
    write_run(d, record("synthetic", "din", "base", 1, 0.79))  # epochs 1..3, no step
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    drawn = []
    real_plot = report.plt.Axes.plot

    def plot(ax, *args, **kwargs):
        if len(args) >= 2 and len(args[0]):
            drawn.append((list(args[0]), kwargs.get("mfc")))
        return real_plot(ax, *args, **kwargs)

    monkeypatch.setattr(report.plt.Axes, "plot", plot)
    figure = write_report(db, tmp_path / "reports").figures
    assert any(f.name == "learning_curves.png" for f in figure)
    assert ([100, 200, 300, 400], None) in drawn  # the MICN run against its steps
    assert ([100], "white") in drawn  # its warm-up evaluation, hollow
    assert ([1, 2, 3], None) in drawn  # the older run falls back to its epochs


@pytest.mark.parametrize(("row", "message"), [
    ({"epoch": 1, "step": "100"}, r"row 0: `step` = \"100\" is not an integer"),
    ({"epoch": 1, "step": 1.5}, r"row 0: `step` = 1.5 is not an integer"),
    ({"epoch": 1, "step": 10, "warmup": "yes"}, r"row 0: `warmup` = \"yes\" is not true or false"),
])
def test_a_learning_curve_with_a_bad_step_or_warmup_is_refused(metrics_dir, tmp_path, row, message):
    d, db, before = built(metrics_dir, tmp_path)
    curve = d / "history" / "synthetic" / "dien-base-len20-seed1.json"
    curve.write_text(json.dumps([row]))
    with pytest.raises(MicnError, match=message):
        build_metrics_db(d, db)
    assert db.read_bytes() == before


# --- the mechanism experiment's view and section (issue 12 §2) ---------------------------------------


def mechanism_run(d, kappa, backbone, variant, seed, auc, ablation=None):
    dataset = "synthetic" if kappa == 1.0 else f"synthetic-kappa{kappa:g}".replace(".", "p")
    phi = None if variant == "base" else 0.3
    r = record(dataset, backbone, variant, seed, auc, phi=phi,
               experiments=("mechanism", "table2") if kappa == 1.0 and ablation is None else ("mechanism",),
               history_only_auc=0.9 - 0.01 * kappa, **({"micn_recall": 0.3, "popularity_recall": 0.2}
                                                        if variant == "micn" else {}))
    if ablation:
        r["run_id"] = r["run_id"].replace("-base-", f"-base-{ablation}-")
    r.update(kappa=kappa, ablation=ablation)
    r["metrics"]["oracle_auc"] = 0.95 - 0.02 * kappa
    write_run(d, r)


def test_paper_mechanism_matches_a_reference_computation(tmp_path):
    """Hand-made records over two worlds: MICN − control per κ and backbone, ablation − base for DIN,
    each with the 95 % t interval of numpy/SciPy; the section and the figure in the report."""
    d = tmp_path / "metrics"
    seeds = (1, 2, 3, 4)
    aucs = {}
    for kappa in (1.0, 0.5):
        for backbone in ("din", "dien"):
            for variant in ("base", "control", "micn"):
                for seed in seeds:
                    aucs[kappa, backbone, variant, None, seed] = auc = float(RNG.uniform(0.80, 0.90))
                    mechanism_run(d, kappa, backbone, variant, seed, auc)
        for ablation in ("no_item_ids", "one_category"):
            for seed in seeds:
                aucs[kappa, "din", "base", ablation, seed] = auc = float(RNG.uniform(0.70, 0.80))
                mechanism_run(d, kappa, "din", "base", seed, auc, ablation)
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql("select * from paper_mechanism").pl().to_dicts()
        t2 = con.sql("select * from paper_table2").pl()
    assert [(r["kappa"], r["backbone"], r["variant"], r["ablation"]) for r in rows] == [
        (k, b, v, a) for k in (1.0, 0.5) for b in ("din", "dien")
        for v, a in [("base", None), *((("base", x) for x in ("no_item_ids", "one_category")) if b == "din" else ()),
                     ("control", None), ("micn", None)]]
    series = lambda k, b, v, a=None: np.array([aucs[k, b, v, a, s] for s in seeds])  # noqa: E731
    for r in rows:
        k, b, v, a = r["kappa"], r["backbone"], r["variant"], r["ablation"]
        assert r["auc_mean"] == pytest.approx(series(k, b, v, a).mean()) and r["n_runs"] == 4
        assert r["oracle_auc"] == pytest.approx(0.95 - 0.02 * k) and r["history_only_auc"] == pytest.approx(0.9 - 0.01 * k)
        lift = (r["lift_mean"], r["lift_ci_low"], r["lift_ci_high"])
        if v == "base" and a is None:
            assert lift == (None, None, None)
        else:  # control − base, micn − base, ablation − base (the unablated base of the same seed)
            assert lift == _interval(series(k, b, v, a) - series(k, b, "base"))
        control = (r["lift_control_mean"], r["lift_control_ci_low"], r["lift_control_ci_high"])
        if v == "micn":
            assert control == _interval(series(k, b, "micn") - series(k, b, "control"))
            assert r["micn_recall_mean"] == pytest.approx(0.3)
        else:
            assert control == (None, None, None)
    assert t2.height == 6 and set(t2["dataset"]) == {"synthetic"}  # κ = 1 cells are Table 2's too, no ablations
    assert t2.filter(pl.col("variant") == "base")["auc_mean"].to_list() == pytest.approx(
        [series(1.0, b, "base").mean() for b in ("din", "dien")])
    report = write_report(db, tmp_path / "reports")
    assert "## Where MICN can help" in report.markdown and "fixed in params.yaml before" in report.markdown
    assert "figures/mechanism.png" in report.markdown
    figure = tmp_path / "reports" / "figures" / "mechanism.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 5000
