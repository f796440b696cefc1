-- Runs that kept failing after their retries.
with final as (
    select run_id, attempts, error, experiments from runs where status = 'failed'
)
select * from final
order by run_id
