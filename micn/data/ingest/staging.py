"""Staging an ingest: every input file into temp tables, with its rejects and duplicates.

Reviews are first read without line numbers (the fast pass); only when that pass finds rejects
or repeated keys are they read again with them (the exact pass), so that each offending line can
be located and counted. A file with lines over the size limit is read through a copy without them
in a temporary folder inside `work_dir` (`json_lines.Readable`), removed before this returns.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

from micn.data.ingest.accounting import file_reports
from micn.data.ingest.json_lines import Readable, needs_exact_pass, stage_reviews
from micn.data.ingest.meta import stage_meta
from micn.data.ingest.rejects import collect_rejects
from micn.data.sql import create_table_as


def stage(con, review_paths: list[Path], meta_paths: list[Path], formats: dict[Path, str], work_dir: Path):
    """Stage every file and find its rejects (temp table `new_rejects`) and duplicates; returns
    one report per file."""
    paths = [*review_paths, *meta_paths]
    with closing(Readable(work_dir)) as readable:
        seconds = stage_reviews(con, review_paths, exact=False, readable=readable)
        exact = needs_exact_pass(con)
        if exact:
            seconds = stage_reviews(con, review_paths, exact=True, readable=readable)
        meta_seconds = stage_meta(con, meta_paths, formats, len(review_paths), readable)
    seconds.update(meta_seconds)
    collect_rejects(con, paths)
    if exact:
        create_table_as(con, "review_duplicates", "ingest/intermediate/int_review_duplicates")
    else:  # the fast pass already found no repeated key
        con.execute("create or replace temp table review_duplicates as select file_idx, rec_no from stg_reviews where false")
    create_table_as(con, "meta_duplicates", "ingest/intermediate/int_meta_duplicates")
    return file_reports(con, paths, formats, seconds)

