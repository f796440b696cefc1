-- Table 4: history length (max_len) with and without MICN.
with final as (
    select * from paper_cells('table4')
)
select * from final
order by dataset, backbone, max_len, variant, phi
