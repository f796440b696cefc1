"""report.md from the metrics database's views, one function per section, in the report's order:

    summary (counts, warnings, how to read the tables) → Tables 2–4 → mechanism experiment
    (`micn.report.mechanism`) → ceilings → learning evidence → figures → failed runs → every run
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from micn.report.evidence import OVERLAP_COLLAPSED, PURITY_MARGIN, TWO_LN2, ceiling_rows, evidence_rows, not_learned
from micn.report.formatting import fmt, interval, markdown_table, mean_std
from micn.report.labels import BACKBONE_LABELS, MECHANISM, TABLES, variant_label
from micn.report.mechanism import mechanism_section

VARIANTS_TEXT = (
    "Test metrics are mean ± sample standard deviation over seeds. Variants: **base** is the backbone; "
    "**control** is the backbone with the same joined item width as MICN, its extra half trained by the main "
    "loss only (scaled by φ as MICN's e_aux is), without the capsule network and L_micn; **MICN** adds the "
    "auxiliary task. Two paired lifts of test AUC, each the mean difference over seeds with its 95 % t interval "
    "(pairs: same dataset, history length, backbone and seed, and the same φ where both runs have one): "
    "**− base** on control and MICN rows (what the extra width, or MICN, adds to the backbone), and "
    "**MICN − control** on MICN rows (what MICN's loss adds beyond the width: the fair test of MICN). "
    "A lift whose interval contains 0 is not distinguishable from none at this number of seeds."
)
CEILINGS_TEXT = (
    "Two ceilings on synthetic data: the **oracle AUC** scores with each user's hidden topic weights, which "
    "no model sees; the **history-only AUC** is the Bayes-optimal scorer that knows the world's public "
    "structure and only the user's observed history, i.e. the best any model trained on these samples could "
    "reach. Read a model's distance to the history-only AUC as its headroom; the gap between the two ceilings "
    "is out of every model's reach."
)
FAILED_WARNING = ("> **Warning: some runs failed** after their retries; their cells below count them as failed and "
                  "leave them out of the means. See *Failed runs*.")
PAPER_HEADERS = ["dataset", "", "variant", "test AUC", "GAUC", "logloss", "− base [95 % CI]",
                 "MICN − control [95 % CI]", "runs", "oracle AUC", "history-only AUC"]
FIRST_COLUMN = {"paper_table2": "backbone", "paper_table3": "phi", "paper_table4": "max_len"}  # the setting varied
ENABLE = {"paper_table3": "experiments.table3.enabled=true", "paper_table4": "experiments.table4.enabled=true"}
CEILINGS_SECTION_TEXT = (
    "The oracle AUC knows each user's hidden weights; the history-only AUC knows only what a model "
    "sees. A best model at or near the history-only AUC has no headroom left on this world, whatever "
    "the oracle says."
)
CEILINGS_HEADERS = ["dataset", "max_len", "oracle AUC", "history-only AUC", "best cell's test AUC",
                    "history-only − best"]
EVIDENCE_TEXT = (
    "At the selected checkpoint (means over seeds): MICN as the retrieval model it is, Recall@K of "
    "each validation user's held-out target over the whole catalogue from the user's interest "
    "capsules, beside ranking by training popularity on the same users (MICN has learned something "
    f"only above it); DIEN's auxiliary loss on the validation split beside 2 ln 2 = {TWO_LN2:.4f} "
    "(chance); and the ratio ‖∇_main‖ / ‖∇_micn‖ of the two gradients reaching e_aux over the "
    "selected epoch's steps (as the optimizer receives them, φ and 1 − φ applied): above 1 the main "
    "loss drives e_aux. On synthetic data, MICN's capsules against the topics the world planted: "
    "**capsule purity** clusters each validation user's behaviours by the capsule holding most of "
    "their routing weight and scores the clusters against the planted topics, beside the same "
    "clusters shuffled within the user (the capsules group behaviours by topic only above it, by "
    f"{PURITY_MARGIN} here); **capsule overlap** is the share of their nearest items two capsules of "
    f"a user have in common (1: collapsed into one interest, about 0: distinct; "
    f"{OVERLAP_COLLAPSED:g} or more is marked collapsed)."
)
EVIDENCE_HEADERS = ["dataset", "max_len", "backbone", "variant", "φ", "K of Recall@K", "MICN Recall@K vs popularity",
                    "DIEN aux (valid)", "‖∇main‖/‖∇micn‖", "capsule purity vs shuffled", "capsule overlap",
                    "selected epoch (step)", "runs"]
RUNS_HEADERS = ["run", "status", "test AUC", "GAUC", "logloss", "epochs", "train s", "samples/s"]


def render_markdown(tables: dict[str, pl.DataFrame], runs: pl.DataFrame, failed: pl.DataFrame,
                    figures: list[Path], db_name: str = "metrics/metrics.duckdb") -> str:
    """The whole report: `tables` by view name, `runs` and `failed` from the database named
    `db_name`, and the `figures` (paths relative to the report's folder)."""
    out = summary_section(runs, failed, db_name)
    out += paper_table_sections(tables)
    out += mechanism_section(tables[MECHANISM])
    out += ceilings_section(runs)
    out += evidence_section(runs)
    out += figures_section(figures)
    out += failed_runs_section(failed)
    out += runs_section(runs)
    return "\n".join(out)


def summary_section(runs: pl.DataFrame, failed: pl.DataFrame, db_name: str) -> list[str]:
    """Title, counts and code revisions, every aux task that has not learned, and how to read the tables."""
    ok = runs.filter(pl.col("status") == "ok")
    revisions = sorted({r for r in ok["git_revision"].to_list() if r})
    out = [
        "# MICN experiment report",
        "",
        f"From `{db_name}`: "
        f"{ok.height} runs finished, {failed.height} failed; datasets: {', '.join(sorted(set(runs['dataset'])))}; "
        f"code revision(s): {', '.join(r[:10] for r in revisions) or 'unknown'}.",
        "",
    ]
    for warning in not_learned(runs):  # at the top, in words: a lift of an aux task that did not learn means little
        out += [f"> {warning}", ""]
    out += [VARIANTS_TEXT, "", CEILINGS_TEXT, ""]
    if failed.height:
        out += [FAILED_WARNING, ""]
    return out


def paper_table_sections(tables: dict[str, pl.DataFrame]) -> list[str]:
    """Tables 2, 3 and 4, each with how to enable it when its experiment has not run."""
    out = []
    for name, title in TABLES.items():
        out += paper_table_section(name, title, tables[name])
    return out


def paper_table_section(name: str, title: str, df: pl.DataFrame) -> list[str]:
    if name == "paper_table3":  # φ rows are DIEN+MICN; keep its base and control rows for reference
        df = df.sort(["dataset", "backbone", "variant", "phi"], nulls_last=False)
    out = [f"## {title}", ""]
    if not df.height:
        enable = ENABLE.get(name, "experiments.table2.enabled=true")
        return out + [f"Not run. Enable it with `dvc exp run -S {enable}`.", ""]
    return out + [markdown_table(_paper_headers(name, df), _cell_rows(df, FIRST_COLUMN[name])), ""]


def _paper_headers(name: str, df: pl.DataFrame) -> list[str]:
    """PAPER_HEADERS with the varied setting as the second column (and, in the sweeps, its backbones)."""
    first = FIRST_COLUMN[name]
    headers = list(PAPER_HEADERS)
    headers[1] = {"backbone": "backbone", "phi": "φ", "max_len": "max_len"}[first]
    if first != "backbone":
        headers[1] = f"{headers[1]} ({', '.join(sorted({BACKBONE_LABELS.get(b, b) for b in df['backbone']}))})"
    return headers


def _cell_rows(df: pl.DataFrame, first: str) -> list[list[str]]:
    rows = []
    for r in df.iter_rows(named=True):
        lead = {"backbone": BACKBONE_LABELS.get(r["backbone"], r["backbone"]),
                "phi": "–" if r["phi"] is None else f"{r['phi']:g}",
                "max_len": str(r["max_len"])}[first]
        rows.append([r["dataset"], lead, variant_label(r),
                     mean_std(r["auc_mean"], r["auc_std"]), mean_std(r["gauc_mean"], r["gauc_std"]),
                     fmt(r["logloss_mean"]), _lift(r), _lift_control(r), _runs(r), fmt(r["oracle_auc"]),
                     fmt(r.get("history_only_auc"))])
    return rows


def _lift(row: dict) -> str:
    """This row − base (control and MICN rows)."""
    return interval(row.get("lift_mean"), row.get("lift_ci_low"), row.get("lift_ci_high"), row.get("n_pairs"))


def _lift_control(row: dict) -> str:
    """MICN − control (MICN rows); names the control's φ when it is not the row's own."""
    text = interval(row.get("lift_control_mean"), row.get("lift_control_ci_low"), row.get("lift_control_ci_high"),
                    row.get("n_pairs_control"))
    phi, control_phi = row.get("phi"), row.get("control_phi")
    if text != "–" and control_phi is not None and phi is not None and abs(control_phi - phi) > 1e-12:
        text += f" (control φ {control_phi:g})"
    return text


def _runs(row: dict) -> str:
    return f"{row['n_runs']}" + (f" (**{row['n_failed']} failed**)" if row["n_failed"] else "")


def ceilings_section(runs: pl.DataFrame) -> list[str]:
    """Per dataset and length: the two ceilings beside the best cell (only where an oracle is known)."""
    ceilings = ceiling_rows(runs)
    if not ceilings:
        return []
    return ["## Ceilings", "", CEILINGS_SECTION_TEXT, "", markdown_table(CEILINGS_HEADERS, ceilings), ""]


def evidence_section(runs: pl.DataFrame) -> list[str]:
    """Per cell: did MICN's and DIEN's auxiliary tasks learn (only where a run recorded evidence)."""
    evidence = evidence_rows(runs)
    if not evidence:
        return []
    return ["## Did the auxiliary tasks learn?", "", EVIDENCE_TEXT, "", markdown_table(EVIDENCE_HEADERS, evidence), ""]


def figures_section(figures: list[Path]) -> list[str]:
    return ["## Figures", "", *(f"![{f.stem}]({f.as_posix()})" for f in figures), ""]


def failed_runs_section(failed: pl.DataFrame) -> list[str]:
    """Runs that kept failing after their retries, with the first 300 characters of the error."""
    if not failed.height:
        return []
    return ["## Failed runs", "", markdown_table(["run", "attempts", "error"], [
        [r["run_id"], str(r["attempts"]), (r["error"] or "").replace("|", "\\|").replace("\n", " ")[:300]]
        for r in failed.iter_rows(named=True)]), ""]


def runs_section(runs: pl.DataFrame) -> list[str]:
    """Every run, by run id."""
    return ["## Runs", "", markdown_table(RUNS_HEADERS, [
        [r["run_id"], r["status"], fmt(r["auc"]), fmt(r["gauc"]), fmt(r["logloss"]),
         "–" if r["epochs"] is None else str(r["epochs"]), fmt(r["train_seconds"], 1), fmt(r["samples_per_s"], 0)]
        for r in runs.sort("run_id").iter_rows(named=True)]), ""]
