"""Training: outputs, selection on validation, resume, determinism, bad input, quality on `tiny`;
files it refuses (pickle payloads, truncated samples) and failures it cleans up after (full disk)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from micn.config import MICNConfig, TrainConfig
from micn.data.dataset import SampleSet
from micn.data.feature_map import load_feature_map
from micn.errors import MicnError
from micn.evaluate import auc
from micn.record import GridInfo, RunRecord, read_record
from micn.run import RunConfig, RunPaths, build_model
from micn.train import evaluation_points, predict, train
from tests.helpers import REPO, add_oracle_inputs

FAST = TrainConfig(epochs=3, batch_size=64, patience=100, threads=1)  # never stops early


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def samples(tiny_samples, tiny_warehouse, tiny_world, tmp_path_factory) -> Path:
    """The tiny samples with the oracle's inputs beside them (training reads nothing else)."""
    return add_oracle_inputs(tiny_samples, tiny_warehouse, tiny_world, tmp_path_factory.mktemp("oracle") / "samples")


def fit(samples: Path, backbone: str, out: Path, seed: int, cfg: TrainConfig = FAST, variant: str = "base",
        micn: MICNConfig = MICNConfig(), dataset: str | None = None, **kwargs) -> RunRecord:
    run = RunConfig(backbone=backbone, variant=variant, seed=seed, train=cfg, micn=micn, dataset=dataset)
    return train(run, RunPaths(samples, out), **kwargs)


def test_outputs_and_selection_on_validation(samples, tmp_path):
    result = fit(samples, "wide_deep", tmp_path / "run", seed=3)
    assert read_record(tmp_path / "run" / "metrics.json") == result
    assert {"auc", "gauc", "logloss", "oracle_auc", "valid_auc"} <= set(result.metrics)
    assert (result.dataset, result.protocol, result.backbone, result.variant) == ("tiny", "dien", "wide_deep", "base")
    assert (result.run_id, result.signature, result.status, result.attempts) == (None, None, "ok", 1)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    n_batches = SampleSet.from_parquet(samples / "train.parquet", load_feature_map(samples)).num_batches(64)
    per_epoch = sorted(evaluation_points(n_batches, FAST.evals_per_epoch))
    assert len(per_epoch) == min(FAST.evals_per_epoch, n_batches) and per_epoch[-1] == n_batches
    assert [(h["epoch"], h["step"]) for h in history] == [
        (e, (e - 1) * n_batches + p) for e in (1, 2, 3) for p in per_epoch]  # FAST never stops early
    assert result.epochs == 3 and not any(h["warmup"] for h in history)
    assert sum(h["samples"] for h in history) == 3 * len(SampleSet.from_parquet(samples / "train.parquet",
                                                                                 load_feature_map(samples)))
    best = max(history, key=lambda h: h["valid_auc"])
    assert (result.best_epoch, result.best_step) == (best["epoch"], best["step"])
    assert result.metrics["valid_auc"] == best["valid_auc"]
    assert 0.5 < result.metrics["oracle_auc"] <= 1.0  # synthetic data: the ceiling is known


def test_grid_info_goes_into_the_record(samples, tmp_path):
    grid = GridInfo(run_id="tiny/wide_deep-base-len10-seed3", experiments=("table2",), signature="abc", attempt=2,
                    max_len=10, phi=None)
    record = fit(samples, "wide_deep", tmp_path / "run", seed=3, cfg=dataclasses.replace(FAST, epochs=1), grid=grid)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (written["run_id"], written["experiments"], written["signature"], written["attempts"]) == (
        "tiny/wide_deep-base-len10-seed3", ["table2"], "abc", 2)
    assert read_record(tmp_path / "run" / "metrics.json") == record


def test_model_file_round_trip(samples, tmp_path):
    result = fit(samples, "din", tmp_path / "run", seed=2)
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)  # tensors and plain data only
    fmap = load_feature_map(samples)
    model = build_model("din", fmap, TrainConfig(**saved["config"]))
    model.load_state_dict(saved["model"])
    test = SampleSet.from_parquet(samples / "test.parquet", fmap)
    logits = predict(model, test, 512, torch.device("cpu"))
    assert auc(test.label.numpy(), logits) == pytest.approx(result.metrics["auc"])
    assert saved["variant"] == "base" and saved["micn"] is None


def test_interrupted_run_resumes_to_the_same_result(samples, tmp_path):
    whole = fit(samples, "dien", tmp_path / "whole", seed=5)

    def stop_after_first(epoch, row):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(samples, "dien", tmp_path / "resumed", seed=5, on_epoch_end=stop_after_first)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    resumed = fit(samples, "dien", tmp_path / "resumed", seed=5)
    assert resumed.metrics == whole.metrics
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in h]  # noqa: E731
    history = lambda d: json.loads((tmp_path / d / "history.json").read_text())  # noqa: E731
    assert strip(history("resumed")) == strip(history("whole"))


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam"])
def test_interrupted_micn_run_resumes_its_random_draws(samples, tmp_path, optimizer):
    """MICN's generator state travels in the checkpoint (WithMICN.rng_state), so the resumed
    run draws the same routing logits and candidates as the uninterrupted one; both optimizers'
    states (lazy_adam: the dense and the sparse part) travel too."""
    micn, cfg = MICNConfig(n_neg=20), dataclasses.replace(FAST, optimizer=optimizer)
    whole = fit(samples, "wide_deep", tmp_path / "whole", seed=4, cfg=cfg, variant="micn", micn=micn)

    def stop_after_first(epoch, row):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(samples, "wide_deep", tmp_path / "resumed", seed=4, cfg=cfg, variant="micn", micn=micn,
            on_epoch_end=stop_after_first)
    resumed = fit(samples, "wide_deep", tmp_path / "resumed", seed=4, cfg=cfg, variant="micn", micn=micn)
    assert resumed.metrics == whole.metrics and resumed.params["train"]["optimizer"] == optimizer


def test_checkpoint_of_another_run_is_not_resumed(samples, tmp_path):
    fit(samples, "wide_deep", tmp_path / "run", seed=1)
    other = fit(samples, "wide_deep", tmp_path / "run", seed=2)  # same dir, other seed
    fresh = fit(samples, "wide_deep", tmp_path / "fresh", seed=2)
    assert other.metrics == fresh.metrics and other.epochs == 3


def test_same_seed_same_result_other_seed_differs(samples, tmp_path):
    a = fit(samples, "din", tmp_path / "a", seed=7)
    b = fit(samples, "din", tmp_path / "b", seed=7)
    c = fit(samples, "din", tmp_path / "c", seed=8)
    assert a.metrics == b.metrics
    assert a.metrics["logloss"] != c.metrics["logloss"]


def test_bad_arguments_are_rejected_up_front(samples, tmp_path):
    with pytest.raises(MicnError, match="unknown backbone 'dcn'"):
        fit(samples, "dcn", tmp_path / "r", seed=1)
    with pytest.raises(MicnError, match="unknown variant 'ctrl'; choose one of base, control, micn"):
        fit(samples, "din", tmp_path / "r", seed=1, variant="ctrl")
    with pytest.raises(MicnError, match=r"seed must be an integer in \[0, 9223372036854775807\]"):
        fit(samples, "din", tmp_path / "r", seed=2**64)
    with pytest.raises(MicnError, match="no such samples directory"):
        fit(tmp_path / "missing", "din", tmp_path / "r", seed=1)
    with pytest.raises(MicnError, match="for dataset 'tiny', not 'books'"):
        fit(samples, "din", tmp_path / "r", seed=1, dataset="books")
    broken = tmp_path / "broken"
    shutil.copytree(samples, broken)
    fmap = json.loads((broken / "feature_map.json").read_text())
    fmap["max_len"] = fmap["max_len"] + 5  # a feature map that disagrees with the Parquet files
    (broken / "feature_map.json").write_text(json.dumps(fmap))
    with pytest.raises(MicnError, match="max_len"):
        fit(broken, "din", tmp_path / "r", seed=1)
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)


def test_the_largest_seed_trains(samples, tmp_path):
    record = fit(samples, "wide_deep", tmp_path / "run", seed=2**63 - 1, cfg=dataclasses.replace(FAST, epochs=1),
                 variant="micn", micn=MICNConfig(n_neg=10))
    assert record.seed == 2**63 - 1 and read_record(tmp_path / "run" / "metrics.json").seed == 2**63 - 1


def test_training_reads_only_its_samples_from_any_directory(samples, tmp_path, monkeypatch):
    """No warehouse, no raw folder, another working directory: the record is the same."""
    reference = fit(samples, "wide_deep", tmp_path / "reference", seed=6, cfg=dataclasses.replace(FAST, epochs=1))
    moved = tmp_path / "elsewhere" / "samples"
    shutil.copytree(samples, moved)
    fmap = json.loads((moved / "feature_map.json").read_text())
    fmap["source"] = str(tmp_path / "no" / "warehouse.duckdb")  # a dangling provenance path must not matter
    (moved / "feature_map.json").write_text(json.dumps(fmap))
    monkeypatch.chdir(tmp_path / "elsewhere")
    record = fit(Path("samples"), "wide_deep", Path("run"), seed=6, cfg=dataclasses.replace(FAST, epochs=1))
    assert record.metrics == reference.metrics and record.metrics["oracle_auc"] is not None


def test_checkpoint_with_pickle_payload_is_refused(samples, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state": Payload()}, run_dir / "checkpoint.pt")
    with pytest.raises(MicnError, match=r"checkpoint\.pt: refused to load this checkpoint") as e:
        fit(samples, "wide_deep", run_dir, seed=1)
    assert not marker.exists()
    assert "\n" not in str(e.value)  # one paragraph


def test_full_disk_while_checkpointing_is_one_paragraph_and_leaves_no_partial_file(samples, tmp_path, monkeypatch):
    def full_disk(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"half a checkpoint")  # what a full disk leaves mid-write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(MicnError, match=r"checkpoint\.pt: cannot write the checkpoint \(the disk is full\)") as e:
        fit(samples, "wide_deep", tmp_path / "run", seed=1)
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == []  # no checkpoint.tmp, no checkpoint.pt


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a small tmpfs needs root")
def test_full_disk_on_a_real_small_filesystem_leaves_no_partial_checkpoint(samples, tmp_path):
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("this container may not mount a tmpfs")
    try:
        with pytest.raises(MicnError, match="disk is full"):
            fit(samples, "wide_deep", mnt / "run", seed=1)
        assert not list((mnt / "run").glob("*.tmp"))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_truncated_train_parquet_is_a_clear_error_naming_it(samples, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(samples, broken)
    data = (broken / "train.parquet").read_bytes()
    (broken / "train.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(MicnError, match=r"train\.parquet: cannot read this sample file, it is truncated") as e:
        fit(broken, "din", tmp_path / "r", seed=1)
    assert "\n" not in str(e.value)


def popularity_auc(samples) -> float:
    """Score each test candidate by its number of positive training samples."""
    fmap = load_feature_map(samples)
    train_set = SampleSet.from_parquet(samples / "train.parquet", fmap)
    test = SampleSet.from_parquet(samples / "test.parquet", fmap)
    counts = np.bincount(train_set.item.numpy()[train_set.label.numpy() == 1], minlength=fmap.n_items)
    return auc(test.label.numpy(), counts[test.item.numpy()])


@pytest.mark.parametrize("backbone", ["wide_deep", "din", "dien"])
def test_every_backbone_beats_popularity_on_tiny(samples, tmp_path, backbone):
    cfg = TrainConfig(epochs=15, batch_size=32, patience=15, lr=3e-3, threads=1)
    result = fit(samples, backbone, tmp_path / backbone, seed=1, cfg=cfg)
    assert result.metrics["auc"] > popularity_auc(samples) + 0.02, result.metrics


@pytest.mark.parametrize("backbone", ["wide_deep", "din", "dien"])
def test_every_backbone_trains_with_micn_on_tiny(samples, tmp_path, backbone):
    micn = MICNConfig(phi=0.3, lambda_micn=1.0, n_neg=50)
    result = fit(samples, backbone, tmp_path / "run", seed=1, variant="micn", micn=micn)
    assert result.variant == "micn" and result.params["micn"]["phi"] == 0.3 and result.phi == 0.3
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert all(np.isfinite(h["train_micn"]) and h["train_micn"] > 0 for h in history)
    # (that the MICN loss goes down on a fixed batch is tested in test_with_micn.py; on tiny's ~240
    # positives per epoch it is too noisy to assert here)
    assert all(np.isfinite(v) for v in result.metrics.values() if v is not None)
    assert result.metrics["micn_recall"] is not None and result.metrics["grad_ratio"] is not None
    base = fit(samples, backbone, tmp_path / "base", seed=1, micn=micn)  # variant base ignores the MICN settings
    assert base.variant == "base" and base.params["micn"] is None and base.phi is None
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert saved["variant"] == "micn" and saved["micn"]["phi"] == 0.3 and any(k.startswith("micn.") for k in saved["model"])


def run_cli(*args: str, cwd: Path) -> "subprocess.CompletedProcess[str]":
    """The installed `micn` console script, run from `cwd`."""
    import subprocess
    import sys

    micn = Path(sys.executable).parent / "micn"
    return subprocess.run([str(micn), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_micn_train_and_interests_work_from_outside_the_repository(samples, tmp_path):
    """`micn train` from a folder with no params.yaml, no warehouse and no raw data; then `micn
    interests` finds the run's samples by itself; user errors are one paragraph, exit 2."""
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().replace("epochs: 5", "epochs: 1"))
    out = run_cli("train", "--dataset", "tiny", "--samples", str(samples), "--backbone", "wide_deep", "--variant", "micn",
                  "--seed", "1", "--out", "run", "--params", str(params), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    record = read_record(tmp_path / "run" / "metrics.json")
    assert record.variant == "micn" and record.epochs == 1 and record.metrics["oracle_auc"] is not None
    assert f"test AUC {record.metrics['auc']:.4f}" in out.stdout

    user = SampleSet.from_parquet(samples / "test.parquet", load_feature_map(samples))
    user_id = user.user_ids[user.label.numpy() == 1][0]
    shown = run_cli("interests", "--run", "run", "--user", user_id, "--items", "2", cwd=tmp_path)
    assert shown.returncode == 0 and "capsule 0" in shown.stdout, shown.stderr

    torch.save({"model": {}, "backbone": "din", "variant": "base", "config": {"d_item": 18, "d_category": 18},
                "micn": None, "feature_map": load_feature_map(samples).to_json()}, tmp_path / "base.pt")
    refused = run_cli("interests", "--run", "base.pt", "--user", user_id, cwd=tmp_path)
    assert refused.returncode == 2 and "trained without MICN" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    negative = run_cli("interests", "--run", "run", "--user", user_id, "--items", "-5", cwd=tmp_path)
    assert negative.returncode == 2 and "--items" in negative.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a read-only tmpfs needs root")
def test_read_only_run_directory_is_one_paragraph(samples, tmp_path):
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("this container may not mount a tmpfs")
    try:
        with pytest.raises(MicnError, match=r"cannot create the run directory \(the file system is read-only\)"):
            fit(samples, "wide_deep", ro / "run", seed=1)
        subprocess.run(["mount", "-o", "remount,rw", str(ro)], check=True)
        (ro / "run").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        with pytest.raises(MicnError, match=r"checkpoint\.pt: cannot write the checkpoint \(the file system is read-only\)"):
            fit(samples, "wide_deep", ro / "run", seed=1)
    finally:
        subprocess.run(["umount", str(ro)], check=False)


# --- the width-matched control and the learning evidence -------------------------------------------


def test_control_trains_the_joined_width_without_micn(samples, tmp_path):
    """A control run: MICN's width and φ in its record, no capsule network, no L_micn, no MICN evidence."""
    cfg = dataclasses.replace(FAST, epochs=2)
    micn = MICNConfig(phi=0.3, n_neg=20, d_aux=12)
    control = fit(samples, "din", tmp_path / "control", seed=2, cfg=cfg, variant="control", micn=micn)
    assert (control.variant, control.phi, control.params["micn"]["d_aux"]) == ("control", 0.3, 12)
    history = json.loads((tmp_path / "control" / "history.json").read_text())
    assert all("train_micn" not in h and "valid_micn_recall" not in h and "train_grad_ratio" not in h for h in history)
    assert control.metrics["micn_recall"] is None and control.metrics["grad_ratio"] is None
    saved = torch.load(tmp_path / "control" / "model.pt", weights_only=True)
    assert saved["variant"] == "control" and not any(k.startswith("micn.") for k in saved["model"])
    fmap = load_feature_map(samples)
    model = build_model("din", fmap, cfg, micn, variant="control")
    with_micn = build_model("din", fmap, cfg, micn)
    widths = {name: p.shape for name, p in model.named_parameters()}
    assert widths == {name.removeprefix("backbone."): p.shape for name, p in with_micn.named_parameters()
                      if name.startswith("backbone.") and ".micn." not in name} | {
        name: p.shape for name, p in model.named_parameters() if ".e_ctrl." in name}
    assert [p.shape for n, p in model.named_parameters() if ".e_ctrl." in n] == [
        p.shape for n, p in with_micn.named_parameters() if n.startswith("micn.embedding.")]  # e_ctrl is e_aux's shape
    with pytest.raises(MicnError, match="variant control needs the micn section"):
        build_model("din", fmap, cfg, None, variant="control")


def test_learning_evidence_is_recorded_per_epoch_and_at_the_selected_weights(samples, tmp_path):
    """The catalogue-wide evidence (MICN's Recall@K, the capsules) is taken at each epoch's last
    evaluation and on the selected weights; with one evaluation an epoch, the record's values are
    exactly the selected evaluation's (the evidence draws from its own seeded generators)."""
    micn = MICNConfig(n_neg=20, retrieval_k=7)
    several = fit(samples, "dien", tmp_path / "several", seed=3, cfg=dataclasses.replace(FAST, epochs=2), variant="micn",
                  micn=micn)
    history = json.loads((tmp_path / "several" / "history.json").read_text())
    epoch_ends = {max(h["step"] for h in history if h["epoch"] == e) for e in (1, 2)}
    for row in history:
        assert row["train_grad_ratio"] > 0 and row["valid_dien_aux"] > 0
        assert ("valid_micn_recall" in row) == (row["step"] in epoch_ends)
        if row["step"] in epoch_ends:
            assert 0.0 <= row["valid_micn_recall"] <= 1.0 and 0.0 <= row["valid_popularity_recall"] <= 1.0
    assert several.metrics["micn_recall"] is not None and several.metrics["capsule_overlap"] is not None

    cfg = dataclasses.replace(FAST, epochs=2, evals_per_epoch=1)
    result = fit(samples, "dien", tmp_path / "run", seed=3, cfg=cfg, variant="micn", micn=micn)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    best = next(h for h in history if h["step"] == result.best_step)
    m = result.metrics
    assert (m["micn_recall"], m["popularity_recall"], m["dien_aux"], m["grad_ratio"]) == (
        best["valid_micn_recall"], best["valid_popularity_recall"], best["valid_dien_aux"], best["train_grad_ratio"])
    assert (m["capsule_purity"], m["capsule_purity_shuffled"], m["capsule_overlap"]) == (
        best["valid_capsule_purity"], best["valid_capsule_purity_shuffled"], best["valid_capsule_overlap"])
    assert all(0.0 <= m[k] <= 1.0 for k in ("capsule_purity", "capsule_purity_shuffled", "capsule_overlap"))
    assert m["history_only_auc"] is not None and 0.5 < m["history_only_auc"] <= 1.0
    assert result.params["micn"]["retrieval_k"] == 7
    base = fit(samples, "wide_deep", tmp_path / "base", seed=3, cfg=dataclasses.replace(FAST, epochs=1))
    assert [base.metrics[k] for k in ("micn_recall", "popularity_recall", "dien_aux", "grad_ratio", "capsule_purity",
                                      "capsule_overlap")] == [None] * 6


def test_evaluation_evidence_never_changes_training(samples, tmp_path, monkeypatch):
    """The evidence reads the model with its own generators: the run's numbers are identical to a
    run without it, to the last digit (MICN's draws, the batch order and the weights untouched)."""
    import micn.evidence
    import micn.train
    from micn.models.with_micn import WithMICN

    cfg = dataclasses.replace(FAST, epochs=2)
    micn_cfg = MICNConfig(n_neg=20)
    with_evidence = fit(samples, "dien", tmp_path / "with", seed=4, cfg=cfg, variant="micn", micn=micn_cfg)
    monkeypatch.setattr(micn.evidence.Retrieval, "measure", lambda *args, **kwargs: {})
    monkeypatch.setattr(WithMICN, "measure_grad_norms", lambda self, on=True: None)
    monkeypatch.setattr(micn.train, "history_only_auc", lambda *args: None)
    monkeypatch.setattr(micn.train, "capsule_probe", lambda *args: None)
    without = fit(samples, "dien", tmp_path / "without", seed=4, cfg=cfg, variant="micn", micn=micn_cfg)
    keys = ("auc", "gauc", "logloss", "valid_auc", "oracle_auc")
    assert [with_evidence.metrics[k] for k in keys] == [without.metrics[k] for k in keys]
    assert (with_evidence.epochs, with_evidence.best_step) == (without.epochs, without.best_step)
    assert without.metrics["micn_recall"] is None and with_evidence.metrics["micn_recall"] is not None
    curves = [json.loads((tmp_path / d / "history.json").read_text()) for d in ("with", "without")]
    timing = ("seconds", "samples_per_s", "train_grad_ratio")
    for a, b in zip(*curves):
        assert b["train_grad_ratio"] is None and a["train_grad_ratio"] is not None
        assert {k: v for k, v in a.items() if k in b and k not in timing} == {
            k: v for k, v in b.items() if k not in timing}


def test_cli_accepts_every_variant():
    import argparse

    from flows.train import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--dataset", "d", "--samples", "s", "--backbone", "din", "--seed", "1", "--out", "o"]
    assert parser.parse_args([*base, "--variant", "control"]).variant == "control"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--variant", "ctrl"])


def test_dien_aux_activation_reaches_every_variant(samples):
    """train.dien_aux_activation reaches DIEN's aux net in base, control and micn models; the
    default is prelu (it learns, see test_models.py), and `sigmoid` builds exactly the reference's net (no
    parameters of its own activations)."""
    from micn.config import from_mapping

    fmap = load_feature_map(samples)
    assert FAST.dien_aux_activation == "prelu"
    sigmoid = dataclasses.replace(FAST, dien_aux_activation="sigmoid")
    for variant in ("base", "control", "micn"):
        micn = None if variant == "base" else MICNConfig(n_neg=20)
        reference = {n for n, _ in build_model("dien", fmap, sigmoid, micn, variant=variant).named_parameters()}
        learned = {n for n, _ in build_model("dien", fmap, FAST, micn, variant=variant).named_parameters()}
        assert reference <= learned  # the same modules, plus...
        assert learned - reference and all("aux_net" in n for n in learned - reference)  # the PReLU slopes
    assert build_model("din", fmap, sigmoid).__class__ is build_model("din", fmap, FAST).__class__  # DIEN only
    with pytest.raises(MicnError, match=r"train\.dien_aux_activation: input should be 'sigmoid', 'prelu' or 'relu'"):
        from_mapping(TrainConfig, {"dien_aux_activation": "tanh"}, "params.yaml: train")


# --- the training regime: evaluations within an epoch, patience, MICN-only warm-up -----------------


@pytest.mark.parametrize("n, evals, expected", [(10, 5, {2, 4, 6, 8, 10}), (7, 3, {2, 5, 7}), (3, 5, {1, 2, 3}),
                                                (1, 4, {1}), (125, 1, {125})])
def test_evaluation_points_are_evenly_spaced_and_end_the_epoch(n, evals, expected):
    assert evaluation_points(n, evals) == expected


def test_patience_counts_evaluations(samples, tmp_path):
    """Early stopping ends the run mid-epoch once more than `patience` evaluations in a row fail to
    improve; the best evaluation is then exactly patience + 1 rows before the last."""
    cfg = dataclasses.replace(FAST, epochs=6, patience=1, evals_per_epoch=4, lr=3e-2)  # a large lr overfits fast
    result = fit(samples, "din", tmp_path / "run", seed=1, cfg=cfg)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    aucs = [h["valid_auc"] for h in history]
    stopped = result.epochs < 6 or history[-1]["step"] % 4 != 0 or len(history) < 6 * 4
    assert stopped, "the test needs a run that stops early: raise lr"
    assert aucs.index(max(aucs)) == len(aucs) - 2 - cfg.patience
    assert all(a <= max(aucs) for a in aucs[-cfg.patience - 1:])
    assert result.best_step == history[len(aucs) - 2 - cfg.patience]["step"]


def test_micn_warmup_trains_micn_alone_and_is_never_selected(samples, tmp_path):
    """During the warm-up only L_micn updates anything: at the end of the warm-up epoch the
    backbone and e_orig are their initial values, MICN's tables and tower are not; its evaluations
    are recorded (warmup true) and the selected one comes after it."""
    fmap = load_feature_map(samples)
    cfg = dataclasses.replace(FAST, epochs=2, micn_warmup_epochs=1.0)
    micn = MICNConfig(n_neg=20)
    torch.manual_seed(7)
    model = build_model("dien", fmap, cfg, micn)
    # parameters only: the backbone's BatchNorm running statistics do move (its forward runs in train mode)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    seen = {}

    def after_epoch(epoch, row):
        if epoch == 1:
            seen.update(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"])

    result = fit(samples, "dien", tmp_path / "run", seed=7, cfg=cfg, variant="micn", micn=micn, on_epoch_end=after_epoch)
    trained = {k for k, v in initial.items() if not torch.equal(v, seen[k])}
    assert trained and all(k.startswith("micn.") for k in trained), sorted(trained)
    assert any(k.startswith("micn.tower") for k in trained) and any(k.startswith("micn.embedding") for k in trained)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["warmup"] for h in history] == [h["epoch"] == 1 for h in history]
    assert all(h["train_micn"] > 0 for h in history)
    selected = next(h for h in history if h["step"] == result.best_step)
    assert not selected["warmup"] and result.best_epoch == 2


def test_warmup_that_leaves_no_joint_step_is_refused(samples, tmp_path):
    cfg = dataclasses.replace(FAST, epochs=2, micn_warmup_epochs=2.0)
    with pytest.raises(MicnError, match="train.micn_warmup_epochs = 2 leaves no step"):
        fit(samples, "din", tmp_path / "run", seed=1, cfg=cfg, variant="micn", micn=MICNConfig(n_neg=20))
    assert fit(samples, "din", tmp_path / "base", seed=1, cfg=dataclasses.replace(cfg, epochs=2), variant="base").epochs == 2
