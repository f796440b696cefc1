-- Table 2: each backbone with and without MICN, per dataset (columns: intermediate/paper_cells.sql).
with final as (
    select * from paper_cells('table2')
)
select * from final
order by dataset, max_len, case backbone when 'wide_deep' then 0 when 'din' then 1 when 'dien' then 2 else 3 end,
         backbone, variant, case when supervision = 'history' then 1 else 0 end
