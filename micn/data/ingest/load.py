"""`ingest`: one dataset's raw files into the warehouse (the package docstring has the details)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from micn.data.ingest.accounting import IngestReport
from micn.data.ingest.inputs import check_inputs
from micn.data.ingest.publish import check_shrink, publish
from micn.data.ingest.staging import stage
from micn.data.ingest.warehouse import open_warehouse
from micn.data.sql import execute, run_script


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
        files = stage(con, review_paths, meta_paths, formats, Path(db).parent)
        check_shrink(con, dataset, files, allow_shrink, Path(db))
        publish(con, dataset, files)
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

