-- The dataset's new `rejects` rows: every line that could not be used, with its file, physical
-- line number, reason and raw text, in file then line order. `new_rejects` (file_idx, line_no,
-- reason, raw_line) and `sources` (file_idx, source_file) are Arrow tables the ingest registers:
-- the reasons and raw lines come from a streaming pass in Python over the few offending lines.
with final as (
    select r.file_idx, $dataset as dataset, s.source_file, r.line_no, r.reason, r.raw_line
    from new_rejects as r
    inner join sources as s using (file_idx)
)

select dataset, source_file, line_no, reason, raw_line from final order by file_idx, line_no
