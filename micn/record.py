"""The run record: what one training run leaves behind, written and read only here.

    write_record(path, record)          atomic JSON write (tmp + os.replace; the tmp goes on failure)
    read_record(path) -> RunRecord      validated: a bad, empty or unreadable file is a MicnError
    read_records(paths) -> [RunRecord]  the same, and a run_id found in two files is an error

`metrics/runs/<dataset>/<run>.json` (grid) and `<out>/metrics.json` (`micn train`) hold one
`RunRecord` each, and `sql/metrics/runs.sql` reads the same keys; `record_json` fixes the key
order (`JSON_ORDER`). Records are validated like the params sections (`micn.config.validated`):
a copy of a record under another name would count a run twice, and an AUC of 7.5 would go into
a paper table, so both are refused with the file named.

`TrainingState` is the plain-data half of a checkpoint (`checkpoint.pt` holds it beside the
tensors and loads with `torch.load(..., weights_only=True)`: no pickled classes, so a crafted
checkpoint cannot run code). `GridInfo` is what the grid adds to a run it trains.

This module imports no torch: the report and the grid's bookkeeping read records without it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, model_validator

from micn.config import Positive, Str, Unit, from_mapping, validated
from micn.errors import MicnError
from micn.names import ABLATIONS, SUPERVISIONS, VARIANTS

STATUSES = ("ok", "failed")
# The test metrics, then the evidence that the auxiliary tasks learned, None where it does not
# apply: history_only_auc on synthetic data only; micn_recall and grad_ratio on micn runs only;
# popularity_recall beside micn_recall; dien_aux on DIEN runs only; capsule_purity (vs the planted
# topics), capsule_purity_shuffled (its baseline) and capsule_overlap (share of nearest items a
# user's capsules have in common, 1 = collapsed) on micn runs on synthetic data only
# (`micn.evidence`). A record may omit any but the required ones.
METRIC_KEYS = ("auc", "gauc", "logloss", "oracle_auc", "valid_auc",
               "history_only_auc", "micn_recall", "popularity_recall", "dien_aux", "grad_ratio",
               "capsule_purity", "capsule_purity_shuffled", "capsule_overlap")
PROBABILITIES = ("auc", "gauc", "oracle_auc", "valid_auc", "history_only_auc", "micn_recall",
                 "popularity_recall", "capsule_purity", "capsule_purity_shuffled",
                 "capsule_overlap")  # metrics that must lie in [0, 1]
REQUIRED_METRICS = ("auc", "gauc", "logloss")  # an ok run always has these; oracle_auc is None on real data

Name = Annotated[str, Strict(), Field(min_length=1)]
Count = Annotated[int, Strict(), Field(ge=0)]
Seconds = Annotated[float, Strict(), Field(ge=0.0)]
Metric = Annotated[float, Strict()]


@dataclass(frozen=True)
class GridInfo:
    """What the grid knows about a run beyond its training settings."""

    run_id: str  # "<dataset>/<backbone>-<variant>[-<ablation>][-history][-phi<φ>]-len<L>-seed<s>"
    experiments: tuple[str, ...]  # the tables that ask for this run
    signature: str  # the grid's reuse hash: a checkpoint of another signature is never resumed
    attempt: int  # 1 on the first try, + 1 per retry
    max_len: int
    phi: float | None


@validated
class RunRecord:
    """One run: its identity, settings, test metrics and timings (status "ok"), or its error ("failed").

    Validated on construction like a params section (`micn.config.validated`): strict types,
    finite numbers, and the invariants of `_metrics_hold` (an ok run has its test metrics, AUCs and
    recalls lie in [0, 1], losses are >= 0). Build one from untrusted values with `make_record`."""

    run_id: Str | None  # grid id; None for a bare `micn train`
    dataset: Name
    protocol: Str | None  # None on failure records (the samples may never have been read)
    backbone: Name
    variant: Literal[VARIANTS]
    seed: Annotated[int, Strict()]
    max_len: Positive | None
    phi: Unit | None
    experiments: list[Str]
    status: Literal[STATUSES]
    error: Str | None
    traceback: Str | None  # failed runs only
    attempts: Positive
    signature: Str | None  # the grid's reuse hash; None for a bare `micn train`
    params: dict[str, Any]  # {"train": ..., "micn": ... | None, "max_len": L, "samples_seed": s}
    metrics: dict[str, Metric | None] | None  # {METRIC_KEYS: value or None}; None when failed
    epochs: Count | None = None
    best_epoch: Count | None = None
    best_step: Count | None = None  # optimizer step of the selected evaluation
    train_seconds: Seconds | None = None
    samples_per_s: Seconds | None = None
    device: Str | None = None
    git_revision: Str | None = None
    started: Str | None = None
    finished: Str | None = None
    kappa: Unit | None = None  # the synthetic world's interest signal κ (1 = the default world); None on real data
    ablation: Literal[ABLATIONS] | None = None  # the information ablation of the inputs, None = none
    supervision: Literal[SUPERVISIONS] | None = None  # what L_micn predicted (micn runs); None for base and control

    @model_validator(mode="after")
    def _metrics_hold(self) -> RunRecord:
        problem = metrics_problem(self.status, self.metrics)
        if problem:
            raise ValueError(problem)
        return self


def metrics_problem(status: str, metrics: Mapping[str, float | None] | None) -> str | None:
    """Why `metrics` cannot be the metrics of a run with `status` (None when they can)."""
    if status == "failed":
        return None
    if metrics is None:
        return "metrics = None is invalid: a run with status ok must have its test metrics"
    for key in REQUIRED_METRICS:
        if metrics.get(key) is None:
            return f"metrics.{key} = None is invalid: a run with status ok must have it"
    for key, value in metrics.items():
        if key not in METRIC_KEYS:
            return f"unknown metric {key!r}; valid metrics: {', '.join(METRIC_KEYS)}"
        if value is None:
            continue
        if key in PROBABILITIES and not 0.0 <= value <= 1.0:
            return f"metrics.{key} = {value!r} is invalid: an AUC or a recall lies in [0, 1]"
        if key not in PROBABILITIES and value < 0.0:
            return f"metrics.{key} = {value!r} is invalid: a loss or a norm ratio is >= 0"
    return None


# The key order of the JSON file (the report's SQL and people diffing two records read it).
JSON_ORDER = ("dataset", "protocol", "backbone", "variant", "seed", "params", "metrics", "epochs", "best_epoch",
              "best_step", "train_seconds", "samples_per_s", "device", "git_revision", "started", "finished",
              "run_id", "max_len", "phi", "experiments", "status", "error", "traceback", "attempts", "signature",
              "kappa", "ablation", "supervision")
REQUIRED_KEYS = ("dataset", "backbone", "variant", "seed", "status", "params", "metrics")


def plain_config(config: Any) -> dict[str, Any] | None:
    """A config dataclass as a record's `params` holds it: JSON types only (tuples become lists), so
    a record equals itself read back from its file. None stays None."""
    return None if config is None else json.loads(json.dumps(dataclasses.asdict(config)))


def record_json(record: RunRecord) -> dict[str, Any]:
    """The record as the JSON object written to disk (keys in `JSON_ORDER`)."""
    return {key: getattr(record, key) for key in JSON_ORDER}


def make_record(where: str | Path, **values: Any) -> RunRecord:
    """A `RunRecord` from `values`; every invalid field is a MicnError naming `where` and the key."""
    return from_mapping(RunRecord, values, f"{where}: record")


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
    return make_record(where, **values)


def write_json(path: str | Path, value: Any) -> None:
    """Write `value` as indented JSON atomically: readers see the previous file or the new one, never half.

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
    """Write `record` (valid by construction) to `path` atomically."""
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
