"""The ingest and generate flows run through Prefect (a real temporary server), and the CLI contract."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from tests.helpers import REPO, raw_files

pytestmark = pytest.mark.integration


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=300)


def test_flows_run_through_prefect(tmp_path):
    from flows.generate import generate_flow
    from flows.ingest import ingest_flow
    from micn.config import GenerateConfig

    world = tmp_path / "world"
    state = generate_flow(GenerateConfig(profile="tiny", seed=1), str(world), return_state=True)
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


def micn_outside(args: list[str], cwd, **env) -> subprocess.CompletedProcess:
    """The installed `micn` console script run from `cwd` (outside the repository)."""
    import os
    from pathlib import Path

    micn = Path(sys.executable).parent / "micn"
    return subprocess.run([str(micn), *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


def test_user_error_outside_the_repository_is_one_paragraph_without_traceback(tmp_path, tiny_world):
    """A truncated gzip fails inside the Prefect flow: Prefect's task/flow tracebacks stay off the
    terminal, the message is printed once, exit 2; no telemetry errors; `--debug` shows the traceback."""
    reviews, meta = raw_files(tiny_world)
    truncated = tmp_path / "reviews_Broken_5.json.gz"
    truncated.write_bytes(reviews.read_bytes()[: reviews.stat().st_size // 2])
    args = ["ingest", "--dataset", "broken", "--reviews", str(truncated), "--meta", str(meta), "--db",
            str(tmp_path / "w.duckdb")]
    out = micn_outside(args, tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "telemetry" not in out.stderr.lower()
    errors = [ln for ln in out.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and errors[0].startswith("micn ingest: error: ") and str(truncated) in errors[0], out.stderr
    debug = micn_outside(["--debug", *args], tmp_path)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_bad_params_file_is_one_paragraph(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().replace("\ntrain:", "\ntrian:").replace("lr: 0.001", "lr: .nan"))
    out = micn_outside(["grid", "--params", str(params), "--root", str(tmp_path)], tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [f"micn grid: error: {params}: unknown section(s) trian; valid sections: "
                                               "generate, datasets, samples, experiments, grid, train, micn."]
    out = micn_outside(["generate", "--profile", "tiny", "--out", str(tmp_path / "w"), "--seed", str(2**64)], tmp_path)
    assert out.returncode == 2 and "--seed" in out.stderr and "Traceback" not in out.stderr


def test_commands_share_one_prefect_server(tmp_path):
    """Two commands in one PREFECT_HOME: the second reuses the first one's server (no second start)."""
    import json

    from flows._prefect import stop_shared_server

    home = tmp_path / "prefect"
    env = {"PREFECT_HOME": str(home), "MICN_PREFECT_IDLE_S": "20"}
    try:
        first = micn_outside(["generate", "--profile", "tiny", "--out", str(tmp_path / "w1"), "--seed", "1"], tmp_path, **env)
        assert first.returncode == 0, first.stderr
        state = json.loads((home / "micn-server" / "state.json").read_text())
        second = micn_outside(["generate", "--profile", "tiny", "--out", str(tmp_path / "w2"), "--seed", "1"], tmp_path, **env)
        assert second.returncode == 0, second.stderr
        assert json.loads((home / "micn-server" / "state.json").read_text()) == state
        assert state["url"].startswith("http://127.0.0.1:")
        from prefect.client.orchestration import get_client  # both runs are in that one server

        async def count() -> int:
            async with get_client(httpx_settings={"base_url": state["url"]}) as client:
                return len(await client.read_flow_runs())

        import asyncio

        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: state["url"]}):
            assert asyncio.run(count()) == 2
        # with no micn process using it, the supervisor stops it after the idle time
        import time

        from flows._prefect import healthy

        deadline = time.monotonic() + 90
        while (home / "micn-server" / "state.json").exists() and time.monotonic() < deadline:
            time.sleep(1)
        assert not (home / "micn-server" / "state.json").exists(), "the idle server did not stop"
        assert not healthy(state["url"])
    finally:
        stop_shared_server(home)


def test_mechanism_worlds_go_through_generate_ingest_and_samples(tmp_path):
    """With the mechanism experiment enabled, `generate --params` writes each κ < 1 world inside the
    synthetic folder, and ingest and samples build every world the sweep trains on."""
    import json

    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["generate"].update(profile="tiny", seed=3)
    params["datasets"]["synthetic"]["max_len"] = 10
    params["experiments"]["mechanism"].update(enabled=True, kappas=[1.0, 0.4])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    raw, db, samples = tmp_path / "raw", tmp_path / "w.duckdb", tmp_path / "samples"
    for args in (["generate", "--params", str(path), "--raw", str(raw), "--out", str(raw / "synthetic")],
                 ["ingest", "--params", str(path), "--raw", str(raw), "--db", str(db)],
                 ["samples", "--params", str(path), "--db", str(db), "--out", str(samples)]):
        out = micn_outside(args, tmp_path)
        assert out.returncode == 0, out.stderr
    world = raw / "synthetic" / "kappa" / "synthetic-kappa0p4"
    assert raw_files(world) and raw_files(raw / "synthetic")
    summary = json.loads((world / "ground_truth" / "world.json").read_text())
    assert summary["profile_params"]["kappa"] == 0.4
    assert "kappa" not in json.loads((raw / "synthetic" / "ground_truth" / "world.json").read_text())["profile_params"]
    with duckdb.connect(str(db), read_only=True) as con:
        assert sorted(r[0] for r in con.sql("select distinct dataset from reviews").fetchall()) == [
            "synthetic", "synthetic-kappa0p4"]
    for dataset in ("synthetic", "synthetic-kappa0p4"):
        fmap = json.loads((samples / dataset / "len10" / "feature_map.json").read_text())
        assert fmap["dataset"] == dataset and fmap["oracle"] == "oracle"
    kappa_world = json.loads((samples / "synthetic-kappa0p4" / "len10" / "oracle" / "world.json").read_text())
    assert kappa_world["profile_params"]["kappa"] == 0.4  # training reads κ from here (micn.train.world_kappa)
