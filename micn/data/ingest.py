"""Raw Amazon review and metadata files → the DuckDB warehouse (DESIGN §3.1–3.2).

    reviews(dataset, user_id, item_id, rating, ts)        deduplicated on (dataset, user_id, item_id, ts)
    items(dataset, item_id, category, title, ...)          category = categories[0][-1]; 'default_cat' without metadata
    rejects(dataset, source_file, line_no, reason, raw_line)
    ingest_log(dataset, source_file, ..., lines_read, accepted, rejected, duplicates, seconds)

How a file is read:
* JSON files (reviews, 2018 metadata) go through DuckDB's own JSON reader with `ignore_errors`:
  a line it cannot parse comes back as an all-NULL row, so every non-blank line is a row and
  either passes the checks in `sql/ingest/stg_*.sql` or carries a reject reason.
* Line numbers cost a `row_number()` window (~40 % of the read), so reviews are first read
  without them; only when a file has rejects or duplicates is it read again with them. The
  offending lines' raw text and a precise reason ("invalid UTF-8", "JSON array", ...) then
  come from one streaming pass in Python over those files.
* 2014 metadata is not JSON but one Python literal per line: it is parsed with
  `ast.literal_eval` (never `eval`) in a streaming pass; lines without double quotes or
  backslashes take an equivalent, faster `json.loads` path (see `_parse_literal`).

Everything is staged in temporary tables first; the dataset's rows are then replaced in one
transaction, so a failed ingest leaves the previous warehouse untouched and re-ingesting the
same files gives the same tables.
"""

from __future__ import annotations

import ast
import json
import re
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

import duckdb
import pyarrow as pa

from micn.data.formats import META_FORMATS, REVIEW_FORMATS, is_gzip, open_binary, sniff_format
from micn.data.sql import create_table_as, load_sql, run_script
from micn.errors import MicnError

DATASET_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
LITERAL_CHUNK = 20_000


@dataclass(frozen=True)
class FileReport:
    source_file: str
    kind: str  # reviews | meta
    format: str
    lines_read: int
    accepted: int
    rejected: int
    duplicates: int
    seconds: float


@dataclass(frozen=True)
class IngestReport:
    dataset: str
    db: str
    files: list[FileReport]
    reviews: int
    users: int
    items: int
    items_without_meta: int
    rejects: int
    seconds: float


def ingest(dataset: str, reviews: Sequence[str | Path], meta: Sequence[str | Path], db: str | Path) -> IngestReport:
    """Load one dataset's raw files into the warehouse at `db`, replacing that dataset's rows."""
    started = time.perf_counter()
    review_paths, meta_paths, formats = check_inputs(dataset, reviews, meta)

    Path(db).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(db))
    try:
        run_script(con, "ingest/schema")
        run_script(con, "ingest/macros")
        seconds = _stage_reviews(con, review_paths, exact=False)
        exact = _needs_exact_pass(con)
        if exact:
            seconds = _stage_reviews(con, review_paths, exact=True)
        literal_rejects, meta_seconds = _stage_meta(con, meta_paths, formats, first_file_idx=len(review_paths))
        seconds.update(meta_seconds)
        paths = [*review_paths, *meta_paths]
        con.register("literal_rejects_arrow", _rows_to_rejects_table(literal_rejects))
        con.execute("create or replace temp table literal_rejects as select * from literal_rejects_arrow")
        con.unregister("literal_rejects_arrow")
        rejects = _collect_rejects(con, paths, literal_rejects)
        if exact:
            create_table_as(con, "review_duplicates", "ingest/int_review_duplicates")
        else:  # the fast pass already found no repeated key
            con.execute("create or replace temp table review_duplicates as select file_idx, rec_no from stg_reviews where false")
        create_table_as(con, "meta_duplicates", "ingest/int_meta_duplicates")
        files = _file_reports(con, paths, formats, seconds)
        _publish(con, dataset, rejects, files)
        con.execute("checkpoint")
        counts = con.execute(
            "select (select count(*) from reviews where dataset = $d), "
            "(select count(distinct user_id) from reviews where dataset = $d), "
            "(select count(*) from items where dataset = $d), "
            "(select count(*) from items where dataset = $d and not has_meta), "
            "(select count(*) from rejects where dataset = $d)",
            {"d": dataset},
        ).fetchall()[0]
    finally:
        con.close()
    return IngestReport(dataset, str(db), files, *counts, seconds=time.perf_counter() - started)


# --- arguments ---------------------------------------------------------------------------------


def check_inputs(
    dataset: str, reviews: Sequence[str | Path], meta: Sequence[str | Path]
) -> tuple[list[Path], list[Path], dict[Path, str]]:
    """Validate names and files before any work; returns the paths and each file's format."""
    review_paths, meta_paths = _check_arguments(dataset, reviews, meta)
    formats = {p: sniff_format(p) for p in [*review_paths, *meta_paths]}
    _check_kinds(formats, review_paths, meta_paths)
    return review_paths, meta_paths, formats


def _check_arguments(dataset, reviews, meta) -> tuple[list[Path], list[Path]]:
    if not DATASET_NAME.match(dataset or ""):
        raise MicnError(f"dataset name {dataset!r} is not valid: use letters, digits, '_' or '-' (e.g. 'electronics').")
    if not reviews:
        raise MicnError("no reviews file given: pass at least one --reviews FILE (e.g. reviews_Electronics_5.json.gz).")
    paths = [Path(p) for p in reviews], [Path(p) for p in meta]
    for p in [*paths[0], *paths[1]]:
        if not p.is_file():
            raise MicnError(f"{p}: no such file; expected a raw Amazon reviews or metadata file (plain or .gz).")
    return paths


def _check_kinds(formats: dict[Path, str], review_paths: list[Path], meta_paths: list[Path]) -> None:
    for p in review_paths:
        if formats[p] not in REVIEW_FORMATS:
            raise MicnError(f"{p}: given as --reviews but its lines look like {formats[p]}; pass it with --meta.")
    for p in meta_paths:
        if formats[p] not in META_FORMATS:
            raise MicnError(f"{p}: given as --meta but its lines look like {formats[p]}; pass it with --reviews.")


# --- staging -----------------------------------------------------------------------------------


def _read_json_model(con, table: str, model: str, path: Path, file_idx: int, exact: bool, append: bool) -> None:
    """Stage one JSON file; `exact` numbers its non-blank lines (`rec_no`), else rec_no is NULL."""
    rec_no = "row_number() over ()" if exact else "null::bigint"
    params = {"path": str(path), "compression": "gzip" if is_gzip(path) else "none"}
    try:
        if append:
            con.execute(
                f"insert into {table} select {file_idx} as file_idx, {rec_no} as rec_no, * from ({load_sql(model)})", params
            )
        else:
            create_table_as(con, table, model, params, prefix=f"select {file_idx} as file_idx, {rec_no} as rec_no, * from")
    except duckdb.Error as e:
        raise MicnError(_explain_read_error(path, e)) from e


def _explain_read_error(path: Path, e: Exception) -> str:
    msg = str(e).splitlines()[0]
    if "GZIP" in msg.upper() or "gzip" in msg:
        return f"{path}: the gzip stream is damaged or ends early (truncated download?); nothing was written. Re-download the file. DuckDB said: {msg}"
    return f"{path}: could not be read as JSON lines; nothing was written. DuckDB said: {msg}"


def _stage_reviews(con, paths: list[Path], exact: bool) -> dict[int, float]:
    seconds = {}
    for i, path in enumerate(paths):
        t = time.perf_counter()
        _read_json_model(con, "stg_reviews", "ingest/stg_reviews", path, i, exact, append=i > 0)
        seconds[i] = time.perf_counter() - t
    return seconds


def _needs_exact_pass(con) -> bool:
    """Fast pass only: do line numbers matter, i.e. are there rejects or duplicate keys?"""
    rejected, repeated = con.execute(
        "select (select count(*) from stg_reviews where reject_reason is not null), "
        "(select count(*) from (select 1 from stg_reviews where reject_reason is null "
        " group by hash(user_id, item_id, ts) having count(*) > 1))"
    ).fetchall()[0]
    return rejected > 0 or repeated > 0


META_COLUMNS = ("item_id", "category", "title", "brand", "price")
META_SCHEMA = pa.schema(
    [("file_idx", pa.int64()), ("rec_no", pa.int64())]
    + [(c, pa.float64() if c == "price" else pa.string()) for c in META_COLUMNS]
    + [("reject_reason", pa.string())]
)


def _stage_meta(con, paths: list[Path], formats: dict[Path, str], first_file_idx: int):
    """Stage metadata files into `stg_meta`; returns the 2014 literal rejects and seconds per file."""
    con.register("empty_meta", META_SCHEMA.empty_table())
    con.execute("create or replace temp table stg_meta as select * from empty_meta")
    con.unregister("empty_meta")
    literal_rejects: list[tuple] = []
    seconds = {}
    for i, path in enumerate(paths, start=first_file_idx):
        t = time.perf_counter()
        if formats[path] == "meta-2018":
            _read_json_model(con, "stg_meta", "ingest/stg_meta_json", path, i, exact=True, append=True)
        else:
            for rows, rejects in _parse_literal_meta(path):
                con.register("meta_chunk", pa.table({"file_idx": [i] * len(rows[0]), **dict(zip(("rec_no", *META_COLUMNS), rows))}))
                con.execute(
                    "insert into stg_meta select file_idx, rec_no, item_id, category, title, brand, price, "
                    "null as reject_reason from meta_chunk"
                )
                con.unregister("meta_chunk")
                literal_rejects.extend((i, *r) for r in rejects)
        seconds[i] = time.perf_counter() - t
    return literal_rejects, seconds


# --- 2014 metadata: Python literals ------------------------------------------------------------


def _parse_literal_meta(path: Path) -> Iterator[tuple[list[list], list[tuple]]]:
    """Yield (columns, rejects) per chunk of lines: a streaming pass in this process.

    columns = [line_no, item_id, category, title, brand, price] lists; rejects = (line_no, reason, raw).
    (A process pool was tried: on two cores its start-up and pickling ate the gain, and it
    breaks in scripts without a `__main__` guard.)
    """
    for chunk in _numbered_chunks(path):
        yield _parse_literal_chunk(chunk)


def _numbered_chunks(path: Path) -> Iterator[list[tuple[int, bytes]]]:
    try:
        with open_binary(path) as f:
            numbered = ((n, line) for n, line in enumerate(f, start=1) if line.strip())
            while chunk := list(islice(numbered, LITERAL_CHUNK)):
                yield chunk
    except (OSError, EOFError, zlib.error) as e:
        raise MicnError(f"{path}: the gzip stream is damaged or ends early ({e}); nothing was written. Re-download the file.") from e


def _parse_literal_chunk(chunk: list[tuple[int, bytes]]) -> tuple[list[list], list[tuple]]:
    cols: list[list] = [[] for _ in range(6)]
    rejects = []
    for line_no, raw in chunk:
        try:
            record = _parse_literal(raw)
            item_id = str(record.get("asin") or "").strip()
            if not item_id:
                raise ValueError("asin missing, null or empty")
        except ValueError as e:
            rejects.append((line_no, str(e), raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")))
            continue
        for col, value in zip(cols, (line_no, item_id, _first_path_leaf(record.get("categories")),
                                     _text(record.get("title")), _text(record.get("brand")), _price(record.get("price")))):
            col.append(value)
    return cols, rejects


def _parse_literal(raw: bytes) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"invalid UTF-8 at byte {e.start}") from None
    if '"' not in text and "\\" not in text:
        # Fast path, same result: a `repr` line without double quotes or backslashes has only
        # '...' strings that hold neither quote nor escape, so swapping the quotes gives JSON
        # with identical values. json.loads is ~10x faster than ast.literal_eval; anything it
        # rejects (True, None, tuples, ...) falls through to literal_eval.
        try:
            record = json.loads(text.replace("'", '"'))
            if isinstance(record, dict):
                return record
        except json.JSONDecodeError:
            pass
    try:
        record = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        try:  # the same records re-written as JSON (true/null) are welcome too
            record = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"not a Python dict literal: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if not isinstance(record, dict):
        raise ValueError(f"a Python {type(record).__name__} literal, expected a dict with 'asin' and 'categories'")
    return record


def _first_path_leaf(categories) -> str | None:
    """DIEN's rule: the last element of the first category path."""
    if isinstance(categories, list) and categories and isinstance(categories[0], list) and categories[0]:
        leaf = str(categories[0][-1]).strip()
        return leaf or None
    return None


def _text(value) -> str | None:
    return None if value is None else str(value)


def _price(value) -> float | None:
    try:
        return float(str(value).replace("$", "").replace(",", "")) if value not in (None, "") else None
    except ValueError:
        return None


# --- rejects, accounting, publishing -----------------------------------------------------------


def _collect_rejects(con, paths: list[Path], literal_rejects: list[tuple]) -> pa.Table:
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
            if reason == "unparseable line":
                reason = explain_unparseable(raw)
            rows.append((file_idx, line_no, reason, raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")))
    return _rows_to_rejects_table(rows)


REJECTS_SCHEMA = pa.schema(
    [("file_idx", pa.int64()), ("line_no", pa.int64()), ("reason", pa.string()), ("raw_line", pa.string())]
)


def _rows_to_rejects_table(rows: list[tuple]) -> pa.Table:
    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    return pa.table({f.name: [r[k] for r in rows] for k, f in enumerate(REJECTS_SCHEMA)}, schema=REJECTS_SCHEMA)


def _locate(path: Path, wanted: dict[int, str], con, file_idx: int) -> Iterable[tuple[int, int, bytes]]:
    """Map record numbers (DuckDB's non-blank lines) to physical line numbers and raw bytes."""
    found = []
    rec_no = 0
    with open_binary(path) as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            rec_no += 1
            if rec_no in wanted:
                found.append((rec_no, line_no, raw))
    staged = con.execute(
        "select count(*) from (select file_idx from stg_reviews union all select file_idx from stg_meta) where file_idx = $i",
        {"i": file_idx},
    ).fetchall()[0][0]
    if staged != rec_no:
        raise MicnError(
            f"{path}: DuckDB read {staged} records but the file has {rec_no} non-blank lines, so rejected lines cannot "
            "be located; nothing was written. Please report this file."
        )
    return found


def explain_unparseable(raw: bytes) -> str:
    """Why DuckDB's JSON reader returned nothing for this line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"invalid UTF-8 at byte {e.start}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        try:
            if isinstance(ast.literal_eval(text.strip()), dict):
                return "a Python dict literal, not JSON (single quotes?); expected one JSON object per line"
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
        return f"malformed JSON: {e.msg} at column {e.colno}"
    if isinstance(value, list):
        return "a JSON array, expected one JSON object per line"
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, expected one JSON object per line"
    return "a JSON object without any of the expected fields (reviewerID, asin, overall, unixReviewTime)"


def _file_reports(con, paths: list[Path], formats: dict[Path, str], seconds: dict[int, float]) -> list[FileReport]:
    create_table_as(con, "file_counts", "ingest/int_file_counts")
    counts = {row[0]: row[1:] for row in con.execute("select * from file_counts").fetchall()}
    reports = []
    for i, path in enumerate(paths):
        lines_read, rejected, duplicates = counts.get(i, (0, 0, 0))
        fmt = formats[path]
        reports.append(
            FileReport(str(path), fmt.split("-")[0], fmt, lines_read, lines_read - rejected - duplicates, rejected,
                       duplicates, round(seconds.get(i, 0.0), 3))
        )
    return reports


def _publish(con, dataset: str, rejects: pa.Table, files: list[FileReport]) -> None:
    """Replace the dataset's rows in one transaction: all or nothing."""
    log = pa.table({
        "source_file": [f.source_file for f in files], "kind": [f.kind for f in files], "format": [f.format for f in files],
        "lines_read": [f.lines_read for f in files], "accepted": [f.accepted for f in files],
        "rejected": [f.rejected for f in files], "duplicates": [f.duplicates for f in files],
        "seconds": [f.seconds for f in files],
    })
    sources = pa.table({"file_idx": list(range(len(files))), "source_file": [f.source_file for f in files]})
    con.register("new_rejects", rejects)
    con.register("new_log", log)
    con.register("sources", sources)
    params = {"dataset": dataset}
    try:
        con.execute("begin transaction")
        for table in ("reviews", "items", "rejects", "ingest_log"):
            con.execute(f"delete from {table} where dataset = $dataset", params)
        con.execute(f"insert into reviews {load_sql('ingest/reviews')}", params)
        con.execute(f"insert into items {load_sql('ingest/items')}", params)
        con.execute(
            "insert into rejects select $dataset, s.source_file, r.line_no, r.reason, r.raw_line "
            "from new_rejects r join sources s using (file_idx) order by r.file_idx, r.line_no",
            params,
        )
        con.execute(
            "insert into ingest_log select $dataset, source_file, kind, format, lines_read, accepted, rejected, "
            "duplicates, seconds, $now from new_log",
            {**params, "now": datetime.now(timezone.utc).replace(tzinfo=None)},
        )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        for name in ("new_rejects", "new_log", "sources"):
            con.unregister(name)
