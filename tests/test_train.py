"""Training: outputs, selection on validation, resume, determinism, bad input, quality on `tiny`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from micn.data.dataset import SampleSet, load_feature_map
from micn.errors import MicnError
from micn.evaluate import auc
from micn.train import TrainConfig, build_model, predict, train

FAST = TrainConfig(epochs=3, batch_size=64, patience=5, threads=1)


class Interrupt(Exception):
    pass


def test_outputs_and_selection_on_validation(tiny_samples, tmp_path):
    result = train(tiny_samples, "wide_deep", tmp_path / "run", seed=3, cfg=FAST)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written == result
    assert {"auc", "gauc", "logloss", "oracle_auc", "valid_auc"} <= set(result["metrics"])
    assert (result["dataset"], result["protocol"], result["backbone"], result["variant"]) == ("tiny", "dien", "wide_deep", "base")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3] and result["epochs"] == 3
    best = max(history, key=lambda h: h["valid_auc"])
    assert result["best_epoch"] == best["epoch"] and result["metrics"]["valid_auc"] == best["valid_auc"]
    assert 0.5 < result["metrics"]["oracle_auc"] <= 1.0  # synthetic data: the ceiling is known


def test_model_file_round_trip(tiny_samples, tmp_path):
    result = train(tiny_samples, "din", tmp_path / "run", seed=2, cfg=FAST)
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=False)
    fmap = load_feature_map(tiny_samples)
    model = build_model("din", fmap, TrainConfig(**saved["config"]))
    model.load_state_dict(saved["model"])
    test = SampleSet.from_parquet(tiny_samples / "test.parquet", fmap)
    logits = predict(model, test, 512, torch.device("cpu"))
    assert auc(test.label.numpy(), logits) == pytest.approx(result["metrics"]["auc"])


def test_interrupted_run_resumes_to_the_same_result(tiny_samples, tmp_path):
    whole = train(tiny_samples, "dien", tmp_path / "whole", seed=5, cfg=FAST)

    def stop_after_first(epoch, row):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(tiny_samples, "dien", tmp_path / "resumed", seed=5, cfg=FAST, on_epoch_end=stop_after_first)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    resumed = train(tiny_samples, "dien", tmp_path / "resumed", seed=5, cfg=FAST)
    assert resumed["metrics"] == whole["metrics"]
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in h]  # noqa: E731
    history = lambda d: json.loads((tmp_path / d / "history.json").read_text())  # noqa: E731
    assert strip(history("resumed")) == strip(history("whole"))


def test_checkpoint_of_another_run_is_not_resumed(tiny_samples, tmp_path):
    train(tiny_samples, "wide_deep", tmp_path / "run", seed=1, cfg=FAST)
    other = train(tiny_samples, "wide_deep", tmp_path / "run", seed=2, cfg=FAST)  # same dir, other seed
    fresh = train(tiny_samples, "wide_deep", tmp_path / "fresh", seed=2, cfg=FAST)
    assert other["metrics"] == fresh["metrics"] and other["epochs"] == 3


def test_same_seed_same_result_other_seed_differs(tiny_samples, tmp_path):
    a = train(tiny_samples, "din", tmp_path / "a", seed=7, cfg=FAST)
    b = train(tiny_samples, "din", tmp_path / "b", seed=7, cfg=FAST)
    c = train(tiny_samples, "din", tmp_path / "c", seed=8, cfg=FAST)
    assert a["metrics"] == b["metrics"]
    assert a["metrics"]["logloss"] != c["metrics"]["logloss"]


def test_bad_arguments_are_rejected_up_front(tiny_samples, tmp_path):
    with pytest.raises(MicnError, match="unknown backbone 'dcn'"):
        train(tiny_samples, "dcn", tmp_path / "r", seed=1, cfg=FAST)
    with pytest.raises(MicnError, match="no such samples directory"):
        train(tmp_path / "missing", "din", tmp_path / "r", seed=1, cfg=FAST)
    with pytest.raises(MicnError, match="for dataset 'tiny', not 'books'"):
        train(tiny_samples, "din", tmp_path / "r", seed=1, cfg=FAST, dataset="books")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_samples, broken)
    fmap = json.loads((broken / "feature_map.json").read_text())
    fmap["max_len"] = fmap["max_len"] + 5  # the Parquet files no longer match the feature map
    (broken / "feature_map.json").write_text(json.dumps(fmap))
    with pytest.raises(MicnError, match="max_len"):
        train(broken, "din", tmp_path / "r", seed=1, cfg=FAST)
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)


def popularity_auc(samples) -> float:
    """Score each test candidate by its number of positive training samples."""
    fmap = load_feature_map(samples)
    train_set = SampleSet.from_parquet(samples / "train.parquet", fmap)
    test = SampleSet.from_parquet(samples / "test.parquet", fmap)
    counts = np.bincount(train_set.item.numpy()[train_set.label.numpy() == 1], minlength=fmap["n_items"])
    return auc(test.label.numpy(), counts[test.item.numpy()])


@pytest.mark.parametrize("backbone", ["wide_deep", "din", "dien"])
def test_every_backbone_beats_popularity_on_tiny(tiny_samples, tmp_path, backbone):
    cfg = TrainConfig(epochs=15, batch_size=32, patience=15, lr=3e-3, threads=1)
    result = train(tiny_samples, backbone, tmp_path / backbone, seed=1, cfg=cfg)
    assert result["metrics"]["auc"] > popularity_auc(tiny_samples) + 0.02, result["metrics"]


@pytest.mark.parametrize("backbone", ["wide_deep", "din", "dien"])
def test_every_backbone_trains_with_micn_on_tiny(tiny_samples, tmp_path, backbone):
    from micn.models.micn_aux import MICNConfig

    micn = MICNConfig(enabled=True, phi=0.3, lambda_micn=1.0, n_neg=50)
    result = train(tiny_samples, backbone, tmp_path / "run", seed=1, cfg=FAST, micn=micn)
    assert result["variant"] == "micn" and result["params"]["micn"]["phi"] == 0.3
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert all(np.isfinite(h["train_micn"]) and h["train_micn"] > 0 for h in history)
    # (that the MICN loss goes down on a fixed batch is tested in test_micn.py; on tiny's ~240
    # positives per epoch it is too noisy to assert here)
    assert all(np.isfinite(v) for v in result["metrics"].values())
    base = train(tiny_samples, backbone, tmp_path / "base", seed=1, cfg=FAST)
    assert base["variant"] == "base" and base["params"]["micn"] is None
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=False)
    assert saved["micn"]["enabled"] and any(k.startswith("micn.") for k in saved["model"])
