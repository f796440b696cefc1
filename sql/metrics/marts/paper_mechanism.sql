-- The mechanism experiment (experiments.mechanism in params.yaml): one row per synthetic world κ,
-- backbone, variant, information ablation and MICN supervision (the paper's `target` beside
-- `history`). MICN − control (lift_control_*) against κ, per supervision, is the question, and
-- lift_target_* on `history` rows pairs them with the paper's form; lift_*
-- on ablated base rows is "ablation − base" (where the signal lives); the two ceilings per world (columns: intermediate/paper_cells.sql; κ from each run's record).
with cells as (
    select * from paper_cells('mechanism')
),
final as (
    select kappa, dataset, protocol, max_len, backbone, variant, ablation, supervision, phi,
           n_runs, n_failed, auc_mean, auc_std, auc,
           n_pairs, lift_mean, lift_ci_low, lift_ci_high,
           control_phi, n_pairs_control, lift_control_mean, lift_control_ci_low, lift_control_ci_high,
           n_pairs_target, lift_target_mean, lift_target_ci_low, lift_target_ci_high,
           oracle_auc, history_only_auc,
           micn_recall_mean, popularity_recall_mean, dien_aux_mean, grad_ratio_mean,
           capsule_purity_mean, capsule_purity_shuffled_mean, capsule_overlap_mean,
           best_epoch_mean, best_step_mean, train_seconds_mean
    from cells
)
select * from final
order by kappa desc, dataset, max_len,
         case backbone when 'wide_deep' then 0 when 'din' then 1 when 'dien' then 2 else 3 end, backbone,
         case variant when 'base' then 0 when 'control' then 1 else 2 end, ablation nulls first,
         case when supervision = 'history' then 1 else 0 end, phi
