"""JSON-lines files (reviews, 2018 metadata) through DuckDB's JSON reader, into staging tables.

`ignore_errors` makes a line DuckDB cannot parse an all-NULL row, so every non-blank line is a
row (`rec_no` counts them) and the staging model gives it a reject reason. A line longer than
`MAX_LINE_BYTES` makes DuckDB refuse the whole file; the file is then measured in one streaming
pass, read again with the limit raised to its longest line, and its long lines flagged as rejects.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from micn.data.formats import MAX_LINE_BYTES, is_gzip, line_bytes, open_binary, ts_window
from micn.data.sql import create_table_as, execute, load_sql
from micn.errors import MicnError

# The largest line DuckDB is asked to hold when a file has lines over MAX_LINE_BYTES; a longer one
# (a file without newlines, most likely) refuses the file with a clear message.
MAX_READ_BYTES = 2**30
OVERSIZE_REASON = "line over the size limit"  # placeholder in staging; `formats.too_long` words it


@dataclass
class Sizes:
    """Per input file (by index): DuckDB's object-size limit and its over-long lines (rec_no → bytes)."""

    limits: dict[int, int] = field(default_factory=dict)
    oversize: dict[int, dict[int, int]] = field(default_factory=dict)


def read_json_model(con, table: str, model: str, path: Path, file_idx: int, *, exact: bool, append: bool,
                    sizes: Sizes) -> None:
    """Stage one JSON file; `exact` numbers its non-blank lines (`rec_no`), else rec_no is NULL."""
    rec_no = "row_number() over ()" if exact else "null::bigint"
    prefix = f"select {file_idx} as file_idx, {rec_no} as rec_no, * from"
    while True:
        params = {"path": str(path), "compression": "gzip" if is_gzip(path) else "none",
                  "maximum_object_size": sizes.limits.get(file_idx, MAX_LINE_BYTES), **ts_window()}
        try:
            if append:
                execute(con, f"insert into {table} {prefix} ({load_sql(model)})", params)
            else:
                create_table_as(con, table, model, params, prefix=prefix)
            return
        except duckdb.InvalidInputException as e:
            if "maximum_object_size" not in str(e) or file_idx in sizes.limits:
                raise MicnError(_explain_read_error(path, e)) from e
            _measure_long_lines(path, file_idx, sizes)  # then read again with the limit raised
        except duckdb.Error as e:
            raise MicnError(_explain_read_error(path, e)) from e


def _measure_long_lines(path: Path, file_idx: int, sizes: Sizes) -> None:
    """One streaming pass: the file's longest line and its lines over MAX_LINE_BYTES (by rec_no)."""
    longest, rec_no, oversize = 0, 0, {}
    for raw in raw_lines(path):
        if not raw.strip():
            continue
        rec_no += 1
        longest = max(longest, len(raw))
        if line_bytes(raw) > MAX_LINE_BYTES:
            oversize[rec_no] = line_bytes(raw)
    if longest > MAX_READ_BYTES:
        raise MicnError(f"{path}: a line of {longest:,} bytes (over {MAX_READ_BYTES // 2**30} GiB) cannot be read as one "
                        "record; is this a JSON-lines file (one record per line)? Nothing was written.")
    sizes.limits[file_idx] = longest + 1024
    sizes.oversize[file_idx] = oversize


def raw_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes (gzip or plain); a damaged gzip stream is a MicnError."""
    try:
        with open_binary(path) as f:
            yield from f
    except (OSError, EOFError, zlib.error) as e:
        raise MicnError(f"{path}: the gzip stream is damaged or ends early ({e}); nothing was written. Re-download the file.") from e


def flag_oversize(con, sizes: Sizes) -> None:
    """Lines over MAX_LINE_BYTES are rejects even when they parse (their reason is worded later)."""
    for file_idx, oversize in sizes.oversize.items():
        for rec_no in oversize:
            for table in ("stg_reviews", "stg_meta"):
                execute(con, f"update {table} set reject_reason = $reason where file_idx = $file_idx and rec_no = $rec_no",
                        {"reason": OVERSIZE_REASON, "file_idx": file_idx, "rec_no": rec_no})


def _explain_read_error(path: Path, e: Exception) -> str:
    msg = str(e).splitlines()[0]
    if "GZIP" in msg.upper() or "gzip" in msg:
        return f"{path}: the gzip stream is damaged or ends early (truncated download?); nothing was written. Re-download the file. DuckDB said: {msg}"
    return f"{path}: could not be read as JSON lines; nothing was written. DuckDB said: {msg}"


def stage_reviews(con, paths: list[Path], exact: bool, sizes: Sizes) -> dict[int, float]:
    """Stage every reviews file into `stg_reviews` (file_idx = its index); returns seconds per file."""
    seconds = {}
    for i, path in enumerate(paths):
        t = time.perf_counter()
        read_json_model(con, "stg_reviews", "ingest/staging/stg_reviews", path, i, exact=exact, append=i > 0, sizes=sizes)
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
