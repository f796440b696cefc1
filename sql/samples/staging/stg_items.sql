-- The dataset's REVIEWED items, each with a dense integer key (1.., in raw-id order) that every
-- later model uses instead of the raw id, and its category with a dense key (1.., in raw order).
-- Items described in the metadata but never reviewed are left out: nothing can sample them
-- (DIN's id remap keeps only reviewed items too). Key 0 is never used: it stays the padding id.
with reviewed as (
    select distinct item_id
    from warehouse.reviews
    where dataset = $dataset
),

described as (
    -- the ingest keeps one row per (dataset, item_id); min() keeps this model exact even if not
    select item_id, min(category) as category
    from warehouse.items
    where dataset = $dataset
    group by item_id
),

categorised as (
    select
        reviewed.item_id,
        coalesce(described.category, 'default_cat') as category
    from reviewed
    left join described using (item_id)
),

final as (
    select
        row_number() over (order by item_id)::integer as item_key,
        item_id,
        dense_rank() over (order by category)::integer as category_key,
        category
    from categorised
)

select * from final
