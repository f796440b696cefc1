"""The metrics database: per-run files → `metrics/metrics.duckdb`, and reading its views back.

    build_metrics_db("metrics", "metrics/metrics.duckdb") -> counts   one writer, after the grid

The database holds tables `runs` (one row per trained model or failed run) and `history` (one
row per run and evaluation; one per epoch for curves written without optimizer steps), the table
macro `paper_cells(experiment)` and the views `paper_table2` (backbones as base, control and MICN),
`paper_table3` (φ sweep), `paper_table4` (history length), `paper_mechanism` (the interest-signal
sweep) and `failed_runs`. The views carry both paired lifts (MICN − base and control − base;
MICN − control), the two ceilings (oracle, history-only) and the learning evidence. The SQL lives
in sql/metrics/ (staging → intermediate → marts, see its README).

Records are checked, not trusted: every record is read as a `micn.record.RunRecord` first (a
run_id in two files, an AUC outside [0, 1] or an empty file stops the build, naming the file), and
every learning curve must be a JSON array of evaluation rows. The database is built in a temporary
file beside the target and renamed over it, so a failed build leaves the existing database intact
and readers never see a half-written one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import polars as pl
from scipy import stats  # scikit-learn's own dependency

from micn.data.sql import create_table_as, has_duckdb_header, load_sql, run_script
from micn.errors import MicnError
from micn.record import os_reason, read_records
from micn.report.labels import TITLES

VIEWS = (*TITLES, "failed_runs")  # sql/metrics/marts/<view>.sql
T_DF_MAX = 500  # t quantiles are tabulated for 1..T_DF_MAX degrees of freedom

# The table that marks a database as one the report made (and may rebuild); a database holding the
# report's runs, history and t_quantiles tables without it is taken as the report's as well.
OWN_TABLE = "micn_report"

def build_metrics_db(metrics_dir: str | Path, db_path: str | Path) -> dict[str, int]:
    """Build the metrics database from metrics_dir/runs/*/*.json and metrics_dir/history/*/*.json."""
    metrics_dir, db_path = Path(metrics_dir), Path(db_path)
    runs = sorted((metrics_dir / "runs").glob("*/*.json"))
    history = sorted((metrics_dir / "history").glob("*/*.json"))
    if not runs:
        raise MicnError(f"{metrics_dir}/runs/ holds no run records (<dataset>/<run>.json); run the grid first "
                        "(`dvc repro train` or `micn grid`).")
    check_records(metrics_dir / "runs", runs)
    for path in history:
        check_history(path)
    db_path = db_path.resolve() if db_path.is_symlink() else db_path  # a link is followed: its target is rebuilt
    check_db_path(db_path)
    return write_database(db_path, "the metrics database",
                          lambda con: _fill(con, [str(p) for p in runs], [str(p) for p in history]))


def write_database(db_path: Path, what: str, fill):
    """`fill(connection)` on a temporary database beside `db_path`, renamed over it once filled, so
    a failed build leaves the previous file intact and readers never see a half-written one;
    returns what `fill` returns."""
    tmp = db_path.with_name(db_path.name + ".tmp")
    try:
        tmp.unlink(missing_ok=True)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with duckdb.connect(str(tmp)) as con:
            result = fill(con)
        os.replace(tmp, db_path)
    except OSError as e:
        raise MicnError(f"{e.filename or db_path}: cannot write {what} ({os_reason(e)}); the previous "
                        f"{db_path} is unchanged.") from None
    finally:
        tmp.unlink(missing_ok=True)
    return result


def check_records(runs_dir: Path, paths: list[Path]) -> None:
    """Every record valid (`read_records`: also a run_id in two files) and stored at its run id's path."""
    for path, record in zip(paths, read_records(paths)):
        expected = path.relative_to(runs_dir).with_suffix("").as_posix()
        if record.run_id != expected:
            raise MicnError(f"{path}: holds run_id {record.run_id!r}, but the grid stores run {expected!r} in this "
                            f"file; a record is counted under its own path only. Move it to "
                            f"{runs_dir}/<run_id>.json or delete it.")


def check_history(path: Path) -> None:
    """A learning curve must be a JSON array of evaluation rows: objects with an integer `epoch`, and
    where present an integer `step` (the optimizer step of the evaluation) and a boolean `warmup`."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise MicnError(f"{path}: cannot read the learning curve ({e}).") from None
    fix = "delete it and its run's record (metrics/runs/...) and rerun the grid (`micn grid`) to write both again"
    if not text.strip():
        raise MicnError(f"{path}: the learning curve is empty; {fix}.")
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise MicnError(f"{path}: line {e.lineno}: the learning curve is not valid JSON ({e.msg}); {fix}.") from None
    if not isinstance(rows, list):
        raise MicnError(f"{path}: a learning curve is a JSON array of evaluation rows, got {type(rows).__name__}; "
                        f"{fix}.")
    for i, row in enumerate(rows):
        if not (isinstance(row, dict) and _is_int(row.get("epoch"))):
            raise MicnError(f"{path}: row {i}: expected an object with an integer `epoch`, got {json.dumps(row)[:80]}; "
                            f"{fix}.")
        if row.get("step") is not None and not _is_int(row["step"]):
            raise MicnError(f"{path}: row {i}: `step` = {json.dumps(row['step'])[:40]} is not an integer (the optimizer "
                            f"step of the evaluation); {fix}.")
        if row.get("warmup") is not None and not isinstance(row["warmup"], bool):
            raise MicnError(f"{path}: row {i}: `warmup` = {json.dumps(row['warmup'])[:40]} is not true or false; {fix}.")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_db_path(db_path: Path) -> None:
    """`db_path` is absent or a metrics database the report made: the build replaces it, and it
    must replace nothing else (a user's own DuckDB database, any other file)."""
    check_own_database(db_path, OWN_TABLE, "report", also_own={"runs", "history", "t_quantiles"})


def check_own_database(db_path: Path, own_table: str, command: str, also_own: set[str] | None = None) -> None:
    """`db_path` is absent or a DuckDB database `micn <command>` made: it holds `own_table` (or every
    table of `also_own`). Anything else is refused in one paragraph and left as it is."""
    if db_path.is_dir():
        raise MicnError(f"{db_path}: is a directory; --db names the database file `micn {command}` (re)builds.")
    if not db_path.exists():
        return
    try:
        is_duckdb = has_duckdb_header(db_path)
    except OSError as e:
        raise MicnError(f"{db_path}: cannot read it ({os_reason(e)}).") from None
    if not is_duckdb:
        raise MicnError(f"{db_path}: not a DuckDB database, so `micn {command}` will not replace it; pass another --db "
                        "path or move the file away.")
    with duckdb.connect(str(db_path), read_only=True) as con:
        tables = {name for (name,) in con.sql("select table_name from information_schema.tables").fetchall()}
    if own_table not in tables and not (also_own and also_own <= tables):
        raise MicnError(f"{db_path}: a DuckDB database that `micn {command}` did not make (no table {own_table}), so "
                        f"it was left as it was; pass another --db path or move the file away.")


def _fill(con: duckdb.DuckDBPyConnection, runs: list[str], history: list[str]) -> dict[str, int]:
    """Run sql/metrics (staging → intermediate → marts) on checked files; returns the counts."""
    try:
        create_table_as(con, "stg_runs", "metrics/staging/stg_runs", {"files": runs})
        create_table_as(con, "runs", "metrics/marts/runs", temp=False)
        run_script(con, "metrics/marts/history")
        if history:  # none when every run failed
            con.execute(f"insert into history by name ({load_sql('metrics/staging/stg_history')})", {"files": history})
    except duckdb.Error as e:  # the files were checked; this is a value of the wrong type
        raise MicnError(f"a run record or learning curve has a value of the wrong type ({e}).") from None
    con.execute("create table t_quantiles as select unnest($df) as df, unnest($t) as t975",
                {"df": list(range(1, T_DF_MAX + 1)),
                 "t": [float(stats.t.ppf(0.975, df)) for df in range(1, T_DF_MAX + 1)]})
    run_script(con, "metrics/intermediate/paper_cells")
    for view in VIEWS:
        con.execute(f"create or replace view {view} as {load_sql(f'metrics/marts/{view}')}")
    con.execute(f"create table {OWN_TABLE} as select 'micn report' as made_by")  # marks the file as the report's
    counts = dict(con.sql("select status, count(*) from runs group by status").fetchall())
    history_rows = con.sql("select count(*) from history").fetchall()[0][0]
    return {"ok": counts.get("ok", 0), "failed": counts.get("failed", 0), "history_rows": history_rows}


def read_views(db_path: str | Path) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(paper tables by view name, runs, history, failed runs) from the metrics database."""
    with duckdb.connect(str(db_path), read_only=True) as con:
        tables = {name: con.sql(f"select * from {name}").pl() for name in TITLES}
        runs = con.sql("select * exclude (params) from runs").pl()
        history = con.sql("select * from history").pl()
        failed = con.sql("select * from failed_runs").pl()
    return tables, runs, history, failed
