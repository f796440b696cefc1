"""Records and learning curves are checked, not trusted: a bad file stops the metrics database
build with a message naming it, and the existing database is left as it is."""

from __future__ import annotations

import json
import shutil

import pytest

from micn.errors import MicnError
from micn.report.database import build_metrics_db


def built(report_metrics_dir, tmp_path):
    """The fixture's database, built once, and its bytes (a failed rebuild must leave them as they are)."""
    d, _ = report_metrics_dir
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    return d, db, db.read_bytes()


def test_bad_record_is_named_and_the_existing_database_survives(report_metrics_dir, tmp_path):
    d, _ = report_metrics_dir
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


def test_a_copy_of_a_record_under_another_name_is_an_error_naming_both_files(report_metrics_dir, tmp_path):
    d, db, before = built(report_metrics_dir, tmp_path)
    original = d / "runs" / "synthetic" / "dien-base-len20-seed1.json"
    copy = d / "runs" / "synthetic" / "dien-base-len20-seed1 (copy).json"
    shutil.copy(original, copy)
    with pytest.raises(MicnError) as e:
        build_metrics_db(d, db)
    assert str(original) in str(e.value) and str(copy) in str(e.value) and "synthetic/dien-base-len20-seed1" in str(e.value)
    assert db.read_bytes() == before


def test_a_record_under_another_runs_path_is_refused(report_metrics_dir, tmp_path):
    d, db, before = built(report_metrics_dir, tmp_path)
    path = d / "runs" / "synthetic" / "dien-base-len20-seed1.json"
    moved = path.with_name("dien-base-len20-seed9.json")
    path.rename(moved)
    with pytest.raises(MicnError, match=r"dien-base-len20-seed9.json: holds run_id 'synthetic/dien-base-len20-seed1'"):
        build_metrics_db(d, db)
    assert db.read_bytes() == before


@pytest.mark.parametrize(("key", "value"), [("auc", 7.5), ("gauc", -0.1), ("logloss", -1.0), ("auc", None)])
def test_a_metric_out_of_range_is_refused_naming_file_and_key(report_metrics_dir, tmp_path, key, value):
    d, db, before = built(report_metrics_dir, tmp_path)
    path = d / "runs" / "synthetic" / "dien-base-len20-seed2.json"
    r = json.loads(path.read_text())
    r["metrics"][key] = value
    path.write_text(json.dumps(r))
    with pytest.raises(MicnError, match=rf"dien-base-len20-seed2.json: record: metrics.{key} = "):
        build_metrics_db(d, db)
    assert db.read_bytes() == before


def test_an_empty_record_is_an_error_not_a_skip(report_metrics_dir, tmp_path):
    d, db, before = built(report_metrics_dir, tmp_path)
    empty = d / "runs" / "synthetic" / "wide_deep-base-len20-seed1.json"
    empty.write_bytes(b"")
    with pytest.raises(MicnError, match="wide_deep-base-len20-seed1.json: the run record is empty"):
        build_metrics_db(d, db)
    assert db.read_bytes() == before


@pytest.mark.parametrize("text", ['[{"epoch": 1, "valid_auc": 0.7}, {"epoch": 2,', "", '{"epoch": 1}', '[{"epoch": "one"}]'])
def test_a_malformed_learning_curve_is_one_paragraph_naming_the_file(report_metrics_dir, tmp_path, text):
    d, db, before = built(report_metrics_dir, tmp_path)
    curve = d / "history" / "synthetic" / "dien-base-len20-seed1.json"
    curve.write_text(text)
    with pytest.raises(MicnError) as e:
        build_metrics_db(d, db)
    message = str(e.value)
    assert message.startswith(f"{curve}: ") and "\n" not in message and "rerun the grid" in message
    assert db.read_bytes() == before and not any(p.name.endswith(".tmp") for p in db.parent.iterdir())


@pytest.mark.parametrize(("row", "message"), [
    ({"epoch": 1, "step": "100"}, r"row 0: `step` = \"100\" is not an integer"),
    ({"epoch": 1, "step": 1.5}, r"row 0: `step` = 1.5 is not an integer"),
    ({"epoch": 1, "step": 10, "warmup": "yes"}, r"row 0: `warmup` = \"yes\" is not true or false"),
])
def test_a_learning_curve_with_a_bad_step_or_warmup_is_refused(report_metrics_dir, tmp_path, row, message):
    d, db, before = built(report_metrics_dir, tmp_path)
    curve = d / "history" / "synthetic" / "dien-base-len20-seed1.json"
    curve.write_text(json.dumps([row]))
    with pytest.raises(MicnError, match=message):
        build_metrics_db(d, db)
    assert db.read_bytes() == before


def test_db_path_that_is_not_a_database_is_not_replaced(report_metrics_dir, tmp_path):
    d, _ = report_metrics_dir
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(MicnError, match="notes.txt: not a DuckDB database"):
        build_metrics_db(d, notes)
    assert notes.read_text() == "my notes\n"
    with pytest.raises(MicnError, match="is a directory"):
        build_metrics_db(d, tmp_path)
