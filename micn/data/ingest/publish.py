"""Publishing an ingest: the shrink guard, then one transaction that replaces the dataset's rows.

Until the commit the warehouse holds the dataset as it was; a failure anywhere before or during
the transaction leaves it so.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from micn.data.ingest.accounting import FileReport
from micn.data.ingest.warehouse import WAREHOUSE_TABLES
from micn.data.sql import execute, load_sql
from micn.errors import MicnError

# A re-ingest must keep at least this share of the dataset's current reviews (and at least one),
# else it is refused unless `allow_shrink`: far fewer accepted rows means broken input, not news.
SHRINK_FLOOR = 0.5


def check_shrink(con, dataset: str, files: list[FileReport], allow_shrink: bool, db: Path) -> None:
    """Refuse to replace a dataset's reviews with none, or with fewer than SHRINK_FLOOR of them
    (the reasons quoted come from the temp table `new_rejects`)."""
    new = sum(f.accepted for f in files if f.kind == "reviews")
    current = execute(con, "select count(*) from reviews where dataset = $dataset", {"dataset": dataset}).fetchall()[0][0]
    if allow_shrink or (new > 0 and new >= SHRINK_FLOOR * current):
        return
    read = sum(f.lines_read for f in files if f.kind == "reviews")
    rejected = sum(f.rejected for f in files if f.kind == "reviews")
    review_files = [i for i, f in enumerate(files) if f.kind == "reviews"]
    reasons = execute(con, "select reason, count(*) as n from new_rejects where list_contains($files, file_idx) "
                      "group by reason order by n desc, reason limit 3", {"files": review_files}).fetchall()
    top = "; ".join(f"{n:,} × {reason if len(reason) <= 240 else reason[:240] + '…'}" for reason, n in reasons) or "none"
    kept = (f"its {current:,} reviews in {db} are kept" if current else f"{db} was left as it was")
    what = "no review was accepted" if new == 0 else f"only {new:,} reviews were accepted, under {SHRINK_FLOOR:.0%} of the {current:,} it has now"
    raise MicnError(
        f"dataset {dataset!r}: {what} ({read:,} review lines read, {rejected:,} rejected; most common reasons: {top}), "
        f"so the ingest was refused and {kept}. Fix the input files (the reasons above, per line, are what "
        "`rejects` would hold), or pass --allow-shrink to replace the dataset anyway."
    )


def publish(con, dataset: str, files: list[FileReport]) -> None:
    """Replace the dataset's rows in one transaction: all or nothing (the rejects come from the
    temp table `new_rejects`)."""
    log = pa.table({
        "source_file": [f.source_file for f in files], "kind": [f.kind for f in files], "format": [f.format for f in files],
        "lines_read": [f.lines_read for f in files], "accepted": [f.accepted for f in files],
        "rejected": [f.rejected for f in files], "duplicates": [f.duplicates for f in files],
        "seconds": [f.seconds for f in files],
    })
    sources = pa.table({"file_idx": list(range(len(files))), "source_file": [f.source_file for f in files]})
    con.register("new_log", log)
    con.register("sources", sources)
    params = {"dataset": dataset, "now": datetime.now(timezone.utc).replace(tzinfo=None)}
    try:
        con.execute("begin transaction")
        for table in WAREHOUSE_TABLES:
            execute(con, f"delete from {table} where dataset = $dataset", params)
        for table in WAREHOUSE_TABLES:
            execute(con, f"insert into {table} {load_sql(f'ingest/marts/{table}')}", params)
        con.execute("commit")
    except BaseException:
        # A failed commit (a full disk) has already ended the transaction; the rollback's own
        # "no transaction is active" must not hide the error that matters.
        with suppress(duckdb.Error):
            con.execute("rollback")
        raise
    finally:
        for name in ("new_log", "sources"):
            with suppress(duckdb.Error):
                con.unregister(name)
