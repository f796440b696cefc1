-- The negative sampler's distribution as evaluation needs it: review rows per RAW item id of the
-- dataset (stg_behaviors holds one row per review), sorted by item_id. `micn.evaluate` derives
-- the oracle's q from it (dien: count / total, popularity over review rows; din: uniform over
-- these items), so training never opens the warehouse. Written as negative_sampler.parquet.
with final as (
    select
        stg_items.item_id,
        count(*) as count
    from stg_behaviors
    inner join stg_items using (item_key)
    group by stg_items.item_id
)

select * from final
