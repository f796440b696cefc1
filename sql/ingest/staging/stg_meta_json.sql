-- One row per non-blank line of a strict-JSON metadata file (the 2018 release).
-- category = last element of the `category` path (the item's leaf category); a missing, null or empty path
-- leaves it NULL and the item later falls back to 'default_cat'. A `category` that is not a list
-- of strings (a string, a nested list, ...) is a reject with its reason, never 'default_cat'.
-- The 2018 scrape writes some names with HTML entities ('Parts &amp; Accessories' beside
-- 'Parts & Accessories'): unescape the common ones so one category is not split in two.
with source as (
    select *
    from read_json(
        $path,
        format = 'newline_delimited',
        compression = $compression,
        ignore_errors = true,
        maximum_object_size = $maximum_object_size,
        columns = {asin: 'JSON', title: 'VARCHAR', category: 'JSON', brand: 'VARCHAR', price: 'VARCHAR'}
    )
),

checked as (
    select
        *,
        json_type(category) as category_type,
        -- 1-based position of the first element that is not a string, NULL when all are
        case when json_type(category) = 'ARRAY'
            then list_position(list_transform(json_type(category, '$[*]'), lambda t: t = 'VARCHAR'), false)
        end as bad_element
    from source
),

final as (
    select
        json_id(asin) as item_id,
        case when category_type = 'ARRAY' and bad_element is null
            then nullif(trim(html_unescape((category::varchar[])[-1])), '')
        end as category,
        html_unescape(title) as title,
        nullif(trim(brand), '') as brand,
        try_cast(regexp_replace(price, '[$,\s]', '', 'g') as double) as price,
        case
            when asin is null and title is null and category is null and brand is null and price is null
                then 'unparseable line'
            when json_id(asin) is null then json_id_problem('asin', asin)
            when category_type not in ('ARRAY', 'NULL')
                then 'category is ' || json_kind(category_type) || ' (' || json_quoted('category', category)
                    || '); expected a list of strings (a category path)'
            when bad_element is not null
                then 'category[' || (bad_element - 1) || '] is ' || json_kind(json_type(category -> ('$[' || (bad_element - 1) || ']')))
                    || ' (' || json_quoted('category[' || (bad_element - 1) || ']', category -> ('$[' || (bad_element - 1) || ']'))
                    || '); expected a list of strings (a category path)'
        end as reject_reason
    from checked
)

select * from final
