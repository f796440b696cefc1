"""The entry points of a samples build: `build_job` (a typed `SamplesJob`) and `build_samples`
(the same from keyword arguments). They tie the steps together, in this order: check the
warehouse and the dataset, build the tables, run the checks, then write and publish the files
(the package docstring describes the protocols and the outputs)."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import duckdb

from micn.data.samples.checks import CHECKS, CheckResult, check_failure_message, run_check
from micn.data.samples.files import output_names
from micn.data.samples.job import SamplesJob, SamplesReport, summary_counts
from micn.data.samples.publish import write_outputs
from micn.data.samples.tables import build_tables, vocab_sizes
from micn.data.samples.warehouse import attach_warehouse, check_dataset, check_paths, oracle_source
from micn.errors import MicnError


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
    """Build the train / valid / test sample files of one warehouse dataset (see the package doc)."""
    started = time.perf_counter()
    db_path, out_path = check_paths(db, out_dir)
    with tempfile.TemporaryDirectory(prefix="micn-samples-") as spill:
        con = duckdb.connect(":memory:", config={"temp_directory": spill})
        try:
            attach_warehouse(con, db_path)
            check_dataset(con, job.dataset)
            truth = oracle_source(con, job.dataset)
            build_tables(con, job)
            checks = {name: run_check(con, name, job.sql_params())
                      for name, protocols in CHECKS.items() if job.config.protocol in protocols}
            failed = [c for c in checks.values() if not c.passed]
            if failed:
                raise MicnError(check_failure_message(failed, out_path))
            summary = con.sql("select subject, outcome, reason, n from summary").fetchall()
            files = tuple(str(out_path / name) for name in output_names(truth is not None))
            report = _report(job, db_path, out_path, summary, vocab_sizes(con), checks, files)
            write_outputs(con, job, Path(db), truth, report, out_path)
        except duckdb.IOException as e:
            raise MicnError(f"building the samples of dataset={job.dataset!r} failed on a file DuckDB reads or spills "
                            f"to (its temporary folder is {spill}; if that disk is full, point TMPDIR elsewhere): "
                            f"{str(e).splitlines()[0]}") from e
        finally:
            con.close()
    return dataclasses.replace(report, seconds=round(time.perf_counter() - started, 3))


def _report(job: SamplesJob, db_path: Path, out_path: Path, summary: list[tuple], sizes: dict[str, int],
            checks: dict[str, CheckResult], files: tuple[str, ...], seconds: float = 0.0) -> SamplesReport:
    c = summary_counts(summary)
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
        vocab_sizes=sizes,
        checks={name: r.n_offending for name, r in checks.items()},
        files=files,
        seconds=round(seconds, 3),
    )
