"""Running the experiment grid one run at a time (the Prefect flow in flows/grid.py fans these out).

    run_one(spec, exp, root) -> GridRun      train one RunSpec, or reuse its finished record
    failure_record(spec, exp, error, attempts) -> RunRecord
    prune(root, planned) -> Pruned           delete the files of runs the plan leaves out
    holding_root(root)                        one `micn grid` per root at a time (a lock naming its holder)
    check_outputs(root, planned)              each planned run's paths are absent or the grid's own
    wait_for_dask(address, timeout_s)   bounded check of the Dask scheduler the grid talks to

Files per run (paths from `RunSpec`), all written through micn/record.py and micn/train.py:

    metrics/runs/<run_id>.json     the run's RunRecord: status ok|failed, test metrics, params, timings
    metrics/history/<run_id>.json  per-epoch learning curve
    models/<run_id>/               model.pt (best weights) and checkpoint.pt (resume point), with
                                   their plain-data JSON companions

A finished run is reused, not retrained, when its record has status "ok" and the same
*signature*: the run's settings, the content hash of its samples and the hash of the training
code (`TRAINING_CODE`). A checkpoint is resumed only under the same signature. DVC reruns the grid
stage when any of those change, so without this a new experiment (say, Table 3's φ sweep) would
retrain every run that already exists.

Pruning deletes only what the grid can prove it wrote: a record whose `run_id`
is its own path, a learning curve or model folder named like a run id and holding only the
files training writes. Anything else under metrics/ and models/ (a user's `models/backup/`,
a note inside a run folder, a renamed copy of a record) is left alone and reported.

Every network wait is bounded by `grid.connect_timeout_s`: a Dask scheduler or a Prefect API
that accepts the connection and never answers is a MicnError after the timeout, not a hang (the
Dask client's own timeout does not cover its handshake).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import re
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from micn.errors import MicnError
from micn.experiment import Experiment, RunSpec, micn_config, train_config
from micn.names import ABLATIONS
from micn.outputs import TORCH_HEADER, anything, claim, json_object_with, json_rows_with, starts_with
from micn.record import GridInfo, RunRecord, make_record, os_reason, plain_config, read_record, write_record

PACKAGE_DIR = Path(__file__).resolve().parent


# The modules a run's record depends on: everything importing `micn.train` runs (a test checks that
# this covers that import closure), also the `train` stage's code deps in dvc.yaml. The generator is
# among them because the history-only ceiling (data/ceiling.py) reads the world's public structure
# from it, and kernels.py because the `micn` command pins the CPU kernels a run computes with.
# Editing the report, the ingest or what `micn interests` prints retrains nothing.
TRAINING_CODE = ("train.py", "run.py", "checkpoint.py", "optim.py", "kernels.py", "evidence.py", "record.py",
                 "evaluate.py", "config.py", "names.py", "errors.py", "models", "nn", "data/dataset.py",
                 "data/feature_map.py", "data/batch.py", "data/oracle.py", "data/ceiling.py", "data/synthetic")

# `<backbone>-<variant>[-<ablation>][-history][-phi<φ>]-len<L>-seed<s>` (RunSpec.run_id without the dataset):
# the names the grid gives its files. A folder or file not named so was not written by the grid.
RUN_NAME = re.compile(r"[a-z][a-z0-9_]*-(base|control|micn)(-(%s))?(-history)?(-phi[0-9.e+-]+)?-len[0-9]+-seed-?[0-9]+"
                      % "|".join(ABLATIONS))
# What training writes into a run's model folder (and the temporary files of its atomic writes).
MODEL_FILE = re.compile(r"(model|checkpoint)\.(pt|json|tmp)(\.tmp)?")


@lru_cache(maxsize=1)
def code_hash() -> str:
    """blake2b of the training code (`TRAINING_CODE`: paths and bytes of its .py files)."""
    h = hashlib.blake2b(digest_size=16)
    files = []
    for name in TRAINING_CODE:
        path = PACKAGE_DIR / name
        if path.is_dir():
            files += sorted(path.rglob("*.py"))
        elif path.is_file():
            files.append(path)
    for path in files:
        h.update(str(path.relative_to(PACKAGE_DIR)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def samples_hash(samples_dir: Path) -> str:
    """blake2b of everything a run reads from its samples folder: the feature map, the three splits
    and the evaluation inputs (the negative sampler's distribution, the oracle's files)."""
    h = hashlib.blake2b(digest_size=16)
    root = Path(samples_dir)
    names = ["feature_map.json", "train.parquet", "valid.parquet", "test.parquet"]
    names += [p.relative_to(root).as_posix() for p in sorted(root.glob("negative_sampler.parquet"))]
    names += [p.relative_to(root).as_posix() for p in sorted(root.glob("oracle/*")) if p.is_file()]
    for name in names:
        path = root / name
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
        "train": dataclasses.asdict(train_config(exp, spec)),
        "micn": None if micn is None else dataclasses.asdict(micn),
        "samples": samples_digest,
        "code": code_hash(),
    }
    return hashlib.blake2b(json.dumps(inputs, sort_keys=True).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class GridRun:
    """One run's outcome in the grid: its record, and whether it was reused rather than trained."""

    record: RunRecord
    reused: bool = False


def reusable(spec: RunSpec, root: Path, sig: str) -> RunRecord | None:
    """The finished record of this very run (status ok, same signature, files present), or None.

    A record that does not validate is not reused: the run is trained again and its record rewritten."""
    path, history = spec.metrics_path(root), spec.history_path(root)
    if not (path.is_file() and history.is_file() and (spec.model_dir(root) / "model.pt").is_file()):
        return None
    try:
        record = read_record(path)
    except MicnError:
        return None
    if record.status != "ok" or record.signature != sig or record.run_id != spec.run_id:
        return None
    return record


def run_one(spec: RunSpec, exp: Experiment, root: str | Path = ".", samples_digest: str | None = None,
            attempt: int = 1, progress: bool = False,
            on_epoch_end: Callable[[int, dict], None] | None = None) -> GridRun:
    """Train `spec` (or reuse its finished result) and write its files."""
    from micn.run import RunConfig, RunPaths  # torch only where a run is trained
    from micn.train import train

    root = Path(root)
    samples = spec.samples_dir(root)
    sig = signature(spec, exp, samples_digest or samples_hash(samples))
    record = reusable(spec, root, sig)
    if record is not None:
        if record.experiments != list(spec.experiments):  # same run, asked for by other tables now
            record = dataclasses.replace(record, experiments=list(spec.experiments))
            write_record(spec.metrics_path(root), record)
        return GridRun(record, reused=True)
    run = RunConfig(backbone=spec.backbone, variant=spec.variant, seed=spec.seed, train=train_config(exp, spec),
                    micn=micn_config(exp, spec) or exp.micn, dataset=spec.dataset, ablation=spec.ablation)
    paths = RunPaths(samples_dir=samples, out_dir=spec.model_dir(root), record=spec.metrics_path(root),
                     history=spec.history_path(root))
    grid = GridInfo(run_id=spec.run_id, experiments=tuple(spec.experiments), signature=sig, attempt=attempt,
                    max_len=spec.max_len, phi=spec.phi)
    return GridRun(train(run, paths, grid=grid, progress=progress, on_epoch_end=on_epoch_end), reused=False)


def failure_record(spec: RunSpec, exp: Experiment, error: BaseException | str, attempts: int,
                   sig: str | None = None) -> RunRecord:
    """What a run that kept failing leaves in metrics/runs: its settings and the error, no metrics."""
    if isinstance(error, BaseException):
        message = f"{type(error).__name__}: {error}"
        detail = "".join(traceback.format_exception(error))[-4000:]
    else:
        message, detail = str(error), str(error)
    micn = micn_config(exp, spec)
    return make_record(
        spec.run_id, run_id=spec.run_id, dataset=spec.dataset, protocol=None, backbone=spec.backbone, variant=spec.variant,
        seed=spec.seed, max_len=spec.max_len, phi=spec.phi, experiments=list(spec.experiments), status="failed",
        error=message, traceback=detail, attempts=attempts, signature=sig,
        params={"train": plain_config(train_config(exp, spec)), "micn": plain_config(micn), "max_len": spec.max_len},
        metrics=None, ablation=spec.ablation, supervision=spec.supervision)


def write_failure(spec: RunSpec, root: str | Path, record: RunRecord) -> None:
    """Write a failure record; a stale curve of an earlier success would contradict it, so it goes."""
    root = Path(root)
    write_record(spec.metrics_path(root), record)
    history = spec.history_path(root)
    if history.is_file():
        history.unlink()


def check_outputs(root: str | Path, planned: list[RunSpec]) -> None:
    """Before any run: every path a planned run writes is absent or the grid's own (a record naming
    this run, a learning curve, a torch file), else a MicnError naming it. Each file is written by
    renaming a finished one over it, so a link there is refused; a run's folder may be a link. A
    checkpoint's content is left to `resume`: one it cannot read fails that run alone, unreplaced."""
    root, fix = Path(root), "delete it if it is a damaged copy of the run's file (the grid then trains the run again)"
    torch_file = starts_with(TORCH_HEADER, "a torch file")
    for spec in planned:
        folder = claim(spec.model_dir(root), anything, what="a run's model folder", command="grid", folder=True,
                       follow_links=True, fix=fix)
        for path, check in ((spec.metrics_path(root), json_object_with(run_id=spec.run_id)),
                            (spec.history_path(root), json_rows_with("epoch")), (folder / "model.pt", torch_file),
                            (folder / "checkpoint.pt", anything)):
            claim(path, check, what=f"run {spec.run_id}'s {path.name}", command="grid", fix=fix)


# --- pruning --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pruned:
    """What `prune` did: run ids whose files it deleted, and paths it left alone (not the grid's)."""

    removed: list[str]
    left_alone: list[str]


def training_order(planned: list[RunSpec]) -> list[RunSpec]:
    """The order the grid trains runs in: seed round by seed round (every cell's first seed, then
    every cell's second, ...), the plan's order within a round. A study stopped part-way (a long
    one spans sessions) then leaves every cell with about as many seeds as its neighbours, and the
    paired lifts of what finished are comparable, instead of some cells complete and others empty."""
    seeds: dict[tuple, list[int]] = {}
    for spec in planned:
        seeds.setdefault(_cell(spec), []).append(spec.seed)
    rounds = {cell: {seed: i for i, seed in enumerate(sorted(s))} for cell, s in seeds.items()}
    order = {spec.key: i for i, spec in enumerate(planned)}
    return sorted(planned, key=lambda spec: (rounds[_cell(spec)][spec.seed], order[spec.key]))


def _cell(spec: RunSpec) -> tuple:
    """A run's key without its seed: the cell whose seeds it is one of."""
    return dataclasses.replace(spec, seed=0, experiments=()).key


def prune(root: str | Path, planned: list[RunSpec]) -> Pruned:
    """Delete the files of runs the current grid does not ask for, and only files the grid wrote.

    The grid's outputs then describe exactly the configured experiment, as DVC expects of a
    stage's outputs; earlier results stay in DVC's cache (`dvc exp apply`, `git checkout`).
    Whatever the grid cannot prove it wrote is left in place and listed in `left_alone`."""
    root = Path(root)
    keep = {s.run_id for s in planned}
    removed: set[str] = set()
    left: list[Path] = []
    for top, is_own in (("runs", _is_own_record), ("history", _is_learning_curve)):
        for path, dataset in _entries(root / "metrics" / top):
            run_id, tmp_of = _run_id(path.name, dataset, ".json"), _run_id(path.name, dataset, ".json.tmp")
            if run_id in keep or tmp_of in keep:
                continue
            plain_file = path.is_file() and not path.is_symlink()
            if tmp_of is not None and plain_file:  # the temporary file of an interrupted atomic write
                path.unlink()
            elif run_id is not None and plain_file and is_own(path, run_id):
                path.unlink()
                removed.add(run_id)
            else:
                left.append(path)
    for path, dataset in _entries(root / "models"):
        run_id = _run_id(path.name, dataset, "")
        if run_id in keep:
            continue
        if run_id is None or not path.is_dir() or path.is_symlink():
            left.append(path)
            continue
        deleted, others = _remove_model_files(path)
        if deleted:
            removed.add(run_id)
        left += others
    for top in (root / "metrics" / "runs", root / "metrics" / "history", root / "models"):
        _remove_emptied_datasets(top, {r.split("/", 1)[0] for r in removed})
    return Pruned(removed=sorted(removed), left_alone=sorted(str(p) for p in left))


def _remove_emptied_datasets(top: Path, datasets: set[str]) -> None:
    """Remove `top/<dataset>/` folders that pruning emptied (a dataset the plan leaves out,
    e.g. a κ world of the mechanism experiment); a folder holding anything else stays."""
    for dataset in datasets:
        folder = top / dataset
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()


def _entries(top: Path) -> list[tuple[Path, str | None]]:
    """(path, dataset) of every `top/<dataset>/<name>` entry, and (path, None) of a stray entry
    directly in `top` (run ids are `<dataset>/<name>`, so the grid writes nothing there)."""
    if not top.is_dir():
        return []
    out: list[tuple[Path, str | None]] = []
    for first in sorted(top.iterdir()):
        if first.is_dir() and not first.is_symlink():
            out += [(path, first.name) for path in sorted(first.iterdir())]
        else:
            out.append((first, None))
    return out


def _run_id(name: str, dataset: str | None, suffix: str) -> str | None:
    """The run id of a file or folder the grid would name `<dataset>/<name><suffix>`, else None."""
    if dataset is None or not name.endswith(suffix):
        return None
    name = name[: len(name) - len(suffix)]
    return f"{dataset}/{name}" if RUN_NAME.fullmatch(name) else None


def _is_own_record(path: Path, run_id: str) -> bool:
    """A valid run record that names itself `run_id` (a renamed copy or a user's file does not)."""
    try:
        return read_record(path).run_id == run_id
    except MicnError:
        return False


def _is_learning_curve(path: Path, run_id: str) -> bool:
    """A learning curve as training writes it: a JSON array of epoch rows."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(rows, list) and all(isinstance(r, dict) and "epoch" in r for r in rows)


def _remove_model_files(folder: Path) -> tuple[int, list[Path]]:
    """Delete the files training writes in a run's model folder: (how many, what else is there).

    The folder itself goes only when nothing else is left in it."""
    deleted, others = 0, []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and not entry.is_symlink() and MODEL_FILE.fullmatch(entry.name):
            entry.unlink()
            deleted += 1
        else:
            others.append(entry)
    if not others:
        folder.rmdir()
    return deleted, others


# --- bounded network checks -----------------------------------------------------------------------


def wait_for_dask(address: str, timeout_s: float) -> int:
    """The number of workers of the Dask scheduler at `address`, asked within `timeout_s` in all.

    The scheduler's `identity` reply over Dask's own comm, under one asyncio deadline: this
    covers the connection, Dask's handshake and the reply, which `distributed.Client(timeout=)`
    does not (it waits forever on a listener that accepts and never answers)."""
    try:
        from distributed.comm import connect
    except ImportError:
        raise MicnError("a Dask address is set but `distributed` is not installed: pip install -e '.[dask]'.") from None

    async def identity() -> dict:
        comm = await connect(address, timeout=timeout_s)
        try:
            await comm.write({"op": "identity"})
            return await comm.read()
        finally:
            comm.abort()

    async def bounded() -> dict:
        return await asyncio.wait_for(identity(), timeout_s)

    try:
        info = asyncio.run(bounded())
    except (OSError, TimeoutError, ValueError, asyncio.TimeoutError) as e:
        raise MicnError(f"no Dask scheduler answered at {address} within {timeout_s:g} s ({_why(e)}). Start one "
                        "(`dask scheduler` and `dask worker <address>`), fix grid.address / $MICN_GRID_ADDRESS, "
                        "raise grid.connect_timeout_s, or unset both to run the grid on local threads.") from None
    if not isinstance(info, dict) or info.get("type") != "Scheduler":
        raise MicnError(f"{address} answered, but not as a Dask scheduler ({str(info)[:80]}); fix grid.address / "
                        "$MICN_GRID_ADDRESS.")
    workers = len(info.get("workers") or {})
    if workers == 0:
        raise MicnError(f"the Dask scheduler at {address} has no workers; start some with `dask worker {address}`.")
    return workers


def _why(e: BaseException) -> str:
    if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
        return "timed out: the address accepts connections but does not answer"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


LOCK_FILE = ".micn-grid.lock"  # in the grid's root; holds the PID of the `micn grid` training there


@contextmanager
def holding_root(root: str | Path) -> Iterator[None]:
    """Train into `root` alone: an exclusive `flock` on `<root>/.micn-grid.lock` for the block, the
    holder's PID written in it. A second grid on the same root is refused at once in one paragraph
    naming the holder, so no run is ever trained twice; the kernel drops the lock with the process,
    so a killed grid never leaves a stale one."""
    path = Path(root) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # the PID is never written through a link
    except OSError as e:
        why = "it is a symbolic link; remove it" if e.errno == errno.ELOOP else os_reason(e)
        raise MicnError(f"{path}: cannot create the grid's lock file ({why}).") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise MicnError(f"{Path(root).resolve()}: another `micn grid` (PID {holder}) is training into this root; "
                            "wait for it to finish (or stop it) and rerun: the runs it finished are reused.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
