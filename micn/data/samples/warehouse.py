"""The warehouse side of a samples build: every check that can fail before any work is done.

The warehouse file is opened READ-ONLY (ATTACHed to an in-memory connection): a build never
writes it, and two builds may read it at once.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from micn.data.samples.files import ORACLE_FILES, check_out_folder
from micn.data.sql import has_duckdb_header
from micn.errors import MicnError


def check_paths(db: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """(the resolved warehouse file, the output folder), or a MicnError saying what is wrong: also
    when the folder holds, under a name the build writes, a file the build did not write."""
    db_path = check_warehouse(db)
    out_path = Path(out_dir)
    if out_path.exists() and not out_path.is_dir():
        raise MicnError(f"out_dir {out_dir}: exists and is not a directory; give a directory for the sample files.")
    check_out_folder(out_path)
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
        is_duckdb = has_duckdb_header(db_path)
    except OSError as e:
        raise MicnError(f"{db}: cannot be read ({e.strerror}); give a warehouse file you may read.") from None
    if not is_duckdb:
        size = db_path.stat().st_size
        what = "an empty file" if not size else f"a file of {size:,} bytes without DuckDB's header"
        raise MicnError(f"{db}: not a DuckDB database file ({what}); give the warehouse written by `micn ingest` "
                        "(e.g. data/warehouse.duckdb).")
    return db_path


def attach_warehouse(con: duckdb.DuckDBPyConnection, db_path: Path) -> None:
    """ATTACH `db_path` read-only as `warehouse`; a MicnError if it is locked or not a micn warehouse."""
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


def check_dataset(con: duckdb.DuckDBPyConnection, dataset: str) -> None:
    """A MicnError unless the attached warehouse holds reviews of `dataset` covering at least 2 items."""
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


def oracle_source(con: duckdb.DuckDBPyConnection, dataset: str) -> Path | None:
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
