-- din: one UNIFORM negative per target over the dataset's reviewed items, never an item the user
-- reviewed at any time, hence never the positive nor a history item (the DIN reference rejects
-- the user's whole pos_list the same way).
-- item_key = hash(user_key, pos, $seed, 'neg', attempt) mod n_items + 1; attempt 0 for all,
-- attempts 1..7 for the rejected; if all 8 fail, the first item the user never reviewed scanning
-- keys upward (cyclic) from the first draw. int_users drops users who reviewed every item, so
-- one always exists.
with targets as (
    select user_key, pos from int_targets
),

sizes as (
    select count(*) as n_items from stg_items
),

first_draw as (
    select
        targets.*,
        (hash(targets.user_key, targets.pos, $seed, 'neg', 0) % sizes.n_items::ubigint + 1)::integer as neg_item_key
    from targets
    cross join sizes
),

first_rejected as (
    select first_draw.*
    from first_draw
    semi join stg_behaviors as reviewed
        on reviewed.user_key = first_draw.user_key and reviewed.item_key = first_draw.neg_item_key
),

retries as (
    select
        first_rejected.user_key,
        first_rejected.pos,
        attempts.k,
        (hash(first_rejected.user_key, first_rejected.pos, $seed, 'neg', attempts.k) % sizes.n_items::ubigint + 1)::integer
            as neg_item_key
    from first_rejected
    cross join sizes
    cross join range(1, 8) as attempts(k)
),

retried as (
    select
        retries.user_key,
        retries.pos,
        arg_min(retries.neg_item_key, retries.k) as neg_item_key
    from retries
    anti join stg_behaviors as reviewed
        on reviewed.user_key = retries.user_key and reviewed.item_key = retries.neg_item_key
    group by retries.user_key, retries.pos
),

unresolved as (
    select first_rejected.*
    from first_rejected
    anti join retried using (user_key, pos)
),

scanned as (
    select
        unresolved.user_key,
        unresolved.pos,
        arg_min(stg_items.item_key, (stg_items.item_key - unresolved.neg_item_key + sizes.n_items) % sizes.n_items)
            as neg_item_key
    from unresolved
    cross join sizes
    cross join stg_items
    anti join stg_behaviors as reviewed
        on reviewed.user_key = unresolved.user_key and reviewed.item_key = stg_items.item_key
    group by unresolved.user_key, unresolved.pos
),

final as (
    select
        first_draw.user_key,
        first_draw.pos,
        coalesce(scanned.neg_item_key, retried.neg_item_key, first_draw.neg_item_key)::integer as neg_item_key
    from first_draw
    left join retried using (user_key, pos)
    left join scanned using (user_key, pos)
)

select * from final
