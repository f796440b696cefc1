"""Running the experiment grid one run at a time (the Prefect flow in flows/grid.py fans these out).

    run_one(spec, exp, root) -> record    train one RunSpec, or reuse its finished result
    failure_record(spec, exp, error, attempts) -> record
    prune(root, planned) -> removed       results of runs the grid no longer asks for

Files per run (paths from `RunSpec`):

    metrics/runs/<run_id>.json     the run's record: status ok|failed, test metrics, params, timings
    metrics/history/<run_id>.json  per-epoch learning curve
    models/<run_id>/               model.pt (best weights) and checkpoint.pt (resume point)

A finished run is reused, not retrained, when its record has status "ok" and the same
*signature*: the run's settings, the content hash of its samples and the hash of the training
code (`TRAINING_CODE`). A checkpoint is resumed only under the same signature. DVC reruns the grid stage when any of those change, so without this a new
experiment (say, Table 3's φ sweep) would retrain every run that already exists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import traceback
from functools import lru_cache
from pathlib import Path

from micn.experiment import Experiment, RunSpec, micn_config
from micn.train import train, write_json

PACKAGE_DIR = Path(__file__).resolve().parent


# The modules a trained model's result depends on (also the `train` stage's code deps in dvc.yaml);
# editing the report, ingest or the generator does not retrain anything.
TRAINING_CODE = ("train.py", "evaluate.py", "config.py", "models", "nn", "data/dataset.py", "data/batch.py",
                 "data/oracle.py")


@lru_cache(maxsize=1)
def code_hash() -> str:
    """blake2b of the training code (`TRAINING_CODE`: paths and bytes of its .py files)."""
    h = hashlib.blake2b(digest_size=16)
    files = []
    for name in TRAINING_CODE:
        path = PACKAGE_DIR / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    for path in files:
        h.update(str(path.relative_to(PACKAGE_DIR)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def samples_hash(samples_dir: Path) -> str:
    """blake2b of the samples a run reads (feature map and the three splits)."""
    h = hashlib.blake2b(digest_size=16)
    for name in ("feature_map.json", "train.parquet", "valid.parquet", "test.parquet"):
        path = Path(samples_dir) / name
        h.update(name.encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def signature(spec: RunSpec, exp: Experiment, samples_digest: str) -> str:
    """Hash of everything a run's result depends on: its settings, its samples and the code."""
    micn = micn_config(exp, spec)
    inputs = {
        "run": {k: v for k, v in dataclasses.asdict(spec).items() if k != "experiments"},
        "train": dataclasses.asdict(exp.train),
        "micn": None if micn is None else dataclasses.asdict(micn),
        "samples": samples_digest,
        "code": code_hash(),
    }
    return hashlib.blake2b(json.dumps(inputs, sort_keys=True).encode(), digest_size=16).hexdigest()


def _describe(spec: RunSpec) -> dict:
    return {"run_id": spec.run_id, "max_len": spec.max_len, "phi": spec.phi, "experiments": list(spec.experiments)}


def reusable(spec: RunSpec, root: Path, sig: str) -> dict | None:
    """The finished record of this very run, or None."""
    path, history = spec.metrics_path(root), spec.history_path(root)
    if not (path.is_file() and history.is_file() and (spec.model_dir(root) / "model.pt").is_file()):
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("status") != "ok" or record.get("signature") != sig:
        return None
    return record


def run_one(spec: RunSpec, exp: Experiment, root: str | Path = ".", samples_digest: str | None = None,
            attempt: int = 1, progress: bool = False, on_epoch_end=None) -> dict:
    """Train `spec` (or reuse its finished result) and write its files; returns its record."""
    root = Path(root)
    samples = spec.samples_dir(root)
    sig = signature(spec, exp, samples_digest or samples_hash(samples))
    record = reusable(spec, root, sig)
    if record is not None:
        if record.get("experiments") != list(spec.experiments):  # same run, asked for by other tables now
            record["experiments"] = list(spec.experiments)
            write_json(spec.metrics_path(root), record)
        return {**record, "reused": True}
    extra = {**_describe(spec), "status": "ok", "error": None, "attempts": attempt, "signature": sig}
    result = train(samples, spec.backbone, spec.model_dir(root), seed=spec.seed, cfg=exp.train,
                   micn=micn_config(exp, spec), dataset=spec.dataset, progress=progress, on_epoch_end=on_epoch_end,
                   metrics_path=spec.metrics_path(root), history_path=spec.history_path(root), extra=extra)
    return {**result, "reused": False}


def failure_record(spec: RunSpec, exp: Experiment, error: BaseException | str, attempts: int) -> dict:
    """What a run that kept failing leaves in metrics/runs: its settings and the error, no metrics."""
    if isinstance(error, BaseException):
        message = f"{type(error).__name__}: {error}"
        detail = "".join(traceback.format_exception(error))[-4000:]
    else:
        message, detail = str(error), str(error)
    micn = micn_config(exp, spec)
    return {
        "dataset": spec.dataset,
        "protocol": None,
        "backbone": spec.backbone,
        "variant": spec.variant,
        "seed": spec.seed,
        "params": {"train": dataclasses.asdict(exp.train), "micn": None if micn is None else dataclasses.asdict(micn),
                   "max_len": spec.max_len},
        "metrics": None,
        **_describe(spec),
        "status": "failed",
        "error": message,
        "traceback": detail,
        "attempts": attempts,
    }


def write_failure(spec: RunSpec, root: str | Path, record: dict) -> None:
    root = Path(root)
    write_json(spec.metrics_path(root), record)
    history = spec.history_path(root)
    if history.exists():  # a stale curve of an earlier success would contradict the record
        history.unlink()


def prune(root: str | Path, planned: list[RunSpec]) -> list[str]:
    """Delete the files of runs the current grid does not ask for; returns their run ids.

    The grid's outputs then describe exactly the configured experiment, as DVC expects of a
    stage's outputs; earlier results stay in DVC's cache (`dvc exp apply`, `git checkout`)."""
    root = Path(root)
    keep = {s.run_id for s in planned}
    found: dict[str, list[Path]] = {}  # run id -> its files and folders (run ids are <dataset>/<name>)
    for top, suffix in (("metrics/runs", ".json"), ("metrics/history", ".json"), ("models", "")):
        for path in (root / top).glob("*/*"):
            found.setdefault(f"{path.parent.name}/{path.name.removesuffix(suffix)}", []).append(path)
    removed = sorted(set(found) - keep)
    for run_id in removed:
        for path in found[run_id]:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return removed
