"""Load the SQL models under `sql/` and run them on a DuckDB connection.

Each model is a plain `select` (a CTE chain ending in `select * from final`) with named
parameters (`$path`, `$dataset`, ...) bound by DuckDB, never formatted into the text.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import duckdb

SQL_DIR = Path(os.environ.get("MICN_SQL_DIR", Path(__file__).resolve().parents[2] / "sql"))


@cache
def load_sql(name: str) -> str:
    """Text of `sql/<name>.sql`, e.g. `load_sql("ingest/stg_reviews")`."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"SQL model {name!r} not found at {path}; set MICN_SQL_DIR to the repository's sql/ folder")
    return path.read_text()


def create_table_as(
    con: duckdb.DuckDBPyConnection, table: str, model: str, params: dict | None = None, *, temp: bool = True, prefix: str = ""
) -> None:
    """`create or replace [temp] table <table> as <prefix> (<model>)` with bound parameters.

    `prefix` lets a caller wrap the model, e.g. to add `row_number() over ()`.
    """
    kind = "temp table" if temp else "table"
    body = load_sql(model)
    sql = f"create or replace {kind} {table} as {prefix or 'select * from'} ({body})"
    con.execute(sql, params or {})


def run_script(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Run a DDL script (several statements, no parameters), e.g. the warehouse schema."""
    con.execute(load_sql(name))
