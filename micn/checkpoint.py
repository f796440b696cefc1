"""A run's files of tensors: `checkpoint.pt` (to resume) and `model.pt` (the selected weights).

    state, best = resume(path, model, optimizer, signature, micn)   # fresh ones unless it is this run's
    save_checkpoint(path, model, optimizer, state, best, micn)
    save_model(path, best, about)  /  read_model_file(path) -> dict
    load_tensors(path, what) -> dict                               # torch.load(weights_only=True)

Every file holds tensors and plain data only (dicts, lists, str, numbers, None) and is read with
`torch.load(..., weights_only=True)`: a crafted file cannot run code, it is refused with its path
named. Every write goes through `<name>.tmp` and an atomic rename, so a crash never leaves half a
file, and a failed write removes the temporary file and says why (full disk, read-only folder).
"""

from __future__ import annotations

import copy
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from micn.errors import MicnError
from micn.models.base import CTRModel, InterestModel
from micn.optim import Optimizers
from micn.record import TrainingState, os_reason

MODEL_FILE_KEYS = ("model", "backbone", "variant", "config", "micn", "feature_map", "samples_dir")


def load_tensors(path: Path, what: str, map_location: str = "cpu") -> dict:
    """`torch.load(path, weights_only=True)`: tensors and plain data only, never pickled code.

    A file holding anything else (a crafted pickle payload, or a file of another version) is a
    MicnError naming it; so is a file that is not a torch file at all."""
    try:
        value = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise MicnError(f"{path}: refused to load this {what}: it holds objects other than tensors and plain data "
                        "(loading them could run code from the file). Delete it and train the run again; files "
                        f"written by `micn train` hold tensors only. ({str(e).splitlines()[0]})") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same error to the user
        raise MicnError(f"{path}: cannot read the {what} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        "delete it and train the run again.") from None
    if not isinstance(value, dict):
        raise MicnError(f"{path}: not a {what} of `micn train` (expected a mapping, got {type(value).__name__}).")
    return value


def resume(path: Path, model: CTRModel, optimizer: torch.optim.Optimizer | Optimizers, signature: str,
           micn: InterestModel | None) -> tuple[TrainingState, dict]:
    """(state, best weights) saved in `path` when it holds a checkpoint of this very run (same
    `signature`), loaded into `model`, `optimizer` and MICN's generator; else fresh ones."""
    fresh = TrainingState(signature=signature), copy.deepcopy(model.state_dict())
    if not path.exists():
        return fresh
    ckpt = load_tensors(path, "checkpoint")
    plain = ckpt.get("state")
    if not isinstance(plain, dict) or plain.get("signature") != signature:  # another run's checkpoint: never mix
        return fresh
    state = TrainingState.from_plain(plain, path)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if micn is not None and ckpt.get("micn_rng") is not None:
        micn.set_rng_state(ckpt["micn_rng"])
    return state, ckpt["best_state"]


def save_checkpoint(path: Path, model: CTRModel, optimizer: torch.optim.Optimizer | Optimizers, state: TrainingState,
                    best_state: dict, micn: InterestModel | None) -> None:
    rng = micn.rng_state() if micn is not None else None
    save_tensors(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "best_state": best_state,
                        "state": state.to_plain(), "micn_rng": rng}, "checkpoint")


def save_model(path: Path, best_state: dict, about: dict[str, Any]) -> None:
    """`model.pt`: the selected weights and what is needed to rebuild the model (`MODEL_FILE_KEYS`)."""
    value = {"model": best_state, **about}
    assert set(value) == set(MODEL_FILE_KEYS), f"model file keys {sorted(value)} != {sorted(MODEL_FILE_KEYS)}"
    save_tensors(path, value, "model file")


def read_model_file(path: Path, map_location: str = "cpu") -> dict:
    """A `model.pt` written by `save_model`, its keys checked."""
    ckpt = load_tensors(path, "model file", map_location)
    missing = [k for k in ("model", "backbone", "config", "micn", "feature_map") if k not in ckpt]
    if missing:
        raise MicnError(f"{path}: keys {missing} are missing; it is not a model file written by `micn train`.")
    return ckpt


def save_tensors(path: Path, value: dict, what: str) -> None:
    """`torch.save` through `<name>.tmp` and an atomic rename: a crash never leaves half a file, and
    a failed write (full disk, read-only folder) removes the tmp file and names the file."""
    tmp = path.with_suffix(".tmp")
    try:
        torch.save(value, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch's zip writer reports a full disk as RuntimeError
        _remove(tmp)
        reason = os_reason(e) if isinstance(e, OSError) else _write_failure(path, e)
        raise MicnError(f"{path}: cannot write the {what} ({reason}); nothing was left behind. Free space or "
                        "fix the folder's permissions and run again: training resumes from the last checkpoint.") from None


def _remove(path: Path) -> None:
    """Delete a partial file if there is one (on a read-only file system there cannot be)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _write_failure(path: Path, e: RuntimeError) -> str:
    """A user-facing reason for torch's writer error (it reports errno only as text)."""
    text = str(e)
    for marker, reason in (("No space left", "the disk is full"), ("Read-only file system", "the file system is read-only"),
                           ("Permission denied", "permission denied"), ("Disk quota", "the disk quota is exceeded")):
        if marker in text:
            return reason
    try:
        if shutil.disk_usage(path.parent).free < (1 << 20):
            return "the disk is full"
    except OSError:
        pass
    return f"the write failed: {text.splitlines()[0] if text else type(e).__name__}"
