-- Accepted reviews whose key (user_id, item_id, ts) already occurred before, in file order
-- then line order (the 2018 dumps repeat a review once per style variant). Keys are hashed
-- first so that the exact window only ranks the few repeated ones.
with accepted as (
    select * from stg_reviews where reject_reason is null
),

repeated_keys as (
    select hash(user_id, item_id, ts) as key
    from accepted
    group by key
    having count(*) > 1
),

candidates as (
    select * from accepted
    where hash(user_id, item_id, ts) in (select key from repeated_keys)
),

ranked as (
    select
        file_idx,
        rec_no,
        row_number() over (partition by user_id, item_id, ts order by file_idx, rec_no) as occurrence
    from candidates
),

final as (
    select file_idx, rec_no from ranked where occurrence > 1
)

select * from final
