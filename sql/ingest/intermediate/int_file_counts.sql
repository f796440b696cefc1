-- Per input file: non-blank lines read, rejected and duplicate lines.
-- accepted = lines_read - rejected - duplicates, so nothing vanishes unaccounted.
with lines as (
    select file_idx, reject_reason is not null as rejected from stg_reviews
    union all
    select file_idx, reject_reason is not null as rejected from stg_meta
    union all
    select file_idx, true as rejected from literal_rejects
),

duplicates as (
    select file_idx, count(*) as n
    from (
        select file_idx from review_duplicates
        union all
        select file_idx from meta_duplicates
    )
    group by file_idx
),

final as (
    select
        l.file_idx,
        count(*) as lines_read,
        count(*) filter (where l.rejected) as rejected,
        coalesce(any_value(d.n), 0) as duplicates
    from lines as l
    left join duplicates as d using (file_idx)
    group by l.file_idx
)

select * from final
