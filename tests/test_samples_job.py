"""The typed samples job: its settings and SQL parameters, bad arguments refused before any work,
the keyword form, the samples layout, and the CLI's flag and params modes giving one typed plan."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from micn.config import SamplesConfig
from micn.data.layout import samples_dir
from micn.data.samples.build import build_job, build_samples
from micn.data.samples.job import SamplesJob
from micn.errors import MicnError
from tests.helpers import HAND_FRACTIONS, HAND_MAX_LEN, file_hashes


# --- the typed job, the layout, the CLI plan ---------------------------------------------------


def test_samples_job_carries_every_setting_and_its_sql_parameters():
    job = SamplesJob("hand", 3, SamplesConfig(protocol="din", seed=7, valid_frac=0.2, test_frac=0.3))
    assert job == SamplesJob.of("hand", 3, protocol="din", seed=7, valid_frac=0.2, test_frac=0.3)
    assert job.sql_params() == {"dataset": "hand", "protocol": "din", "max_len": 3, "seed": 7, "valid_frac": 0.2,
                                "test_frac": 0.3}
    with pytest.raises(MicnError, match=r"max_len=True must be an integer"):
        SamplesJob("hand", True)
    with pytest.raises(MicnError, match=r"dataset='\.\./x' is not valid"):
        SamplesJob("../x", 3)


def test_build_job_equals_the_keyword_form(hand_db, dien_build, tmp_path):
    _, first = dien_build
    job = SamplesJob.of("hand", HAND_MAX_LEN, protocol="dien", seed=3, **HAND_FRACTIONS)
    build_job(hand_db, job, tmp_path / "job")
    assert file_hashes(tmp_path / "job") == file_hashes(first)


def test_samples_dir_is_the_one_layout(tmp_path):
    from micn import experiment

    assert samples_dir(tmp_path, "tiny", 10) == tmp_path / "data" / "samples" / "tiny" / "len10"
    assert experiment.samples_dir(tmp_path, "tiny", 10) == samples_dir(tmp_path, "tiny", 10)


PARAMS_YAML = """
datasets:
  tiny: {enabled: true, max_len: 10}
experiments:
  table2: {enabled: true, backbones: [din], variants: [base]}
  table4: {enabled: true, backbones: [din], variants: [base], max_lens: [5, 10]}
samples: {protocol: din, seed: 11, valid_frac: 0.2, test_frac: 0.1}
"""


def parse(argv: list[str]) -> argparse.Namespace:
    from flows import samples as samples_flow_module

    parser = argparse.ArgumentParser()
    samples_flow_module.add_arguments(parser, "samples")
    return parser.parse_args(argv)


def test_flag_mode_and_params_mode_give_the_same_typed_plan(tmp_path):
    from flows.samples import SamplesBuild, SamplesPlan, plan_from_args

    params = tmp_path / "params.yaml"
    params.write_text(PARAMS_YAML)
    by_params = plan_from_args(parse(["--params", str(params), "--db", "w.duckdb", "--out", "data/samples"]))
    by_flags = [plan_from_args(parse(["--dataset", "tiny", "--max-len", str(n), "--protocol", "din", "--seed", "11",
                                      "--valid-frac", "0.2", "--test-frac", "0.1", "--db", "w.duckdb",
                                      "--out", f"data/samples/tiny/len{n}"])) for n in (5, 10)]
    assert isinstance(by_params, SamplesPlan) and all(isinstance(b, SamplesBuild) for b in by_params.builds)
    assert by_params == SamplesPlan(Path("w.duckdb"), tuple(b for plan in by_flags for b in plan.builds))
    assert [b.out for b in by_params.builds] == [Path("data/samples/tiny/len5"), Path("data/samples/tiny/len10")]


@pytest.mark.parametrize(("argv", "message"), [
    (["--db", "w.duckdb", "--out", "o"], r"give --dataset \(one dataset\) or --params"),
    (["--dataset", "tiny", "--valid-frac", "1.5", "--db", "w.duckdb", "--out", "o"], r"samples\.valid_frac: .*less than 1"),
    (["--dataset", "tiny", "--max-len", "0", "--db", "w.duckdb", "--out", "o"], r"max_len=0 must be >= 1"),
])
def test_bad_flags_are_one_error_before_any_work(argv, message):
    from flows.samples import plan_from_args

    with pytest.raises(MicnError, match=message):
        plan_from_args(parse(argv))


# --- bad arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"dataset": "nope"}, r"dataset='nope' is not in the warehouse; it holds: 'hand'"),
    ({"dataset": ""}, r"dataset='' is not valid"),
    ({"dataset": "hand\n"}, r"dataset='hand\\n' is not valid: .*whitespace or control characters"),
    ({"protocol": "sasrec"}, r"samples\.protocol: .*'dien' or 'din' \(got 'sasrec'\)"),
    ({"max_len": 0}, r"max_len=0 must be >= 1"),
    ({"max_len": 2.5}, r"max_len=2.5 must be an integer"),
    ({"seed": -1}, r"samples\.seed: .*greater than or equal to 0 \(got -1\)"),
    ({"seed": 2**64}, r"samples\.seed: .*less than or equal to 9223372036854775807 \(got 18446744073709551616\)"),
    ({"valid_frac": 0.0}, r"samples\.valid_frac: .*greater than 0 \(got 0.0\)"),
    ({"test_frac": 1.2}, r"samples\.test_frac: .*less than 1 \(got 1.2\)"),
    ({"test_frac": float("nan")}, r"samples\.test_frac: expected a finite number"),
    ({"valid_frac": 0.5, "test_frac": 0.5}, r"valid_frac \+ test_frac = 0.5 \+ 0.5 must be below 1"),
])
def test_bad_arguments_are_rejected_before_any_work(hand_db, tmp_path, kwargs, message):
    args = {"db": hand_db, "dataset": "hand", "out_dir": tmp_path / "out", **kwargs}
    with pytest.raises(MicnError, match=message):
        build_samples(**args)
    assert not (tmp_path / "out").exists()
