"""The run record and the metrics SQL cannot drift apart: every `micn.record.RunRecord` field,
written by micn.record and loaded through sql/metrics, lands in its column(s) of `runs`."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import duckdb

from micn.config import MICNConfig, TrainConfig
from micn.record import METRIC_KEYS, RunRecord, write_record
from micn.report.database import build_metrics_db

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
        run_id="synthetic/dien-micn-history-phi0.4-len20-seed7", dataset="synthetic", protocol="dien", backbone="dien",
        variant="micn", seed=7, max_len=20, phi=0.4, experiments=["table2", "table3"], status="ok", error=None,
        traceback=None, attempts=2, signature="5f0c", params={"train": train, "micn": micn, "max_len": 20, "samples_seed": 11},
        metrics={"auc": 0.81, "gauc": 0.79, "logloss": 0.47, "oracle_auc": 0.93, "valid_auc": 0.8,
                 "history_only_auc": 0.91, "micn_recall": 0.12, "popularity_recall": 0.07, "dien_aux": 1.21,
                 "grad_ratio": 2.5, "capsule_purity": 0.64, "capsule_purity_shuffled": 0.47,
                 "capsule_overlap": 0.23}, epochs=5,
        best_epoch=4, best_step=3210, train_seconds=12.5, samples_per_s=3456.7, device="cpu", git_revision="deadbeef",
        started="2026-11-27T10:00:00+00:00", finished="2026-11-27T10:01:02+00:00", kappa=0.35,
        supervision="history")
    real = dataclasses.replace(ok, run_id="books/din-base-len10-seed3", dataset="books", protocol="din", backbone="din",
                               variant="base", seed=3, max_len=10, phi=None, experiments=["table2"], attempts=1,
                               params={"train": train, "micn": None, "max_len": 10, "samples_seed": 12},
                               metrics={"auc": 0.7, "gauc": 0.69, "logloss": 0.55, "oracle_auc": None, "valid_auc": 0.71},
                               best_step=None, kappa=None, ablation="one_category")  # trained per epoch: no step
    failed = RunRecord(
        run_id="synthetic/wide_deep-micn-phi0.4-len20-seed8", dataset="synthetic", protocol=None, backbone="wide_deep",
        variant="micn", seed=8, max_len=20, phi=0.4, experiments=["table2"], status="failed",
        error="RuntimeError: boom", traceback="Traceback (most recent call last): ...", attempts=3, signature="77aa",
        params={"train": train, "micn": micn, "max_len": 20}, metrics=None, supervision="target")
    return [ok, real, failed]


def test_every_run_record_field_has_its_column(tmp_path):
    """Records written by micn.record, loaded through sql/metrics: each RunRecord field lands in its
    column(s) with its value, and each column of `runs` comes from a field (a column that no field
    fills, such as `micn_lambda`, fails the test)."""
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
