-- dien: one popularity-weighted negative per target, != the positive (DIEN reference: a random
-- row of the review-item list). The same seeded draw as int_behavior_negatives (the
-- `popularity_negatives` macro of sql/samples/macros.sql) with its own salt 'neg':
-- row = hash(user_key, pos, $seed, 'neg', attempt) mod R.
with targets as (
    select user_key, pos, item_key from int_targets
),

final as (
    select user_key, pos, neg_item_key
    from popularity_negatives('targets', $seed, 'neg')
)

select * from final
