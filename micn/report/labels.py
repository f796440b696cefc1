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
VARIANT_COLOURS = {"base": "#7570b3", "control": "#1b9e77", "micn": "#d95f02"}
