"""Raw Amazon review and metadata files → the DuckDB warehouse.

    reviews(dataset, user_id, item_id, rating, ts)        deduplicated on (dataset, user_id, item_id, ts)
    items(dataset, item_id, category, title, ...)          category = categories[0][-1]; 'default_cat' without metadata
    rejects(dataset, source_file, line_no, reason, raw_line)
    ingest_log(dataset, source_file, ..., lines_read, accepted, rejected, duplicates, seconds)

The SQL lives in `sql/ingest/` (staging → intermediate → marts, see its README); this package
reads the files, runs the models through `micn.data.sql` and publishes the marts.

How a file is read:
* JSON files (reviews, 2018 metadata) go through DuckDB's own JSON reader with `ignore_errors`:
  a line it cannot parse comes back as an all-NULL row, so every non-blank line is a row and
  either passes the checks in `sql/ingest/staging/stg_*.sql` or carries a reject reason.
* Line numbers cost a `row_number()` window (~40 % of the read), so reviews are first read
  without them; only when a file has rejects or duplicates is it read again with them. The
  offending lines' raw text and a precise reason ("invalid UTF-8", "JSON array", ...) then
  come from one streaming pass in Python over those files.
* DuckDB never sees a line over `MAX_LINE_BYTES` (`micn.data.formats`, 4 MiB): a streaming pass
  in blocks looks for one first, and a file that has one is read through a temporary copy in
  which each such line is `{}` (a reject, worded from the original line).
* 2014 metadata is not JSON but one Python literal per line: it is parsed with
  `ast.literal_eval` (never `eval`) in a streaming pass (`micn.data.formats.meta_2014_row`).

Everything is staged in temporary tables first; the dataset's rows are then replaced in one
transaction, so a failed ingest leaves the warehouse as it was, a failed first ingest leaves no
warehouse file, and re-ingesting the same files gives the same tables. A re-ingest that would
keep fewer than `SHRINK_FLOOR` of the dataset's reviews (or none) is refused unless the caller
allows it: a folder of broken files must not silently replace good data.

Modules, in the order an ingest uses them:
    load        `ingest`, the entry point
    inputs      dataset name, files and their formats, checked before any work
    warehouse   opening the warehouse file; one paragraph for every failure to open or write it
    staging     every file into temp tables, with its rejects and duplicates
    json_lines  JSON files through DuckDB's reader (line numbers, over-long lines)
    meta        metadata files: 2018 JSON through DuckDB, 2014 Python literals in Python
    rejects     the rejected lines with their line number, raw text and precise reason
    accounting  per-file counts (`FileReport`) and the ingest's result (`IngestReport`)
    publish     the shrink guard and the one transaction that replaces the dataset's rows
"""
