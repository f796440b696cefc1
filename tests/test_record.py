"""The run record (micn/record.py): one layout, checked on write and on read, never trusted."""

from __future__ import annotations

import dataclasses
import errno
import json
import re
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from micn.errors import MicnError
from micn.record import (
    JSON_ORDER,
    make_record,
    RunRecord,
    TrainingState,
    read_record,
    read_records,
    record_json,
    write_json,
    write_record,
)

# A record without the optional keys traceback, best_step, kappa and ablation, as a plain JSON file
# (the layout of metrics/runs/synthetic/dien-base-len20-seed1.json).
MINIMAL = {
    "dataset": "synthetic", "protocol": "dien", "backbone": "dien", "variant": "base", "seed": 1,
    "params": {"train": {"batch_size": 256, "eval_batch_size": 4096, "epochs": 5, "lr": 0.001, "patience": 1,
                         "dien_aux_weight": 1.0, "d_item": 18, "d_category": 18, "threads": 1, "device": "auto"},
               "micn": None, "max_len": 20, "samples_seed": 2022},
    "metrics": {"auc": 0.899409, "gauc": 0.8885, "logloss": 0.39751813834603295, "oracle_auc": 0.9398866250000001,
                "valid_auc": 0.89914725},
    "epochs": 3, "best_epoch": 1, "train_seconds": 27.34, "samples_per_s": 3511.3, "device": "cpu",
    "git_revision": "627dafe39a3ffbb1aaf3ab7b9d3ca63d2f5021a8", "started": "2026-11-27T18:37:45+00:00",
    "finished": "2026-11-27T18:38:15+00:00", "run_id": "synthetic/dien-base-len20-seed1", "max_len": 20, "phi": None,
    "experiments": ["table2"], "status": "ok", "error": None, "attempts": 1, "signature": "a6fef029bcadd57f011c7fc2700d7bec",
}


def write(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value if isinstance(value, str) else json.dumps(value, indent=2))
    return path


def test_record_without_optional_keys_reads_and_writes_back_in_the_same_key_order(tmp_path):
    record = read_record(write(tmp_path / "minimal.json", MINIMAL))
    assert record.run_id == "synthetic/dien-base-len20-seed1" and record.metrics["auc"] == 0.899409
    assert record.traceback is None and record.experiments == ["table2"]
    write_record(tmp_path / "new.json", record)
    written = json.loads((tmp_path / "new.json").read_text())
    assert list(written) == list(JSON_ORDER)
    added = ("traceback", "best_step", "kappa", "ablation", "supervision")  # keys the file lacks: written back as null
    assert all(written[k] is None for k in added) and record.best_step is None
    assert {k: v for k, v in written.items() if k not in added} == MINIMAL  # same keys, same values, same order
    assert [k for k in written if k not in added] == list(MINIMAL)
    assert read_record(tmp_path / "new.json") == record


def test_failure_record_needs_no_metrics(tmp_path):
    failed = dict(MINIMAL, status="failed", metrics=None, protocol=None, error="RuntimeError: boom", traceback="tb",
                  attempts=3)
    for key in ("epochs", "best_epoch", "train_seconds", "samples_per_s", "device", "git_revision", "started",
                "finished", "signature"):
        failed.pop(key)  # what the grid's failure records held
    record = read_record(write(tmp_path / "failed.json", failed))
    assert (record.status, record.metrics, record.attempts, record.epochs) == ("failed", None, 3, None)


def test_duplicate_run_id_across_files_is_an_error_naming_both_files(tmp_path):
    first = write(tmp_path / "runs" / "synthetic" / "dien-base-len20-seed1.json", MINIMAL)
    copy = write(tmp_path / "runs" / "synthetic" / "copy of the run.json", MINIMAL)
    with pytest.raises(MicnError, match="both hold run 'synthetic/dien-base-len20-seed1'") as e:
        read_records([first, copy])
    assert str(first) in str(e.value) and str(copy) in str(e.value)


@pytest.mark.parametrize(("metrics", "message"), [
    ({"auc": 7.5}, r"metrics\.auc = 7\.5 is invalid: an AUC or a recall lies in \[0, 1\]"),
    ({"gauc": -0.1}, r"metrics\.gauc = -0\.1 is invalid"),
    ({"logloss": -1.0}, r"metrics\.logloss = -1\.0 is invalid: a loss or a norm ratio is >= 0"),
    ({"oracle_auc": 1.5}, r"metrics\.oracle_auc = 1\.5 is invalid"),
    ({"history_only_auc": 1.2}, r"metrics\.history_only_auc = 1\.2 is invalid: an AUC or a recall lies in \[0, 1\]"),
    ({"micn_recall": -0.1}, r"metrics\.micn_recall = -0\.1 is invalid: an AUC or a recall lies"),
    ({"grad_ratio": -2.0}, r"metrics\.grad_ratio = -2\.0 is invalid: a loss or a norm ratio is >= 0"),
    ({"dien_aux": "1.39"}, r"record\.metrics\.dien_aux: expected a number \(got '1\.39'\)"),
    ({"recall": 0.5}, r"unknown metric 'recall'"),
    ({"auc": "0.9"}, r"record\.metrics\.auc: expected a number \(got '0\.9'\)"),
])
def test_metric_values_out_of_range_are_refused(tmp_path, metrics, message):
    path = write(tmp_path / "bad.json", dict(MINIMAL, metrics={**MINIMAL["metrics"], **metrics}))
    with pytest.raises(MicnError, match=message) as e:
        read_record(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_metrics_are_refused(tmp_path, constant):
    text = json.dumps(MINIMAL, indent=2).replace('"gauc": 0.8885', f'"gauc": {constant}')
    with pytest.raises(MicnError, match=f"{constant} is not a number a run record may hold"):
        read_record(write(tmp_path / "nan.json", text))


def test_control_runs_and_the_learning_evidence_are_valid_records(tmp_path):
    """A control run carries φ like a micn run; the evidence metrics are optional (None or absent)."""
    evidence = {"history_only_auc": 0.919, "micn_recall": 0.12, "popularity_recall": 0.08, "dien_aux": 1.2,
                "grad_ratio": 3.5}
    control = dict(MINIMAL, variant="control", phi=0.3, run_id="synthetic/dien-control-phi0.3-len20-seed1",
                   metrics={**MINIMAL["metrics"], "history_only_auc": 0.919, "micn_recall": None,
                            "popularity_recall": None, "dien_aux": 1.38, "grad_ratio": None})
    assert read_record(write(tmp_path / "control.json", control)).variant == "control"
    micn = dict(MINIMAL, variant="micn", phi=0.3, metrics={**MINIMAL["metrics"], **evidence})
    assert read_record(write(tmp_path / "micn.json", micn)).metrics == {**MINIMAL["metrics"], **evidence}


CAPSULES = {"capsule_purity": 0.71, "capsule_purity_shuffled": 0.52, "capsule_overlap": 0.18}


def test_capsule_evidence_and_best_step_round_trip(tmp_path):
    """A micn run on synthetic data carries the capsule evidence and the selected evaluation's step;
    the same record without them (a file without those keys, or a run where they do not apply) reads too."""
    micn = dict(MINIMAL, variant="micn", phi=0.3, best_step=1234,
                metrics={**MINIMAL["metrics"], "micn_recall": 0.12, "popularity_recall": 0.08, **CAPSULES})
    record = read_record(write(tmp_path / "micn.json", micn))
    assert record.best_step == 1234 and {k: record.metrics[k] for k in CAPSULES} == CAPSULES
    write_record(tmp_path / "back.json", record)
    written = json.loads((tmp_path / "back.json").read_text())
    assert written["best_step"] == 1234 and written["metrics"] == micn["metrics"]
    assert list(written).index("best_step") == list(written).index("best_epoch") + 1
    assert read_record(tmp_path / "back.json") == record
    nulls = dict(micn, best_step=None, metrics={**MINIMAL["metrics"], **dict.fromkeys(CAPSULES)})
    assert read_record(write(tmp_path / "nulls.json", nulls)).metrics["capsule_overlap"] is None
    without = {k: v for k, v in micn.items() if k != "best_step"}
    without["metrics"] = MINIMAL["metrics"]
    assert read_record(write(tmp_path / "without.json", without)).best_step is None


@pytest.mark.parametrize(("key", "value", "message"), [
    ("capsule_purity", 1.2, r"metrics\.capsule_purity = 1\.2 is invalid: an AUC or a recall lies in \[0, 1\]"),
    ("capsule_purity_shuffled", -0.1, r"metrics\.capsule_purity_shuffled = -0\.1 is invalid"),
    ("capsule_overlap", 1.5, r"metrics\.capsule_overlap = 1\.5 is invalid"),
    ("capsule_overlap", "0.2", r"record\.metrics\.capsule_overlap: expected a number \(got '0\.2'\)"),
])
def test_capsule_evidence_out_of_range_is_refused(tmp_path, key, value, message):
    with pytest.raises(MicnError, match=message):
        read_record(write(tmp_path / "r.json", dict(MINIMAL, metrics={**MINIMAL["metrics"], key: value})))


@pytest.mark.parametrize(("value", "message"), [(-1, "input should be greater than or equal to 0"),
                                                (2.5, "expected an integer"), ("7", "expected an integer"),
                                                (True, "expected an integer")])
def test_best_step_must_be_a_non_negative_integer(tmp_path, value, message):
    with pytest.raises(MicnError, match=re.escape(f"record.best_step: {message} (got {value!r})")):
        read_record(write(tmp_path / "r.json", dict(MINIMAL, best_step=value)))


def test_ok_record_without_metrics_is_refused(tmp_path):
    with pytest.raises(MicnError, match="metrics = None is invalid: a run with status ok must have its test metrics"):
        read_record(write(tmp_path / "r.json", dict(MINIMAL, metrics=None)))
    with pytest.raises(MicnError, match=r"metrics\.logloss = None is invalid"):
        read_record(write(tmp_path / "r.json", dict(MINIMAL, metrics={"auc": 0.5, "gauc": 0.5})))


@pytest.mark.parametrize(("text", "message"), [
    ("", "the run record is empty"),
    ("  \n", "the run record is empty"),
    ('{"dataset": "x",', "line 1: the run record is not valid JSON"),
    ("[1, 2]", "a run record must be a JSON object, got list"),
    ('{"dataset": "x"}', "key\\(s\\) backbone, variant, seed, status, params, metrics missing"),
])
def test_empty_or_unreadable_record_is_an_error_not_a_skip(tmp_path, text, message):
    path = write(tmp_path / "r.json", text)
    with pytest.raises(MicnError, match=message) as e:
        read_records([path])
    assert str(path) in str(e.value)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("status", "done", "record\\.status: input should be 'ok' or 'failed' \\(got 'done'\\)"),
    ("variant", "ctrl", "record\\.variant: input should be 'base', 'control' or 'micn' \\(got 'ctrl'\\)"),
    ("seed", True, "record\\.seed: expected an integer \\(got True\\)"),
    ("colour", "red", "unknown key\\(s\\) colour"),
])
def test_wrong_fields_are_named(tmp_path, key, value, message):
    with pytest.raises(MicnError, match=message):
        read_record(write(tmp_path / "r.json", {**MINIMAL, key: value}))


def test_an_invalid_record_cannot_be_built_so_none_is_written(tmp_path):
    """Validation runs on construction (`make_record`, and `dataclasses.replace` re-validates), so a
    record holding NaN or an AUC of 7.5 never exists to be written."""
    record = read_record(write(tmp_path / "ok.json", MINIMAL))
    with pytest.raises(MicnError, match=r"out\.json: record\.metrics\.auc: .*finite"):
        make_record(tmp_path / "out.json", **{**record_json(record), "metrics": {**record.metrics, "auc": float("nan")}})
    with pytest.raises(ValidationError, match=r"metrics\.auc = 7\.5 is invalid"):
        dataclasses.replace(record, metrics={**record.metrics, "auc": 7.5})
    assert not (tmp_path / "out.json").exists()


def test_failed_write_removes_its_tmp_file_and_names_the_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"

    def full_disk(self, text, *args, **kwargs):
        Path.write_bytes(self, text[:10].encode())  # half written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(MicnError, match=r"metrics\.json: cannot write \(the disk is full\)"):
        write_json(target, {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_training_state_is_plain_data_and_checked():
    state = TrainingState(epoch=2, step=40, best_auc=0.7, best_epoch=1, best_step=20, bad_evals=1, stopped=True,
                          history=[{"epoch": 1, "step": 20}, {"epoch": 2, "step": 40}], signature="s")
    assert TrainingState.from_plain(state.to_plain(), "ckpt") == state
    assert TrainingState().best_auc == float("-inf")
    with pytest.raises(MicnError, match="ckpt: the checkpoint's training state"):
        TrainingState.from_plain({"epoch": 1}, "ckpt")


def test_reading_records_imports_no_torch(tmp_path):
    import subprocess

    path = write(tmp_path / "r.json", MINIMAL)
    code = f"import sys; from micn.record import read_record; read_record({str(path)!r}); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_record_json_has_every_field():
    assert set(JSON_ORDER) == {f.name for f in dataclasses.fields(RunRecord)}
    record = RunRecord(run_id=None, dataset="d", protocol="dien", backbone="din", variant="base", seed=1, max_len=10,
                       phi=None, experiments=[], status="ok", error=None, traceback=None, attempts=1, signature=None,
                       params={}, metrics={"auc": 0.5, "gauc": 0.5, "logloss": 0.7})
    assert list(record_json(record)) == list(JSON_ORDER)
