-- runs: one row per trained model (status ok) or per run that kept failing after its retries
-- (status failed, no metrics); the columns are staging/stg_runs.sql's.
with final as (
    select * from stg_runs
)
select * from final
