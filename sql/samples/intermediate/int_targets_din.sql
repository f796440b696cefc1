-- din targets: every behavior of a kept user with a behavior strictly before it (so the first
-- behavior never is a target, as in the DIN reference), each the positive of one pair.
--   the user's last behavior                           -> test
--   a 'valid' user's last training target (see
--   int_user_splits: carved from train)                -> valid
--   every other target                                 -> train
with final as (
    select
        stg_behaviors.user_key,
        stg_behaviors.pos,
        stg_behaviors.item_key,
        stg_behaviors.ts,
        stg_behaviors.n_before,
        case
            when stg_behaviors.pos = stg_behaviors.n_behaviors then 'test'
            when int_user_splits.user_split = 'valid' and stg_behaviors.pos = int_users.last_train_pos then 'valid'
            else 'train'
        end as split
    from stg_behaviors
    inner join int_user_splits using (user_key)
    inner join int_users using (user_key)
    where stg_behaviors.n_before >= 1
)

select * from final
