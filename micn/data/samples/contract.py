"""The data↔model contract of a samples folder: the `FeatureMap` written as `feature_map.json`.

Training and `micn interests` read the samples through it alone: vocabulary sizes, reserved ids,
column types, the files of the folder, the build's settings and counts. It holds no timings and no
path outside the samples folder, so the same arguments give the same bytes and nothing a model
reads leads back into the warehouse or the raw folder.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from micn.data.feature_map import FeatureMap
from micn.data.samples.encode import sample_schema
from micn.data.samples.files import ORACLE_DIR
from micn.data.samples.job import SamplesJob, summary_counts
from micn.data.samples.tables import vocab_sizes
from micn.names import FIRST_REAL_ID, OOV_ID, PADDING_ID, SPLITS


def build_feature_map(con: duckdb.DuckDBPyConnection, job: SamplesJob, db_path: Path, has_oracle: bool) -> FeatureMap:
    """The feature map of the samples built on `con` (their `summary` and `vocab_*` tables) for `job`
    from the warehouse `db_path`; `has_oracle`: the folder holds a synthetic world's `oracle/`."""
    c = job.config
    counts = summary_counts(con.sql("select subject, outcome, reason, n from summary").fetchall())
    return FeatureMap.from_json({
        "dataset": job.dataset,
        "protocol": c.protocol,
        "seed": c.seed,
        "max_len": job.max_len,
        "valid_frac": c.valid_frac,
        "test_frac": c.test_frac,
        **vocab_sizes(con),
        "padding_id": PADDING_ID,
        "oov_id": OOV_ID,
        "vocab_order": f"descending training frequency, ties by raw id; real ids from {FIRST_REAL_ID}",
        "history": "left-padded with padding_id to max_len, most recent last; only behaviors strictly before the target's ts",
        "splits": {s: f"{s}.parquet" for s in SPLITS},
        "columns": {f.name: str(f.type) for f in sample_schema(job.max_len)},
        "vocab_files": {"user": "vocab_user.parquet", "item": "vocab_item.parquet", "category": "vocab_category.parquet"},
        "counts": counts,
        "oracle": ORACLE_DIR if has_oracle else None,  # relative to the samples folder; null = real data
        "source": db_path.name,  # provenance only (the warehouse file's name): nothing reads it
    }, "feature_map.json")
