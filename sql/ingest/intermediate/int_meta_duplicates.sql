-- Metadata lines for an item already described on a line before (file order, then line order).
with accepted as (
    select * from stg_meta where reject_reason is null
),

ranked as (
    select
        file_idx,
        rec_no,
        row_number() over (partition by item_id order by file_idx, rec_no) as occurrence
    from accepted
),

final as (
    select file_idx, rec_no from ranked where occurrence > 1
)

select * from final
