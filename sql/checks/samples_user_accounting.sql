-- Accounting: every user is either dropped (with a reason) and has no samples, or kept and has
-- exactly the pairs its protocol promises: dien one pair; din one pair per behavior that has a
-- behavior strictly before it, exactly one of them in test. Also no sample of an unknown user, and no
-- history longer than $max_len. Returns the offending users; zero rows = pass.
with expected as (
    select
        user_key,
        case when $protocol = 'dien' then 1 else count(*) filter (where n_before >= 1) end as n_pairs,
        case when $protocol = 'dien' then null else 1 end as n_test
    from stg_behaviors
    group by user_key
),

actual as (
    select
        user_key,
        count(*) as n_pairs,
        count(*) filter (where split = 'test') as n_test,
        max(hist_len) as max_hist_len
    from sample_pairs
    group by user_key
),

compared as (
    select
        coalesce(int_users.user_key, actual.user_key) as user_key,
        int_users.user_id,
        int_users.drop_reason,
        expected.n_pairs as expected_pairs,
        coalesce(actual.n_pairs, 0) as n_pairs,
        expected.n_test as expected_test,
        coalesce(actual.n_test, 0) as n_test,
        actual.max_hist_len,
        case
            when int_users.user_key is null then 'samples of a user not in the dataset'
            when int_users.drop_reason is not null and actual.n_pairs > 0 then 'dropped user has samples'
            when int_users.drop_reason is null and coalesce(actual.n_pairs, 0) <> expected.n_pairs
                then 'kept user has the wrong number of pairs'
            when int_users.drop_reason is null and expected.n_test is not null and actual.n_test <> expected.n_test
                then 'kept user has the wrong number of test pairs'
            when actual.max_hist_len > $max_len then 'history longer than max_len'
        end as problem
    from int_users
    full outer join actual using (user_key)
    left join expected using (user_key)
),

final as (
    select * from compared where problem is not null
)

select * from final
