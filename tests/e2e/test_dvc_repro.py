"""`dvc repro` from a fresh copy of the repository, on the `tiny` profile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.e2e


def sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    """The repository's files (as git sees them: tracked + new, not ignored) in a fresh git repo."""
    dst = tmp_path_factory.mktemp("clone")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file() and not rel.startswith(("data/", "dvc.lock")):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["generate"]["profile"] = "tiny"
    params["train"]["epochs"] = 2
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        sh(cmd, dst)
    return dst


def test_dvc_repro_runs_the_pipeline_then_does_nothing(repo_copy):
    sh(["dvc", "repro"], repo_copy)
    db = repo_copy / "data" / "warehouse.duckdb"
    from micn.data.synthetic import PROFILES

    with duckdb.connect(str(db), read_only=True) as con:
        assert con.sql("select count(*) from reviews where dataset = 'synthetic'").fetchall()[0][0] == PROFILES["tiny"].n_reviews
        assert con.sql("select count(distinct user_id) from reviews").fetchall()[0][0] == PROFILES["tiny"].n_users
        assert con.sql("select count(*) from rejects").fetchall()[0][0] == 0
    # samples and one trained model per backbone, with their metrics
    fmap = json.loads((repo_copy / "data" / "samples" / "synthetic" / "feature_map.json").read_text())
    assert fmap["protocol"] == "dien" and fmap["dataset"] == "synthetic"
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    for backbone in params["grid"]["backbones"]:
        for seed in params["grid"]["seeds"]:
            metrics = json.loads((repo_copy / "runs" / "synthetic" / backbone / "base" / f"seed{seed}" / "metrics.json").read_text())
            assert metrics["backbone"] == backbone and metrics["seed"] == seed
            assert 0.5 < metrics["metrics"]["auc"] <= metrics["metrics"]["oracle_auc"] + 0.05
    shown = sh(["dvc", "metrics", "show"], repo_copy)
    assert "metrics.auc" in shown or "auc" in shown
    # generated data is DVC's, never git's
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo_copy,
                            capture_output=True, text=True).stdout.splitlines()
    untracked_data = [ln for ln in status if ("data/" in ln or ln.endswith(".pt")) and not ln.endswith(".gitignore")]
    assert untracked_data == [], untracked_data
    assert (repo_copy / "dvc.lock").is_file()

    again = sh(["dvc", "repro"], repo_copy)
    assert "Running stage" not in again
    assert "up to date" in sh(["dvc", "status"], repo_copy)
