-- history: one row per run and epoch (the learning curves), filled from staging/stg_history.sql;
-- it stays empty when every run failed (DuckDB cannot read an empty list of files).
create or replace table history (
    run_id varchar,
    epoch integer,
    samples bigint,
    seconds double,
    samples_per_s double,
    train_loss double,
    train_dien_aux double,
    train_micn double,
    valid_auc double,
    valid_gauc double,
    valid_logloss double
);
