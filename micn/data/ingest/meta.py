"""Metadata files into the staging table `stg_meta`: 2018 JSON lines through DuckDB's reader,
2014 Python dict literals parsed here, one streaming pass per file, into the same columns.

2014 metadata is not JSON but one Python literal per line: each line is parsed with
`ast.literal_eval` (never `eval`) by `micn.data.formats.meta_2014_row`, which applies the same
rules as `sql/ingest/staging/stg_meta_json.sql`; a line it refuses is a reject right away.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from micn.data.formats import LineRejected, LongLine, line_bytes, meta_2014_row, strip_bom
from micn.data.ingest.json_lines import Readable, raw_lines, read_json_model
from micn.data.ingest.rejects import append_rejects, create_rejects_table, quote_values, raw_text

# 2014 metadata lines parsed and inserted per batch: at most this many, of at most this many bytes
LITERAL_CHUNK = 20_000
LITERAL_CHUNK_BYTES = 64 * 2**20
META_COLUMNS = ("item_id", "category", "title", "brand", "price")
META_SCHEMA = pa.schema(
    [("file_idx", pa.int64()), ("rec_no", pa.int64())]
    + [(c, pa.float64() if c == "price" else pa.string()) for c in META_COLUMNS]
    + [("reject_reason", pa.string())]
)


def stage_meta(con, paths: list[Path], formats: dict[Path, str], first_file_idx: int, readable: Readable):
    """Stage metadata files into `stg_meta` and the 2014 literal rejects into the temp table
    `literal_rejects`, chunk by chunk; returns the seconds per file."""
    con.register("empty_meta", META_SCHEMA.empty_table())
    con.execute("create or replace temp table stg_meta as select * from empty_meta")
    con.unregister("empty_meta")
    create_rejects_table(con, "literal_rejects")
    seconds = {}
    for i, path in enumerate(paths, start=first_file_idx):
        t = time.perf_counter()
        if formats[path] == "meta-2018":
            read_json_model(con, "stg_meta", "ingest/staging/stg_meta_json", path, i, exact=True, append=True,
                            readable=readable)
        else:
            for rows, rejects in _parse_literal_meta(path):
                con.register("meta_chunk", pa.table({"file_idx": [i] * len(rows[0]), **dict(zip(("rec_no", *META_COLUMNS), rows))}))
                con.execute(
                    "insert into stg_meta select file_idx, rec_no, item_id, category, title, brand, price, "
                    "null as reject_reason from meta_chunk"
                )
                con.unregister("meta_chunk")
                append_rejects(con, "literal_rejects", [(i, *r) for r in rejects])
        seconds[i] = time.perf_counter() - t
    return seconds


def _parse_literal_meta(path: Path) -> Iterator[tuple[list[list], list[tuple]]]:
    """Yield (columns, rejects) per chunk of lines: a streaming pass in this process.

    columns = [line_no, item_id, category, title, brand, price] lists; rejects = (line_no, reason, raw).
    (In this process rather than a process pool: on two cores a pool's start-up and pickling cost
    more than it saves, and a pool breaks in scripts without a `__main__` guard.)
    """
    for chunk in _numbered_chunks(path):
        yield _parse_literal_chunk(chunk)


def _numbered_chunks(path: Path) -> Iterator[list[tuple[int, bytes | LongLine]]]:
    """Non-blank lines with their physical numbers; a byte-order mark on line 1 is dropped."""
    chunk, size = [], 0
    for n, line in enumerate(raw_lines(path), start=1):
        if isinstance(line, LongLine) or line.strip():
            chunk.append((n, strip_bom(line) if n == 1 and isinstance(line, bytes) else line))
            size += line_bytes(line) if isinstance(line, bytes) else len(line.head)
        if len(chunk) >= LITERAL_CHUNK or size >= LITERAL_CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _parse_literal_chunk(chunk: list[tuple[int, bytes | LongLine]]) -> tuple[list[list], list[tuple]]:
    cols: list[list] = [[] for _ in range(6)]
    rejects = []
    for line_no, raw in chunk:
        try:
            row = meta_2014_row(raw)
        except LineRejected as e:
            rejects.append((line_no, quote_values(str(e), raw, first_key_wins=False), raw_text(raw)))
            continue
        for col, value in zip(cols, (line_no, *row)):
            col.append(value)
    return cols, rejects
