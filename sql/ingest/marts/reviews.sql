-- The dataset's new `reviews` rows: accepted, first occurrence of each (user_id, item_id, ts).
with accepted as (
    select * from stg_reviews
    anti join review_duplicates using (file_idx, rec_no)
    where reject_reason is null
),

final as (
    select $dataset as dataset, user_id, item_id, rating, ts from accepted
)

select * from final
