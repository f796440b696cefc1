-- Sampling: a target's negative never equals its positive, and each history position's
-- negative never equals the clicked item at that position (and both lists have one length).
-- Returns the offending pairs; zero rows = pass.
with target_clash as (
    select split, user_id, pos, 'target negative equals the positive' as problem
    from sample_pairs
    where neg_item_key = item_key
),

history_clash as (
    select split, user_id, pos, 'a history negative equals the clicked item at its position' as problem
    from sample_pairs
    where len(hist_neg_keys) = len(hist_item_keys)
        and list_bool_or(list_transform(hist_item_keys, lambda item_key, i: item_key = hist_neg_keys[i]))
),

length_clash as (
    select split, user_id, pos, 'history negatives and history items differ in length' as problem
    from sample_pairs
    where len(hist_neg_keys) <> len(hist_item_keys)
),

final as (
    select * from target_clash
    union all
    select * from history_clash
    union all
    select * from length_clash
)

select * from final
