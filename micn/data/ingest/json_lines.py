"""JSON-lines files (reviews, 2018 metadata) through DuckDB's JSON reader, into staging tables.

`ignore_errors` makes a line DuckDB cannot parse an all-NULL row, so every non-blank line is a
row (`rec_no` counts them) and the staging model gives it a reject reason.

DuckDB is never handed a line over `MAX_LINE_BYTES`: it would hold the line and its parse (~25
bytes of memory per byte of a line of small values), and its own `maximum_object_size` is loose
(DuckDB 2.0 reads lines of up to about twice it, and of up to 32 MiB whatever it is). So one
streaming pass in blocks (`_has_long_line`, no line held) looks for a longer line first; a file
that has one is read through a copy in which each such line is `{}`, an all-NULL row and so a
reject, whose reason `micn.data.ingest.rejects` words from the original line.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import duckdb

from micn.data.formats import MAX_LINE_BYTES, LongLine, is_gzip, limit_text, open_binary, read_lines, ts_window
from micn.data.sql import create_table_as, execute, load_sql
from micn.errors import MicnError

_BLOCK_BYTES = 2**20  # what `_has_long_line` reads at once


class Readable:
    """What DuckDB reads for each JSON file: the file, or a copy without its lines over the limit
    (in a temporary folder inside `work_dir`, removed by `close`)."""

    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        self._tmp: Path | None = None
        self._paths: dict[Path, Path] = {}

    def path(self, path: Path) -> Path:
        if path not in self._paths:
            self._paths[path] = self._without_long_lines(path) if _has_long_line(path) else path
        return self._paths[path]

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _without_long_lines(self, path: Path) -> Path:
        """A copy of the file with `{}` for each line over the limit (gzip if the file is); the file
        itself when no line is over it after all (`_has_long_line` counts a '\\r' too)."""
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix=".micn-ingest-", dir=self.work_dir))
        copy = self._tmp / f"{len(self._paths)}.json"
        found = False
        try:
            with gzip.open(copy, "wb", compresslevel=1) if is_gzip(path) else open(copy, "wb") as out:
                for line in raw_lines(path):
                    found = found or isinstance(line, LongLine)
                    out.write(b"{}\n" if isinstance(line, LongLine) else line)
        except OSError as e:
            raise MicnError(f"{path} has lines over the {limit_text()} limit of one record, so it is read through a copy "
                            f"without them in {self._tmp}, and writing that copy failed ({e}); nothing was written. "
                            "Free some space there and run the ingest again.") from e
        return copy if found else path


def _has_long_line(path: Path) -> bool:
    """Whether a line may be over MAX_LINE_BYTES: blocks of at most the limit, so only a run of
    bytes across blocks without a line break can be over it."""
    block_bytes, run = min(_BLOCK_BYTES, MAX_LINE_BYTES), 0  # run: bytes since the last line break
    try:
        with open_binary(path) as f:
            while block := f.read(block_bytes):
                first = block.find(b"\n")
                if first >= 0 and run + first > MAX_LINE_BYTES:
                    return True
                run = run + len(block) if first < 0 else len(block) - block.rfind(b"\n") - 1
                if run > MAX_LINE_BYTES:
                    return True
    except (OSError, EOFError, zlib.error) as e:
        raise MicnError(_damaged(path, e)) from e
    return False


def read_json_model(con, table: str, model: str, path: Path, file_idx: int, *, exact: bool, append: bool,
                    readable: Readable) -> None:
    """Stage one JSON file; `exact` numbers its non-blank lines (`rec_no`), else rec_no is NULL."""
    rec_no = "row_number() over ()" if exact else "null::bigint"
    prefix = f"select {file_idx} as file_idx, {rec_no} as rec_no, * from"
    source = readable.path(path)
    params = {"path": str(source), "compression": "gzip" if is_gzip(source) else "none",
              "maximum_object_size": MAX_LINE_BYTES + 2, **ts_window()}
    try:
        if append:
            execute(con, f"insert into {table} {prefix} ({load_sql(model)})", params)
        else:
            create_table_as(con, table, model, params, prefix=prefix)
    except duckdb.Error as e:
        raise MicnError(_explain_read_error(path, e)) from e


def raw_lines(path: Path) -> Iterator[bytes | LongLine]:
    """The file's lines (gzip or plain; `formats.read_lines`); a damaged gzip stream is a MicnError."""
    try:
        with open_binary(path) as f:
            yield from read_lines(f)
    except (OSError, EOFError, zlib.error) as e:
        raise MicnError(_damaged(path, e)) from e


def _damaged(path: Path, e: BaseException) -> str:
    return f"{path}: the gzip stream is damaged or ends early ({e}); nothing was written. Re-download the file."


def _explain_read_error(path: Path, e: Exception) -> str:
    msg = str(e).splitlines()[0]
    if "GZIP" in msg.upper() or "gzip" in msg:
        return f"{path}: the gzip stream is damaged or ends early (truncated download?); nothing was written. Re-download the file. DuckDB said: {msg}"
    return f"{path}: could not be read as JSON lines; nothing was written. DuckDB said: {msg}"


def stage_reviews(con, paths: list[Path], exact: bool, readable: Readable) -> dict[int, float]:
    """Stage every reviews file into `stg_reviews` (file_idx = its index); returns seconds per file."""
    seconds = {}
    for i, path in enumerate(paths):
        t = time.perf_counter()
        read_json_model(con, "stg_reviews", "ingest/staging/stg_reviews", path, i, exact=exact, append=i > 0,
                        readable=readable)
        seconds[i] = time.perf_counter() - t
    return seconds


def needs_exact_pass(con) -> bool:
    """Fast pass only: do line numbers matter, i.e. are there rejects or duplicate keys?"""
    rejected, repeated = con.execute(
        "select (select count(*) from stg_reviews where reject_reason is not null), "
        "(select count(*) from (select 1 from stg_reviews where reject_reason is null "
        " group by hash(user_id, item_id, ts) having count(*) > 1))"
    ).fetchall()[0]
    return rejected > 0 or repeated > 0
