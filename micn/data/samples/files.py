"""The names of the files a samples build writes, relative to the samples folder, and how an
existing one is recognised as a build's own.

A module of its own because the warehouse checks (the ground truth to copy), the feature map (the
files it names) and the publisher (what to rename, in which order) all use these names.
"""

from __future__ import annotations

from pathlib import Path

from micn.names import SPLITS
from micn.outputs import Check, claim, folder_of, json_object_with, parquet_with

ORACLE_DIR = "oracle"  # the copy of a synthetic world's ground truth, relative to the samples folder
ORACLE_FILES = ("world.json", "users.parquet", "items.parquet", "categories.parquet")  # what micn.data.oracle reads
NEGATIVE_SAMPLER = "negative_sampler.parquet"
SUMMARY = "samples_summary.parquet"
FEATURE_MAP = "feature_map.json"
STAGING_PREFIX = ".micn-samples-"  # the temporary folder inside out_dir that a build writes into
VOCAB_TABLES = ("vocab_user", "vocab_item", "vocab_category")  # each written to <table>.parquet


def output_names(has_oracle: bool) -> tuple[str, ...]:
    """Every file a build writes, relative to the samples folder, the feature map last."""
    names = [f"{split}.parquet" for split in SPLITS] + [f"{table}.parquet" for table in VOCAB_TABLES]
    names += [NEGATIVE_SAMPLER, SUMMARY]
    if has_oracle:
        names += [f"{ORACLE_DIR}/{name}" for name in ORACLE_FILES]
    return (*names, FEATURE_MAP)


# How a build recognises its own files in the folder it writes: a few of the columns or keys it
# writes (not all of them, so that a folder built by another version of micn is rebuilt too).
OWN = {
    **{f"{split}.parquet": parquet_with("user", "item", "label", "hist_items") for split in SPLITS},
    "vocab_user.parquet": parquet_with("user_id", "index"),
    "vocab_item.parquet": parquet_with("item_id", "index"),
    "vocab_category.parquet": parquet_with("category", "index"),
    NEGATIVE_SAMPLER: parquet_with("item_id", "count"),
    SUMMARY: parquet_with("subject", "outcome", "n"),
    FEATURE_MAP: json_object_with("dataset", "max_len", "padding_id"),
}


def check_out_folder(out_dir: Path) -> None:
    """Before any work: every file a build puts in `out_dir` is absent or the build's own, else a
    MicnError naming it. Each is renamed over its path, so a link there is refused too; `out_dir`
    itself may be a link to a folder."""
    checks: dict[str, tuple[Check, bool]] = {name: (check, False) for name, check in OWN.items()}
    checks[ORACLE_DIR] = (folder_of(ORACLE_FILES), True)
    for name, (check, folder) in checks.items():
        claim(out_dir / name, check, what=f"the samples' {name}", command="samples", folder=folder,
              fix="choose another --out (a new folder, or one `micn samples` wrote)")
