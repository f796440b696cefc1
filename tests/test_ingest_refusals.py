"""Refuse rather than lose: a re-ingest that would keep no review, or under SHRINK_FLOOR of the
dataset's reviews, is refused and leaves the warehouse as it was, unless --allow-shrink; the
flag reaches the typed config in both CLI modes, and the CLI refusal exits 2 without a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from micn.data.ingest.load import ingest
from micn.errors import MicnError
from tests.helpers import all_rejected_reviews, db_rows, review_line, warehouse_snapshot, write_lines


# --- refuse rather than lose -------------------------------------------------------------------


def test_reingest_with_every_line_rejected_is_refused_and_keeps_the_existing_rows(tmp_path, meta_2014):
    db = tmp_path / "w.duckdb"
    good = write_lines(tmp_path / "good.json", [review_line(reviewerID=f"A{i}", unixReviewTime=1_163_980_800 + i) for i in range(10)])
    ingest("d", [good], [meta_2014], db)
    before = warehouse_snapshot(db)
    with pytest.raises(MicnError, match="no review was accepted") as e:
        ingest("d", [all_rejected_reviews(tmp_path)], [meta_2014], db)
    message = str(e.value)
    assert "10 rejected" in message and "unixReviewTime is a string" in message and "--allow-shrink" in message
    assert "its 10 reviews" in message and "\n" not in message
    assert warehouse_snapshot(db) == before


def test_reingest_keeping_under_half_the_reviews_is_refused(tmp_path, meta_2014):
    db = tmp_path / "w.duckdb"
    lines = [review_line(reviewerID=f"A{i}", unixReviewTime=1_163_980_800 + i) for i in range(10)]
    ingest("d", [write_lines(tmp_path / "all.json", lines)], [meta_2014], db)
    before = warehouse_snapshot(db)
    four = write_lines(tmp_path / "four.json", lines[:4])  # 4 of 10: under the 50 % floor
    with pytest.raises(MicnError, match="only 4 reviews were accepted, under 50% of the 10"):
        ingest("d", [four], [meta_2014], db)
    assert warehouse_snapshot(db) == before
    five = write_lines(tmp_path / "five.json", lines[:5])  # exactly half is allowed
    assert ingest("d", [five], [meta_2014], db).reviews == 5


def test_allow_shrink_replaces_the_dataset_anyway(tmp_path, meta_2014):
    db = tmp_path / "w.duckdb"
    ingest("d", [write_lines(tmp_path / "good.json", [review_line()])], [meta_2014], db)
    report = ingest("d", [all_rejected_reviews(tmp_path)], [meta_2014], db, allow_shrink=True)
    assert report.reviews == 0 and report.rejects == 10
    assert db_rows(db, "select count(*) from reviews") == [(0,)]


def test_first_ingest_with_no_accepted_review_is_refused_and_leaves_no_warehouse(tmp_path, meta_2014):
    db = tmp_path / "new" / "w.duckdb"
    with pytest.raises(MicnError, match="no review was accepted") as e:
        ingest("d", [all_rejected_reviews(tmp_path)], [meta_2014], db)
    assert "was left as it was" in str(e.value)
    assert not db.exists() and not (tmp_path / "new").exists()


def test_allow_shrink_flag_and_params_mode_build_the_same_typed_config(tmp_path, meta_2014):
    """Flag mode and --params mode give one IngestConfig type; --allow-shrink reaches it."""
    import argparse

    from flows.ingest import IngestConfig, IngestJob, add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser, "ingest")
    reviews = write_lines(tmp_path / "reviews_X_5.json", [review_line()])
    flags = config_from_args(parser.parse_args(
        ["--dataset", "synthetic", "--reviews", str(reviews), "--meta", str(meta_2014), "--db", "w.duckdb", "--allow-shrink"]))
    assert flags == IngestConfig(Path("w.duckdb"), (IngestJob("synthetic", (reviews,), (meta_2014,)),), allow_shrink=True)

    raw = tmp_path / "raw" / "synthetic"
    raw.mkdir(parents=True)
    shutil.copy(reviews, raw / "reviews_X_5.json")
    shutil.copy(meta_2014, raw / "meta_X.json")
    params = tmp_path / "params.yaml"
    params.write_text(Path("params.yaml").read_text())
    from_params = config_from_args(parser.parse_args(
        ["--params", str(params), "--raw", str(tmp_path / "raw"), "--db", "w.duckdb", "--allow-shrink"]))
    assert type(from_params) is type(flags) and from_params.allow_shrink
    assert [(j.dataset, [p.name for p in j.reviews], [p.name for p in j.meta]) for j in from_params.jobs] == [
        ("synthetic", ["reviews_X_5.json"], ["meta_X.json"])]
    with pytest.raises(MicnError, match="drop --dataset"):
        config_from_args(parser.parse_args(["--params", str(params), "--dataset", "x", "--db", "w.duckdb"]))


@pytest.mark.integration
def test_cli_refuses_a_shrinking_reingest_with_exit_2_and_no_traceback(tmp_path, meta_2014):
    import subprocess
    import sys

    db = tmp_path / "w.duckdb"
    ingest("d", [write_lines(tmp_path / "good.json", [review_line(reviewerID=f"A{i}") for i in range(10)])], [meta_2014], db)
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "ingest", "--dataset", "d", "--reviews", str(all_rejected_reviews(tmp_path)),
         "--meta", str(meta_2014), "--db", str(db)],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 2, done.stderr
    assert "no review was accepted" in done.stderr and "--allow-shrink" in done.stderr
    assert "Traceback" not in done.stderr
    assert db_rows(db, "select count(*) from reviews") == [(10,)]
