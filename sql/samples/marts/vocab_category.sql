-- The category vocabulary, fitted on the TRAINING split only: the categories of the items in
-- vocab_item (every category column of a row holds the category of an item column), with the
-- same conventions: 0 = padding, 1 = out-of-vocabulary, real ids from 2 by descending frequency
-- (the summed frequency of its items), ties by raw category.
with counts as (
    select
        stg_items.category_key,
        stg_items.category,
        sum(vocab_item.frequency)::bigint as frequency
    from vocab_item
    inner join stg_items using (item_key)
    group by stg_items.category_key, stg_items.category
),

final as (
    select
        category_key,
        category,
        (row_number() over (order by frequency desc, category) + 1)::integer as index,
        frequency
    from counts
)

select * from final
