-- One popularity-weighted negative item per behavior of a kept user, != the behavior's item: the
-- unclicked item beside each history position for DIEN's auxiliary loss. Drawn once per behavior,
-- so a behavior keeps the same negative in every history it appears in (din's prefixes).
-- The draw (seeded hash, rejection, fallback) is the `popularity_negatives` macro of
-- sql/samples/macros.sql, salt 'hist_neg'.
with behaviors as (
    select stg_behaviors.user_key, stg_behaviors.pos, stg_behaviors.item_key
    from stg_behaviors
    semi join (select user_key from int_users where drop_reason is null) as kept using (user_key)
),

final as (
    select user_key, pos, neg_item_key
    from popularity_negatives('behaviors', $seed, 'hist_neg')
)

select * from final
