"""Writing a samples folder atomically: a staging folder, then renames, one error per failed write.

Every file is written into a staging folder inside the output folder (same file system) and
renamed into place at the end, the feature map last: a failure (a full disk, a read-only folder)
is one MicnError naming the file and what is left, and leaves no partial file. Before the renames
start, the samples already in the folder are untouched; a rename that fails half-way says so.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from micn.data.samples.contract import build_feature_map
from micn.data.samples.encode import PARQUET_OPTIONS, read_lookups, write_split
from micn.data.samples.files import (
    FEATURE_MAP,
    NEGATIVE_SAMPLER,
    ORACLE_DIR,
    ORACLE_FILES,
    STAGING_PREFIX,
    SUMMARY,
    VOCAB_TABLES,
    output_names,
)
from micn.data.samples.job import SamplesJob, SamplesReport
from micn.errors import MicnError
from micn.names import SPLITS

VOCAB_QUERIES = {
    "vocab_user": "select user_id, index, frequency from vocab_user order by index",
    "vocab_item": "select item_id, index, frequency from vocab_item order by index",
    "vocab_category": "select category, index, frequency from vocab_category order by index",
}
NEGATIVE_SAMPLER_QUERY = "select item_id, count from negative_sampler order by item_id"
REPLACED_ORACLE = ".replaced-oracle"  # inside the staging folder: the oracle/ a build replaces, deleted with it

# What a user can do about a failed write, by errno.
_WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full: free some space and rerun",
    errno.EDQUOT: "the disk quota is exhausted: free some space and rerun",
    errno.EROFS: "the file system is read-only: give an --out folder on a writable disk",
    errno.EACCES: "permission denied: give an --out folder you may write",
    errno.EPERM: "operation not permitted: give an --out folder you may write",
}

# What is left after a failed write: before the renames (UNCHANGED) or during them (MIXED).
UNCHANGED = "no partial file is left and the previous samples, if any, are unchanged"
MIXED = "the folder may now hold old and new files side by side: rerun `micn samples` once the cause is fixed"


@contextmanager
def writing(path: Path, outcome: str = UNCHANGED) -> Iterator[None]:
    """Turn an OSError while writing `path` into one MicnError naming it, why, and what is left."""
    try:
        yield
    except OSError as e:
        why = _WRITE_ERRORS.get(e.errno, e.strerror or str(e))
        raise MicnError(f"{path}: cannot write the samples ({why}); {outcome}.") from e


def write_outputs(con, job: SamplesJob, db_path: Path, oracle_source: Path | None, report: SamplesReport,
                  out_path: Path) -> None:
    """Write every file into a staging folder inside `out_path`, then rename them into place:
    a failure (full disk, read-only folder) is one MicnError naming the file, and leaves the
    samples already in `out_path` untouched with no partial file."""
    stage = _staging_folder(out_path)
    try:
        _write_files(con, job, db_path, oracle_source, report, stage, out_path)
        _publish(stage, out_path, has_oracle=oracle_source is not None)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _staging_folder(out_path: Path) -> Path:
    """A fresh staging folder in `out_path`. Staging folders left by a killed build (named by
    STAGING_PREFIX, which only the samples build uses) are removed first."""
    with writing(out_path):
        out_path.mkdir(parents=True, exist_ok=True)
        for stale in out_path.glob(f"{STAGING_PREFIX}*"):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_path))


def _write_files(con, job: SamplesJob, db_path: Path, oracle_source: Path | None, report: SamplesReport,
                 stage: Path, out_path: Path) -> None:
    """Every file of `output_names` into `stage` under its final name, the feature map last."""
    lookups = read_lookups(con)
    for split in SPLITS:
        with writing(out_path / f"{split}.parquet"):
            write_split(con, split, stage / f"{split}.parquet", lookups, job.max_len)
    for table in VOCAB_TABLES:
        with writing(out_path / f"{table}.parquet"):
            pq.write_table(con.sql(VOCAB_QUERIES[table]).to_arrow_table(), stage / f"{table}.parquet",
                           use_dictionary=False, **PARQUET_OPTIONS)
    with writing(out_path / NEGATIVE_SAMPLER):
        pq.write_table(con.sql(NEGATIVE_SAMPLER_QUERY).to_arrow_table(), stage / NEGATIVE_SAMPLER,
                       use_dictionary=False, **PARQUET_OPTIONS)
    with writing(out_path / SUMMARY):
        _write_summary_table(report.summary_rows(), stage / SUMMARY)
    if oracle_source is not None:
        with writing(out_path / ORACLE_DIR):
            (stage / ORACLE_DIR).mkdir()
        for name in ORACLE_FILES:
            with writing(out_path / ORACLE_DIR / name):
                shutil.copyfile(oracle_source / name, stage / ORACLE_DIR / name)
    with writing(out_path / FEATURE_MAP):
        fmap = build_feature_map(con, job, db_path, has_oracle=oracle_source is not None)
        (stage / FEATURE_MAP).write_text(json.dumps(fmap.to_json(), indent=2) + "\n")


def _publish(stage: Path, out_path: Path, has_oracle: bool) -> None:
    """Rename the staged files into `out_path` (same file system: a rename needs no space), the
    oracle folder before the feature map that names it. An `oracle/` already in `out_path` is
    moved into the staging folder (deleted with it), also when the new set has none (real data)."""
    oracle = out_path / ORACLE_DIR
    if oracle.is_dir():
        with writing(oracle):
            os.replace(oracle, stage / REPLACED_ORACLE)
    if has_oracle:
        with writing(oracle, MIXED):
            os.replace(stage / ORACLE_DIR, oracle)
    for name in output_names(has_oracle):
        if not name.startswith(f"{ORACLE_DIR}/"):
            with writing(out_path / name, MIXED):
                os.replace(stage / name, out_path / name)


def _write_summary_table(rows: list[tuple[str, str, str, int]], path: Path) -> None:
    table = pa.table({
        "subject": pa.array([r[0] for r in rows], pa.string()),
        "outcome": pa.array([r[1] for r in rows], pa.string()),
        "reason": pa.array([r[2] for r in rows], pa.string()),
        "n": pa.array([r[3] for r in rows], pa.int64()),
    })
    pq.write_table(table, path, **PARQUET_OPTIONS)
