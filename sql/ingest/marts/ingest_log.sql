-- The dataset's new `ingest_log` rows: one per input file of this ingest, from `new_log`
-- (an Arrow table of the per-file counts in `int_file_counts` plus the read time).
with final as (
    select
        $dataset as dataset,
        source_file,
        kind,
        format,
        lines_read,
        accepted,
        rejected,
        duplicates,
        seconds,
        $now as ingested_at
    from new_log
)

select * from final
