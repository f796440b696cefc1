"""The rejects of an ingest: every refused line with its file, line number, raw text and reason.

Staging flags a refused line by its record number (`rec_no`, DuckDB's count of non-blank lines)
and a short reason. Here one streaming pass over each file with flagged lines finds their
physical line numbers and raw bytes, and words the reasons that need the raw text ("invalid
UTF-8", "JSON array", an over-long line's size). The 2014 metadata rejects arrive complete from
`micn.data.ingest.meta`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from micn.data.formats import MAX_LINE_BYTES, SHOWN_RAW_CHARS, explain_unparseable, line_bytes, too_long
from micn.data.ingest.json_lines import OVERSIZE_REASON, raw_lines
from micn.data.sql import execute
from micn.errors import MicnError

REJECTS_SCHEMA = pa.schema(
    [("file_idx", pa.int64()), ("line_no", pa.int64()), ("reason", pa.string()), ("raw_line", pa.string())]
)


def raw_text(raw: bytes) -> str:
    """The raw line as `rejects.raw_line` keeps it: whole, except an over-long line's head."""
    if line_bytes(raw) > MAX_LINE_BYTES:
        raw = raw[:SHOWN_RAW_CHARS]
        return raw.decode("utf-8", errors="backslashreplace") + f"... [cut: the line has over {MAX_LINE_BYTES:,} bytes]"
    return raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")


def collect_rejects(con, paths: list[Path], literal_rejects: list[tuple]) -> pa.Table:
    """All rejects with line number, raw line and a precise reason, as an Arrow table."""
    flagged = con.execute(
        "select file_idx, rec_no, reject_reason from stg_reviews where reject_reason is not null "
        "union all select file_idx, rec_no, reject_reason from stg_meta where reject_reason is not null "
        "order by file_idx, rec_no"
    ).fetchall()
    by_file: dict[int, dict[int, str]] = {}
    for file_idx, rec_no, reason in flagged:
        by_file.setdefault(file_idx, {})[rec_no] = reason
    rows = [(i, ln, reason, raw) for i, ln, reason, raw in literal_rejects]
    for file_idx, reasons in by_file.items():
        for rec_no, line_no, raw in _locate(paths[file_idx], reasons, con, file_idx):
            reason = reasons[rec_no]
            if reason == OVERSIZE_REASON:
                reason = too_long(raw)
            elif reason == "unparseable line":
                reason = explain_unparseable(raw)
            rows.append((file_idx, line_no, reason, raw_text(raw)))
    return rows_to_rejects_table(rows)


def rows_to_rejects_table(rows: list[tuple]) -> pa.Table:
    """(file_idx, line_no, reason, raw_line) rows as a REJECTS_SCHEMA table, by file then line."""
    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    return pa.table({f.name: [r[k] for r in rows] for k, f in enumerate(REJECTS_SCHEMA)}, schema=REJECTS_SCHEMA)


def _locate(path: Path, wanted: dict[int, str], con, file_idx: int) -> Iterable[tuple[int, int, bytes]]:
    """Map record numbers (DuckDB's non-blank lines) to physical line numbers and raw bytes."""
    found = []
    rec_no = 0
    for line_no, raw in enumerate(raw_lines(path), start=1):
        if not raw.strip():
            continue
        rec_no += 1
        if rec_no in wanted:
            found.append((rec_no, line_no, raw))
    staged = execute(
        con,
        "select count(*) from (select file_idx from stg_reviews union all select file_idx from stg_meta) "
        "where file_idx = $file_idx",
        {"file_idx": file_idx},
    ).fetchall()[0][0]
    if staged != rec_no:
        raise MicnError(
            f"{path}: DuckDB read {staged} records but the file has {rec_no} non-blank lines, so rejected lines cannot "
            "be located; nothing was written. Please report this file."
        )
    return found

