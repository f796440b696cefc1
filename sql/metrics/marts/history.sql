-- history: one row per run and evaluation (the learning curves), filled from staging/stg_history.sql;
-- it stays empty when every run failed (DuckDB cannot read an empty list of files). A learning curve
-- written without optimizer steps has one row per epoch and null `step`, `warmup` and capsule columns.
create or replace table history (
    run_id varchar,
    epoch integer,  -- the epoch the evaluation falls in
    step bigint,  -- global optimizer step at the evaluation (null in per-epoch curves)
    warmup boolean,  -- an evaluation during MICN's warm-up (not selectable); null when not recorded
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
    valid_popularity_recall double,  -- Recall@K of item popularity on the same users
    valid_capsule_purity double,  -- purity of the capsules vs the planted topics (micn runs, synthetic data)
    valid_capsule_purity_shuffled double,  -- the same capsule clusters shuffled within each user (baseline)
    valid_capsule_overlap double  -- share of nearest items a user's capsules have in common (1: collapsed)
);
