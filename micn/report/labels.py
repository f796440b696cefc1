"""What the report calls things: the paper views and their titles, and the display label and
colour of each backbone and variant (keys: the ids of `micn.names`)."""

TABLES = {
    "paper_table2": "Table 2: backbones as base, width-matched control and MICN",
    "paper_table3": "Table 3: φ (gradient blend into e_aux) for MICN",
    "paper_table4": "Table 4: history length (max_len): base, control and MICN",
}
MECHANISM = "paper_mechanism"  # the mechanism experiment's view, with its own section and figure
TITLES = {**TABLES, MECHANISM: "The mechanism experiment: MICN − control against the interest signal κ"}
# Display order too: tables and figures list backbones and variants in this order.
BACKBONE_LABELS = {"wide_deep": "Wide&Deep", "din": "DIN", "dien": "DIEN"}
VARIANT_LABELS = {"base": "base", "control": "control", "micn": "MICN"}
VARIANT_COLOURS = {"base": "#7570b3", "control": "#1b9e77", "micn": "#d95f02", "micn (history)": "#e7298a"}


def variant_label(row: dict) -> str:
    """A cell's variant as the report shows it: "MICN" is the paper's supervision, "MICN (history)"
    the next-behaviour one; an ablated base run names its ablation."""
    label = VARIANT_LABELS.get(row["variant"], row["variant"])
    if row.get("supervision") == "history":
        label += " (history)"
    return label + (f", {row['ablation']}" if row.get("ablation") else "")


def series_key(row: dict) -> str:
    """The key of a cell's colour and bar: the variant, with the `history` supervision apart."""
    return "micn (history)" if row.get("supervision") == "history" else row["variant"]
