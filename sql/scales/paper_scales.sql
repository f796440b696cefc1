-- Table 2 across scales: one row per study (scale) and backbone, the MICN cell of that study's
-- paper_table2 view (the paper's supervision): MICN − base and MICN − control with their 95 %
-- paired intervals, MICN's Recall@K against popularity, and the paper's own MICN − base lift at
-- the matching column (a study named electronics or books; none for the others).
-- scale_cells: micn/report/scales.py copies each study's MICN rows of paper_table2 there.
create or replace view paper_scales as
select s.scale, s.scale_order, s.backbone, s.dataset, s.max_len, s.n_runs, s.auc_mean,
       s.n_pairs, s.lift_mean, s.lift_ci_low, s.lift_ci_high,
       s.n_pairs_control, s.lift_control_mean, s.lift_control_ci_low, s.lift_control_ci_high,
       s.micn_recall_mean, s.popularity_recall_mean, s.capsule_purity_mean, s.capsule_purity_shuffled_mean,
       p.lift as paper_lift
from scale_cells as s
left join paper_lifts as p on p.backbone = s.backbone and p.paper_column = s.scale
order by case s.backbone when 'wide_deep' then 0 when 'din' then 1 when 'dien' then 2 else 3 end, s.backbone,
         s.scale_order;
