-- The paper's tables over `runs` (see paper_cells.sql for the columns).
-- Table 2: each backbone with and without MICN, per dataset.
create or replace view paper_table2 as
select * from paper_cells('table2')
order by dataset, max_len, case backbone when 'wide_deep' then 0 when 'din' then 1 when 'dien' then 2 else 3 end,
         backbone, variant;

-- Table 3: the φ sweep of DIEN+MICN (with the DIEN base row the lifts are paired against).
create or replace view paper_table3 as
select * from paper_cells('table3')
order by dataset, max_len, backbone, variant, phi;

-- Table 4: history length (max_len) with and without MICN.
create or replace view paper_table4 as
select * from paper_cells('table4')
order by dataset, backbone, max_len, variant, phi;

-- Runs that kept failing after their retries.
create or replace view failed_runs as
select run_id, attempts, error, experiments from runs where status = 'failed' order by run_id;
