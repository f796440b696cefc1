-- Sampling (din): a target's negative is never in its history, nor any item the user reviewed.
-- Returns the offending pairs; zero rows = pass.
with in_history as (
    select split, user_id, pos, neg_item_key, 'negative is in the history' as problem
    from sample_pairs
    where list_contains(hist_item_keys, neg_item_key)
),

reviewed as (
    select
        sample_pairs.split,
        sample_pairs.user_id,
        sample_pairs.pos,
        sample_pairs.neg_item_key,
        'negative was reviewed by the user' as problem
    from sample_pairs
    semi join stg_behaviors
        on stg_behaviors.user_key = sample_pairs.user_key
        and stg_behaviors.item_key = sample_pairs.neg_item_key
    where not list_contains(sample_pairs.hist_item_keys, sample_pairs.neg_item_key)
),

final as (
    select * from in_history
    union all
    select * from reviewed
)

select * from final
