"""Prefect wiring for `micn samples`: warehouse → train/valid/test sample files."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from micn.data.samples import SamplesReport, build_samples, write_summary


@task(cache_policy=NO_CACHE)
def build(db: str, dataset: str, out: str, protocol: str, max_len: int, seed: int, valid_frac: float,
          test_frac: float) -> SamplesReport:
    report = build_samples(db, dataset, out, protocol=protocol, max_len=max_len, seed=seed,
                           valid_frac=valid_frac, test_frac=test_frac)
    write_summary(report)
    return report


@flow(name="samples")
def samples_flow(db: str, dataset: str, out: str, protocol: str = "dien", max_len: int = 20, seed: int = 0,
                 valid_frac: float = 0.1, test_frac: float = 0.1) -> SamplesReport:
    report = build(db, dataset, out, protocol, max_len, seed, valid_frac, test_frac)
    log = get_run_logger()
    for subject, outcome, reason, n in report.summary_rows():
        log.info("%s %s%s: %d", subject, outcome, f" ({reason})" if reason else "", n)
    create_table_artifact(
        key=f"samples-{dataset.lower().replace('_', '-')}",
        table=[{"subject": s, "outcome": o, "reason": r, "n": n} for s, o, r, n in report.summary_rows()],
        description=f"Samples of {dataset} ({protocol}, max_len {max_len})",
    )
    return report
