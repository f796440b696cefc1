-- Leakage: every history element must be the user's behavior at the position it claims
-- (hist_first_pos + offset) and lie strictly BEFORE the target's timestamp.
-- Returns the offending history elements; zero rows = pass.
with elements as (
    select
        split,
        user_key,
        user_id,
        pos,
        ts,
        hist_first_pos,
        unnest(hist_item_keys) as hist_item_key,
        unnest(range(len(hist_item_keys))) as hist_offset
    from sample_pairs
),

located as (
    select
        elements.*,
        elements.hist_first_pos + elements.hist_offset as hist_pos,
        stg_behaviors.item_key as behavior_item_key,
        stg_behaviors.ts as hist_ts
    from elements
    left join stg_behaviors
        on stg_behaviors.user_key = elements.user_key
        and stg_behaviors.pos = elements.hist_first_pos + elements.hist_offset
),

final as (
    select
        split,
        user_id,
        pos as target_pos,
        ts as target_ts,
        hist_pos,
        hist_ts,
        hist_item_key,
        case
            when behavior_item_key is null then 'no behavior at this history position'
            when behavior_item_key <> hist_item_key then 'history item is not the behavior at its position'
            when hist_ts >= ts then 'history event at or after the target time'
        end as problem
    from located
    where behavior_item_key is null or behavior_item_key <> hist_item_key or hist_ts >= ts
)

select * from final
