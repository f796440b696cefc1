"""params.yaml → dataclasses: unknown keys, wrong types and bad values are named."""

from __future__ import annotations

import pytest
import yaml

from micn.config import load_section
from micn.errors import MicnError
from micn.models.micn_aux import MICNConfig
from micn.train import TrainConfig
from tests.conftest import REPO


def write(tmp_path, params: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_the_repository_params_load():
    cfg = load_section(REPO / "params.yaml", "train", TrainConfig)
    micn = load_section(REPO / "params.yaml", "micn", MICNConfig)
    assert cfg.batch_size >= 1 and 0 <= micn.phi <= 1


@pytest.mark.parametrize(
    "section, values, message",
    [
        ("train", {"batch_sise": 256}, "unknown key(s) batch_sise"),
        ("train", {"lr": "fast"}, "train.lr"),
        ("train", {"epochs": True}, "train.epochs: expected int"),
        ("micn", {"phi": 1.5}, "phi"),
        ("micn", {"lambda_micn": -1.0}, "lambda_micn"),
        ("micn", {"k_max": 0}, "k_max"),
        ("micn", {"iterations": 0}, "iterations"),
        ("micn", {"n_neg": 0}, "n_neg"),
        ("micn", {"d_aux": 0}, "d_aux"),
        ("micn", {"sampler": "zipf"}, "sampler"),
    ],
)
def test_bad_parameters_are_rejected_naming_the_key(tmp_path, section, values, message):
    cls = {"train": TrainConfig, "micn": MICNConfig}[section]
    with pytest.raises(MicnError) as e:
        load_section(write(tmp_path, {section: values}), section, cls)
    assert message in str(e.value) and "params.yaml" in str(e.value)
