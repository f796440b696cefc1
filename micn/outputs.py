"""Never replace what micn did not make: the check every command runs on each path it writes.

    path = claim(out / "train.parquet", parquet_with("user", "label"), what="a samples split",
                 command="samples", fix="choose another --out")

A command writes an output path only when the path is absent or holds the command's own earlier
output, recognised cheaply by what the command writes there (a header, Parquet columns, JSON keys):
a `Check` returns None for the command's own output and, for anything else, what the path holds
instead, in words. Anything else (a user's file, a folder where a file goes) is refused in one
paragraph naming the path, before any work, and left as it was.

A symbolic link is followed where the command writes the file in place: its target is checked as
the path would be and is what gets written, and the link stays. It is refused where the command
puts a new file at the path (an atomic write renames a finished file over it; a figure is deleted
and drawn again): that would put a regular file where the link was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from micn.errors import MicnError

Check = Callable[[Path], "str | None"]  # None: the command's own output; else what the path holds, in words

# The first bytes of the gzip files micn writes (`micn.data.synthetic.sink`): deflate, no file name,
# modification time 0, operating system "unknown". The gzip tool stamps a time, a name and its OS.
MICN_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
TORCH_HEADER = b"PK\x03\x04"  # torch.save's zip format: model.pt, checkpoint.pt
PARQUET_MAGIC = b"PAR1"  # the first and the last bytes of a whole Parquet file


def claim(path: str | Path, check: Check, *, what: str, command: str, fix: str, follow_links: bool = False,
          folder: bool = False) -> Path:
    """The path to write: `path`, or the target of a link that is followed. `path` must be absent or
    hold `command`'s own output (`check`); `folder`: a directory goes there, else a file. `what`
    names the output ("the samples' train split"), `fix` the way out ("choose another --out")."""
    path = Path(path)
    name = str(path)  # what the messages call it: the path, and a followed link's target
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if not follow_links:
            raise MicnError(f"{path}: is a symbolic link (to {target}); `micn {command}` replaces {what} there with a "
                            "new file, which would put a regular file where the link is, so nothing was written. "
                            f"Remove the link, or {fix}.")
        path, name = target, f"{path} (a link to {target})"
    if not path.exists():
        return path
    if path.is_dir() != folder:
        kind = "a directory" if path.is_dir() else "a file"
        raise MicnError(f"{name}: is {kind} where `micn {command}` writes {what}; it was left as it was and nothing "
                        f"was written. Move it away, or {fix}.")
    why = check(path)
    if why is not None:
        raise MicnError(f"{name}: holds {why}, not {what} as `micn {command}` writes it, so it was left as it was "
                        f"and nothing was written. Move it away, or {fix}.")
    return path


def starts_with(header: bytes, kind: str) -> Check:
    """A file that begins with `header` (`kind` names such a file in a message)."""

    def check(path: Path) -> str | None:
        with open(path, "rb") as f:
            return None if f.read(len(header)) == header else f"something other than {kind}"

    return check


def first_line(line: str) -> Check:
    """A text file whose first line is `line`."""

    def check(path: Path) -> str | None:
        with open(path, "rb") as f:
            head = f.readline(len(line.encode()) + 2).decode("utf-8", errors="replace").rstrip("\r\n")
        return None if head == line else f"a file whose first line is not {line!r}"

    return check


def parquet_with(*columns: str) -> Check:
    """A Parquet file with (at least) `columns`, or one cut short before its footer (an interrupted
    write that wrote in place)."""

    def check(path: Path) -> str | None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            names = set(pq.read_schema(path).names)
        except (pa.ArrowInvalid, ValueError):  # no footer: a Parquet file cut short, or no Parquet file at all
            with open(path, "rb") as f:
                cut_short = f.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC
            return None if cut_short else "something other than a Parquet file"
        missing = [c for c in columns if c not in names]
        return f"a Parquet file without the column(s) {', '.join(missing)}" if missing else None

    return check


def json_object_with(*keys: str, **values: object) -> Check:
    """A JSON object holding `keys`, and `values` under their keys (a run's `run_id`, say)."""

    def check(path: Path) -> str | None:
        data = _json(path)
        if not isinstance(data, dict):
            return "something other than a JSON object"
        missing = [k for k in (*keys, *values) if k not in data]
        if missing:
            return f"a JSON object without the key(s) {', '.join(missing)}"
        wrong = [f"{k} {data[k]!r}" for k, v in values.items() if data[k] != v]
        return f"a JSON object with {', '.join(wrong)}" if wrong else None

    return check


def json_rows_with(*keys: str) -> Check:
    """A JSON array of objects, each holding `keys` (an empty array too)."""

    def check(path: Path) -> str | None:
        data = _json(path)
        if not isinstance(data, list):
            return "something other than a JSON array"
        if not all(isinstance(row, dict) and all(k in row for k in keys) for row in data):
            return f"a JSON array whose rows are not objects with the key(s) {', '.join(keys)}"
        return None

    return check


def folder_of(names: tuple[str, ...]) -> Check:
    """A directory holding nothing but regular files of these `names` (or nothing)."""

    def check(path: Path) -> str | None:
        others = sorted(p.name for p in path.iterdir() if p.name not in names or p.is_symlink() or not p.is_file())
        return f"entries micn does not write there ({', '.join(others[:3])})" if others else None

    return check


def anything(path: Path) -> str | None:
    """Whatever the path holds: for names only the command ever gives a file."""
    return None


_NOT_JSON = object()


def _json(path: Path) -> object:
    """The decoded JSON of `path`, or a marker no check accepts when it is not JSON."""
    try:
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON
