"""Raw Amazon review and metadata files → the DuckDB warehouse (DESIGN §3.1–3.2).

    reviews(dataset, user_id, item_id, rating, ts)        deduplicated on (dataset, user_id, item_id, ts)
    items(dataset, item_id, category, title, ...)          category = categories[0][-1]; 'default_cat' without metadata
    rejects(dataset, source_file, line_no, reason, raw_line)
    ingest_log(dataset, source_file, ..., lines_read, accepted, rejected, duplicates, seconds)

The SQL lives in `sql/ingest/` (staging → intermediate → marts, see its README); this module reads
the files, runs the models through `micn.data.sql` and publishes the marts.

How a file is read:
* JSON files (reviews, 2018 metadata) go through DuckDB's own JSON reader with `ignore_errors`:
  a line it cannot parse comes back as an all-NULL row, so every non-blank line is a row and
  either passes the checks in `sql/ingest/staging/stg_*.sql` or carries a reject reason.
* Line numbers cost a `row_number()` window (~40 % of the read), so reviews are first read
  without them; only when a file has rejects or duplicates is it read again with them. The
  offending lines' raw text and a precise reason ("invalid UTF-8", "JSON array", ...) then
  come from one streaming pass in Python over those files.
* A line longer than `MAX_LINE_BYTES` (DuckDB's default object size) makes DuckDB refuse the
  whole file; the file is then read again with the limit raised to its longest line, and the
  long lines become rejects (issue 13 §9).
* 2014 metadata is not JSON but one Python literal per line: it is parsed with
  `ast.literal_eval` (never `eval`) in a streaming pass (`micn.data.formats.meta_2014_row`).

Everything is staged in temporary tables first; the dataset's rows are then replaced in one
transaction, so a failed ingest leaves the previous warehouse untouched, a failed first ingest
leaves no warehouse file, and re-ingesting the same files gives the same tables. A re-ingest that
would keep fewer than `SHRINK_FLOOR` of the dataset's reviews (or none) is refused unless the
caller allows it: a folder of broken files must not silently replace good data.
"""

from __future__ import annotations

import re
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

import duckdb
import pyarrow as pa

from micn.data.formats import (
    MAX_LINE_BYTES,
    META_FORMATS,
    REVIEW_FORMATS,
    SHOWN_RAW_CHARS,
    LineRejected,
    explain_unparseable,
    is_gzip,
    line_bytes,
    meta_2014_row,
    open_binary,
    sniff_format,
    strip_bom,
    too_long,
)
from micn.data.sql import create_table_as, execute, load_sql, run_script
from micn.errors import MicnError

DATASET_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
LITERAL_CHUNK = 20_000
# A re-ingest must keep at least this share of the dataset's current reviews (and at least one),
# else it is refused unless `allow_shrink`: far fewer accepted rows means broken input, not news.
SHRINK_FLOOR = 0.5
# The largest line DuckDB is asked to hold when a file has lines over MAX_LINE_BYTES; a longer one
# (a file without newlines, most likely) refuses the file with a clear message.
MAX_READ_BYTES = 2**30
OVERSIZE_REASON = "line over the size limit"  # placeholder in staging; `formats.too_long` words it


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


@dataclass
class _Sizes:
    """Per input file (by index): DuckDB's object-size limit and its over-long lines (rec_no → bytes)."""

    limits: dict[int, int] = field(default_factory=dict)
    oversize: dict[int, dict[int, int]] = field(default_factory=dict)


def ingest(
    dataset: str, reviews: Sequence[str | Path], meta: Sequence[str | Path], db: str | Path, *, allow_shrink: bool = False
) -> IngestReport:
    """Load one dataset's raw files into the warehouse at `db`, replacing that dataset's rows.

    `allow_shrink` lets a re-ingest replace the dataset with far fewer (or no) reviews.
    """
    started = time.perf_counter()
    review_paths, meta_paths, formats = check_inputs(dataset, reviews, meta)
    with open_warehouse(Path(db)) as con:
        run_script(con, "ingest/schema")
        run_script(con, "ingest/macros")
        rejects, files = _stage(con, review_paths, meta_paths, formats)
        _check_shrink(con, dataset, files, rejects, allow_shrink, Path(db))
        _publish(con, dataset, rejects, files)
        con.execute("checkpoint")
        counts = execute(
            con,
            "select (select count(*) from reviews where dataset = $dataset), "
            "(select count(distinct user_id) from reviews where dataset = $dataset), "
            "(select count(*) from items where dataset = $dataset), "
            "(select count(*) from items where dataset = $dataset and not has_meta), "
            "(select count(*) from rejects where dataset = $dataset)",
            {"dataset": dataset},
        ).fetchall()[0]
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


# --- the warehouse file ------------------------------------------------------------------------


@contextmanager
def open_warehouse(db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection to `db`; every failure the user can meet becomes one paragraph.

    When this call created the file (a first ingest) and the work fails, the file is removed
    again: the message says nothing was written, and then nothing is there.
    """
    if db.is_dir():
        raise MicnError(f"--db {db} is a directory; expected the path of a DuckDB warehouse file, e.g. {db / 'warehouse.duckdb'}.")
    existed = db.exists()
    made = _make_parents(db)
    try:
        con = duckdb.connect(str(db))
    except (duckdb.Error, OSError) as e:
        _remove_dirs(made)
        raise MicnError(explain_warehouse_error(db, e, new=not existed and not db.exists())) from e
    try:
        yield con
    except BaseException as e:
        with suppress(duckdb.Error):
            con.close()
        if not existed:  # we created it and hold its lock, so it is ours to remove
            for p in (db, Path(f"{db}.wal")):
                p.unlink(missing_ok=True)
            _remove_dirs(made)
        if isinstance(e, (duckdb.IOException, duckdb.FatalException, OSError)) or _disk_full(e):
            raise MicnError(explain_warehouse_error(db, e, new=not existed)) from e
        raise
    else:
        con.close()


def _make_parents(db: Path) -> list[Path]:
    """Create the missing folders above `db`; returns them, deepest first, for a clean-up."""
    missing = [p for p in db.parents if not p.exists()]
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MicnError(explain_warehouse_error(db, e, new=True)) from e
    return missing


def _remove_dirs(dirs: list[Path]) -> None:
    for d in dirs:  # deepest first; only if still empty
        with suppress(OSError):
            d.rmdir()


def _disk_full(e: BaseException) -> bool:
    return getattr(e, "errno", None) == 28 or "No space left on device" in str(e)


def explain_warehouse_error(db: Path, e: BaseException, *, new: bool) -> str:
    """One paragraph for a warehouse that cannot be opened or written (issue 13 §8).

    `new`: the file did not exist before this ingest (and, after a failure, does not now).
    """
    state = "no warehouse file was left behind" if new else "the warehouse is as it was before this ingest"
    said = str(e).splitlines()[0] if str(e) else type(e).__name__
    text = str(e)
    lock = re.search(r"Conflicting lock is held in (.*?) \(PID (\d+)\)", text)
    if lock:
        return (f"{db}: another process (PID {lock.group(2)}, {lock.group(1)}) holds this warehouse's lock; DuckDB lets "
                "one process write a database file at a time. Wait for it to finish (another `micn ingest` or "
                "`micn samples`, or a DuckDB shell left open) and run again; nothing was written.")
    if _disk_full(e):
        return (f"{db}: the disk is full (no space left on device) while writing the warehouse; "
                f"{state}. Free some space and run again. DuckDB said: {said}")
    if "not a valid DuckDB database" in text:
        return (f"--db {db} exists but is not a DuckDB database file (a text file?); it was left untouched. Pass the "
                "warehouse written by `micn ingest`, or a new path to create one.")
    if "Is a directory" in text:
        return f"--db {db} is a directory; expected the path of a DuckDB warehouse file."
    if any(s in text for s in ("Read-only file system", "Permission denied", "Operation not permitted")):
        return (f"{db}: cannot write the warehouse here ({said}); choose a --db in a folder you can write to. "
                f"{state.capitalize()}.")
    return f"{db}: cannot open or write the DuckDB warehouse; {state}. DuckDB said: {said}"


# --- staging -----------------------------------------------------------------------------------


def _stage(con, review_paths: list[Path], meta_paths: list[Path], formats: dict[Path, str]):
    """Stage every file and find its rejects and duplicates; returns (rejects table, file reports)."""
    sizes = _Sizes()
    paths = [*review_paths, *meta_paths]
    seconds = _stage_reviews(con, review_paths, exact=False, sizes=sizes)
    exact = bool(sizes.oversize) or _needs_exact_pass(con)
    if exact:
        seconds = _stage_reviews(con, review_paths, exact=True, sizes=sizes)
    literal_rejects, meta_seconds = _stage_meta(con, meta_paths, formats, len(review_paths), sizes)
    seconds.update(meta_seconds)
    _flag_oversize(con, sizes)
    con.register("literal_rejects_arrow", _rows_to_rejects_table(literal_rejects))
    con.execute("create or replace temp table literal_rejects as select * from literal_rejects_arrow")
    con.unregister("literal_rejects_arrow")
    rejects = _collect_rejects(con, paths, literal_rejects)
    if exact:
        create_table_as(con, "review_duplicates", "ingest/intermediate/int_review_duplicates")
    else:  # the fast pass already found no repeated key
        con.execute("create or replace temp table review_duplicates as select file_idx, rec_no from stg_reviews where false")
    create_table_as(con, "meta_duplicates", "ingest/intermediate/int_meta_duplicates")
    return rejects, _file_reports(con, paths, formats, seconds)


def _read_json_model(con, table: str, model: str, path: Path, file_idx: int, *, exact: bool, append: bool,
                     sizes: _Sizes) -> None:
    """Stage one JSON file; `exact` numbers its non-blank lines (`rec_no`), else rec_no is NULL."""
    rec_no = "row_number() over ()" if exact else "null::bigint"
    prefix = f"select {file_idx} as file_idx, {rec_no} as rec_no, * from"
    while True:
        params = {"path": str(path), "compression": "gzip" if is_gzip(path) else "none",
                  "maximum_object_size": sizes.limits.get(file_idx, MAX_LINE_BYTES)}
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


def _measure_long_lines(path: Path, file_idx: int, sizes: _Sizes) -> None:
    """One streaming pass: the file's longest line and its lines over MAX_LINE_BYTES (by rec_no)."""
    longest, rec_no, oversize = 0, 0, {}
    for raw in _lines(path):
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


def _lines(path: Path) -> Iterator[bytes]:
    try:
        with open_binary(path) as f:
            yield from f
    except (OSError, EOFError, zlib.error) as e:
        raise MicnError(f"{path}: the gzip stream is damaged or ends early ({e}); nothing was written. Re-download the file.") from e


def _flag_oversize(con, sizes: _Sizes) -> None:
    """Lines over MAX_LINE_BYTES are rejects even when they parse (their reason is worded later)."""
    for file_idx, lines in sizes.oversize.items():
        for rec_no in lines:
            for table in ("stg_reviews", "stg_meta"):
                execute(con, f"update {table} set reject_reason = $reason where file_idx = $file_idx and rec_no = $rec_no",
                        {"reason": OVERSIZE_REASON, "file_idx": file_idx, "rec_no": rec_no})


def _explain_read_error(path: Path, e: Exception) -> str:
    msg = str(e).splitlines()[0]
    if "GZIP" in msg.upper() or "gzip" in msg:
        return f"{path}: the gzip stream is damaged or ends early (truncated download?); nothing was written. Re-download the file. DuckDB said: {msg}"
    return f"{path}: could not be read as JSON lines; nothing was written. DuckDB said: {msg}"


def _stage_reviews(con, paths: list[Path], exact: bool, sizes: _Sizes) -> dict[int, float]:
    seconds = {}
    for i, path in enumerate(paths):
        t = time.perf_counter()
        _read_json_model(con, "stg_reviews", "ingest/staging/stg_reviews", path, i, exact=exact, append=i > 0, sizes=sizes)
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


def _stage_meta(con, paths: list[Path], formats: dict[Path, str], first_file_idx: int, sizes: _Sizes):
    """Stage metadata files into `stg_meta`; returns the 2014 literal rejects and seconds per file."""
    con.register("empty_meta", META_SCHEMA.empty_table())
    con.execute("create or replace temp table stg_meta as select * from empty_meta")
    con.unregister("empty_meta")
    literal_rejects: list[tuple] = []
    seconds = {}
    for i, path in enumerate(paths, start=first_file_idx):
        t = time.perf_counter()
        if formats[path] == "meta-2018":
            _read_json_model(con, "stg_meta", "ingest/staging/stg_meta_json", path, i, exact=True, append=True, sizes=sizes)
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
    """Non-blank lines with their physical numbers; a byte-order mark on line 1 is dropped."""
    numbered = ((n, strip_bom(line) if n == 1 else line) for n, line in enumerate(_lines(path), start=1) if line.strip())
    while chunk := list(islice(numbered, LITERAL_CHUNK)):
        yield chunk


def _parse_literal_chunk(chunk: list[tuple[int, bytes]]) -> tuple[list[list], list[tuple]]:
    cols: list[list] = [[] for _ in range(6)]
    rejects = []
    for line_no, raw in chunk:
        try:
            row = meta_2014_row(raw)
        except LineRejected as e:
            rejects.append((line_no, str(e), _raw_text(raw)))
            continue
        for col, value in zip(cols, (line_no, *row)):
            col.append(value)
    return cols, rejects


def _raw_text(raw: bytes) -> str:
    """The raw line as `rejects.raw_line` keeps it: whole, except an over-long line's head."""
    if line_bytes(raw) > MAX_LINE_BYTES:
        raw = raw[:SHOWN_RAW_CHARS]
        return raw.decode("utf-8", errors="backslashreplace") + f"... [cut: the line has over {MAX_LINE_BYTES:,} bytes]"
    return raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")


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
            if reason == OVERSIZE_REASON:
                reason = too_long(raw)
            elif reason == "unparseable line":
                reason = explain_unparseable(raw)
            rows.append((file_idx, line_no, reason, _raw_text(raw)))
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
    for line_no, raw in enumerate(_lines(path), start=1):
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


def _file_reports(con, paths: list[Path], formats: dict[Path, str], seconds: dict[int, float]) -> list[FileReport]:
    create_table_as(con, "file_counts", "ingest/intermediate/int_file_counts")
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


def _check_shrink(con, dataset: str, files: list[FileReport], rejects: pa.Table, allow_shrink: bool, db: Path) -> None:
    """Refuse to replace a dataset's reviews with none, or with fewer than SHRINK_FLOOR of them."""
    new = sum(f.accepted for f in files if f.kind == "reviews")
    old = execute(con, "select count(*) from reviews where dataset = $dataset", {"dataset": dataset}).fetchall()[0][0]
    if allow_shrink or (new > 0 and new >= SHRINK_FLOOR * old):
        return
    read = sum(f.lines_read for f in files if f.kind == "reviews")
    rejected = sum(f.rejected for f in files if f.kind == "reviews")
    review_files = {f.source_file for f in files if f.kind == "reviews"}
    reasons = Counter(r for r, s in zip(rejects["reason"].to_pylist(), _source_files(rejects, files)) if s in review_files)
    top = "; ".join(f"{n:,} × {reason[:120]}" for reason, n in reasons.most_common(3)) or "none"
    kept = (f"its {old:,} reviews in {db} are kept" if old else f"{db} was left as it was")
    what = "no review was accepted" if new == 0 else f"only {new:,} reviews were accepted, under {SHRINK_FLOOR:.0%} of the {old:,} it has now"
    raise MicnError(
        f"dataset {dataset!r}: {what} ({read:,} review lines read, {rejected:,} rejected; most common reasons: {top}), "
        f"so the ingest was refused and {kept}. Fix the input files (the reasons above, per line, are what "
        "`rejects` would hold), or pass --allow-shrink to replace the dataset anyway."
    )


def _source_files(rejects: pa.Table, files: list[FileReport]) -> list[str]:
    return [files[i].source_file for i in rejects["file_idx"].to_pylist()]


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
    params = {"dataset": dataset, "now": datetime.now(timezone.utc).replace(tzinfo=None)}
    try:
        con.execute("begin transaction")
        for table in ("reviews", "items", "rejects", "ingest_log"):
            execute(con, f"delete from {table} where dataset = $dataset", params)
        for table in ("reviews", "items", "rejects", "ingest_log"):
            execute(con, f"insert into {table} {load_sql(f'ingest/marts/{table}')}", params)
        con.execute("commit")
    except BaseException:
        # A failed commit (a full disk) has already ended the transaction; the rollback's own
        # "no transaction is active" must not hide the error that matters.
        with suppress(duckdb.Error):
            con.execute("rollback")
        raise
    finally:
        for name in ("new_rejects", "new_log", "sources"):
            with suppress(duckdb.Error):
                con.unregister(name)
