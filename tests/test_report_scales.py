"""Table 2 across scales (micn.report.scales, `micn scales`): each study's MICN cells with both
paired lifts, beside the paper's Table 2 lifts, against a reference computation."""

from __future__ import annotations

import argparse

import duckdb
import numpy as np
import pytest

from micn.errors import MicnError
from micn.report.scales import build_scales_db, write_scales_report
from tests.helpers import record, t_interval, write_run

SEEDS = (1, 2, 3)


def _study(metrics, rng, backbones=("din", "dien"), history=False) -> dict:
    """Table 2 records of one study (base, control, micn x SEEDS); returns their AUCs."""
    aucs = {}
    for backbone in backbones:
        for variant in ("base", "control", "micn"):
            for seed in SEEDS:
                aucs[backbone, variant, seed] = auc = float(rng.uniform(0.80, 0.90))
                r = record("synthetic", backbone, variant, seed, auc, phi=None if variant == "base" else 0.3,
                           **({"micn_recall": 0.3, "popularity_recall": 0.2} if variant == "micn" else {}))
                r["supervision"] = "target" if variant == "micn" else None
                write_run(metrics, r)
                if history and variant == "micn":  # another supervision: never a cross-scale cell
                    r = {**r, "run_id": r["run_id"].replace("-micn-", "-micn-history-"), "supervision": "history",
                         "metrics": {**r["metrics"], "auc": 0.5}}
                    write_run(metrics, r)
    return aucs


def test_paper_scales_puts_each_studys_lifts_beside_the_papers(tmp_path):
    rng = np.random.default_rng(3)
    studies = {"default": tmp_path / "default", "electronics": tmp_path / "e", "books": tmp_path / "b"}
    aucs = {name: _study(folder, rng, history=name == "default") for name, folder in studies.items()}
    db = tmp_path / "scales.duckdb"
    assert build_scales_db(studies, db) == 6
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql("select * from paper_scales").pl().to_dicts()
    assert [(r["backbone"], r["scale"]) for r in rows] == [(b, s) for b in ("din", "dien") for s in studies]
    paper = {("din", "electronics"): 0.0037, ("din", "books"): 0.0032, ("dien", "electronics"): 0.0017,
             ("dien", "books"): 0.0099}
    for r in rows:
        a = aucs[r["scale"]]
        series = lambda v: np.array([a[r["backbone"], v, s] for s in SEEDS])  # noqa: E731
        assert (r["lift_mean"], r["lift_ci_low"], r["lift_ci_high"]) == t_interval(series("micn") - series("base"))
        assert (r["lift_control_mean"], r["lift_control_ci_low"], r["lift_control_ci_high"]) == t_interval(
            series("micn") - series("control"))
        assert r["paper_lift"] == paper.get((r["backbone"], r["scale"])) and r["n_runs"] == len(SEEDS)
    report = write_scales_report(db, tmp_path / "out")
    text = report.read_text()
    assert text.startswith("# Table 2 across scales") and "| DIEN | books (len 20) | 3 |" in text and "+0.0099" in text
    assert (tmp_path / "out" / "figures" / "scales.png").read_bytes()[:4] == b"\x89PNG"


def test_scales_refuse_a_database_they_did_not_make_and_bad_study_names(tmp_path):
    from flows.scales import study_argument

    _study(tmp_path / "m", np.random.default_rng(0), backbones=("din",))
    foreign = tmp_path / "mine.duckdb"
    with duckdb.connect(str(foreign)) as con:
        con.execute("create table notes as select 1 as x")
    before = foreign.read_bytes()
    with pytest.raises(MicnError, match="a DuckDB database that `micn scales` did not make"):
        build_scales_db({"default": tmp_path / "m"}, foreign)
    assert foreign.read_bytes() == before
    with pytest.raises(MicnError, match="holds no run records"):
        build_scales_db({"books": tmp_path / "empty"}, tmp_path / "s.duckdb")
    assert study_argument("books=studies/books/metrics")[0] == "books"
    for bad in ("books", "=x", "a b=x", "books="):
        with pytest.raises(argparse.ArgumentTypeError, match="expected NAME=DIR"):
            study_argument(bad)
