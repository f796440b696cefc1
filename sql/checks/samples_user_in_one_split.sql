-- Leakage (dien): the split is by user, so no user may have samples in two splits.
-- Returns the offending users; zero rows = pass.
with final as (
    select
        user_id,
        count(distinct split) as n_splits,
        string_agg(distinct split, ', ' order by split) as splits
    from sample_pairs
    group by user_id
    having count(distinct split) > 1
)

select * from final
