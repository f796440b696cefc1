"""The ingest and generate flows run through Prefect (a real temporary server), and the CLI contract."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from tests.conftest import raw_files

pytestmark = pytest.mark.integration


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=300)


def test_flows_run_through_prefect(tmp_path):
    from flows.generate import generate_flow
    from flows.ingest import ingest_flow

    world = tmp_path / "world"
    state = generate_flow("tiny", str(world), seed=1, return_state=True)
    assert state.is_completed(), state
    reviews, meta = raw_files(world)

    db = tmp_path / "w.duckdb"
    state = ingest_flow("tiny", [str(reviews)], [str(meta)], str(db), return_state=True)
    assert state.is_completed(), state
    report = state.result()
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.sql("select count(*) from reviews").fetchall()[0][0] == report.reviews > 0
        log = con.sql("select lines_read, accepted, rejected, duplicates from ingest_log").fetchall()
    assert all(read == acc + rej + dup for read, acc, rej, dup in log)

    truncated = tmp_path / "reviews_Broken_5.json.gz"
    truncated.write_bytes(reviews.read_bytes()[: reviews.stat().st_size // 2])
    state = ingest_flow("tiny", [str(truncated)], [str(meta)], str(db), return_state=True)
    assert state.is_failed()
    with duckdb.connect(str(db), read_only=True) as con:  # the failed run left the warehouse as it was
        assert con.sql("select count(*) from reviews").fetchall()[0][0] == report.reviews


def test_cli_help_explains_every_option():
    top = run_cli("--help")
    assert top.returncode == 0 and "generate" in top.stdout and "ingest" in top.stdout
    for command, options in {
        "generate": ["--profile", "--out", "--seed", "--format", "--name"],
        "ingest": ["--dataset", "--reviews", "--meta", "--db"],
    }.items():
        out = run_cli(command, "--help")
        assert out.returncode == 0
        for opt in options:
            line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith(opt))
            assert len(line.strip()) > len(opt) + 10 or opt in out.stdout.split(line, 1)[1][:200], (command, opt)


def test_cli_fatal_error_is_one_paragraph_and_nonzero(tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text("{'asin': 'B1', 'categories': [['X']]}\n")
    missing = tmp_path / "reviews_Missing_5.json.gz"
    out = run_cli("ingest", "--dataset", "d", "--reviews", str(missing), "--meta", str(meta), "--db", str(tmp_path / "w.duckdb"))
    assert out.returncode == 2
    assert str(missing) in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1

    empty = tmp_path / "reviews_Empty_5.json"
    empty.write_bytes(b"")
    out = run_cli("ingest", "--dataset", "d", "--reviews", str(empty), "--meta", str(meta), "--db", str(tmp_path / "w.duckdb"))
    assert out.returncode == 2 and str(empty) in out.stderr and "empty" in out.stderr
    assert not (tmp_path / "w.duckdb").exists()
