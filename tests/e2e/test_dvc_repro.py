"""`dvc repro` from a fresh copy of the repository, on the `tiny` profile: the whole experiment,
its metrics database, what reruns after a parameter change, and a missing real dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import yaml

from flows._prefect import stop_shared_server
from tests.helpers import TINY_PIPELINE, copy_repo

pytestmark = pytest.mark.e2e


def sh(cmd: list[str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PREFECT_HOME": str(cwd / ".prefect")}  # the copy's own Prefect home: its server is counted below
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    if ok:
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def stages_run(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Iterator[Path]:
    copy = copy_repo(tmp_path_factory.mktemp("clone"), **TINY_PIPELINE, grid={"seeds": [1, 2]})
    yield copy
    stop_shared_server(copy / ".prefect")


def test_dvc_repro_runs_the_experiment_then_does_nothing(repo_copy):
    done = sh(["dvc", "repro"], repo_copy)
    assert stages_run(done.stdout) == ["generate", "ingest", "samples", "train", "report"]
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    t2 = params["experiments"]["table2"]
    expected_runs = len(t2["backbones"]) * len(t2["variants"]) * len(params["grid"]["seeds"])

    from micn.data.synthetic.profiles import PROFILES

    with duckdb.connect(str(repo_copy / "data" / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("select count(*) from reviews where dataset = 'synthetic'").fetchall()[0][0] == PROFILES["tiny"].n_reviews
    with duckdb.connect(str(repo_copy / "metrics" / "metrics.duckdb"), read_only=True) as con:
        assert con.sql("select count(*), count(*) filter (where status = 'ok') from runs").fetchall()[0] == (
            expected_runs, expected_runs)
        assert con.sql("select count(distinct run_id) from history").fetchall()[0][0] == expected_runs
        cells = con.sql("select backbone, variant, n_runs, auc_mean, oracle_auc, lift_mean, lift_control_mean "
                        "from paper_table2").fetchall()
        assert len(cells) == len(t2["backbones"]) * len(t2["variants"])
        assert all(n == len(params["grid"]["seeds"]) and 0 < auc < 1 and oracle is not None for _, _, n, auc, oracle, *_ in cells)
        assert all((lift is not None) == (variant != "base") for _, variant, _, _, _, lift, _ in cells)
        assert all((lift_c is not None) == (variant == "micn") for _, variant, *_, lift_c in cells)
        assert con.sql("select count(*) from paper_table3").fetchall()[0][0] == 0  # not enabled by default
        runs = con.sql("select protocol, max_len, lr, git_revision, started <= finished from runs").fetchall()
    assert {r[:3] for r in runs} == {("dien", params["datasets"]["synthetic"]["max_len"], params["train"]["lr"])}
    assert all(r[3] and r[4] for r in runs)
    report = (repo_copy / "reports" / "report.md").read_text()
    assert "## Table 2" in report and (repo_copy / "reports" / "figures" / "auc_by_backbone.png").is_file()
    shown = json.loads(sh(["dvc", "metrics", "show", "--json"], repo_copy).stdout)
    assert len(next(iter(shown.values()))["data"]) == expected_runs  # one metrics file per run
    # generated data and models are DVC's, never git's
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo_copy,
                            capture_output=True, text=True).stdout.splitlines()
    assert [ln for ln in status if ("data/" in ln or ln.endswith((".pt", ".png", ".duckdb")))
            and not ln.endswith(".gitignore")] == []

    # Prefect's start-up is paid once: the five stages used one shared server, started by the first
    server_log = (repo_copy / ".prefect" / "micn-server" / "server.log").read_text()
    assert server_log.count("shared Prefect server at") == 1, server_log
    assert "Failed to send telemetry" not in done.stdout + done.stderr

    again = sh(["dvc", "repro"], repo_copy)
    assert stages_run(again.stdout) == []
    # the default pipeline is up to date; studies/electronics/dvc.yaml is its own pipeline (`make electronics`)
    assert "up to date" in sh(["dvc", "status", "dvc.yaml"], repo_copy).stdout


def test_changing_a_training_parameter_reruns_only_training_and_report(repo_copy):
    done = sh(["dvc", "exp", "run", "-S", "train.lr=0.003"], repo_copy)
    assert stages_run(done.stdout) == ["train", "report"]
    with duckdb.connect(str(repo_copy / "metrics" / "metrics.duckdb"), read_only=True) as con:
        assert con.sql("select distinct lr from runs").fetchall() == [(0.003,)]


def test_enabled_real_dataset_without_files_stops_before_any_work(repo_copy, tmp_path):
    copy = copy_repo(tmp_path / "copy", **TINY_PIPELINE, datasets={"electronics.enabled": True})
    done = sh(["dvc", "repro"], copy, ok=False)
    stop_shared_server(copy / ".prefect")
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "datasets.electronics is enabled but data/raw/electronics/reviews_Electronics_5.json.gz (2014)" in out
    assert "data/raw/electronics/meta_Electronics.json.gz" in out
    assert not (copy / "data" / "raw" / "synthetic").exists()  # nothing generated
    assert "Traceback" not in out
