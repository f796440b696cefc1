-- Every review row of the dataset, numbered 0..R-1 in item order. Drawing a row index uniformly
-- and taking its item samples an item with probability proportional to its review count: DIEN's
-- "review-item list" (popularity-weighted) negatives. Rows of one item are interchangeable, so
-- ordering by item alone already makes row_idx -> item_key deterministic.
with final as (
    select
        (row_number() over (order by item_key) - 1)::ubigint as row_idx,
        item_key
    from stg_behaviors
)

select * from final
