"""The leakage and accounting checks of a samples build: `sql/checks/samples_*.sql`.

Each check is a query over the build's tables (`sample_pairs`, `stg_behaviors`, `int_users`)
that returns the offending rows; zero rows is a pass. They run on every build, before anything
is written, and a failing one stops the build with a MicnError showing a few offending rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from micn.data.sql import execute, load_sql
from micn.names import PROTOCOLS

# check → the protocols it applies to
CHECKS = {
    "samples_history_before_target": PROTOCOLS,
    "samples_user_in_one_split": ("dien",),
    "samples_negative_not_positive": PROTOCOLS,
    "samples_din_negative_not_in_history": ("din",),
    "samples_user_accounting": PROTOCOLS,
}


@dataclass(frozen=True)
class CheckResult:
    name: str
    n_offending: int
    columns: tuple[str, ...]
    examples: tuple[tuple, ...]  # the first few offending rows

    @property
    def passed(self) -> bool:
        return self.n_offending == 0


def run_check(con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None,
              examples: int = 5) -> CheckResult:
    """Run `sql/checks/<name>.sql` on the tables in `con`; its rows are the offending ones."""
    execute(con, f"create or replace temp table check_result as {load_sql(f'checks/{name}')}", params)
    n = con.execute("select count(*) from check_result").fetchall()[0][0]
    rel = con.execute("select * from check_result limit $n", {"n": int(examples)})
    result = CheckResult(name, n, tuple(d[0] for d in rel.description), tuple(rel.fetchall()))
    con.execute("drop table check_result")
    return result


def check_failure_message(failed: list[CheckResult], out_path: Path) -> str:
    """One paragraph for the failed checks: each with its file, count and first offending rows."""
    parts = []
    for c in failed:
        shown = "; ".join(str(dict(zip(c.columns, row))) for row in c.examples)
        parts.append(f"check {c.name} (sql/checks/{c.name}.sql) found {c.n_offending} offending rows, e.g. {shown}")
    return (" ".join(parts) + f". Nothing was written to {out_path}. The sample build broke one of its own "
            "guarantees: please report this with the dataset and arguments.")
