"""The SQL side of a samples build: the models of `sql/samples/`, in build order, as temp tables.

Everything runs on an in-memory connection with the warehouse ATTACHed read-only
(`micn.data.samples.warehouse`); the tables live only as long as that connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import duckdb

from micn.data.samples.job import SamplesJob
from micn.data.sql import create_table_as, run_script
from micn.errors import MicnError

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


def materialize(con: duckdb.DuckDBPyConnection, table: str, model: str, params: Mapping[str, Any]) -> None:
    """`create or replace temp table <table> as <model>`, binding the parameters the model uses."""
    create_table_as(con, table, model, params)


def build_tables(con: duckdb.DuckDBPyConnection, job: SamplesJob) -> None:
    """Every table of MODELS, in order, with the checks that stop a build with nothing to write:
    no usable user (after `int_users`), an empty training split (after `sample_pairs`)."""
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


def vocab_sizes(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """n_users, n_items, n_categories of the fitted vocabularies, each with the 2 reserved ids."""
    n_users, n_items, n_categories = con.execute(
        "select (select count(*) from vocab_user), (select count(*) from vocab_item), "
        "(select count(*) from vocab_category)").fetchall()[0]
    return {"n_users": n_users + 2, "n_items": n_items + 2, "n_categories": n_categories + 2}
