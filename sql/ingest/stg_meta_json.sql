-- One row per non-blank line of a strict-JSON metadata file (the 2018 release).
-- category = last element of the `category` path (DESIGN §3.2); an empty path leaves it NULL
-- and the item later falls back to 'default_cat'. The 2018 scrape writes some names with HTML
-- entities ('Parts &amp; Accessories' beside 'Parts & Accessories'): unescape the common ones
-- so one category is not split in two.
with source as (
    select *
    from read_json(
        $path,
        format = 'newline_delimited',
        compression = $compression,
        ignore_errors = true,
        columns = {asin: 'VARCHAR', title: 'VARCHAR', category: 'VARCHAR[]', brand: 'VARCHAR', price: 'VARCHAR'}
    )
),

final as (
    select
        nullif(trim(asin), '') as item_id,
        nullif(trim(html_unescape(category[-1])), '') as category,
        html_unescape(title) as title,
        nullif(trim(brand), '') as brand,
        try_cast(regexp_replace(price, '[$,\s]', '', 'g') as double) as price,
        case
            when asin is null and title is null and category is null and brand is null and price is null
                then 'unparseable line'
            when nullif(trim(asin), '') is null then 'asin missing, null or empty'
        end as reject_reason
    from source
)

select * from final
