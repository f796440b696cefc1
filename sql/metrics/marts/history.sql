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
    train_grad_ratio double,  -- mean over the epoch's steps of ‖∇_main e_aux‖ / ‖∇_micn e_aux‖ (micn runs)
    valid_auc double,
    valid_gauc double,
    valid_logloss double,
    valid_dien_aux double,  -- DIEN's auxiliary loss on the validation split (2 ln 2 = 1.3863: not learned)
    valid_micn_recall double,  -- Recall@K of MICN's capsules on the validation users (micn runs)
    valid_popularity_recall double  -- Recall@K of item popularity on the same users
);
