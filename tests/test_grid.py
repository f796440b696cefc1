"""One run of the grid at a time (micn/grid.py): training, reuse, failure records, pruning,
and determinism when runs share a process's threads."""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from micn.config import DatasetSpec, ExperimentSpec, GridConfig, MICNConfig, TrainConfig
from micn.names import VARIANTS
from micn.data.layout import samples_dir
from micn.experiment import Experiment, RunSpec, plan_runs
from micn.errors import MicnError
from flows._prefect import wait_for_api
from micn.grid import (failure_record, prune, run_one, samples_hash, signature, training_order, wait_for_dask,
                       write_failure)
from micn.record import read_record, record_json, write_record


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


def strip(run) -> dict:
    """A run's record without what legitimately differs between two trainings of the same run."""
    drop = {"started", "finished", "train_seconds", "samples_per_s", "attempts"}
    return {k: v for k, v in record_json(run.record).items() if k not in drop}


def test_run_writes_its_files_and_an_unchanged_run_is_reused(root):
    exp = tiny_experiment()
    spec = next(s for s in plan_runs(exp) if s.variant == "micn")
    run = run_one(spec, exp, root)
    first = run.record
    assert not run.reused and first.status == "ok" and first.run_id == spec.run_id
    assert first.experiments == ["table2"] and first.phi == exp.micn.phi and first.max_len == 10
    on_disk = read_record(spec.metrics_path(root))
    assert on_disk == first and on_disk.signature is not None
    history = json.loads(spec.history_path(root).read_text())  # one row per evaluation
    assert max(h["epoch"] for h in history) == first.epochs and history[-1]["step"] >= first.best_step
    model = spec.model_dir(root) / "model.pt"
    stamp = model.stat().st_mtime_ns

    again = run_one(spec, exp, root)
    assert again.reused and again.record.metrics == first.metrics
    assert model.stat().st_mtime_ns == stamp  # not retrained

    import micn.grid

    original = micn.grid.code_hash
    try:  # a code change: same settings, so only the grid's signature tells the finished checkpoint apart
        micn.grid.code_hash = lambda: "edited-code"
        epochs_trained = []
        recoded = run_one(spec, exp, root, on_epoch_end=lambda epoch, row: epochs_trained.append(epoch))
    finally:
        micn.grid.code_hash = original
    assert not recoded.reused and recoded.record.signature != first.signature
    assert epochs_trained == list(range(1, first.epochs + 1))  # trained again, not the finished checkpoint resumed

    changed = tiny_experiment(lr=5e-3)  # any training parameter changes the signature
    retrained = run_one(spec, changed, root)
    assert not retrained.reused and retrained.record.signature != first.signature
    assert retrained.record.params["train"]["lr"] == 5e-3


def test_control_run_is_its_own_run_and_is_reused(root):
    exp = tiny_experiment(epochs=1)
    planned = plan_runs(exp)
    control = next(s for s in planned if s.variant == "control" and s.backbone == "din")
    micn = next(s for s in planned if s.variant == "micn" and s.key[:3] == control.key[:3] and s.seed == control.seed)
    assert control.phi == micn.phi == exp.micn.phi and control.run_id == "tiny/din-control-phi0.3-len10-seed1"
    digest = samples_hash(control.samples_dir(root))
    assert signature(control, exp, digest) != signature(micn, exp, digest)
    first = run_one(control, exp, root, digest)
    assert not first.reused and (first.record.variant, first.record.phi, first.record.status) == ("control", 0.3, "ok")
    assert first.record.params["micn"]["d_aux"] == exp.micn.d_aux and first.record.metrics["micn_recall"] is None
    assert run_one(control, exp, root, digest).reused
    assert prune(root, [control]).removed == []  # the grid recognises its own control files


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
    stored = read_record(spec.metrics_path(root))
    assert stored.status == "failed" and stored.attempts == 3 and stored.metrics is None
    assert stored.error == "RuntimeError: CUDA out of memory (simulated)" and "Traceback" in stored.traceback
    assert stored.run_id == spec.run_id and stored.experiments == ["table2"]
    assert not spec.history_path(root).exists()
    # a failed record is never reused: the next grid trains the run again
    assert run_one(spec, exp, root).reused is False


def test_corrupt_checkpoint_is_an_error_naming_the_file(root):
    exp = tiny_experiment(epochs=1)
    spec = plan_runs(exp)[0]
    spec.model_dir(root).mkdir(parents=True)
    (spec.model_dir(root) / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MicnError, match=r"checkpoint.pt: (cannot read the|refused to load this) checkpoint"):
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
    assert set(prune(root, keep).removed) == gone
    for spec in planned[:2]:
        exists = spec.run_id not in gone
        assert spec.metrics_path(root).exists() == exists
        assert spec.history_path(root).exists() == exists
        assert spec.model_dir(root).exists() == exists
    assert prune(root, keep) == type(prune(root, keep))(removed=[], left_alone=[])
    # a dataset the grid does not train on (a κ world): its emptied folders go, a folder with a user's file stays
    note = root / "models" / "tiny" / "NOTES.txt"
    note.write_text("mine")
    assert set(prune(root, []).removed) == {s.run_id for s in planned[:2]} - gone
    assert not (root / "metrics" / "runs" / "tiny").exists() and not (root / "metrics" / "history" / "tiny").exists()
    assert note.read_text() == "mine"


def test_run_id_names_every_axis():
    spec = RunSpec("books", "dien", "micn", 50, 0.7, 4)
    assert spec.run_id == "books/dien-micn-phi0.7-len50-seed4"
    assert RunSpec("books", "din", "base", 20, None, 1).run_id == "books/din-base-len20-seed1"
    assert RunSpec("books", "din", "control", 20, 0.3, 2).run_id == "books/din-control-phi0.3-len20-seed2"
    from micn.grid import RUN_NAME

    assert all(RUN_NAME.fullmatch(f"din-{v}{'' if v == 'base' else '-phi0.3'}-len20-seed1") for v in VARIANTS)
    ablated = RunSpec("synthetic-kappa0p5", "din", "base", 20, None, 3, ablation="one_category")
    assert ablated.run_id == "synthetic-kappa0p5/din-base-one_category-len20-seed3"
    assert RUN_NAME.fullmatch(ablated.run_id.split("/", 1)[1]) and not RUN_NAME.fullmatch("din-base-no_users-len20-seed3")


def test_grid_leaves_user_files_alone(tmp_path):
    """Pruning deletes a stale run's record, curve and model files, identified positively (a valid
    record naming its own path; files named like a run holding what training writes), and nothing
    else: user folders, a note inside a run folder, renamed copies, other files stay and are reported."""
    exp = tiny_experiment()
    stale = dataclasses.replace(plan_runs(exp)[0], seed=9)  # a run this grid does not plan
    record = failure_record(stale, exp, "RuntimeError: an old failure", attempts=1)
    write_record(stale.metrics_path(tmp_path), record)
    stale.history_path(tmp_path).parent.mkdir(parents=True)
    stale.history_path(tmp_path).write_text(json.dumps([{"epoch": 1, "valid_auc": 0.7}]))
    (stale.metrics_path(tmp_path).parent / f"{stale.run_id.split('/')[1]}.json.tmp").write_text("{half a rec")
    ours = [stale.model_dir(tmp_path) / name for name in ("model.pt", "checkpoint.pt", "checkpoint.tmp")]
    user = {
        "models/backup/archive_2023/model.pt": b"the only copy of last year's model",
        "models/backup/notes.txt": b"notes",
        "models/tiny/my-experiment": b"a file named like nothing the grid writes",
        f"models/{stale.run_id}/NOTES.md": b"why this run matters",
        "metrics/runs/README.md": b"# my notes",
        "metrics/runs/tiny/din-base-len10-seed7.json": json.dumps(record_json(record)).encode(),  # renamed copy
        "metrics/runs/tiny/din-base-len10-seed8.json": b"not a record",
        "metrics/history/tiny/din-base-len10-seed8.json": b'{"not": "a curve"}',
        "metrics/history/tiny/plot.png": b"\x89PNG",
    }
    for rel, data in user.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    for path in ours:
        path.write_bytes(b"weights")

    pruned = prune(tmp_path, plan_runs(exp))

    assert pruned.removed == [stale.run_id]
    assert not stale.metrics_path(tmp_path).exists() and not stale.history_path(tmp_path).exists()
    assert not any(p.exists() for p in ours) and not list(stale.metrics_path(tmp_path).parent.glob("*.tmp"))
    assert {rel: (tmp_path / rel).read_bytes() for rel in user} == user
    left = {"models/backup/archive_2023", "models/backup/notes.txt", "models/tiny/my-experiment",
            f"models/{stale.run_id}/NOTES.md", "metrics/runs/README.md",
            "metrics/runs/tiny/din-base-len10-seed7.json", "metrics/runs/tiny/din-base-len10-seed8.json",
            "metrics/history/tiny/din-base-len10-seed8.json", "metrics/history/tiny/plot.png"}
    assert set(pruned.left_alone) == {str(tmp_path / rel) for rel in left}


TIMEOUT_S, MARGIN_S = 1.5, 2.5


@pytest.mark.parametrize("scheme", ["dask", "prefect"])
def test_a_listener_that_never_answers_is_an_error_within_the_timeout(silent_listener, scheme):
    """Every network wait of the grid is bounded by grid.connect_timeout_s."""
    port, accepted = silent_listener
    address, wait = {"dask": (f"tcp://127.0.0.1:{port}", wait_for_dask),
                     "prefect": (f"http://127.0.0.1:{port}/api", wait_for_api)}[scheme]
    if scheme == "dask":
        import distributed.comm  # noqa: F401 - its import (seconds on a busy machine) is not the wait under test
    else:
        import prefect.client.orchestration  # noqa: F401 - likewise
    t0 = time.monotonic()
    with pytest.raises(MicnError) as e:
        wait(address, TIMEOUT_S)
    elapsed = time.monotonic() - t0
    assert accepted, "the command never reached the listener"
    assert TIMEOUT_S * 0.5 <= elapsed < TIMEOUT_S + MARGIN_S
    assert address in str(e.value) and f"within {TIMEOUT_S:g} s" in str(e.value) and "\n" not in str(e.value)


def test_the_grid_trains_seed_round_by_seed_round():
    """Every cell's first seed before any cell's second (the plan's order within a round), so a
    study stopped part-way has balanced cells; a cell with more seeds goes on alone at the end."""
    from micn.experiment import RunSpec

    planned = [RunSpec("d", b, v, 20, None if v == "base" else 0.3, seed)
               for b, seeds in (("din", (1, 2, 3)), ("dien", (4, 7))) for v in ("base", "micn") for seed in seeds]
    order = training_order(planned)
    assert sorted(order, key=lambda s: s.key) == sorted(planned, key=lambda s: s.key)
    assert [(s.backbone, s.variant, s.seed) for s in order] == [
        ("din", "base", 1), ("din", "micn", 1), ("dien", "base", 4), ("dien", "micn", 4),
        ("din", "base", 2), ("din", "micn", 2), ("dien", "base", 7), ("dien", "micn", 7),
        ("din", "base", 3), ("din", "micn", 3)]
