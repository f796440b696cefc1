-- dien targets: the LAST behavior of every kept user, in the user's split (DIEN reference: one
-- (positive, negative) pair per user; the behaviors before it only ever serve as history).
with final as (
    select
        stg_behaviors.user_key,
        stg_behaviors.pos,
        stg_behaviors.item_key,
        stg_behaviors.ts,
        stg_behaviors.n_before,
        int_user_splits.user_split as split
    from stg_behaviors
    inner join int_user_splits using (user_key)
    where stg_behaviors.pos = stg_behaviors.n_behaviors
)

select * from final
