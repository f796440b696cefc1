-- The dataset's users, each with a dense integer key (1.., in raw-id order) that every later model
-- uses instead of the raw id (integer keys keep the sorts and joins of millions of behaviors cheap).
with users as (
    select distinct user_id
    from warehouse.reviews
    where dataset = $dataset
),

final as (
    select
        row_number() over (order by user_id)::integer as user_key,
        user_id
    from users
)

select * from final
