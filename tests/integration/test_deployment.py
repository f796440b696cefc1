"""The scheduled deployment against real components: `prefect server start` on loopback,
`micn serve` registering micn-pipeline/nightly with its cron schedule, one run triggered through
the API and executed by the serve process on the tiny world, its metrics present afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pytest
from prefect.exceptions import ObjectNotFound

from tests.helpers import TINY_PIPELINE, copy_repo

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CRON = "0 3 * * *"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(check, what: str, timeout: float, logs: list[Path]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, OSError, ObjectNotFound):  # not up yet
            pass
        time.sleep(1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


@pytest.fixture()
def server(tmp_path):
    """A real Prefect server on a loopback port with its own home; stopped after the test."""
    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "server.log"
    proc = start([str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                 env, tmp_path, log)
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, "the Prefect server", 180, [log])
        yield url, env, log
    finally:
        stop(proc)


def test_scheduled_deployment_is_registered_and_a_triggered_run_completes(server, tmp_path):
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url, env, server_log = server
    repo = copy_repo(tmp_path / "repo", **TINY_PIPELINE, grid={"seeds": [1]},
                     experiments={"table2.backbones": ["din"]})
    serve_log = tmp_path / "serve.log"
    serve = start([str(Path(sys.executable).parent / "micn"), "serve", "--repo", str(repo), "--cron", CRON],
                  {**env, "PREFECT_API_URL": url}, repo, serve_log)
    logs = [server_log, serve_log]
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            async def deployment():
                async with get_client() as client:
                    d = await client.read_deployment_by_name("micn-pipeline/nightly")
                    return d, await client.read_deployment_schedules(d.id)

            d, schedules = wait_for(lambda: asyncio.run(deployment()), "the deployment", 120, logs)
            assert d.parameters == {"repo": str(repo.resolve())}
            assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in schedules] == [(CRON, "UTC", True)]

            run = run_deployment("micn-pipeline/nightly", timeout=900, poll_interval=3)
            assert run.state.is_completed(), f"{run.state}\n" + "\n".join(p.read_text()[-4000:] for p in logs)
    finally:
        stop(serve)
    with duckdb.connect(str(repo / "metrics" / "metrics.duckdb"), read_only=True) as con:
        assert con.sql("select backbone, variant, status from runs order by all").fetchall() == [
            ("din", "base", "ok"), ("din", "control", "ok"), ("din", "micn", "ok")]
        assert con.sql("select count(*) from paper_table2").fetchall()[0][0] == 3
    assert (repo / "dvc.lock").is_file() and (repo / "reports" / "report.md").is_file()
