-- paper_cells(experiment): one row per (dataset, protocol, max_len, backbone, variant, ablation,
-- supervision, phi) of the runs an experiment asked for (ablation: the mechanism experiment's
-- information ablations of base runs, null elsewhere; ablated runs are never anyone's base;
-- supervision: what L_micn predicted, on micn rows only, each paired with the same base and control): test metrics as mean ± sample std over seeds, runs counted (ok and
-- failed), the ceilings and the learning evidence (means over the cell's ok runs: MICN Recall@K vs
-- popularity, DIEN aux, gradient ratio, capsule purity vs shuffled and overlap), and two paired
-- lifts of test AUC, each the mean difference over seeds with its 95 % t interval (normal beyond
-- 500 pairs; none for one pair):
--   lift_*          on control, micn and ablated base rows: this row − base (same dataset, length,
--                   backbone, seed; the base without ablation);
--   lift_control_*  on micn rows: micn − control (same dataset, length, backbone, seed and φ; when
--                   the experiment has no control at this φ but exactly one control φ for the cell,
--                   that one: Table 3 pairs its whole φ sweep with one control, see params.yaml);
--   lift_target_*   on micn rows of another supervision (`history`): this row − the paper's form
--                   (micn, supervision `target`; same dataset, length, backbone, seed and φ).
-- The base and control runs must be asked for by the same experiment.
-- Half-width of a 95 % t interval from the sample std of n paired differences (t975 from
-- t_quantiles; null beyond its 500 pairs, then the normal quantile).
create or replace macro half_width(sd, n, t975) as coalesce(t975, 1.96) * sd / sqrt(n);

create or replace macro paper_cells(experiment) as table
with asked as (
    select * from runs where list_contains(experiments, experiment)
),
ok as (
    select * from asked where status = 'ok'
),
cells as (
    select dataset, max_len, backbone, variant, ablation, supervision, phi,
           count(*) filter (where status = 'ok') as n_runs,
           count(*) filter (where status = 'failed') as n_failed,
           any_value(protocol) filter (where protocol is not null) as protocol,
           avg(auc) as auc_mean, stddev_samp(auc) as auc_std,
           avg(gauc) as gauc_mean, stddev_samp(gauc) as gauc_std,
           avg(logloss) as logloss_mean, stddev_samp(logloss) as logloss_std,
           avg(oracle_auc) as oracle_auc,
           avg(history_only_auc) as history_only_auc,
           avg(micn_recall) as micn_recall_mean,
           avg(popularity_recall) as popularity_recall_mean,
           avg(dien_aux) as dien_aux_mean,
           avg(grad_ratio) as grad_ratio_mean,
           avg(capsule_purity) as capsule_purity_mean,
           avg(capsule_purity_shuffled) as capsule_purity_shuffled_mean,
           avg(capsule_overlap) as capsule_overlap_mean,
           avg(best_epoch) as best_epoch_mean,
           avg(best_step) as best_step_mean,
           avg(train_seconds) as train_seconds_mean,
           avg(kappa) as kappa
    from asked
    group by dataset, max_len, backbone, variant, ablation, supervision, phi
),
base_pairs as (
    select m.dataset, m.max_len, m.backbone, m.variant, m.ablation, m.supervision, m.phi, m.auc - b.auc as lift
    from ok as m
    join ok as b on b.dataset = m.dataset and b.max_len = m.max_len and b.backbone = m.backbone
                and b.seed = m.seed and b.variant = 'base' and b.ablation is null
    where m.variant in ('control', 'micn') or m.ablation is not null
),
base_lifts as (
    select dataset, max_len, backbone, variant, ablation, supervision, phi, count(*) as n_pairs,
           avg(lift) as lift_mean, stddev_samp(lift) as lift_std
    from base_pairs
    group by dataset, max_len, backbone, variant, ablation, supervision, phi
),
control_phis as (
    select distinct dataset, max_len, backbone, phi from asked where variant = 'control'
),
control_match as (
    -- the control φ each micn cell is paired with: its own φ, else the cell's only control φ
    select m.dataset, m.max_len, m.backbone, m.phi,
           coalesce(max(c.phi) filter (where c.phi = m.phi),
                    case when count(*) = 1 then max(c.phi) end) as control_phi
    from (select distinct dataset, max_len, backbone, phi from asked where variant = 'micn') as m
    join control_phis as c on c.dataset = m.dataset and c.max_len = m.max_len and c.backbone = m.backbone
    group by m.dataset, m.max_len, m.backbone, m.phi
),
control_pairs as (
    select m.dataset, m.max_len, m.backbone, m.supervision, m.phi, k.control_phi, m.auc - c.auc as lift
    from ok as m
    join control_match as k on k.dataset = m.dataset and k.max_len = m.max_len and k.backbone = m.backbone
                           and k.phi = m.phi
    join ok as c on c.dataset = m.dataset and c.max_len = m.max_len and c.backbone = m.backbone
                and c.seed = m.seed and c.variant = 'control' and c.phi = k.control_phi
    where m.variant = 'micn'
),
control_lifts as (
    select dataset, max_len, backbone, supervision, phi, any_value(control_phi) as control_phi, count(*) as n_pairs,
           avg(lift) as lift_mean, stddev_samp(lift) as lift_std
    from control_pairs
    group by dataset, max_len, backbone, supervision, phi
),
target_pairs as (
    select m.dataset, m.max_len, m.backbone, m.supervision, m.phi, m.auc - t.auc as lift
    from ok as m
    join ok as t on t.dataset = m.dataset and t.max_len = m.max_len and t.backbone = m.backbone
                and t.seed = m.seed and t.phi = m.phi and t.variant = 'micn' and t.supervision = 'target'
    where m.variant = 'micn' and m.supervision <> 'target'
),
target_lifts as (
    select dataset, max_len, backbone, supervision, phi, count(*) as n_pairs,
           avg(lift) as lift_mean, stddev_samp(lift) as lift_std
    from target_pairs
    group by dataset, max_len, backbone, supervision, phi
),
final as (
    select c.dataset, c.protocol, c.max_len, c.backbone, c.variant, c.ablation, c.supervision, c.phi, c.kappa,
           c.n_runs, c.n_failed,
           c.auc_mean, c.auc_std,
           case when c.auc_std is null then printf('%.4f', c.auc_mean)
                else printf('%.4f ± %.4f', c.auc_mean, c.auc_std) end as auc,
           c.gauc_mean, c.gauc_std, c.logloss_mean, c.logloss_std,
           c.oracle_auc, c.history_only_auc,
           c.micn_recall_mean, c.popularity_recall_mean, c.dien_aux_mean, c.grad_ratio_mean,
           c.capsule_purity_mean, c.capsule_purity_shuffled_mean, c.capsule_overlap_mean,
           c.best_epoch_mean, c.best_step_mean, c.train_seconds_mean,
           l.n_pairs, l.lift_mean,
           l.lift_mean - half_width(l.lift_std, l.n_pairs, t.t975) as lift_ci_low,
           l.lift_mean + half_width(l.lift_std, l.n_pairs, t.t975) as lift_ci_high,
           k.control_phi,
           k.n_pairs as n_pairs_control, k.lift_mean as lift_control_mean,
           k.lift_mean - half_width(k.lift_std, k.n_pairs, tk.t975) as lift_control_ci_low,
           k.lift_mean + half_width(k.lift_std, k.n_pairs, tk.t975) as lift_control_ci_high,
           g.n_pairs as n_pairs_target, g.lift_mean as lift_target_mean,
           g.lift_mean - half_width(g.lift_std, g.n_pairs, tg.t975) as lift_target_ci_low,
           g.lift_mean + half_width(g.lift_std, g.n_pairs, tg.t975) as lift_target_ci_high
    from cells as c
    left join base_lifts as l on l.dataset = c.dataset and l.max_len = c.max_len and l.backbone = c.backbone
                             and l.variant = c.variant and l.ablation is not distinct from c.ablation
                             and l.supervision is not distinct from c.supervision
                             and l.phi is not distinct from c.phi
    left join t_quantiles as t on t.df = l.n_pairs - 1
    left join control_lifts as k on c.variant = 'micn' and k.dataset = c.dataset and k.max_len = c.max_len
                                and k.backbone = c.backbone and k.phi = c.phi
                                and k.supervision is not distinct from c.supervision
    left join t_quantiles as tk on tk.df = k.n_pairs - 1
    left join target_lifts as g on c.variant = 'micn' and g.dataset = c.dataset and g.max_len = c.max_len
                               and g.backbone = c.backbone and g.phi = c.phi and g.supervision = c.supervision
    left join t_quantiles as tg on tg.df = g.n_pairs - 1
)
select * from final;
