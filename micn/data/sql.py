"""Load the SQL models under `sql/` and run them on a DuckDB connection: the one SQL runner.

Each model is a plain `select` (a CTE chain ending in `select * from final`) with named
parameters (`$path`, `$dataset`, ...) bound by DuckDB, never formatted into the text. Callers
pass one mapping of everything a stage knows (e.g. a samples job's `sql_params()`); `bind` hands
DuckDB exactly the names the text uses, because DuckDB rejects unused named parameters.

    execute(con, f"insert into history {load_sql('metrics/history')}", p)   # any statement
    create_table_as(con, "stg_items", "samples/staging/stg_items", p)
    run_script(con, "samples/macros")               # DDL, several statements, no parameters
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import duckdb

from micn.names import DUCKDB_MAGIC

__all__ = ["SQL_DIR", "bind", "create_table_as", "execute", "load_sql", "parameters", "run_script"]

SQL_DIR = Path(os.environ.get("MICN_SQL_DIR", Path(__file__).resolve().parents[2] / "sql"))

# What is not code: `-- comments`, 'string literals' ('' escapes a quote) and "quoted identifiers".
# Removed before looking for `$name`, so that a JSON path like '$.asin' or a comment is no parameter.
_NOT_CODE = re.compile(r"--[^\n]*|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_PARAMETER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@cache
def load_sql(name: str) -> str:
    """Text of `sql/<name>.sql`, e.g. `load_sql("ingest/stg_reviews")`."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"SQL model {name!r} not found at {path}; set MICN_SQL_DIR to the repository's sql/ folder")
    return path.read_text()


@cache
def parameters(sql: str) -> frozenset[str]:
    """The named parameters (`$name`) that `sql` uses outside comments and string literals."""
    return frozenset(_PARAMETER.findall(_NOT_CODE.sub(" ", sql)))


def bind(sql: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The subset of `params` that `sql` uses. A parameter the text needs but `params` lacks is a
    KeyError naming it (a programming error: the caller's mapping is incomplete)."""
    params = params or {}
    names = parameters(sql)
    missing = sorted(names - params.keys())
    if missing:
        raise KeyError(f"SQL needs parameters {missing} that were not given (given: {sorted(params)})")
    return {name: params[name] for name in names}


def execute(
    con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None = None
) -> duckdb.DuckDBPyConnection:
    """`con.execute(sql)` with the parameters it uses bound from `params`; returns the connection
    (fetch from it as from `con.execute`)."""
    return con.execute(sql, bind(sql, params))


def create_table_as(
    con: duckdb.DuckDBPyConnection, table: str, model: str, params: Mapping[str, Any] | None = None, *,
    temp: bool = True, prefix: str = "",
) -> None:
    """`create or replace [temp] table <table> as <prefix> (<model>)` with bound parameters.

    `prefix` lets a caller wrap the model, e.g. to add `row_number() over ()`. `params` may hold
    more names than the model uses: only those it uses are bound.
    """
    kind = "temp table" if temp else "table"
    sql = f"create or replace {kind} {table} as {prefix or 'select * from'} ({load_sql(model)})"
    execute(con, sql, params)


def run_script(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Run a DDL script (several statements, no parameters), e.g. the warehouse schema or macros."""
    con.execute(load_sql(name))


def has_duckdb_header(path: Path) -> bool:
    """Whether `path` starts as every DuckDB database file does (`DUCKDB_MAGIC` at bytes 8..11).
    An empty or short file has no header; an unreadable one raises its OSError."""
    with open(path, "rb") as f:
        return f.read(12)[8:12] == DUCKDB_MAGIC
