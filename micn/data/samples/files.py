"""The names of the files a samples build writes, relative to the samples folder.

A module of its own because the warehouse checks (the ground truth to copy), the feature map (the
files it names) and the publisher (what to rename, in which order) all use these names.
"""

from __future__ import annotations

from micn.names import SPLITS

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
