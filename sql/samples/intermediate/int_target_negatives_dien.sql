-- dien: one popularity-weighted negative per target, != the positive (DIEN reference: a random
-- row of the review-item list). Same seeded scheme as int_behavior_negatives, own salt 'neg':
-- row = hash(user_key, pos, $seed, 'neg', attempt) mod R; attempt 0 for all, attempts 1..7 for
-- the rare rows that drew their positive, then the next item key (cyclic) as a last resort.
with targets as (
    select user_key, pos, item_key from int_targets
),

sizes as (
    select
        (select count(*) from int_review_rows) as n_rows,
        (select count(*) from stg_items) as n_items
),

first_draw as (
    select
        targets.*,
        int_review_rows.item_key as neg_item_key
    from targets
    cross join sizes
    inner join int_review_rows
        on int_review_rows.row_idx = (hash(targets.user_key, targets.pos, $seed, 'neg', 0) % sizes.n_rows::ubigint)
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
        on int_review_rows.row_idx = (hash(first_draw.user_key, first_draw.pos, $seed, 'neg', attempts.k) % sizes.n_rows::ubigint)
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
