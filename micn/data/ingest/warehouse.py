"""The warehouse file of an ingest: opening it read-write, and one paragraph for every failure.

A failed first ingest removes the file (and the folders) it created, so that the message
"nothing was written" is true on disk too. An ingest writes only into a warehouse it made: a
DuckDB database holding other tables (a user's own, the metrics database) is refused and left as
it was. A link at --db is followed: its target is the warehouse.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb

from micn.errors import MicnError
from micn.outputs import anything, claim

# The warehouse's tables (sql/ingest/schema.sql): a database holding them is one an ingest made.
WAREHOUSE_TABLES = ("reviews", "items", "rejects", "ingest_log")


MEMORY_LIMIT = "1GB"  # DuckDB's memory for one ingest (2M rejected lines in 515 MB: peak RSS 1.3 GB in all, 4.1 GB without it)


@contextmanager
def open_warehouse(db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection to `db`; every failure the user can meet becomes one paragraph.

    When this call created the file (a first ingest) and the work fails, the file is removed
    again: the message says nothing was written, and then nothing is there.
    """
    if db.is_dir():
        raise MicnError(f"--db {db} is a directory; expected the path of a DuckDB warehouse file, e.g. {db / 'warehouse.duckdb'}.")
    db = claim(db, anything, what="the warehouse", command="ingest", fix="pass another --db", follow_links=True)
    existed = db.exists()
    made = _make_parents(db)
    try:
        # DuckDB keeps the staged files and their rejects in temp tables; past this it spills them
        # to `<db>.tmp/` beside the warehouse, so an ingest's memory does not grow with its files
        con = duckdb.connect(str(db), config={"memory_limit": MEMORY_LIMIT})
    except (duckdb.Error, OSError) as e:
        _remove_dirs(made)
        raise MicnError(explain_warehouse_error(db, e, new=not existed and not db.exists())) from e
    if existed:
        _check_own(con, db)
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


def _check_own(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    """Refuse (closing `con`, nothing written) a database that holds tables or views but not the
    warehouse's. An empty database holds nothing to lose; it is also what an ingest killed before
    its first table leaves."""
    names = {name for (name,) in con.execute("select table_name from information_schema.tables").fetchall()}
    missing = [t for t in WAREHOUSE_TABLES if t not in names]
    if names and missing:
        con.close()
        shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        raise MicnError(f"--db {db}: a DuckDB database that `micn ingest` did not make (it holds {shown}, not the "
                        f"warehouse's tables {', '.join(WAREHOUSE_TABLES)}), so it was left as it was and nothing was "
                        "written. Pass another --db (a new path creates a warehouse), or move the file away.")


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
    """One paragraph for a warehouse that cannot be opened or written: locked, disk full, not DuckDB,
    a directory, read-only or not permitted.

    `new`: the file did not exist before this ingest (and, after a failure, is not there either).
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
