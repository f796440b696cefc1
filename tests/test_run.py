"""`micn.run.other_run`: `micn train --out` never writes over another run's results unasked."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from micn.config import TrainConfig
from micn.data.feature_map import load_feature_map
from micn.run import RunConfig, RunPaths, other_run
from micn.train import train
from tests.helpers import REPO

FAST = TrainConfig(epochs=1, batch_size=64, threads=1)


@pytest.fixture(scope="module")
def finished(tiny_samples, tmp_path_factory):
    """A finished run's folder (wide_deep base, seed 1) and its run."""
    run = RunConfig(backbone="wide_deep", variant="base", seed=1, train=FAST)
    out = tmp_path_factory.mktemp("finished") / "run"
    train(run, RunPaths(tiny_samples, out))
    return run, out


def test_an_empty_folder_or_the_same_run_is_not_another_run(tiny_samples, finished, tmp_path):
    run, out = finished
    fmap = load_feature_map(tiny_samples)
    assert other_run(RunPaths(tiny_samples, tmp_path / "new"), run, fmap) is None
    assert other_run(RunPaths(tiny_samples, out), run, fmap) is None  # the same run: resumed, not refused


@pytest.mark.parametrize("change", [{"seed": 2}, {"variant": "control"}, {"backbone": "din"},
                                    {"train": dataclasses.replace(FAST, lr=0.01)}])
def test_another_runs_record_is_named(tiny_samples, finished, change):
    run, out = finished
    other = other_run(RunPaths(tiny_samples, out), dataclasses.replace(run, **change), load_feature_map(tiny_samples))
    assert other is not None and "another run (wide_deep base seed 1 on tiny" in other


def test_another_runs_checkpoint_without_a_record_is_named(tiny_samples, finished, tmp_path):
    run, out = finished
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    shutil.copy(out / "checkpoint.pt", interrupted / "checkpoint.pt")
    fmap = load_feature_map(tiny_samples)
    assert other_run(RunPaths(tiny_samples, interrupted), run, fmap) is None  # its own checkpoint: resumed
    other = other_run(RunPaths(tiny_samples, interrupted), dataclasses.replace(run, seed=3), fmap)
    assert other == "the checkpoint of another run (other settings, seed or samples)"
    (interrupted / "metrics.json").write_text("not json")
    assert other_run(RunPaths(tiny_samples, interrupted), run, fmap) == "a file metrics.json that is not a run record"


def test_the_command_line_offers_replace():
    import argparse

    from flows.train import add_arguments, job_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--dataset", "d", "--samples", "s", "--backbone", "din", "--seed", "1", "--out", "o",
            "--params", str(REPO / "params.yaml")]
    assert job_from_args(parser.parse_args([*base, "--replace"])).replace
    assert not job_from_args(parser.parse_args(base)).replace
