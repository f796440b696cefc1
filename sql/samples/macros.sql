-- Macros shared by the sample models; run once on the build's connection before the models.

-- popularity_negatives(wanted, seed, salt): one popularity-weighted negative item per row of the
-- table or CTE named by `wanted` (columns user_key, pos, item_key), != that row's item_key.
-- Reads int_review_rows (a uniform row index = an item drawn with probability proportional to
-- its review count) and stg_items. Used by int_behavior_negatives (salt 'hist_neg') and
-- int_target_negatives_dien (salt 'neg'): the one place the seeded rejection draw is written.
--   row = hash(user_key, pos, seed, salt, attempt) mod R, deterministic for any thread count;
--   attempt 0 for all rows; the rare rows that drew their own item retry attempts 1..7 and take
--   the first valid one; if all 8 fail (an item holding most of the reviews) the next item key
--   (cyclic) is taken. The caller guarantees >= 2 distinct items.
-- Returns (user_key, pos, neg_item_key integer).
create or replace temp macro popularity_negatives(wanted, seed, salt) as table
with wanted_rows as (
    select wanted_table.user_key, wanted_table.pos, wanted_table.item_key
    from query_table(wanted) as wanted_table
),

sizes as (
    select
        (select count(*) from int_review_rows) as n_rows,
        (select count(*) from stg_items) as n_items
),

first_draw as (
    select
        wanted_rows.*,
        int_review_rows.item_key as neg_item_key
    from wanted_rows
    cross join sizes
    inner join int_review_rows
        on int_review_rows.row_idx = (hash(wanted_rows.user_key, wanted_rows.pos, seed, salt, 0) % sizes.n_rows::ubigint)
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
        on int_review_rows.row_idx = (hash(first_draw.user_key, first_draw.pos, seed, salt, attempts.k) % sizes.n_rows::ubigint)
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

select * from final;
