-- The samples: one row per (positive, negative) pair with its split. The export writes each
-- split ordered by (user_key, pos), i.e. by raw user id then time, every pair as two rows,
-- label 1 then label 0, which share the user, the history and the target's ts: keeping pairs
-- here halves the memory that the histories take. Items stay integer keys: the export maps them
-- to vocabulary indexes and raw ids with lookup arrays.
with final as (
    select
        int_targets.split,
        int_targets.user_key,
        stg_users.user_id,
        int_targets.pos,
        int_targets.ts,
        int_targets.item_key,
        int_target_negatives.neg_item_key,
        int_histories.hist_item_keys,
        int_histories.hist_neg_keys,
        int_histories.hist_first_pos,
        len(int_histories.hist_item_keys)::integer as hist_len
    from int_targets
    inner join int_target_negatives using (user_key, pos)
    inner join int_histories using (user_key, pos)
    inner join stg_users using (user_key)
)

select * from final
