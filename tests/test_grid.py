"""One run of the grid at a time (micn/grid.py): training, reuse, failure records, pruning,
and determinism when runs share a process's threads."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from micn.experiment import DatasetSpec, Experiment, ExperimentSpec, GridConfig, RunSpec, plan_runs, samples_dir
from micn.grid import failure_record, prune, run_one, samples_hash, write_failure
from micn.models.micn_aux import MICNConfig
from micn.train import TrainConfig


def tiny_experiment(**train) -> Experiment:
    return Experiment(
        datasets={"tiny": DatasetSpec(enabled=True, max_len=10)},
        experiments={"table2": ExperimentSpec(enabled=True, backbones=("din", "dien"))},
        grid=GridConfig(seeds=(1, 2)),
        train=TrainConfig(**{"epochs": 2, "batch_size": 64, "threads": 1, "patience": 5, **train}),
        micn=MICNConfig(n_neg=20),
    )


@pytest.fixture()
def root(tmp_path, tiny_samples):
    """A repository-shaped folder whose data/samples/tiny/len10 is the tiny samples."""
    target = samples_dir(tmp_path, "tiny", 10)
    target.parent.mkdir(parents=True)
    target.symlink_to(tiny_samples, target_is_directory=True)
    return tmp_path


def strip(record: dict) -> dict:
    """A record without what legitimately differs between two trainings of the same run."""
    drop = {"started", "finished", "train_seconds", "samples_per_s", "reused", "attempts"}
    return {k: v for k, v in record.items() if k not in drop}


def test_run_writes_its_files_and_an_unchanged_run_is_reused(root):
    exp = tiny_experiment()
    spec = next(s for s in plan_runs(exp) if s.variant == "micn")
    first = run_one(spec, exp, root)
    assert not first["reused"] and first["status"] == "ok" and first["run_id"] == spec.run_id
    assert first["experiments"] == ["table2"] and first["phi"] == exp.micn.phi and first["max_len"] == 10
    on_disk = json.loads(spec.metrics_path(root).read_text())
    assert on_disk["metrics"] == first["metrics"] and on_disk["signature"] == first["signature"]
    assert len(json.loads(spec.history_path(root).read_text())) == first["epochs"]
    model = spec.model_dir(root) / "model.pt"
    stamp = model.stat().st_mtime_ns

    again = run_one(spec, exp, root)
    assert again["reused"] and again["metrics"] == first["metrics"]
    assert model.stat().st_mtime_ns == stamp  # not retrained

    import micn.grid

    original = micn.grid.code_hash
    try:  # a code change: same settings, so only the grid's signature tells the finished checkpoint apart
        micn.grid.code_hash = lambda: "edited-code"
        epochs_trained = []
        recoded = run_one(spec, exp, root, on_epoch_end=lambda epoch, row: epochs_trained.append(epoch))
    finally:
        micn.grid.code_hash = original
    assert not recoded["reused"] and recoded["signature"] != first["signature"]
    assert epochs_trained == list(range(1, first["epochs"] + 1))  # trained again, not the finished checkpoint resumed

    changed = tiny_experiment(lr=5e-3)  # any training parameter changes the signature
    retrained = run_one(spec, changed, root)
    assert not retrained["reused"] and retrained["signature"] != first["signature"]
    assert retrained["params"]["train"]["lr"] == 5e-3


def test_runs_in_parallel_threads_equal_runs_one_after_another(root, tmp_path_factory):
    """Model init, batch order and MICN's sampling draw from per-run seeds, not from whichever
    thread touched torch's global RNG last."""
    exp = tiny_experiment(epochs=1)
    specs = [s for s in plan_runs(exp) if s.variant == "micn"]  # the runs with training-time randomness
    digest = samples_hash(specs[0].samples_dir(root))
    sequential = {s.run_id: strip(run_one(s, exp, root, digest)) for s in specs}
    other = tmp_path_factory.mktemp("parallel")
    samples_dir(other, "tiny", 10).parent.mkdir(parents=True)
    samples_dir(other, "tiny", 10).symlink_to(specs[0].samples_dir(root).resolve(), target_is_directory=True)
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        parallel = dict(zip([s.run_id for s in specs], pool.map(lambda s: strip(run_one(s, exp, other, digest)), specs)))
    assert parallel == sequential


def test_failure_record_carries_the_error_and_removes_a_stale_curve(root):
    exp = tiny_experiment(epochs=1)
    spec = plan_runs(exp)[0]
    run_one(spec, exp, root)
    try:
        raise RuntimeError("CUDA out of memory (simulated)")
    except RuntimeError as e:
        record = failure_record(spec, exp, e, attempts=3)
    write_failure(spec, root, record)
    stored = json.loads(spec.metrics_path(root).read_text())
    assert stored["status"] == "failed" and stored["attempts"] == 3 and stored["metrics"] is None
    assert stored["error"] == "RuntimeError: CUDA out of memory (simulated)" and "Traceback" in stored["traceback"]
    assert stored["run_id"] == spec.run_id and stored["experiments"] == ["table2"]
    assert not spec.history_path(root).exists()
    # a failed record is never reused: the next grid trains the run again
    assert run_one(spec, exp, root)["reused"] is False


def test_corrupt_checkpoint_is_an_error_naming_the_file(root):
    exp = tiny_experiment(epochs=1)
    spec = plan_runs(exp)[0]
    spec.model_dir(root).mkdir(parents=True)
    (spec.model_dir(root) / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="checkpoint.pt: cannot read the checkpoint"):
        run_one(spec, exp, root)


def test_prune_removes_only_runs_the_grid_no_longer_asks_for(root):
    exp = tiny_experiment(epochs=1)
    planned = plan_runs(exp)
    for spec in planned[:2]:
        run_one(spec, exp, root)
    smaller = dataclasses.replace(exp, grid=GridConfig(seeds=(1,)))
    keep = plan_runs(smaller)
    gone = {s.run_id for s in planned[:2]} - {s.run_id for s in keep}
    assert gone  # the seed-2 run
    assert set(prune(root, keep)) == gone
    for spec in planned[:2]:
        exists = spec.run_id not in gone
        assert spec.metrics_path(root).exists() == exists
        assert spec.history_path(root).exists() == exists
        assert spec.model_dir(root).exists() == exists
    assert prune(root, keep) == []


def test_run_id_names_every_axis():
    spec = RunSpec("books", "dien", "micn", 50, 0.7, 4)
    assert spec.run_id == "books/dien-micn-phi0.7-len50-seed4"
    assert RunSpec("books", "din", "base", 20, None, 1).run_id == "books/din-base-len20-seed1"
