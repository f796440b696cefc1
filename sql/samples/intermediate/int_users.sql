-- One row per user of the dataset: sequence counts, and why the user is dropped (null = kept).
--   'fewer than 2 behaviors'          no behavior has one before it to be its history
--   'all behaviors at one timestamp'  the last behavior has nothing strictly before it (behaviors
--                                     sharing the target's ts never enter its history)
--   'reviewed every item' (din only)  no item is left for a negative the user never reviewed
-- last_train_pos: the user's last behavior that has one strictly before it and is not the last
-- behavior, i.e. din's last training target; null when there is none.
with per_user as (
    select
        user_key,
        count(*)::integer as n_behaviors,
        max(n_before)::integer as n_before_last,
        count(distinct item_key)::integer as n_distinct_items,
        max(pos) filter (where n_before >= 1 and pos < n_behaviors) as last_train_pos
    from stg_behaviors
    group by user_key
),

catalogue as (
    select count(*) as n_items from stg_items
),

final as (
    select
        per_user.*,
        stg_users.user_id,
        case
            when per_user.n_behaviors < 2 then 'fewer than 2 behaviors'
            when per_user.n_before_last = 0 then 'all behaviors at one timestamp'
            when $protocol = 'din' and per_user.n_distinct_items = catalogue.n_items then 'reviewed every item'
        end as drop_reason
    from per_user
    inner join stg_users using (user_key)
    cross join catalogue
)

select * from final
