-- The dataset's new `items` rows: every described item (first description wins), plus every
-- reviewed item without metadata under DIEN's 'default_cat' rather than dropping its reviews.
with described as (
    select * from stg_meta
    anti join meta_duplicates using (file_idx, rec_no)
    where reject_reason is null
),

with_meta as (
    select item_id, coalesce(category, 'default_cat') as category, title, brand, price, true as has_meta
    from described
),

reviewed as (
    select distinct item_id from stg_reviews where reject_reason is null
),

without_meta as (
    select
        item_id,
        'default_cat' as category,
        null::varchar as title,
        null::varchar as brand,
        null::double as price,
        false as has_meta
    from reviewed
    anti join with_meta using (item_id)
),

final as (
    select * from with_meta
    union all
    select * from without_meta
)

select $dataset as dataset, item_id, category, title, brand, price, has_meta from final
