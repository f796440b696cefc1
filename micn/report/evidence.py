"""Did the auxiliary tasks learn? Judgements on the `runs` table, in words and as table rows.

At the selected checkpoint of each run: MICN's capsules must retrieve better than popularity,
DIEN's auxiliary loss must be below chance (2 ln 2), and on synthetic data MICN's capsules must
group behaviours by the planted topics (purity above its shuffled baseline) without collapsing
into one interest (nearest-item overlap). The ceilings (oracle, history-only) beside the best cell
are here too: both are read from the same per-run evidence.
"""

from __future__ import annotations

import polars as pl

from micn.report.formatting import fmt
from micn.report.labels import BACKBONE_LABELS, VARIANT_LABELS, variant_label

TWO_LN2 = 1.3862943611198906  # DIEN's auxiliary loss at chance: BCE of 1/2 on a positive and a negative
DIEN_AUX_MARGIN = 0.01  # a validation aux loss >= 2 ln 2 - this has not learned
PURITY_MARGIN = 0.01  # MICN's capsules group behaviours by topic only with purity >= shuffled + this
OVERLAP_COLLAPSED = 0.8  # a mean nearest-item overlap of a user's capsules at or above this: collapsed


def not_learned(runs: pl.DataFrame) -> list[str]:
    """Sentences, in words, for every auxiliary task that has not learned at the selected
    checkpoint of some run: MICN whose capsules retrieve no better than popularity
    (micn_recall <= popularity_recall), DIEN whose auxiliary loss is at chance (>= 2 ln 2 − 0.01)."""
    ok = runs.filter(pl.col("status") == "ok")
    out = []
    micn = ok.filter((pl.col("variant") == "micn") & pl.col("micn_recall").is_not_null()
                     & pl.col("popularity_recall").is_not_null())
    stuck = micn.filter(pl.col("micn_recall") <= pl.col("popularity_recall"))
    if stuck.height:
        out.append(
            f"**MICN's auxiliary task has not learned at the selected checkpoint in {stuck.height} of {micn.height} "
            f"MICN runs**: the Recall@K of its interest capsules is at or below that of ranking items by popularity "
            f"({_cells(stuck)}). There e_aux is little more than its initialisation plus the main loss's updates, so "
            "a MICN lift measures the extra width (compare MICN − control), not what MICN learned.")
    dien = ok.filter(pl.col("dien_aux").is_not_null())
    flat = dien.filter(pl.col("dien_aux") >= TWO_LN2 - DIEN_AUX_MARGIN)
    if flat.height:
        out.append(
            f"**DIEN's auxiliary loss has not learned at the selected checkpoint in {flat.height} of {dien.height} "
            f"DIEN runs**: its validation value is within {DIEN_AUX_MARGIN} of 2 ln 2 = {TWO_LN2:.4f}, the loss of a "
            f"net that cannot tell the next behaviour from a sampled negative ({_cells(flat)}). These runs trained "
            "DIEN effectively without its auxiliary loss.")
    out += capsule_warnings(ok)
    return out


def capsule_cells(runs: pl.DataFrame) -> pl.DataFrame:
    """Per MICN cell with capsule evidence (synthetic data): means over its ok runs of capsule purity,
    its shuffled baseline and the capsules' nearest-item overlap, and the number of runs."""
    micn = runs.filter((pl.col("status") == "ok") & (pl.col("variant") == "micn")
                       & (pl.col("capsule_purity").is_not_null() | pl.col("capsule_overlap").is_not_null()))
    keys = ["dataset", "backbone", "variant", "supervision", "phi", "max_len"]
    return (micn.group_by(keys).agg(pl.len().alias("n"), pl.col("capsule_purity").mean(),
                                    pl.col("capsule_purity_shuffled").mean(), pl.col("capsule_overlap").mean())
            .sort(keys, nulls_last=False))


def _purity_flat(purity, shuffled) -> bool:
    return purity is not None and shuffled is not None and purity < shuffled + PURITY_MARGIN


def _collapsed(overlap) -> bool:
    return overlap is not None and overlap >= OVERLAP_COLLAPSED


def _cell_name(r: dict) -> str:
    phi = "" if r["phi"] is None else f" φ {r['phi']:g}"
    return (f"{r['dataset']} {BACKBONE_LABELS.get(r['backbone'], r['backbone'])} "
            f"{variant_label(r)}{phi} len {r['max_len']}")


def capsule_warnings(runs: pl.DataFrame) -> list[str]:
    """Sentences for MICN cells (means over seeds, synthetic data) whose capsules do not group
    behaviours by planted topic (purity < shuffled + PURITY_MARGIN) or have collapsed (a user's
    capsules share on average >= OVERLAP_COLLAPSED of their nearest items)."""
    cells = capsule_cells(runs).to_dicts()
    out = []
    judged = [r for r in cells if r["capsule_purity"] is not None and r["capsule_purity_shuffled"] is not None]
    flat = [r for r in judged if _purity_flat(r["capsule_purity"], r["capsule_purity_shuffled"])]
    if flat:
        details = "; ".join(f"{_cell_name(r)}: purity {r['capsule_purity']:.3f} vs shuffled "
                            f"{r['capsule_purity_shuffled']:.3f} over {r['n']} run{'s' if r['n'] != 1 else ''}"
                            for r in flat)
        out.append(
            f"**MICN's capsules do not group behaviours by planted topic in {len(flat)} of {len(judged)} MICN cells** "
            f"(synthetic data, means over seeds at the selected checkpoint): their purity against the planted topics "
            f"is not above the shuffled baseline (the same capsule sizes, behaviours assigned at random) by "
            f"{PURITY_MARGIN} ({details}). Routing there splits a user's history no better than chance, so the "
            "capsules are not the distinct interests MICN is meant to learn.")
    judged = [r for r in cells if r["capsule_overlap"] is not None]
    collapsed = [r for r in judged if _collapsed(r["capsule_overlap"])]
    if collapsed:
        details = "; ".join(f"{_cell_name(r)}: overlap {r['capsule_overlap']:.3f} over {r['n']} "
                            f"run{'s' if r['n'] != 1 else ''}" for r in collapsed)
        out.append(
            f"**MICN's capsules collapsed in {len(collapsed)} of {len(judged)} MICN cells** (synthetic data, means "
            f"over seeds at the selected checkpoint): two capsules of a user share on average "
            f"{OVERLAP_COLLAPSED:.0%} or more of their nearest items ({details}). The user's K interests are one "
            "interest repeated, so MICN is a single-vector user model there.")
    return out


def _cells(df: pl.DataFrame) -> str:
    """'synthetic DIN MICN φ 0.3 len 20: 3 runs, ...' for the runs of `df`, grouped by cell."""
    parts = []
    for (dataset, backbone, variant, phi, max_len), g in df.group_by(
            ["dataset", "backbone", "variant", "phi", "max_len"], maintain_order=True):
        phi_text = "" if phi is None else f" φ {phi:g}"
        parts.append(f"{dataset} {BACKBONE_LABELS.get(backbone, backbone)} {VARIANT_LABELS.get(variant, variant)}"
                     f"{phi_text} len {max_len}: {g.height} run{'s' if g.height != 1 else ''}")
    return "; ".join(sorted(parts))


def evidence_rows(runs: pl.DataFrame) -> list[list[str]]:
    """One row per cell with learning evidence: MICN Recall@K vs popularity, DIEN aux vs 2 ln 2, the
    gradient ratio into e_aux, capsule purity vs shuffled and the capsules' overlap (synthetic
    data), and the selected epoch (and step) (means over the cell's ok runs)."""
    ok = runs.filter((pl.col("status") == "ok") & (pl.col("micn_recall").is_not_null()
                                                   | pl.col("dien_aux").is_not_null()
                                                   | pl.col("grad_ratio").is_not_null()
                                                   | pl.col("capsule_purity").is_not_null()
                                                   | pl.col("capsule_overlap").is_not_null()))
    if not ok.height:
        return []
    return [_evidence_row(r) for r in _evidence_cells(ok).iter_rows(named=True)]


def _evidence_cells(ok: pl.DataFrame) -> pl.DataFrame:
    """Per cell (dataset, length, backbone, variant, φ) of the ok runs `ok`: the means of the learning
    evidence and of the selected epoch and step, and the number of runs."""
    return (ok.group_by(["dataset", "max_len", "backbone", "variant", "supervision", "phi"])
            .agg(pl.len().alias("n"), pl.col("micn_retrieval_k").max().alias("k"),
                 pl.col("micn_recall").mean(), pl.col("popularity_recall").mean(), pl.col("dien_aux").mean(),
                 pl.col("grad_ratio").mean(), pl.col("capsule_purity").mean(), pl.col("capsule_purity_shuffled").mean(),
                 pl.col("capsule_overlap").mean(), pl.col("best_epoch").mean(), pl.col("best_step").mean(),
                 pl.col("epochs").mean())
            .sort(["dataset", "max_len", "backbone", "variant", "supervision", "phi"], nulls_last=False))


def _evidence_row(r: dict) -> list[str]:
    recall = "–" if r["micn_recall"] is None else (
        f"{r['micn_recall']:.4f} vs {fmt(r['popularity_recall'])}"
        + (" (**not above**)" if r["popularity_recall"] is not None and r["micn_recall"] <= r["popularity_recall"]
           else ""))
    aux = "–" if r["dien_aux"] is None else (
        f"{r['dien_aux']:.4f}" + (" (**at chance**)" if r["dien_aux"] >= TWO_LN2 - DIEN_AUX_MARGIN else ""))
    purity = "–" if r["capsule_purity"] is None else (
        f"{r['capsule_purity']:.3f} vs {fmt(r['capsule_purity_shuffled'], 3)}"
        + (" (**not above**)" if _purity_flat(r["capsule_purity"], r["capsule_purity_shuffled"]) else ""))
    overlap = "–" if r["capsule_overlap"] is None else (
        f"{r['capsule_overlap']:.3f}" + (" (**collapsed**)" if _collapsed(r["capsule_overlap"]) else ""))
    selected = "–" if r["best_epoch"] is None else f"{r['best_epoch']:.1f} of {fmt(r['epochs'], 1)}"
    if r["best_step"] is not None:
        selected += f" (step {r['best_step']:.0f})"
    return [r["dataset"], str(r["max_len"]), BACKBONE_LABELS.get(r["backbone"], r["backbone"]),
            variant_label(r), "–" if r["phi"] is None else f"{r['phi']:g}",
            "–" if r["k"] is None else str(r["k"]), recall, aux, fmt(r["grad_ratio"], 2), purity, overlap,
            selected, str(r["n"])]


def ceiling_rows(runs: pl.DataFrame) -> list[list[str]]:
    """Per dataset and length: the oracle and history-only ceilings and the best cell's mean test AUC."""
    ok = runs.filter((pl.col("status") == "ok") & pl.col("oracle_auc").is_not_null())
    if not ok.height:
        return []
    best = (ok.group_by(["dataset", "max_len", "backbone", "variant", "phi"]).agg(pl.col("auc").mean())
            .group_by(["dataset", "max_len"]).agg(pl.col("auc").max().alias("best")))
    ceilings = (ok.group_by(["dataset", "max_len"])
                .agg(pl.col("oracle_auc").mean(), pl.col("history_only_auc").mean())
                .join(best, on=["dataset", "max_len"]).sort(["dataset", "max_len"]))
    return [[r["dataset"], str(r["max_len"]), fmt(r["oracle_auc"]), fmt(r["history_only_auc"]), fmt(r["best"]),
             "–" if r["history_only_auc"] is None else f"{r['history_only_auc'] - r['best']:+.4f}"]
            for r in ceilings.iter_rows(named=True)]
