-- What was kept and dropped, and why: one row per (subject, outcome, reason) with its count, for
-- the build report. Subjects: users (kept / dropped with a reason / present in each split),
-- pairs (per split; each pair is one positive and one negative row), and targets whose history
-- lost behaviors that share the target's timestamp.
with users as (
    select
        'users' as subject,
        case when drop_reason is null then 'kept' else 'dropped' end as outcome,
        drop_reason as reason,
        count(*) as n
    from int_users
    group by all
),

users_per_split as (
    select 'users' as subject, split as outcome, null as reason, count(distinct user_key) as n
    from sample_pairs
    group by all
),

pairs_per_split as (
    select 'pairs' as subject, split as outcome, null as reason, count(*) as n
    from sample_pairs
    group by all
),

tied_targets as (
    select
        'targets' as subject,
        'history shortened' as outcome,
        'behaviors sharing the target timestamp left out of its history' as reason,
        count(*) as n
    from int_targets
    where n_before < pos - 1
),

final as (
    select * from users
    union all
    select * from users_per_split
    union all
    select * from pairs_per_split
    union all
    select * from tied_targets
)

select * from final
