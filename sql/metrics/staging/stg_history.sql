-- One row per run and evaluation, from the learning curves metrics/history/<dataset>/<run>.json (a
-- JSON array per file, checked by micn/report/database.py first); the run id is the file's last two
-- path parts. A per-epoch file (no optimizer steps) has no `step` / `warmup` / capsule keys: those are null.
-- $files: the history files (at least one; with none, marts/history.sql stays empty).
with epochs as (
    select * from read_json($files, format = 'array', filename = true, columns = {
        epoch: 'INTEGER', step: 'BIGINT', warmup: 'BOOLEAN', samples: 'BIGINT', seconds: 'DOUBLE', samples_per_s: 'DOUBLE',
        train_loss: 'DOUBLE', train_dien_aux: 'DOUBLE', train_micn: 'DOUBLE', train_grad_ratio: 'DOUBLE',
        valid_auc: 'DOUBLE', valid_gauc: 'DOUBLE', valid_logloss: 'DOUBLE', valid_dien_aux: 'DOUBLE',
        valid_micn_recall: 'DOUBLE', valid_popularity_recall: 'DOUBLE', valid_capsule_purity: 'DOUBLE',
        valid_capsule_purity_shuffled: 'DOUBLE', valid_capsule_overlap: 'DOUBLE'})
),
final as (
    select
        regexp_extract(filename, '([^/]+/[^/]+)\.json$', 1) as run_id,
        epoch, step, warmup, samples, seconds, samples_per_s, train_loss, train_dien_aux, train_micn, train_grad_ratio,
        valid_auc, valid_gauc, valid_logloss, valid_dien_aux, valid_micn_recall, valid_popularity_recall,
        valid_capsule_purity, valid_capsule_purity_shuffled, valid_capsule_overlap
    from epochs
)
select * from final
