"""`params.yaml` → frozen dataclasses. Unknown keys and wrong types are errors naming the key.

Each DVC stage reads only its own section (`load_section(path, "train", TrainConfig)`), so
`dvc.yaml` can list exactly the parameters a stage depends on.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from micn.errors import MicnError

T = TypeVar("T")


def read_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise MicnError(f"{path}: no such parameter file; run from the repository root or pass --params.") from None
    except yaml.YAMLError as e:
        raise MicnError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise MicnError(f"{path}: expected a mapping of sections (generate:, ingest:, ...), got {type(data).__name__}.")
    return data


def load_section(path: str | Path, section: str, cls: type[T]) -> T:
    """The dataclass `cls` built from `params.yaml`'s `section` (missing keys take defaults)."""
    data = read_params(path)
    return from_mapping(cls, data.get(section) or {}, where=f"{path}: {section}")


def from_mapping(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types raise MicnError."""
    if not isinstance(values, Mapping):
        raise MicnError(f"{where}: expected a mapping of keys, got {type(values).__name__}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise MicnError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(fields)}.")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise MicnError(f"{where}: {e}") from None


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is not type(None):
                try:
                    return _coerce(value, option, key)
                except MicnError:
                    continue
        raise MicnError(f"{key}: {value!r} is not a valid {hint}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise MicnError(f"{key}: expected a list, got {value!r}.")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_coerce(v, item, key) for v in value)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise MicnError(f"{key}: expected a number, got {value!r}.")
    if hint in (int, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise MicnError(f"{key}: expected {hint.__name__}, got {value!r}.")
    return value
