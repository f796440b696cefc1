-- The `history` table (filled from sql/metrics/history.sql; stays empty when every run failed).
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
