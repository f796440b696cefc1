-- One row per run record metrics/runs/<dataset>/<run>.json (micn.record.RunRecord, written and
-- validated by micn/record.py before this runs): every field of the record is a column, and the
-- settings the paper tables group or filter by are columns of their own. $files: the record files.
-- tests/test_report.py::test_every_run_record_field_has_its_column keeps this and RunRecord in step.
with records as (
    select json as r, filename from read_json_objects($files, filename = true)
),
final as (
    select
        r ->> '$.run_id' as run_id,
        r ->> '$.dataset' as dataset,
        r ->> '$.protocol' as protocol,
        r ->> '$.backbone' as backbone,
        r ->> '$.variant' as variant,
        (r ->> '$.seed')::integer as seed,
        (r ->> '$.max_len')::integer as max_len,
        (r ->> '$.phi')::double as phi,
        (r -> '$.experiments')::varchar[] as experiments,
        r ->> '$.status' as status,
        r ->> '$.error' as error,
        r ->> '$.traceback' as traceback,
        (r ->> '$.attempts')::integer as attempts,
        r ->> '$.signature' as signature,
        (r ->> '$.metrics.auc')::double as auc,
        (r ->> '$.metrics.gauc')::double as gauc,
        (r ->> '$.metrics.logloss')::double as logloss,
        (r ->> '$.metrics.oracle_auc')::double as oracle_auc,
        (r ->> '$.metrics.valid_auc')::double as valid_auc,
        (r ->> '$.epochs')::integer as epochs,
        (r ->> '$.best_epoch')::integer as best_epoch,
        (r ->> '$.train_seconds')::double as train_seconds,
        (r ->> '$.samples_per_s')::double as samples_per_s,
        r ->> '$.device' as device,
        r ->> '$.git_revision' as git_revision,
        (r ->> '$.started')::timestamptz as started,
        (r ->> '$.finished')::timestamptz as finished,
        (r ->> '$.params.samples_seed')::integer as samples_seed,
        (r ->> '$.params.train.lr')::double as lr,
        (r ->> '$.params.train.batch_size')::integer as batch_size,
        (r ->> '$.params.train.epochs')::integer as max_epochs,
        (r ->> '$.params.train.patience')::integer as patience,
        (r ->> '$.params.train.d_item')::integer as d_item,
        (r ->> '$.params.train.d_category')::integer as d_category,
        (r ->> '$.params.train.dien_aux_weight')::double as dien_aux_weight,
        (r ->> '$.params.micn.d_aux')::integer as micn_d_aux,
        (r ->> '$.params.micn.k_max')::integer as micn_k_max,
        (r ->> '$.params.micn.iterations')::integer as micn_iterations,
        (r ->> '$.params.micn.pow_p')::double as micn_pow_p,
        (r ->> '$.params.micn.n_neg')::integer as micn_n_neg,
        r ->> '$.params.micn.sampler' as micn_sampler,
        (r ->> '$.params.micn.lambda_micn')::double as lambda_micn,
        (r ->> '$.params.micn.routing_std')::double as micn_routing_std,
        r -> '$.params' as params,
        filename as source_file
    from records
)
select * from final
