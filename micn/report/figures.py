"""The report's PNG plots (matplotlib, files only) and the bar-plot data DVC shows (auc.json).

The report owns only the figures it draws (`FIGURES`): any other file in `reports/figures/`, a
user's PNG included, is left alone. Figures are saved without a version stamp, so the same data
gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from micn.report.labels import BACKBONE_LABELS, MECHANISM, VARIANT_COLOURS, VARIANT_LABELS, series_key  # noqa: E402

# The figures `draw_figures` draws, by file name: the only PNGs it ever deletes.
FIGURES = ("auc_by_backbone.png", "learning_curves.png", "phi_sweep.png", "max_len.png", "mechanism.png")


def remove_figures(figures_dir: Path) -> None:
    """Delete the report's own figures, so that a figure of an experiment that is not in the grid
    does not stay behind; every other file in `figures_dir` is left alone."""
    for name in FIGURES:
        (figures_dir / name).unlink(missing_ok=True)


def draw_figures(tables: dict[str, pl.DataFrame], runs: pl.DataFrame, history: pl.DataFrame,
                 figures_dir: Path) -> list[Path]:
    """Every figure the data has: test AUC per backbone, the learning curves, and where their
    experiments ran the φ sweep, the history-length sweep and the mechanism experiment."""
    figures = [auc_figure(tables["paper_table2"], figures_dir / "auc_by_backbone.png"),
               learning_curves_figure(runs, history, figures_dir / "learning_curves.png")]
    if tables["paper_table3"].height:
        figures.append(sweep_figure(tables["paper_table3"], "phi", "φ", figures_dir / "phi_sweep.png"))
    if tables["paper_table4"].height:
        figures.append(sweep_figure(tables["paper_table4"], "max_len", "max_len", figures_dir / "max_len.png"))
    if tables[MECHANISM].height:
        figures.append(mechanism_figure(tables[MECHANISM], figures_dir / "mechanism.png"))
    return [f for f in figures if f is not None]


def auc_bars(table2: pl.DataFrame) -> list[dict]:
    """auc.json, DVC's bar plot: one entry per Table 2 cell with a test AUC."""
    return [{"cell": f"{r['dataset']} {BACKBONE_LABELS.get(r['backbone'], r['backbone'])} {r['variant']}",
             "auc_mean": r["auc_mean"], "auc_std": r["auc_std"], "runs": r["n_runs"]}
            for r in table2.iter_rows(named=True) if r["auc_mean"] is not None]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})  # no version stamp: same data, same bytes
    plt.close(fig)
    return path


def auc_figure(table2: pl.DataFrame, path: Path) -> Path | None:
    """Test AUC (mean, error bar = std over seeds) per backbone and variant (base, control, MICN),
    one panel per dataset; the oracle and history-only ceilings as lines where they are known."""
    df = table2.filter(pl.col("auc_mean").is_not_null())
    if not df.height:
        return None
    datasets = sorted(set(df["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        d = df.filter(pl.col("dataset") == dataset)
        backbones = list(dict.fromkeys(d["backbone"]))
        d = d.with_columns(series=pl.struct("variant", "supervision").map_elements(series_key, return_dtype=pl.String))
        variants = [v for v in VARIANT_COLOURS if v in set(d["series"])]
        width = 0.8 / len(variants)
        for i, variant in enumerate(variants):
            v = {r["backbone"]: r for r in d.filter(pl.col("series") == variant).iter_rows(named=True)}
            xs = [j + (i - (len(variants) - 1) / 2) * width for j, b in enumerate(backbones) if b in v]
            ax.bar(xs, [v[b]["auc_mean"] for b in backbones if b in v], width=width,
                   yerr=[v[b]["auc_std"] or 0 for b in backbones if b in v], capsize=4,
                   label=f"+ {variant.replace('micn', 'MICN')}" if variant.startswith("micn") else variant,
                   color=VARIANT_COLOURS.get(variant, "grey"))
        oracle = d["oracle_auc"].drop_nulls()
        if oracle.len():
            ax.axhline(oracle.mean(), ls="--", color="black", lw=1, label=f"oracle {oracle.mean():.3f}")
        history_only = d["history_only_auc"].drop_nulls()
        if history_only.len():
            ax.axhline(history_only.mean(), ls=":", color="black", lw=1,
                       label=f"history-only {history_only.mean():.3f}")
        lows = (d["auc_mean"] - d["auc_std"].fill_null(0)).min()
        top = max(d["auc_mean"].max(), oracle.max() if oracle.len() else 0)
        ax.set_ylim(max(0.0, lows - 0.03), min(1.0, top + 0.02))
        ax.set_xticks(range(len(backbones)), [BACKBONE_LABELS.get(b, b) for b in backbones])
        ax.set_ylabel("test AUC")
        ax.set_title(f"{dataset}: test AUC, mean ± std over seeds")
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def curve_axis(g: pl.DataFrame) -> str:
    """The x column of one run's learning curve: `step` (the optimizer step of each evaluation) when
    every row has one, else `epoch` (curves written with one row per epoch)."""
    return "step" if "step" in g.columns and g.height and g["step"].null_count() == 0 else "epoch"


def learning_curves_figure(runs: pl.DataFrame, history: pl.DataFrame, path: Path) -> Path | None:
    """Validation AUC per evaluation against the optimizer step (per epoch for curves without steps),
    one thin line per run, one panel per backbone; evaluations during MICN's warm-up hollow."""
    if not history.height:
        return None
    h = history.join(runs.select("run_id", "dataset", "backbone", "variant"), on="run_id")
    backbones = sorted(set(runs["backbone"]),
                       key=lambda b: (list(BACKBONE_LABELS).index(b) if b in BACKBONE_LABELS else 9, b))
    fig, axes = plt.subplots(1, len(backbones), figsize=(4.5 * len(backbones), 3.6), squeeze=False, sharey=True)
    for ax, backbone in zip(axes[0], backbones):
        used, warm = set(), False
        for run_id, g in h.filter(pl.col("backbone") == backbone).group_by("run_id", maintain_order=True):
            x = curve_axis(g)
            used.add(x)
            g = g.sort(x)
            colour = VARIANT_COLOURS.get(g["variant"][0], "grey")
            ax.plot(g[x], g["valid_auc"], marker="o", ms=3, lw=1, alpha=0.7, color=colour)
            if "warmup" in g.columns:
                w = g.filter(pl.col("warmup").fill_null(False))
                if w.height:
                    ax.plot(w[x], w["valid_auc"], ls="", marker="o", ms=5, mfc="white", color=colour, alpha=0.9)
                    warm = True
        for variant in (v for v in VARIANT_LABELS if v in set(h["variant"])):
            ax.plot([], [], color=VARIANT_COLOURS[variant], label="+ MICN" if variant == "micn" else variant)
        if warm:
            ax.plot([], [], ls="", marker="o", ms=5, mfc="white", color="grey", label="MICN warm-up (not selectable)")
        ax.set_title(f"{BACKBONE_LABELS.get(backbone, backbone)}: validation AUC")
        ax.set_xlabel({frozenset({"step"}): "optimizer step", frozenset({"epoch"}): "epoch"}.get(
            frozenset(used), "optimizer step (epoch for runs without steps)"))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("validation AUC")
    return _save(fig, path)


def sweep_figure(table: pl.DataFrame, column: str, label: str, path: Path) -> Path | None:
    """Test AUC against φ or max_len (MICN rows; base and control as reference lines in the φ sweep
    when they have one φ, else as series of their own)."""
    df = table.filter(pl.col("auc_mean").is_not_null())
    if not df.height:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for (dataset, backbone, variant), g in df.group_by(["dataset", "backbone", "variant"], maintain_order=True):
        suffix = {"micn": " + MICN", "control": " control"}.get(variant, "")
        name = f"{dataset} {BACKBONE_LABELS.get(backbone, backbone)}{suffix}"
        if column == "phi" and variant != "micn" and g.height == 1:
            what = "no MICN" if variant == "base" else f"φ {g['phi'][0]:g}, no L_micn"
            ax.axhline(g["auc_mean"][0], ls="--" if variant == "base" else ":", lw=1,
                       color=VARIANT_COLOURS.get(variant, "grey"), label=f"{name} ({what})")
            continue
        g = g.sort(column)
        ax.errorbar(g[column], g["auc_mean"], yerr=g["auc_std"].fill_null(0), marker="o", capsize=3, label=name)
    ax.set_xlabel(label)
    ax.set_ylabel("test AUC")
    ax.set_title(f"test AUC against {label}, mean ± std over seeds")
    ax.legend(fontsize=8)
    return _save(fig, path)


def mechanism_figure(df: pl.DataFrame, path: Path) -> Path | None:
    """MICN − control lift of test AUC against κ with its 95 % interval, one series per backbone and
    supervision (the paper's `target` solid, `history` dashed); on a second axis the two ceilings
    per κ (oracle, history-only)."""
    micn = df.filter((pl.col("variant") == "micn") & pl.col("lift_control_mean").is_not_null())
    if not micn.height:
        return None
    fig, (ax, top) = plt.subplots(1, 2, figsize=(11, 4))
    offsets = {"wide_deep": -0.012, "din": 0.0, "dien": 0.012}  # side by side at each κ
    colours = dict(zip(BACKBONE_LABELS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for (backbone, supervision), g in micn.sort("kappa").group_by(["backbone", "supervision"], maintain_order=True):
        low = (g["lift_control_mean"] - g["lift_control_ci_low"]).fill_null(0)
        high = (g["lift_control_ci_high"] - g["lift_control_mean"]).fill_null(0)
        history = supervision == "history"
        ax.errorbar(g["kappa"] + offsets.get(backbone, 0.0) + (0.004 if history else 0.0), g["lift_control_mean"],
                    yerr=[low, high], marker="s" if history else "o", linestyle="--" if history else "-",
                    capsize=3, color=colours.get(backbone),
                    label=BACKBONE_LABELS.get(backbone, backbone) + (" (history)" if history else ""))
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("κ (probability that an item serves its category's topic)")
    ax.set_ylabel("MICN − control, test AUC")
    ax.set_title("MICN − control against κ (95 % paired interval)")
    ax.legend(fontsize=8)
    worlds = df.group_by("kappa").agg(pl.col("oracle_auc").mean(), pl.col("history_only_auc").mean(),
                                      pl.col("auc_mean").filter(pl.col("ablation").is_null()).max().alias("best"))
    worlds = worlds.sort("kappa")
    top.plot(worlds["kappa"], worlds["oracle_auc"], "k--", marker="s", label="oracle AUC")
    top.plot(worlds["kappa"], worlds["history_only_auc"], "k:", marker="^", label="history-only AUC")
    top.plot(worlds["kappa"], worlds["best"], color=VARIANT_COLOURS["micn"], marker="o", label="best cell's test AUC")
    top.set_xlabel("κ")
    top.set_ylabel("AUC")
    top.set_title("ceilings per world")
    top.legend(fontsize=8)
    return _save(fig, path)
