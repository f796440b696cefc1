-- The item vocabulary, fitted on the TRAINING split only: every item that occurs in a training
-- row (target, sampled negative, history item or history negative). Indexes start at 2 (0 =
-- padding, 1 = out-of-vocabulary) in order of descending frequency, ties by raw id: frequent
-- items get small ids, the order log-uniform candidate samplers assume. Frequency counts rows:
-- a pair is two rows sharing one history, so a history occurrence counts twice.
with train as not materialized (
    -- read three times below; not materialized: a copy of every training history would cost GBs
    select * from sample_pairs where split = 'train'
),

occurrences as (
    select item_key, 1 as n from train
    union all
    select neg_item_key as item_key, 1 as n from train
    union all
    select unnest(list_concat(hist_item_keys, hist_neg_keys)) as item_key, 2 as n from train
),

counts as (
    select item_key, sum(n)::bigint as frequency
    from occurrences
    group by item_key
),

final as (
    select
        counts.item_key,
        stg_items.item_id,
        (row_number() over (order by counts.frequency desc, stg_items.item_id) + 1)::integer as index,
        counts.frequency
    from counts
    inner join stg_items using (item_key)
)

select * from final
