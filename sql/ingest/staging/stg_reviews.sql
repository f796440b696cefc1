-- One row per non-blank line of an Amazon reviews file (2014 and 2018 share these four fields).
-- A line DuckDB cannot parse comes back as an all-NULL row (ignore_errors), so nothing is
-- dropped here: every row either passes or carries a reject reason.
-- The four fields are read as JSON values and checked here, not cast by the reader: a cast would
-- turn 12.5 into 12 and true into 1 (types, not coercions; docs/commands.md, "micn ingest", lists the rules).
-- A reason quotes a value with json_quoted (macros.sql): the rejects step shows the line's own text of it.
with source as (
    select *
    from read_json(
        $path,
        format = 'newline_delimited',
        compression = $compression,
        ignore_errors = true,
        maximum_object_size = $maximum_object_size,
        columns = {reviewerID: 'JSON', asin: 'JSON', overall: 'JSON', unixReviewTime: 'JSON'}
    )
),

typed as (
    -- Plain expressions rather than CASE: this runs once per review (1.7M rows at Electronics
    -- scale), and DuckDB's CASE costs more than the string functions it would skip.
    select
        *,
        nullif(trim(reviewerID ->> '$'), '') as user_id,
        starts_with(reviewerID::varchar, '"') or regexp_full_match(reviewerID::varchar, '-?[0-9]+') as user_id_typed,
        nullif(trim(asin ->> '$'), '') as item_id,
        starts_with(asin::varchar, '"') or regexp_full_match(asin::varchar, '-?[0-9]+') as item_id_typed,
        try_cast(overall::varchar as double) as rating,  -- NULL unless a JSON number
        trim(unixReviewTime ->> '$') as ts_text  -- a number's text, or a string's characters
    from source
),

timed as (
    select
        *,
        -- an integer, or a string of digits: 12.5, 1e9, true, "12.5" are not
        regexp_full_match(ts_text, '-?[0-9]+') as ts_typed,
        try_cast(ts_text as bigint) as ts
    from typed
),

final as (
    select
        user_id,
        item_id,
        rating,
        ts,
        case
            when reviewerID is null and asin is null and overall is null and unixReviewTime is null
                then 'unparseable line'
            when user_id is null or not user_id_typed then json_id_problem('reviewerID', reviewerID)
            when item_id is null or not item_id_typed then json_id_problem('asin', asin)
            when regexp_matches(user_id, '[[:cntrl:]]')
                then 'reviewerID ' || json_quoted('reviewerID', reviewerID) || ' holds a control character'
            when regexp_matches(item_id, '[[:cntrl:]]')
                then 'asin ' || json_quoted('asin', asin) || ' holds a control character'
            when unixReviewTime is null then 'unixReviewTime missing or null'
            when not ts_typed
                then 'unixReviewTime is ' || json_kind(json_type(unixReviewTime)) || ' (' || json_quoted('unixReviewTime', unixReviewTime)
                    || '); expected an integer or a string of digits (seconds since 1970-01-01 UTC)'
            when ts is null
                then 'unixReviewTime ' || json_quoted('unixReviewTime', unixReviewTime) || ' is out of range (over 2^63 - 1 seconds)'
            when ts < 0
                then 'unixReviewTime ' || json_quoted('unixReviewTime', unixReviewTime) || ' is negative; expected seconds since 1970-01-01 UTC'
            when ts < $ts_min or ts > $ts_max
                then 'unixReviewTime ' || json_quoted('unixReviewTime', unixReviewTime) || ' is outside the plausible review times ' || $ts_window
                    || ' (' || $ts_min || ' .. ' || $ts_max || ' seconds since 1970-01-01 UTC)'
            when overall is null then 'overall missing or null'
            when rating is null
                then 'overall is ' || json_kind(json_type(overall)) || ' (' || json_quoted('overall', overall)
                    || '); expected a number from 1 to 5'
            when not rating between 1 and 5 then 'overall ' || json_quoted('overall', overall) || ' is outside 1 to 5'
        end as reject_reason
    from timed
)

select * from final
