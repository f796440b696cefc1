-- One popularity-weighted negative item per behavior of a kept user, != the behavior's item: the
-- unclicked item beside each history position for DIEN's auxiliary loss. Drawn once per behavior,
-- so a behavior keeps the same negative in every history it appears in (din's prefixes).
-- Randomness: row = hash(user_key, pos, $seed, 'hist_neg', attempt) mod R, deterministic for any
-- thread count. Rejection: attempt 0 for all; the rare rows that drew their own item retry
-- attempts 1..7 and take the first valid one; if all 8 fail (an item holding most of the reviews)
-- the next item key (cyclic) is taken. The caller guarantees >= 2 distinct items.
with behaviors as (
    select stg_behaviors.user_key, stg_behaviors.pos, stg_behaviors.item_key
    from stg_behaviors
    semi join (select user_key from int_users where drop_reason is null) as kept using (user_key)
),

sizes as (
    select
        (select count(*) from int_review_rows) as n_rows,
        (select count(*) from stg_items) as n_items
),

first_draw as (
    select
        behaviors.*,
        int_review_rows.item_key as neg_item_key
    from behaviors
    cross join sizes
    inner join int_review_rows
        on int_review_rows.row_idx = (hash(behaviors.user_key, behaviors.pos, $seed, 'hist_neg', 0) % sizes.n_rows::ubigint)
),

retried as (
    select
        first_draw.user_key,
        first_draw.pos,
        arg_min(int_review_rows.item_key, attempts.k) as neg_item_key
    from first_draw
    cross join sizes
    cross join range(1, 8) as attempts(k)
    inner join int_review_rows
        on int_review_rows.row_idx = (hash(first_draw.user_key, first_draw.pos, $seed, 'hist_neg', attempts.k) % sizes.n_rows::ubigint)
    where first_draw.neg_item_key = first_draw.item_key
        and int_review_rows.item_key <> first_draw.item_key
    group by first_draw.user_key, first_draw.pos
),

final as (
    select
        first_draw.user_key,
        first_draw.pos,
        case
            when first_draw.neg_item_key <> first_draw.item_key then first_draw.neg_item_key
            else coalesce(retried.neg_item_key, first_draw.item_key % sizes.n_items + 1)
        end::integer as neg_item_key
    from first_draw
    cross join sizes
    left join retried using (user_key, pos)
)

select * from final
