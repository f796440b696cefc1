-- Table 3: the φ sweep of DIEN+MICN (with the DIEN base row the lifts are paired against).
with final as (
    select * from paper_cells('table3')
)
select * from final
order by dataset, max_len, backbone, variant, phi
