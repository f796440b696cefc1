-- Each target's history: the user's most recent $max_len behaviors strictly BEFORE the target's
-- timestamp, oldest first, with each position's sampled negative beside it (DIEN's auxiliary loss).
-- Behaviors that share the target's timestamp are DROPPED from its history on purpose: real
-- dumps hold several reviews of a user in the same second (day, in 2014), their order against
-- the target is unknown, and keeping them could show the model an event that is not strictly in
-- the past. Every behavior before the target's anchor (pos n_before + 1, the first behavior at the
-- target's ts) is strictly before it, so the history is the $max_len rows preceding the anchor.
-- hist_first_pos: the position of the oldest history behavior (the history is pos
-- hist_first_pos .. anchor - 1), kept so that the leakage check can look every element up.
with anchors as (
    select user_key, pos, n_before + 1 as anchor_pos
    from int_targets
),

spans as (
    -- per user, the behaviors that any of its histories needs (dien: about the last $max_len)
    select
        user_key,
        min(anchor_pos) - $max_len as first_pos,
        max(anchor_pos) as last_pos
    from anchors
    group by user_key
),

behaviors as (
    select
        stg_behaviors.user_key,
        stg_behaviors.pos,
        stg_behaviors.item_key,
        int_behavior_negatives.neg_item_key
    from stg_behaviors
    inner join spans
        on stg_behaviors.user_key = spans.user_key
        and stg_behaviors.pos between spans.first_pos and spans.last_pos
    inner join int_behavior_negatives
        on int_behavior_negatives.user_key = stg_behaviors.user_key
        and int_behavior_negatives.pos = stg_behaviors.pos
),

windowed as (
    select
        user_key,
        pos,
        list(item_key) over recent as hist_item_keys,
        list(neg_item_key) over recent as hist_neg_keys
    from behaviors
    window recent as (partition by user_key order by pos rows between $max_len preceding and 1 preceding)
),

final as (
    select
        anchors.user_key,
        anchors.pos,
        windowed.hist_item_keys,
        windowed.hist_neg_keys,
        (anchors.anchor_pos - len(windowed.hist_item_keys))::integer as hist_first_pos
    from anchors
    inner join windowed
        on windowed.user_key = anchors.user_key
        and windowed.pos = anchors.anchor_pos
)

select * from final
