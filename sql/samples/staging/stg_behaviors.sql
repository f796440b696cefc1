-- The dataset's reviews as behaviors: one row per review, keyed by integers (stg_users,
-- stg_items), in each user's time order.
--   pos          1-based position in the user's sequence, ordered by (ts, item_id) (item keys are
--                in raw-id order): several behaviors of a user can share a timestamp, and this
--                makes their order deterministic
--   n_before     behaviors of the user strictly before it in time (= pos - 1 unless behaviors at
--                lower positions share this one's ts): only these may ever enter this behavior's history
--   n_behaviors  length of the user's sequence
with reviews as (
    select user_id, item_id, ts
    from warehouse.reviews
    where dataset = $dataset
),

keyed as (
    select
        stg_users.user_key,
        stg_items.item_key,
        reviews.ts
    from reviews
    inner join stg_users using (user_id)
    inner join stg_items using (item_id)
),

final as (
    select
        user_key,
        item_key,
        ts,
        row_number() over (partition by user_key order by ts, item_key)::integer as pos,
        (rank() over (partition by user_key order by ts) - 1)::integer as n_before,
        (count(*) over (partition by user_key))::integer as n_behaviors
    from keyed
)

select * from final
