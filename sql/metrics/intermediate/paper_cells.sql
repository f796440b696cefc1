-- paper_cells(experiment): one row per (dataset, protocol, max_len, backbone, variant, phi) of the
-- runs an experiment asked for: test metrics as mean ± sample std over seeds, runs counted (ok and
-- failed), and, on MICN rows, the paired lift over the base run of the same dataset, length,
-- backbone and seed: mean difference of test AUC with a 95 % t interval (normal beyond 500 pairs;
-- none for one pair). The base runs must be asked for by the same experiment.
create or replace macro paper_cells(experiment) as table
with asked as (
    select * from runs where list_contains(experiments, experiment)
),
ok as (
    select * from asked where status = 'ok'
),
cells as (
    select dataset, max_len, backbone, variant, phi,
           count(*) filter (where status = 'ok') as n_runs,
           count(*) filter (where status = 'failed') as n_failed,
           any_value(protocol) filter (where protocol is not null) as protocol,
           avg(auc) as auc_mean, stddev_samp(auc) as auc_std,
           avg(gauc) as gauc_mean, stddev_samp(gauc) as gauc_std,
           avg(logloss) as logloss_mean, stddev_samp(logloss) as logloss_std,
           avg(oracle_auc) as oracle_auc,
           avg(train_seconds) as train_seconds_mean
    from asked
    group by dataset, max_len, backbone, variant, phi
),
pairs as (
    select m.dataset, m.max_len, m.backbone, m.phi, m.auc - b.auc as lift
    from ok as m
    join ok as b on b.dataset = m.dataset and b.max_len = m.max_len and b.backbone = m.backbone
                and b.seed = m.seed and b.variant = 'base'
    where m.variant = 'micn'
),
lifts as (
    select dataset, max_len, backbone, phi, count(*) as n_pairs,
           avg(lift) as lift_mean, stddev_samp(lift) as lift_std
    from pairs
    group by dataset, max_len, backbone, phi
),
final as (
    select c.dataset, c.protocol, c.max_len, c.backbone, c.variant, c.phi,
           c.n_runs, c.n_failed,
           c.auc_mean, c.auc_std,
           case when c.auc_std is null then printf('%.4f', c.auc_mean)
                else printf('%.4f ± %.4f', c.auc_mean, c.auc_std) end as auc,
           c.gauc_mean, c.gauc_std, c.logloss_mean, c.logloss_std, c.oracle_auc, c.train_seconds_mean,
           l.n_pairs, l.lift_mean,
           l.lift_mean - coalesce(t.t975, 1.96) * l.lift_std / sqrt(l.n_pairs) as lift_ci_low,
           l.lift_mean + coalesce(t.t975, 1.96) * l.lift_std / sqrt(l.n_pairs) as lift_ci_high
    from cells as c
    left join lifts as l on c.variant = 'micn' and l.dataset = c.dataset and l.max_len = c.max_len
                        and l.backbone = c.backbone and l.phi = c.phi
    left join t_quantiles as t on t.df = l.n_pairs - 1
)
select * from final;
