"""The run record: what one training run leaves behind, written and read only here.

    write_record(path, record)          atomic JSON write (tmp + os.replace; the tmp goes on failure)
    read_record(path) -> RunRecord      validated: a bad, empty or unreadable file is a MicnError
    read_records(paths) -> [RunRecord]  the same, and a run_id found in two files is an error

`metrics/runs/<dataset>/<run>.json` (grid) and `<out>/metrics.json` (`micn train`) hold one
`RunRecord` each, and `sql/metrics/runs.sql` reads the same keys; `record_json` fixes the key
order, which is the order these files had before the record was typed. Records are checked,
not trusted: a copy of a record under another name would count a run twice, and an AUC of 7.5
would go into a paper table, so both are refused with the file named.

`TrainingState` is the plain-data half of a checkpoint (`checkpoint.pt` holds it beside the
tensors and loads with `torch.load(..., weights_only=True)`: no pickled classes, so a crafted
checkpoint cannot run code). `GridInfo` is what the grid adds to a run it trains.

This module imports no torch: the report and the grid's bookkeeping read records without it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from micn.config import ABLATIONS, VARIANTS  # VARIANTS: "base" | "control" | "micn": one tuple for params, records and the CLI
from micn.errors import MicnError

STATUSES = ("ok", "failed")
# The test metrics, then the evidence that the auxiliary tasks learned (issue 11 §2, §5), None
# where it does not apply: history_only_auc on synthetic data only; micn_recall and grad_ratio
# on micn runs only; popularity_recall beside micn_recall; dien_aux on DIEN runs only;
# capsule_purity (vs the planted topics), capsule_purity_shuffled (its baseline) and
# capsule_overlap (share of nearest items a user's capsules have in common, 1 = collapsed) on micn
# runs on synthetic data only (`micn.interests.capsule_evidence`). Absent in older records.
METRIC_KEYS = ("auc", "gauc", "logloss", "oracle_auc", "valid_auc",
               "history_only_auc", "micn_recall", "popularity_recall", "dien_aux", "grad_ratio",
               "capsule_purity", "capsule_purity_shuffled", "capsule_overlap")
PROBABILITIES = ("auc", "gauc", "oracle_auc", "valid_auc", "history_only_auc", "micn_recall",
                 "popularity_recall", "capsule_purity", "capsule_purity_shuffled",
                 "capsule_overlap")  # metrics that must lie in [0, 1]
REQUIRED_METRICS = ("auc", "gauc", "logloss")  # an ok run always has these; oracle_auc is None on real data


@dataclass(frozen=True)
class GridInfo:
    """What the grid knows about a run beyond its training settings (issue 10 §2)."""

    run_id: str  # "<dataset>/<backbone>-<variant>[-phi<φ>]-len<L>-seed<s>"
    experiments: tuple[str, ...]  # the tables that ask for this run
    signature: str  # the grid's reuse hash: a checkpoint of another signature is never resumed
    attempt: int  # 1 on the first try, + 1 per retry
    max_len: int
    phi: float | None


@dataclass(frozen=True)
class RunRecord:
    """One run: its identity, settings, test metrics and timings (status "ok"), or its error ("failed")."""

    run_id: str | None  # grid id; None for a bare `micn train`
    dataset: str
    protocol: str | None  # None on failure records (the samples may never have been read)
    backbone: str
    variant: str  # "base" | "control" | "micn"
    seed: int
    max_len: int | None
    phi: float | None
    experiments: list[str]
    status: str  # "ok" | "failed"
    error: str | None
    traceback: str | None  # failed runs only
    attempts: int
    signature: str | None  # the grid's reuse hash; None for a bare `micn train`
    params: dict  # {"train": ..., "micn": ... | None, "max_len": L, "samples_seed": s}
    metrics: dict | None  # {METRIC_KEYS: value or None}; None when failed
    epochs: int | None = None
    best_epoch: int | None = None
    best_step: int | None = None  # optimizer step of the selected evaluation; None in older records
    train_seconds: float | None = None
    samples_per_s: float | None = None
    device: str | None = None
    git_revision: str | None = None
    started: str | None = None
    finished: str | None = None
    kappa: float | None = None  # the synthetic world's interest signal κ (1 = the default world); None on real data
    ablation: str | None = None  # the information ablation of the inputs (mechanism experiment), None = none


# The key order of the JSON file: the order the untyped records had, so old and new files diff cleanly.
JSON_ORDER = ("dataset", "protocol", "backbone", "variant", "seed", "params", "metrics", "epochs", "best_epoch",
              "best_step", "train_seconds", "samples_per_s", "device", "git_revision", "started", "finished",
              "run_id", "max_len", "phi", "experiments", "status", "error", "traceback", "attempts", "signature",
              "kappa", "ablation")
assert set(JSON_ORDER) == {f.name for f in dataclasses.fields(RunRecord)}, "JSON_ORDER must list every field once"
REQUIRED_KEYS = ("dataset", "backbone", "variant", "seed", "status", "params", "metrics")


def plain_config(config: Any) -> dict[str, Any] | None:
    """A config dataclass as a record's `params` holds it: JSON types only (tuples become lists), so
    a record equals itself read back from its file. None stays None."""
    return None if config is None else json.loads(json.dumps(dataclasses.asdict(config)))


def record_json(record: RunRecord) -> dict[str, Any]:
    """The record as the JSON object written to disk (keys in `JSON_ORDER`)."""
    return {key: getattr(record, key) for key in JSON_ORDER}


def record_from_json(data: Any, where: str | Path) -> RunRecord:
    """Validate a decoded JSON value and build the record; errors name `where` and the key."""
    if not isinstance(data, Mapping):
        raise MicnError(f"{where}: a run record must be a JSON object, got {type(data).__name__}.")
    unknown = sorted(set(data) - set(JSON_ORDER))
    if unknown:
        raise MicnError(f"{where}: unknown key(s) {', '.join(unknown)} in a run record; valid keys: {', '.join(JSON_ORDER)}.")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise MicnError(f"{where}: key(s) {', '.join(missing)} missing; it is not a run record of `micn train` or "
                        "`micn grid`. Delete it, or rerun the run that writes it.")
    values = {f.name: data.get(f.name) for f in dataclasses.fields(RunRecord)}
    values["experiments"] = list(values["experiments"] or [])
    values["attempts"] = 1 if values["attempts"] is None else values["attempts"]
    record = RunRecord(**values)
    _check(record, where)
    return record


def _check(r: RunRecord, where: str | Path) -> None:
    """The invariants every record holds (written or read)."""

    def need(ok: bool, key: str, value: Any, what: str) -> None:
        if not ok:
            raise MicnError(f"{where}: {key} = {value!r} is invalid: {what}.")

    def need_field(ok: bool, key: str, what: str) -> None:
        need(ok, key, getattr(r, key), what)

    need_field(isinstance(r.dataset, str) and r.dataset != "", "dataset", "expected a dataset name")
    need_field(isinstance(r.backbone, str) and r.backbone != "", "backbone", "expected a backbone name")
    need_field(r.variant in VARIANTS, "variant", f"expected one of {', '.join(VARIANTS)}")
    need_field(_is_int(r.seed), "seed", "expected an integer")
    need_field(r.status in STATUSES, "status", f"expected one of {', '.join(STATUSES)}")
    need_field(r.run_id is None or isinstance(r.run_id, str), "run_id", "expected a string or null")
    need_field(r.protocol is None or isinstance(r.protocol, str), "protocol", "expected a string or null")
    need_field(r.max_len is None or (_is_int(r.max_len) and r.max_len >= 1), "max_len", "expected an integer >= 1 or null")
    need_field(r.phi is None or (_is_number(r.phi) and 0.0 <= r.phi <= 1.0), "phi", "expected a number in [0, 1] or null")
    need_field(r.kappa is None or (_is_number(r.kappa) and 0.0 <= r.kappa <= 1.0), "kappa",
               "expected a number in [0, 1] or null")
    need_field(r.ablation is None or r.ablation in ABLATIONS, "ablation", f"expected one of {', '.join(ABLATIONS)} or null")
    need_field(isinstance(r.experiments, list) and all(isinstance(e, str) for e in r.experiments), "experiments",
               "expected a list of experiment names")
    need_field(_is_int(r.attempts) and r.attempts >= 1, "attempts", "expected an integer >= 1")
    need_field(isinstance(r.params, Mapping), "params", "expected an object {train, micn, max_len, samples_seed}")
    for key in ("epochs", "best_epoch", "best_step"):
        value = getattr(r, key)
        need(value is None or (_is_int(value) and value >= 0), key, value, "expected an integer >= 0 or null")
    for key in ("train_seconds", "samples_per_s"):
        value = getattr(r, key)
        need(value is None or (_is_number(value) and value >= 0), key, value, "expected a finite number >= 0 or null")
    if r.status == "failed":
        need_field(r.metrics is None or isinstance(r.metrics, Mapping), "metrics", "expected an object or null")
        return
    need_field(isinstance(r.metrics, Mapping), "metrics", "a run with status ok must have its test metrics")
    for key in REQUIRED_METRICS:
        need(key in r.metrics, f"metrics.{key}", None, "a run with status ok must have it")
    for key, value in r.metrics.items():
        if key not in METRIC_KEYS:
            raise MicnError(f"{where}: unknown metric {key!r}; valid metrics: {', '.join(METRIC_KEYS)}.")
        if value is None and key not in REQUIRED_METRICS:
            continue
        need(_is_number(value), f"metrics.{key}", value, "expected a finite number")
        if key in PROBABILITIES:
            need(0.0 <= value <= 1.0, f"metrics.{key}", value, "an AUC or a recall lies in [0, 1]")
        else:
            need(value >= 0.0, f"metrics.{key}", value, "a loss or a norm ratio is >= 0")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def write_json(path: str | Path, value: Any) -> None:
    """Write `value` as indented JSON atomically: readers see the old file or the new one, never half.

    A failure (full disk, read-only folder) removes the temporary file and is a MicnError naming
    the file; `allow_nan=False` keeps NaN/Infinity (not JSON) out of the file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        text = json.dumps(value, indent=2, allow_nan=False) + "\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # a read-only file system holds no partial file
            pass
        raise MicnError(f"{path}: cannot write ({os_reason(e)}); nothing was written there.") from e
    except ValueError as e:
        raise MicnError(f"{path}: refusing to write a non-finite number into JSON ({e}).") from e


def os_reason(e: OSError) -> str:
    """A short, user-facing reason for an OSError (disk full, read-only, permission)."""
    import errno

    return {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
            errno.EACCES: "permission denied", errno.EDQUOT: "the disk quota is exceeded"}.get(
        e.errno, f"{type(e).__name__}: {e.strerror or e}")


def write_record(path: str | Path, record: RunRecord) -> None:
    """Validate `record` and write it to `path` atomically (the same checks as `read_record`)."""
    _check(record, path)
    write_json(path, record_json(record))


def read_record(path: str | Path) -> RunRecord:
    """The validated record in `path`; an empty, unreadable or invalid file is a MicnError naming it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise MicnError(f"{path}: cannot read the run record ({os_reason(e)}).") from None
    except UnicodeDecodeError as e:
        raise MicnError(f"{path}: the run record is not UTF-8 text ({e.reason} at byte {e.start}).") from None
    if not text.strip():
        raise MicnError(f"{path}: the run record is empty; delete it and rerun its run (`dvc repro` or `micn train`).")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise MicnError(f"{path}: line {e.lineno}: the run record is not valid JSON ({e.msg}); delete it and rerun "
                        "its run.") from None
    except ValueError as e:
        raise MicnError(f"{path}: {e}.") from None
    return record_from_json(data, path)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a run record may hold (metrics must be finite)")


def read_records(paths: Iterable[str | Path]) -> list[RunRecord]:
    """Every record of `paths`, validated; a run_id in two files is an error naming both files."""
    records: list[RunRecord] = []
    seen: dict[str, Path] = {}
    for path in paths:
        record = read_record(path)
        if record.run_id is not None:
            if record.run_id in seen:
                raise MicnError(f"{seen[record.run_id]} and {path} both hold run {record.run_id!r}; a run is counted "
                                "once. Delete the copy that is not metrics/runs/<run_id>.json.")
            seen[record.run_id] = Path(path)
        records.append(record)
    return records


@dataclass
class TrainingState:
    """Where a run stands after an epoch (or after early stopping): the plain-data part of `checkpoint.pt`.

    The tensors (model, optimizer, best weights, MICN's RNG state) sit beside it in the
    checkpoint; `to_plain`/`from_plain` keep this part to dicts, lists, str, int, float and None,
    which `torch.load(..., weights_only=True)` accepts."""

    epoch: int = 0  # last finished epoch (0: none yet); the epoch it stopped in when `stopped`
    step: int = 0  # optimizer steps taken so far
    best_auc: float = float("-inf")  # best validation AUC so far
    best_epoch: int = 0  # the epoch of the best evaluation
    best_step: int = 0  # the optimizer step of the best evaluation
    bad_evals: int = 0  # selectable evaluations since the best one (early stopping)
    stopped: bool = False  # early stopping ended the run
    history: list[dict] = field(default_factory=list)  # one row per evaluation
    signature: str = ""  # hash of everything the run depends on: a checkpoint of another run is never resumed

    def to_plain(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_plain(cls, data: Any, where: str | Path) -> TrainingState:
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, Mapping) or set(data) != names:
            raise MicnError(f"{where}: the checkpoint's training state is not {sorted(names)}; delete the file to "
                            "train this run from scratch.")
        return cls(**{k: data[k] for k in names})
