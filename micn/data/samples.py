"""The DuckDB warehouse → training samples (DESIGN §3.3): sequences, splits, negatives, vocabularies.

    job = SamplesJob("electronics", max_len=10, config=SamplesConfig(protocol="dien", seed=0))
    build_job(db, job, samples_dir(root, job.dataset, job.max_len)) -> SamplesReport
    build_samples(db, dataset, out_dir, protocol="dien", max_len=20, seed=0,
                  valid_frac=0.1, test_frac=0.1) -> SamplesReport     # the same, keyword form

The settings travel as one typed job: `SamplesConfig` (the `samples` section of params.yaml,
validated in `micn.config`: protocol, seed, the two fractions) plus the dataset and its history
length `max_len`, which are per dataset and so not in that section.

Protocols (a sample pair = the target behavior as positive + one sampled negative target, both
with the same history):
    dien  (default; the protocol behind the MICN paper's numbers, from the DIEN reference code)
          per user, the LAST behavior is the target and the earlier ones the history; one
          popularity-weighted negative (a random review row's item) != the positive; users are
          split BY USER into train / valid / test.
    din   (DIN reference code) every behavior that has an earlier one is a target with the
          previous behaviors as history, with one UNIFORM negative the user never reviewed; each
          user's last pair is the test pair; for the validation users (a seeded `valid_frac` of
          the users with a training pair) their last training pair goes to valid instead of train.
Both: the history holds the most recent `max_len` behaviors strictly BEFORE the target's
timestamp (same-timestamp behaviors are left out, see `sql/samples/intermediate/int_histories.sql`),
and beside every history position a popularity-weighted negative != the clicked item, for DIEN's
auxiliary loss. Users with fewer than 2 behaviors, or with all behaviors at one timestamp, are
dropped and counted; din also drops users who reviewed every item (no negative exists).

Where the work is done:
* `sql/samples/` (staging → intermediate → marts) builds everything on integer keys in an
  in-memory DuckDB that ATTACHes the warehouse READ-ONLY: the warehouse is never written.
  Randomness is `hash(user_key, position, seed, salt, attempt)` mapped to a review row
  (popularity-weighted, the `popularity_negatives` macro of `sql/samples/macros.sql`) or an item
  key (uniform), with rejection by re-hashing (attempts 0..7, then a deterministic fallback):
  reproducible for any thread count, for a fixed DuckDB version (its `hash` may change between
  releases) and the same warehouse (keys are ranks of raw ids). SQL runs through the one runner,
  `micn.data.sql`, with bound parameters.
* `sql/checks/samples_*.sql` (leakage and accounting) run on every build, before anything is
  written; each returns offending rows and any row is a `MicnError`.
* Polars pads each chunk of pairs (left padding, most recent last), numpy lookup arrays map the
  integer keys to vocabulary indexes, and pyarrow writes one Parquet row group per chunk with
  fixed settings, so the same arguments give byte-identical files.

Vocabularies (user, item, category) are fitted on the TRAINING split only: 0 = padding,
1 = out-of-vocabulary (ids seen only in valid/test), real ids from 2 by descending training
frequency, ties by raw id (`sql/samples/marts/vocab_*.sql`). An id is in the vocabulary when it
occurs anywhere in a training row, sampled negatives included (as in DIEN's `generate_voc.py`).

Outputs in `out_dir` (by convention `samples_dir(root, dataset, max_len)`), everything training
and `micn interests` read, so that they never open the warehouse or the raw folder:
`train|valid|test.parquet` (columns in `sample_schema`; rows by raw user id, then time, each pair
as its positive row then its negative row), `feature_map.json` (the data↔model contract),
`vocab_user|vocab_item|vocab_category.parquet` (raw id → index, frequency),
`negative_sampler.parquet` (review rows per raw item id: the distribution of the negatives, for
the oracle AUC), `samples_summary.parquet` (what was kept and dropped), and for a synthetic world
`oracle/`: a byte copy of the world's `ground_truth/` files (found through the warehouse's
`ingest_log`), named by `feature_map["oracle"]` (null for real data).
Every file is written into a temporary folder inside `out_dir` and renamed at the end: a failure
(a full disk, a read-only folder) leaves the previous set untouched and no partial file.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from micn.config import SamplesConfig, dataset_name_problem, from_mapping
from micn.data.layout import SAMPLES_ROOT, samples_dir, samples_subdir  # noqa: F401 - re-exported
from micn.data.sql import create_table_as, execute, load_sql, run_script
from micn.errors import MicnError

__all__ = ["PROTOCOLS", "SPLITS", "ORACLE_DIR", "ORACLE_FILES", "NEGATIVE_SAMPLER", "SamplesJob", "SamplesReport",
           "CheckResult", "build_job", "build_samples", "check_warehouse", "run_check", "sample_schema", "samples_dir",
           "samples_subdir", "write_summary"]

PROTOCOLS = ("dien", "din")
SPLITS = ("train", "valid", "test")
PADDING_ID = 0
OOV_ID = 1
PAIRS_PER_ROW_GROUP = 65_536  # each pair is 2 rows; fixed, so row groups (and file bytes) are reproducible
ORACLE_DIR = "oracle"  # the copy of a synthetic world's ground truth, relative to the samples folder
ORACLE_FILES = ("world.json", "users.parquet", "items.parquet", "categories.parquet")  # what micn.data.oracle reads
NEGATIVE_SAMPLER = "negative_sampler.parquet"
SUMMARY = "samples_summary.parquet"
FEATURE_MAP = "feature_map.json"
STAGING_PREFIX = ".micn-samples-"  # the temporary folder inside out_dir that a build writes into

# (table, model) in build order; `{protocol}` picks the protocol's variant of a model.
MODELS = (
    ("stg_users", "samples/staging/stg_users"),
    ("stg_items", "samples/staging/stg_items"),
    ("stg_behaviors", "samples/staging/stg_behaviors"),
    ("int_users", "samples/intermediate/int_users"),
    ("int_user_splits", "samples/intermediate/int_user_splits"),
    ("int_review_rows", "samples/intermediate/int_review_rows"),
    ("int_targets", "samples/intermediate/int_targets_{protocol}"),
    ("int_target_negatives", "samples/intermediate/int_target_negatives_{protocol}"),
    ("int_behavior_negatives", "samples/intermediate/int_behavior_negatives"),
    ("int_histories", "samples/intermediate/int_histories"),
    ("sample_pairs", "samples/marts/sample_pairs"),
    ("vocab_user", "samples/marts/vocab_user"),
    ("vocab_item", "samples/marts/vocab_item"),
    ("vocab_category", "samples/marts/vocab_category"),
    ("summary", "samples/marts/summary"),
    ("negative_sampler", "samples/marts/negative_sampler"),
)
# Tables no later step reads once sample_pairs exists: dropped then, to free memory for the export.
DEAD_AFTER_PAIRS = ("int_histories", "int_behavior_negatives", "int_target_negatives", "int_review_rows")

# check → the protocols it applies to
CHECKS = {
    "samples_history_before_target": PROTOCOLS,
    "samples_user_in_one_split": ("dien",),
    "samples_negative_not_positive": PROTOCOLS,
    "samples_din_negative_not_in_history": ("din",),
    "samples_user_accounting": PROTOCOLS,
}


@dataclass(frozen=True)
class SamplesJob:
    """One samples build: a warehouse dataset at one history length, with the `samples` settings.

    `config` is the params.yaml `samples` section, shared by every dataset; `max_len` is the
    dataset's own (`datasets.<name>.max_len`, or an experiment's `max_lens`), hence the pair.
    """

    dataset: str
    max_len: int
    config: SamplesConfig = SamplesConfig()

    def __post_init__(self) -> None:
        problem = dataset_name_problem(self.dataset)
        if problem:
            raise MicnError(f"dataset={self.dataset!r} is not valid: {problem}; give the name of a dataset in the "
                            "warehouse (e.g. 'electronics').")
        if isinstance(self.max_len, bool) or not isinstance(self.max_len, int):
            raise MicnError(f"max_len={self.max_len!r} must be an integer: the number of most recent behaviors kept in "
                            "a history (paper: 10 for Electronics, 20 for Books).")
        if self.max_len < 1:
            raise MicnError(f"max_len={self.max_len} must be >= 1: it is the number of most recent behaviors kept in a "
                            "history (paper: 10 for Electronics, 20 for Books).")
        if not isinstance(self.config, SamplesConfig):
            raise MicnError(f"config={self.config!r} must be a micn.config.SamplesConfig (the `samples` section).")

    @classmethod
    def of(cls, dataset: str, max_len: int, **settings: Any) -> SamplesJob:
        """The job from plain values (the keyword API, CLI flags): the settings are validated as the
        `samples` section would be, so a bad value is a MicnError naming its key."""
        return cls(dataset, max_len, from_mapping(SamplesConfig, settings, where="samples"))

    def sql_params(self) -> dict[str, Any]:
        """Every named parameter the sample models may use (`micn.data.sql.bind` picks each model's)."""
        c = self.config
        return {"dataset": self.dataset, "protocol": c.protocol, "max_len": self.max_len, "seed": c.seed,
                "valid_frac": c.valid_frac, "test_frac": c.test_frac}


@dataclass(frozen=True)
class CheckResult:
    name: str
    n_offending: int
    columns: tuple[str, ...]
    examples: tuple[tuple, ...]  # the first few offending rows

    @property
    def passed(self) -> bool:
        return self.n_offending == 0


@dataclass(frozen=True)
class SamplesReport:
    dataset: str
    protocol: str
    db: str
    out_dir: str
    users: int  # users of the dataset in the warehouse
    users_kept: int
    users_dropped: dict[str, int]  # reason -> users
    users_per_split: dict[str, int]  # users with at least one pair in the split (din: every user is in test)
    pairs_per_split: dict[str, int]  # a pair = one positive row + one negative row
    samples_per_split: dict[str, int]  # rows in the split's Parquet file (2 per pair)
    targets_history_shortened: int  # targets whose history lost behaviors sharing the target's timestamp
    vocab_sizes: dict[str, int]  # n_users, n_items, n_categories, including the 2 reserved ids
    checks: dict[str, int]  # check -> offending rows (all 0: a failing check raises)
    files: tuple[str, ...]
    seconds: float

    @property
    def positives_per_split(self) -> dict[str, int]:
        return dict(self.pairs_per_split)

    @property
    def negatives_per_split(self) -> dict[str, int]:
        return dict(self.pairs_per_split)

    def summary_rows(self) -> list[tuple[str, str, str, int]]:
        """(subject, outcome, reason, count) rows: what was kept and dropped, and why."""
        rows = [("users", "total", "", self.users), ("users", "kept", "", self.users_kept)]
        rows += [("users", "dropped", reason, n) for reason, n in self.users_dropped.items()]
        rows += [("users", f"in {s}", "", self.users_per_split[s]) for s in SPLITS]
        rows += [("samples", s, "positives + negatives", self.samples_per_split[s]) for s in SPLITS]
        rows.append(("targets", "history shortened", "behaviors sharing the target timestamp left out",
                     self.targets_history_shortened))
        return rows


def write_summary(report: SamplesReport, path: str | Path | None = None) -> Path:
    """Write `report.summary_rows()` as a table (subject, outcome, reason, n); default
    `<out_dir>/samples_summary.parquet` (which `build_job` already writes). Returns the path."""
    path = Path(path) if path is not None else Path(report.out_dir) / SUMMARY
    partial = path.with_name(f".{path.name}.partial")
    try:
        with _writing(path):
            _write_summary_table(report.summary_rows(), partial)
            os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _write_summary_table(rows: list[tuple[str, str, str, int]], path: Path) -> None:
    table = pa.table({
        "subject": pa.array([r[0] for r in rows], pa.string()),
        "outcome": pa.array([r[1] for r in rows], pa.string()),
        "reason": pa.array([r[2] for r in rows], pa.string()),
        "n": pa.array([r[3] for r in rows], pa.int64()),
    })
    pq.write_table(table, path, **PARQUET_OPTIONS)


def build_samples(
    db: str | Path,
    dataset: str,
    out_dir: str | Path,
    protocol: str = "dien",
    max_len: int = 20,
    seed: int = 0,
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
) -> SamplesReport:
    """Keyword form of `build_job`, for scripts and tests: the values become a `SamplesJob`
    (validated before any work) and its samples are built in `out_dir`."""
    job = SamplesJob.of(dataset, max_len, protocol=protocol, seed=seed, valid_frac=valid_frac, test_frac=test_frac)
    return build_job(db, job, out_dir)


def build_job(db: str | Path, job: SamplesJob, out_dir: str | Path) -> SamplesReport:
    """Build the train / valid / test sample files of one warehouse dataset (see the module doc)."""
    started = time.perf_counter()
    db_path, out_path = _check_paths(db, out_dir)
    with tempfile.TemporaryDirectory(prefix="micn-samples-") as spill:
        con = duckdb.connect(":memory:", config={"temp_directory": spill})
        try:
            _attach_warehouse(con, db_path)
            _check_dataset(con, job.dataset)
            oracle_source = _oracle_source(con, job.dataset)
            _build(con, job)
            checks = {name: run_check(con, name, job.sql_params())
                      for name, protocols in CHECKS.items() if job.config.protocol in protocols}
            failed = [c for c in checks.values() if not c.passed]
            if failed:
                raise MicnError(_check_failure_message(failed, out_path))
            summary = con.sql("select subject, outcome, reason, n from summary").fetchall()
            files = tuple(str(out_path / name) for name in _output_names(oracle_source is not None))
            report = _report(job, db_path, out_path, summary, _vocab_sizes(con), checks, files)
            _write_outputs(con, job, Path(db), oracle_source, report, out_path)
        except duckdb.IOException as e:
            raise MicnError(f"building the samples of dataset={job.dataset!r} failed on a file DuckDB reads or spills "
                            f"to (its temporary folder is {spill}; if that disk is full, point TMPDIR elsewhere): "
                            f"{str(e).splitlines()[0]}") from e
        finally:
            con.close()
    return dataclasses.replace(report, seconds=round(time.perf_counter() - started, 3))


# --- the warehouse -----------------------------------------------------------------------------

DUCKDB_MAGIC = b"DUCK"  # bytes 8..11 of every DuckDB database file (after an 8-byte checksum)


def _check_paths(db: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    db_path = check_warehouse(db)
    out_path = Path(out_dir)
    if out_path.exists() and not out_path.is_dir():
        raise MicnError(f"out_dir {out_dir}: exists and is not a directory; give a directory for the sample files.")
    return db_path, out_path


def check_warehouse(db: str | Path) -> Path:
    """The resolved path of `db` if it is a readable DuckDB file, else a MicnError saying what it is
    (missing, a directory, not DuckDB): checked before any work, e.g. by the CLI before its flow."""
    db_path = Path(db).resolve()
    if db_path.is_dir():
        raise MicnError(f"{db}: is a directory, not a warehouse file; give the DuckDB file written by `micn ingest` "
                        "(e.g. data/warehouse.duckdb).")
    if not db_path.is_file():
        raise MicnError(f"{db}: no such warehouse file; build it first with `micn ingest` (e.g. data/warehouse.duckdb).")
    try:
        with open(db_path, "rb") as f:
            head = f.read(12)
    except OSError as e:
        raise MicnError(f"{db}: cannot be read ({e.strerror}); give a warehouse file you may read.") from None
    if head[8:12] != DUCKDB_MAGIC:
        what = "an empty file" if not head else f"a file of {db_path.stat().st_size:,} bytes without DuckDB's header"
        raise MicnError(f"{db}: not a DuckDB database file ({what}); give the warehouse written by `micn ingest` "
                        "(e.g. data/warehouse.duckdb).")
    return db_path


def _attach_warehouse(con: duckdb.DuckDBPyConnection, db_path: Path) -> None:
    try:
        con.execute("attach $path as warehouse (read_only)", {"path": str(db_path)})
    except duckdb.Error as e:
        said = str(e).splitlines()[0]
        if "lock" in said.lower():
            raise MicnError(f"{db_path}: another process holds this warehouse open for writing (a running "
                            f"`micn ingest`?), so it cannot be read; wait for it to finish and retry. "
                            f"DuckDB said: {said}") from e
        raise MicnError(f"{db_path}: cannot be opened read-only as a DuckDB warehouse. DuckDB said: {said}") from e
    tables = {r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_catalog = 'warehouse'").fetchall()}
    missing = sorted({"reviews", "items"} - tables)
    if missing:
        raise MicnError(f"{db_path}: not a micn warehouse: tables {missing} are missing; build it with `micn ingest`.")


def _check_dataset(con: duckdb.DuckDBPyConnection, dataset: str) -> None:
    known = [r[0] for r in con.execute(
        "select dataset from warehouse.reviews union select dataset from warehouse.items order by dataset").fetchall()]
    if dataset not in known:
        listed = ", ".join(repr(d) for d in known) or "none: the warehouse is empty"
        raise MicnError(f"dataset={dataset!r} is not in the warehouse; it holds: {listed}.")
    n_reviews = con.execute("select count(*) from warehouse.reviews where dataset = $d", {"d": dataset}).fetchall()[0][0]
    if n_reviews == 0:
        raise MicnError(f"dataset={dataset!r} has no reviews in the warehouse, so no samples can be built; "
                        "re-ingest it with its reviews file.")
    n_items = con.execute("select count(distinct item_id) from warehouse.reviews where dataset = $d",
                          {"d": dataset}).fetchall()[0][0]
    if n_items < 2:
        raise MicnError(f"dataset={dataset!r} has reviews of only {n_items} item, so no negative item can be sampled; "
                        "a dataset needs at least 2 reviewed items.")


def _oracle_source(con: duckdb.DuckDBPyConnection, dataset: str) -> Path | None:
    """The synthetic world's `ground_truth/` folder beside the dataset's raw review files, found
    through the warehouse's `ingest_log` (source paths as ingest recorded them, relative ones from
    the working directory); None for real data. Checked here, before any work, so that a world
    with missing ground-truth files fails early with their names."""
    has_log = con.execute("select count(*) from information_schema.tables "
                          "where table_catalog = 'warehouse' and table_name = 'ingest_log'").fetchall()[0][0]
    if not has_log:
        return None
    sources = con.execute("select distinct source_file from warehouse.ingest_log "
                          "where dataset = $d and kind = 'reviews' order by source_file", {"d": dataset}).fetchall()
    for (source,) in sources:
        truth = Path(source).parent / "ground_truth"
        if (truth / "world.json").is_file():
            missing = [name for name in ORACLE_FILES if not (truth / name).is_file()]
            if missing:
                raise MicnError(f"{truth}: a synthetic world's ground truth without {', '.join(missing)}; the oracle "
                                f"needs {', '.join(ORACLE_FILES)}: regenerate the world with `micn generate`.")
            return truth
    return None


# --- SQL ---------------------------------------------------------------------------------------


def materialize(con: duckdb.DuckDBPyConnection, table: str, model: str, params: Mapping[str, Any]) -> None:
    """`create or replace temp table <table> as <model>`, binding the parameters the model uses."""
    create_table_as(con, table, model, params)


def _build(con: duckdb.DuckDBPyConnection, job: SamplesJob) -> None:
    run_script(con, "samples/macros")
    params = job.sql_params()
    for table, model in MODELS:
        materialize(con, table, model.format(protocol=job.config.protocol), params)
        if table == "int_users":
            _check_users(con, job)
        elif table == "sample_pairs":
            _check_train_split(con, job)
            for dead in DEAD_AFTER_PAIRS:
                con.execute(f"drop table {dead}")


def _check_users(con: duckdb.DuckDBPyConnection, job: SamplesJob) -> None:
    rows = con.execute("select drop_reason, count(*) from int_users group by all order by all").fetchall()
    counts = {reason: n for reason, n in rows}
    if counts.get(None, 0) == 0:
        total = sum(counts.values())
        why = "; ".join(f"{n} {'user' if n == 1 else 'users'}: {reason}" for reason, n in counts.items())
        raise MicnError(
            f"dataset={job.dataset!r}: none of its {total} users can give a sample ({why}), so no samples can "
            "be built: a user needs at least 2 behaviors at different times (use the 5-core reviews file)."
        )


def _check_train_split(con: duckdb.DuckDBPyConnection, job: SamplesJob) -> None:
    n_train = con.execute("select count(*) from sample_pairs where split = 'train'").fetchall()[0][0]
    if n_train == 0:
        c = job.config
        n_users = con.execute("select count(*) from int_user_splits").fetchall()[0][0]
        how = ("dien gives valid and test at least one user each" if c.protocol == "dien"
               else "din trains only on users with 3 or more behaviors, minus the validation users")
        raise MicnError(
            f"dataset={job.dataset!r}: the training split is empty ({n_users} usable users, "
            f"protocol={c.protocol!r}, valid_frac={c.valid_frac}, test_frac={c.test_frac}; {how}), "
            "so no vocabulary can be fitted; use a larger dataset or smaller fractions."
        )


def run_check(con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None,
              examples: int = 5) -> CheckResult:
    """Run `sql/checks/<name>.sql` on the tables in `con`; its rows are the offending ones."""
    execute(con, f"create or replace temp table check_result as {load_sql(f'checks/{name}')}", params)
    n = con.execute("select count(*) from check_result").fetchall()[0][0]
    rel = con.execute("select * from check_result limit $n", {"n": int(examples)})
    result = CheckResult(name, n, tuple(d[0] for d in rel.description), tuple(rel.fetchall()))
    con.execute("drop table check_result")
    return result


def _check_failure_message(failed: list[CheckResult], out_path: Path) -> str:
    parts = []
    for c in failed:
        shown = "; ".join(str(dict(zip(c.columns, row))) for row in c.examples)
        parts.append(f"check {c.name} (sql/checks/{c.name}.sql) found {c.n_offending} offending rows, e.g. {shown}")
    return (" ".join(parts) + f". Nothing was written to {out_path}. The sample build broke one of its own "
            "guarantees: please report this with the dataset and arguments.")


# --- outputs -----------------------------------------------------------------------------------


def sample_schema(max_len: int) -> pa.Schema:
    """The columns of train/valid/test.parquet: one row per sample, 2 rows (label 1, 0) per pair."""
    ids = pa.list_(pa.field("item", pa.int32(), nullable=False), max_len)  # left-padded with 0, most recent last
    return pa.schema([
        pa.field("user", pa.int32(), nullable=False),
        pa.field("item", pa.int32(), nullable=False),
        pa.field("category", pa.int32(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
        pa.field("hist_items", ids, nullable=False),
        pa.field("hist_categories", ids, nullable=False),
        pa.field("hist_neg_items", ids, nullable=False),
        pa.field("hist_neg_categories", ids, nullable=False),
        pa.field("hist_len", pa.int32(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),  # raw ids, for per-user metrics and the oracle scorer
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("last_hist_item_id", pa.string(), nullable=False),
        pa.field("ts", pa.int64(), nullable=False),  # the target's (the positive's) timestamp, on both rows
    ])


# Fixed writer settings (part of the byte-identical promise). Dictionary encoding only for the raw
# id strings: on the id lists it costs time and makes the files larger.
# Statistics only where a reader can use them (not on the id lists: they cost a fifth of the write).
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1}
SAMPLE_DICTIONARY_COLUMNS = ["user_id", "item_id", "last_hist_item_id"]
SAMPLE_STATISTICS_COLUMNS = ["user", "item", "category", "label", "hist_len", "user_id", "item_id", "ts"]

SPLIT_QUERY = """
select user_key, user_id, ts, item_key, neg_item_key, hist_item_keys, hist_neg_keys, hist_len
from sample_pairs
where split = $split
order by user_key, pos
"""


@dataclass(frozen=True)
class _Lookups:
    """Dense key -> vocabulary index arrays (key 0 = padding -> 0; keys outside the vocab -> 1)."""

    user: np.ndarray  # user key -> user index
    item: np.ndarray  # item key -> item index
    item_category: np.ndarray  # item key -> the index of the item's category
    item_id: pa.Array  # item key -> raw item id ("" at key 0)


def _lookups(con) -> _Lookups:
    def dense(n_keys: int, table: str, key: str) -> np.ndarray:
        index = np.full(n_keys + 1, OOV_ID, dtype=np.int32)
        index[0] = PADDING_ID
        pairs = con.sql(f"select {key}, index from {table}").fetchnumpy()
        index[pairs[key]] = pairs["index"]
        return index

    n_users, n_items, n_categories = con.execute(
        "select (select count(*) from stg_users), (select count(*) from stg_items), "
        "(select max(category_key) from stg_items)").fetchall()[0]
    items = con.sql("select item_key, category_key, item_id from stg_items order by item_key").to_arrow_table()
    if not np.array_equal(items["item_key"].to_numpy(), np.arange(1, n_items + 1)):
        raise AssertionError("stg_items: item keys must be dense from 1 (the lookup arrays index by key)")
    item_category = np.zeros(n_items + 1, dtype=np.int32)
    item_category[1:] = items["category_key"].to_numpy()
    item_id = pa.concat_arrays([pa.array([""], pa.string()), items["item_id"].combine_chunks().cast(pa.string())])
    category = dense(n_categories, "vocab_category", "category_key")
    return _Lookups(dense(n_users, "vocab_user", "user_key"), dense(n_items, "vocab_item", "item_key"),
                    category[item_category], item_id)


def _left_pad(column: str, max_len: int) -> pl.Expr:
    """Variable-length list -> fixed Array(max_len), left-padded with 0, most recent last.

    Position i of the result is the list's element i - max_len counted from its end (negative
    index), or 0 where the list is shorter. (4x faster than concat_list + list.tail + to_array.)
    """
    col = pl.col(column)
    slots = [col.list.get(i - max_len, null_on_oob=True).fill_null(PADDING_ID) for i in range(max_len)]
    return pl.concat_arr(slots).alias(column)


def encode_pairs(pairs: pl.DataFrame, lookups: _Lookups, max_len: int) -> pa.Table:
    """One chunk of sample_pairs -> its sample rows: each pair as (positive, negative), encoded."""
    n = pairs.height
    padded = pairs.select(_left_pad("hist_item_keys", max_len), _left_pad("hist_neg_keys", max_len))
    hist_keys = padded["hist_item_keys"].to_numpy()  # (n, T) int32 item keys, 0 = padding
    hist_neg_keys = padded["hist_neg_keys"].to_numpy()  # (n, T)
    pos_keys = pairs["item_key"].to_numpy()
    neg_keys = pairs["neg_item_key"].to_numpy()

    item_keys = np.column_stack([pos_keys, neg_keys]).reshape(-1)  # (2n,) pos0, neg0, pos1, neg1, ...

    def twice(a: np.ndarray) -> np.ndarray:  # a pair's shared columns, on its positive and its negative row
        return np.repeat(a, 2, axis=0)

    def fixed(a: np.ndarray) -> pa.Array:  # (2n, T) -> fixed-size lists
        return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), max_len)

    columns = {
        "user": pa.array(twice(lookups.user[pairs["user_key"].to_numpy()])),
        "item": pa.array(lookups.item[item_keys]),
        "category": pa.array(lookups.item_category[item_keys]),
        "label": pa.array(np.tile(np.array([1, 0], dtype=np.int8), n)),
        "hist_items": fixed(twice(lookups.item[hist_keys])),
        "hist_categories": fixed(twice(lookups.item_category[hist_keys])),
        "hist_neg_items": fixed(twice(lookups.item[hist_neg_keys])),
        "hist_neg_categories": fixed(twice(lookups.item_category[hist_neg_keys])),
        "hist_len": pa.array(twice(pairs["hist_len"].to_numpy())),
        "user_id": pairs["user_id"].to_arrow().cast(pa.string()).take(pa.array(np.repeat(np.arange(n), 2))),
        "item_id": lookups.item_id.take(pa.array(item_keys)),
        "last_hist_item_id": lookups.item_id.take(pa.array(twice(hist_keys[:, -1]))),  # most recent = last column
        "ts": pa.array(twice(pairs["ts"].to_numpy())),
    }
    return pa.Table.from_pydict(columns, schema=sample_schema(max_len))


def _fixed_chunks(reader: pa.RecordBatchReader, size: int) -> Iterator[pa.Table]:
    """Re-cut a stream of record batches into tables of exactly `size` rows (the last may be
    shorter), whatever batch sizes DuckDB hands out: row groups must not depend on threads."""
    pending: list[pa.RecordBatch] = []
    n_pending = 0
    for batch in reader:
        pending.append(batch)
        n_pending += batch.num_rows
        while n_pending >= size:
            table = pa.Table.from_batches(pending, schema=reader.schema)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, n_pending = rest.to_batches(), rest.num_rows
    if n_pending:
        yield pa.Table.from_batches(pending, schema=reader.schema)


def _write_split(con, split: str, path: Path, lookups: _Lookups, max_len: int) -> int:
    """Stream the split's pairs, by user then time, into one Parquet row group per chunk.

    The writer runs in a second thread (pyarrow releases the GIL), so compressing chunk k overlaps
    with Polars/numpy encoding chunk k + 1; row groups stay in order.
    """
    n_rows = 0
    reader = con.sql(SPLIT_QUERY, params={"split": split}).to_arrow_reader(PAIRS_PER_ROW_GROUP)
    writer = pq.ParquetWriter(path, sample_schema(max_len), use_dictionary=SAMPLE_DICTIONARY_COLUMNS,
                              write_statistics=SAMPLE_STATISTICS_COLUMNS, **PARQUET_OPTIONS)
    with writer, ThreadPoolExecutor(max_workers=1) as background:
        pending = None
        for chunk in _fixed_chunks(reader, PAIRS_PER_ROW_GROUP):
            table = encode_pairs(pl.from_arrow(chunk), lookups, max_len)
            if pending is not None:
                pending.result()
            pending = background.submit(writer.write_table, table, row_group_size=table.num_rows)
            n_rows += table.num_rows
        if pending is not None:
            pending.result()
    return n_rows


VOCAB_QUERIES = {
    "vocab_user": "select user_id, index, frequency from vocab_user order by index",
    "vocab_item": "select item_id, index, frequency from vocab_item order by index",
    "vocab_category": "select category, index, frequency from vocab_category order by index",
}
NEGATIVE_SAMPLER_QUERY = "select item_id, count from negative_sampler order by item_id"


def _output_names(has_oracle: bool) -> tuple[str, ...]:
    """Every file a build writes, relative to the samples folder, the feature map last."""
    names = [f"{split}.parquet" for split in SPLITS] + [f"{table}.parquet" for table in VOCAB_QUERIES]
    names += [NEGATIVE_SAMPLER, SUMMARY]
    if has_oracle:
        names += [f"{ORACLE_DIR}/{name}" for name in ORACLE_FILES]
    return (*names, FEATURE_MAP)


def _write_outputs(con, job: SamplesJob, db_path: Path, oracle_source: Path | None, report: SamplesReport,
                   out_path: Path) -> None:
    """Write every file into a staging folder inside `out_path`, then rename them into place:
    a failure (full disk, read-only folder) is one MicnError naming the file, and leaves the
    previous set untouched with no partial file."""
    stage = _staging_folder(out_path)
    try:
        _write_files(con, job, db_path, oracle_source, report, stage, out_path)
        _publish(stage, out_path, has_oracle=oracle_source is not None)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _staging_folder(out_path: Path) -> Path:
    """A fresh staging folder in `out_path`. Staging folders left by a killed build (named by
    STAGING_PREFIX, which only this module uses) are removed first."""
    with _writing(out_path):
        out_path.mkdir(parents=True, exist_ok=True)
        for stale in out_path.glob(f"{STAGING_PREFIX}*"):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_path))


def _write_files(con, job: SamplesJob, db_path: Path, oracle_source: Path | None, report: SamplesReport,
                 stage: Path, out_path: Path) -> None:
    """Every file of `_output_names` into `stage` under its final name, the feature map last."""
    lookups = _lookups(con)
    for split in SPLITS:
        with _writing(out_path / f"{split}.parquet"):
            _write_split(con, split, stage / f"{split}.parquet", lookups, job.max_len)
    for table, query in VOCAB_QUERIES.items():
        with _writing(out_path / f"{table}.parquet"):
            pq.write_table(con.sql(query).to_arrow_table(), stage / f"{table}.parquet", use_dictionary=False,
                           **PARQUET_OPTIONS)
    with _writing(out_path / NEGATIVE_SAMPLER):
        pq.write_table(con.sql(NEGATIVE_SAMPLER_QUERY).to_arrow_table(), stage / NEGATIVE_SAMPLER,
                       use_dictionary=False, **PARQUET_OPTIONS)
    with _writing(out_path / SUMMARY):
        _write_summary_table(report.summary_rows(), stage / SUMMARY)
    if oracle_source is not None:
        with _writing(out_path / ORACLE_DIR):
            (stage / ORACLE_DIR).mkdir()
        for name in ORACLE_FILES:
            with _writing(out_path / ORACLE_DIR / name):
                shutil.copyfile(oracle_source / name, stage / ORACLE_DIR / name)
    with _writing(out_path / FEATURE_MAP):
        fmap = _feature_map(con, job, db_path, has_oracle=oracle_source is not None)
        (stage / FEATURE_MAP).write_text(json.dumps(fmap, indent=2) + "\n")


def _publish(stage: Path, out_path: Path, has_oracle: bool) -> None:
    """Rename the staged files into `out_path` (same file system: a rename needs no space), the
    oracle folder before the feature map that names it. An old `oracle/` is moved into the
    staging folder (deleted with it), also when the new set has none (real data)."""
    oracle = out_path / ORACLE_DIR
    if oracle.is_dir():
        with _writing(oracle):
            os.replace(oracle, stage / ".old-oracle")
    if has_oracle:
        with _writing(oracle, MIXED):
            os.replace(stage / ORACLE_DIR, oracle)
    for name in _output_names(has_oracle):
        if not name.startswith(f"{ORACLE_DIR}/"):
            with _writing(out_path / name, MIXED):
                os.replace(stage / name, out_path / name)


# What a user can do about a failed write, by errno.
_WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full: free some space and rerun",
    errno.EDQUOT: "the disk quota is exhausted: free some space and rerun",
    errno.EROFS: "the file system is read-only: give an --out folder on a writable disk",
    errno.EACCES: "permission denied: give an --out folder you may write",
    errno.EPERM: "operation not permitted: give an --out folder you may write",
}


UNCHANGED = "no partial file is left and the previous samples, if any, are unchanged"
MIXED = "the folder may now hold old and new files side by side: rerun `micn samples` once the cause is fixed"


@contextmanager
def _writing(path: Path, outcome: str = UNCHANGED) -> Iterator[None]:
    """Turn an OSError while writing `path` into one MicnError naming it, why, and what is left."""
    try:
        yield
    except OSError as e:
        why = _WRITE_ERRORS.get(e.errno, e.strerror or str(e))
        raise MicnError(f"{path}: cannot write the samples ({why}); {outcome}.") from e


def _vocab_sizes(con) -> dict[str, int]:
    n_users, n_items, n_categories = con.execute(
        "select (select count(*) from vocab_user), (select count(*) from vocab_item), "
        "(select count(*) from vocab_category)").fetchall()[0]
    return {"n_users": n_users + 2, "n_items": n_items + 2, "n_categories": n_categories + 2}


def _feature_map(con, job: SamplesJob, db_path: Path, has_oracle: bool) -> dict:
    """The data↔model contract. No timings or paths outside the samples folder: the same arguments
    give the same bytes, and training follows no path into the warehouse or the raw folder."""
    c = job.config
    counts = _counts(con.sql("select subject, outcome, reason, n from summary").fetchall())
    return {
        "dataset": job.dataset,
        "protocol": c.protocol,
        "seed": c.seed,
        "max_len": job.max_len,
        "valid_frac": c.valid_frac,
        "test_frac": c.test_frac,
        **_vocab_sizes(con),
        "padding_id": PADDING_ID,
        "oov_id": OOV_ID,
        "vocab_order": "descending training frequency, ties by raw id; real ids from 2",
        "history": "left-padded with padding_id to max_len, most recent last; only behaviors strictly before the target's ts",
        "splits": {s: f"{s}.parquet" for s in SPLITS},
        "columns": {f.name: str(f.type) for f in sample_schema(job.max_len)},
        "vocab_files": {"user": "vocab_user.parquet", "item": "vocab_item.parquet", "category": "vocab_category.parquet"},
        "counts": counts,
        "oracle": ORACLE_DIR if has_oracle else None,  # relative to the samples folder; null = real data
        "source": db_path.name,  # provenance only (the warehouse file's name): nothing reads it
    }


def _counts(summary: list[tuple]) -> dict:
    users_dropped = {r: n for s, o, r, n in summary if s == "users" and o == "dropped"}
    kept = sum(n for s, o, r, n in summary if s == "users" and o == "kept")
    users_per_split = {sp: sum(n for s, o, r, n in summary if s == "users" and o == sp) for sp in SPLITS}
    pairs = {sp: sum(n for s, o, r, n in summary if s == "pairs" and o == sp) for sp in SPLITS}
    shortened = sum(n for s, o, r, n in summary if s == "targets")
    return {
        "users": {"total": kept + sum(users_dropped.values()), "kept": kept, "dropped": dict(sorted(users_dropped.items()))},
        "users_per_split": users_per_split,
        "samples": {sp: {"rows": 2 * pairs[sp], "positives": pairs[sp], "negatives": pairs[sp]} for sp in SPLITS},
        "targets_history_shortened": shortened,
    }


def _report(job: SamplesJob, db_path: Path, out_path: Path, summary: list[tuple], vocab_sizes: dict[str, int],
            checks: dict[str, CheckResult], files: tuple[str, ...], seconds: float = 0.0) -> SamplesReport:
    c = _counts(summary)
    return SamplesReport(
        dataset=job.dataset,
        protocol=job.config.protocol,
        db=str(db_path),
        out_dir=str(out_path),
        users=c["users"]["total"],
        users_kept=c["users"]["kept"],
        users_dropped=c["users"]["dropped"],
        users_per_split=c["users_per_split"],
        pairs_per_split={s: v["positives"] for s, v in c["samples"].items()},
        samples_per_split={s: v["rows"] for s, v in c["samples"].items()},
        targets_history_shortened=c["targets_history_shortened"],
        vocab_sizes=vocab_sizes,
        checks={name: r.n_offending for name, r in checks.items()},
        files=files,
        seconds=round(seconds, 3),
    )
