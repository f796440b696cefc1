-- The user vocabulary, fitted on the TRAINING split only (so under dien every validation and
-- test user is out-of-vocabulary, as in the DIEN reference). 0 = padding, 1 = out-of-vocabulary,
-- real ids from 2 by descending frequency (training rows: two per pair), ties by raw id.
with counts as (
    select
        user_key,
        min(user_id) as user_id,
        (2 * count(*))::bigint as frequency
    from sample_pairs
    where split = 'train'
    group by user_key
),

final as (
    select
        user_key,
        user_id,
        (row_number() over (order by frequency desc, user_id) + 1)::integer as index,
        frequency
    from counts
)

select * from final
