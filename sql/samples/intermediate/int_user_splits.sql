-- The split of every kept user, drawn by a seeded hash, so it is reproducible and independent of
-- thread count: users are ranked by hash(user_key, $seed) and split by exact counts.
-- dien: the first ceil(n * test_frac) users go to test, the next ceil(n * valid_frac) to valid, the
--       rest to train (ceil: a tiny dataset still gets a user in each split; the -1e-9 keeps
--       10 * 0.7 at 7 despite floating point).
-- din:  every user's last pair is a test pair and the pairs before it are training pairs; 'valid'
--       marks the users whose LAST training pair goes to the validation split instead. They are
--       drawn, ceil(n * valid_frac) of them, among the users that have a training pair at all.
--       test_frac is not used: the din test split is every user's last pair (DIN reference).
with kept as (
    select user_key, last_train_pos
    from int_users
    where drop_reason is null
),

eligible as (
    select
        *,
        $protocol = 'dien' or last_train_pos is not null as can_split
    from kept
),

ranked as (
    select
        *,
        row_number() over (partition by can_split order by hash(user_key, $seed, 'split'), user_key) - 1 as draw_rank,
        count(*) over (partition by can_split) as n_users
    from eligible
),

final as (
    select
        user_key,
        case
            when not can_split then 'train'
            when $protocol = 'dien' and draw_rank < ceil(n_users * $test_frac - 1e-9) then 'test'
            when $protocol = 'dien'
                and draw_rank < ceil(n_users * $test_frac - 1e-9) + ceil(n_users * $valid_frac - 1e-9) then 'valid'
            when $protocol = 'din' and draw_rank < ceil(n_users * $valid_frac - 1e-9) then 'valid'
            else 'train'
        end as user_split
    from ranked
)

select * from final
