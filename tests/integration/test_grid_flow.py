"""The grid flow through Prefect: thread runner vs a real Dask LocalCluster (2 worker processes),
a run that keeps failing, the report flow's database and artifacts, an unreachable cluster."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import yaml

from micn.config import ADDRESS_ENV
from micn.data.layout import samples_dir
from micn.errors import MicnError
from micn.experiment import load_experiment, plan_runs
from micn.record import record_json

pytestmark = pytest.mark.integration

BROKEN = "tiny/din-micn-phi0.3-len10-seed2"  # the run given an unreadable checkpoint


def make_root(tmp_path, tiny_samples, name: str, **grid) -> tuple[str, str]:
    root = tmp_path / name
    target = samples_dir(root, "tiny", 10)
    target.parent.mkdir(parents=True)
    target.symlink_to(tiny_samples, target_is_directory=True)
    params = {
        "datasets": {"tiny": {"enabled": True, "max_len": 10}},
        "experiments": {"table2": {"enabled": True, "backbones": ["wide_deep", "din"], "variants": ["base", "micn"]}},
        "grid": {"seeds": [1, 2], "retries": 1, "retry_delay_s": 0.0, "max_workers": 2, **grid},
        "train": {"epochs": 2, "batch_size": 64, "threads": 1, "patience": 5},
        "micn": {"n_neg": 20},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    broken = root / "models" / BROKEN / "checkpoint.pt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"\x00 torn write")
    return str(root / "params.yaml"), str(root)


def comparable(run, root: str) -> dict:
    """A run's record without timings, with its folder written as <root> (errors name their files)."""
    drop = {"started", "finished", "train_seconds", "samples_per_s", "traceback"}
    out = {k: v for k, v in record_json(run.record).items() if k not in drop}
    if out.get("error"):
        out["error"] = out["error"].replace(root, "<root>")
    return out


@pytest.fixture(scope="module")
def thread_grid(tmp_path_factory, tiny_samples):
    from flows.grid import run_grid

    params, root = make_root(tmp_path_factory.mktemp("threads"), tiny_samples, "repo")
    return params, root, run_grid(params, root)


def test_thread_grid_trains_every_run_and_records_the_failure(thread_grid):
    params, root, out = thread_grid
    planned = plan_runs(load_experiment(params))
    by_id = {r.record.run_id: r.record for r in out.runs}
    assert list(by_id) == [s.run_id for s in planned] and len(planned) == 8
    failed = by_id.pop(BROKEN)
    assert failed.status == "failed" and failed.attempts == 2  # 1 try + grid.retries
    assert "checkpoint.pt" in failed.error and failed.metrics is None and failed.signature
    assert all(r.status == "ok" and 0 < r.metrics["auc"] < 1 for r in by_id.values())
    with open(f"{root}/metrics/runs/{BROKEN}.json") as f:
        on_disk = json.load(f)
    assert on_disk["status"] == "failed" and on_disk["error"] == failed.error


def test_report_flow_builds_the_database_marks_the_failure_and_publishes_artifacts(thread_grid):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.report import report_flow

    _, root, out = thread_grid
    state = report_flow(f"{root}/metrics", f"{root}/metrics/metrics.duckdb", f"{root}/reports", return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["failed"] == [BROKEN] and result["ok"] == 7
    with duckdb.connect(f"{root}/metrics/metrics.duckdb", read_only=True) as con:
        assert con.sql("select count(*) from runs").fetchall()[0][0] == 8
        assert "checkpoint.pt" in con.sql("select error from runs where status = 'failed'").fetchall()[0][0]
        cells = con.sql("select backbone, variant, n_runs, n_failed from paper_table2 order by all").fetchall()
    assert cells == [("din", "base", 2, 0), ("din", "micn", 1, 1), ("wide_deep", "base", 2, 0), ("wide_deep", "micn", 2, 0)]
    md = open(f"{root}/reports/report.md").read()
    assert BROKEN in md and "**1 failed**" in md

    async def artifacts():
        async with get_client() as client:
            flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
            return await client.read_artifacts(artifact_filter=flt)

    import asyncio

    published = {a.key: a for a in asyncio.run(artifacts())}
    assert {"paper-table2", "micn-report"} <= set(published)
    assert published["paper-table2"].type == "table" and published["micn-report"].type == "markdown"
    assert BROKEN in published["micn-report"].data


def test_dask_local_cluster_gives_the_same_results_as_threads(thread_grid, tmp_path_factory, tiny_samples, monkeypatch):
    from distributed import LocalCluster

    from flows.grid import run_grid

    _, thread_root, threads = thread_grid
    params, root = make_root(tmp_path_factory.mktemp("dask"), tiny_samples, "repo")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        monkeypatch.setenv(ADDRESS_ENV, cluster.scheduler_address)  # the environment names the cluster
        out = run_grid(params, root)
    assert [comparable(r, root) for r in out.runs] == [comparable(r, thread_root) for r in threads.runs]
    assert sum(r.record.status == "ok" for r in out.runs) == 7


def test_unreachable_dask_address_fails_fast_and_writes_nothing(tmp_path, tiny_samples, monkeypatch):
    from flows.grid import run_grid

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    params, root = make_root(tmp_path, tiny_samples, "repo", connect_timeout_s=2.0)
    monkeypatch.setenv(ADDRESS_ENV, f"tcp://127.0.0.1:{port}")
    t0 = time.monotonic()
    with pytest.raises(MicnError) as e:
        run_grid(params, root)
    assert f"no Dask scheduler answered at tcp://127.0.0.1:{port} within 2 s" in str(e.value)
    assert time.monotonic() - t0 < 60  # bounded by the timeout, not a hang
    assert not (tmp_path / "repo" / "metrics").exists()


def micn(*args: str, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).parent / "micn"), *args], env=env, capture_output=True, text=True,
                          timeout=300)
    return done, time.monotonic() - t0


def test_grid_ends_within_the_timeout_when_the_cluster_never_answers(tmp_path, tiny_samples, silent_listener):
    """`micn grid` with $MICN_GRID_ADDRESS at a loopback port that accepts and never answers: one
    paragraph and exit 2 within grid.connect_timeout_s plus a small margin (an unbounded wait would hang
    inside the Dask client). The margin is measured: the same command against a closed port, which fails
    at once, gives the start-up time (Python, imports, the Prefect server) that is not a wait."""
    port, accepted = silent_listener
    timeout_s = 3.0
    params, root = make_root(tmp_path, tiny_samples, "repo", connect_timeout_s=timeout_s)
    with socket.socket() as s:  # a port nobody listens on: refused at once
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = {**os.environ, ADDRESS_ENV: f"tcp://127.0.0.1:{closed}"}
    try:
        baseline, startup = micn("grid", "--params", params, "--root", root, env=env)
        env[ADDRESS_ENV] = f"tcp://127.0.0.1:{port}"
        hung, elapsed = micn("grid", "--params", params, "--root", root, env=env)
    finally:
        from flows._prefect import stop_shared_server

        stop_shared_server()  # the one these commands started, if any (PREFECT_HOME is the tests' own)
    assert baseline.returncode == 2, baseline.stderr
    assert hung.returncode == 2 and accepted
    assert elapsed < startup + timeout_s + 5.0, (elapsed, startup)
    message = hung.stderr.strip()
    assert f"no Dask scheduler answered at tcp://127.0.0.1:{port} within 3 s" in message
    assert "Traceback" not in hung.stderr and len(message.splitlines()) == 1
    assert not (tmp_path / "repo" / "metrics").exists()
