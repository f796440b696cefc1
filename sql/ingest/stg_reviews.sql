-- One row per non-blank line of an Amazon reviews file (2014 and 2018 share these four fields).
-- A line DuckDB cannot parse comes back as an all-NULL row (ignore_errors), so nothing is
-- dropped here: every row either passes or carries a reject reason.
with source as (
    select *
    from read_json(
        $path,
        format = 'newline_delimited',
        compression = $compression,
        ignore_errors = true,
        columns = {reviewerID: 'VARCHAR', asin: 'VARCHAR', overall: 'DOUBLE', unixReviewTime: 'BIGINT'}
    )
),

final as (
    select
        nullif(trim(reviewerID), '') as user_id,
        nullif(trim(asin), '') as item_id,
        overall as rating,
        unixReviewTime as ts,
        case
            when reviewerID is null and asin is null and overall is null and unixReviewTime is null
                then 'unparseable line'
            when nullif(trim(reviewerID), '') is null then 'reviewerID missing, null or empty'
            when nullif(trim(asin), '') is null then 'asin missing, null or empty'
            when unixReviewTime is null then 'unixReviewTime missing or not an integer'
            when overall is null then 'overall missing or not a number'
        end as reject_reason
    from source
)

select * from final
