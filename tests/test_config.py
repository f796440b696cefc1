"""params.yaml → validated section types: unknown keys and sections, wrong types, bad values,
non-finite numbers, duplicate keys and out-of-range seeds are named; reading imports no torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import yaml

from micn.config import (
    SEED_MAX,
    SECTIONS,
    GenerateConfig,
    GridConfig,
    MICNConfig,
    Params,
    TrainConfig,
    dataset_name_problem,
    from_mapping,
    load_params,
    read_params,
    load_section,
    seed_argument,
)
from micn.errors import MicnError
from micn.names import BACKBONE_NAMES, PROFILE_NAMES
from tests.helpers import REPO


def write(tmp_path, params: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_the_repository_params_load():
    cfg = load_section(REPO / "params.yaml", "train", TrainConfig)
    micn = load_section(REPO / "params.yaml", "micn", MICNConfig)
    assert cfg.batch_size >= 1 and 0 <= micn.phi <= 1
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params) and params.train == cfg and params.micn == micn
    assert set(repo_params()) <= set(SECTIONS)


def test_section_types_stay_dataclasses():
    cfg = TrainConfig(epochs=3)
    assert dataclasses.asdict(cfg)["epochs"] == 3
    assert dataclasses.replace(cfg, lr=0.01).lr == 0.01 and [f.name for f in dataclasses.fields(cfg)][0] == "batch_size"
    with pytest.raises(ValueError, match="lr"):  # replace re-validates
        dataclasses.replace(cfg, lr=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    assert GridConfig(seeds=[1, 2]).seeds == (1, 2)  # a YAML list becomes the tuple


def test_micn_config_has_no_enabled_switch():
    assert "enabled" not in {f.name for f in dataclasses.fields(MICNConfig)}
    assert "enabled" not in repo_params()["micn"]  # the run's variant says whether MICN is used


@pytest.mark.parametrize(
    "section, values, message",
    [
        ("train", {"batch_sise": 256}, "train.batch_sise: unknown key"),
        ("train", {"lr": "fast"}, "train.lr: expected a number"),
        ("train", {"epochs": True}, "train.epochs: expected an integer"),
        ("train", {"epochs": "3"}, "train.epochs: expected an integer"),
        ("train", {"lr": float("nan")}, "train.lr: expected a finite number"),
        ("train", {"lr": float("inf")}, "train.lr: expected a finite number"),
        ("train", {"dien_aux_weight": float("nan")}, "train.dien_aux_weight: expected a finite number"),
        ("train", {"device": "tpu"}, "train.device"),
        ("micn", {"phi": 1.5}, "micn.phi"),
        ("micn", {"lambda_micn": -1.0}, "micn.lambda_micn"),
        ("micn", {"lambda_micn": float("inf")}, "micn.lambda_micn: expected a finite number"),
        ("micn", {"k_max": 0}, "micn.k_max"),
        ("micn", {"iterations": 0}, "micn.iterations"),
        ("micn", {"n_neg": 0}, "micn.n_neg"),
        ("micn", {"d_aux": 0}, "micn.d_aux"),
        ("micn", {"sampler": "zipf"}, "micn.sampler"),
        ("micn", {"pow_p": float("nan")}, "pow_p"),
        ("micn", {"enabled": True}, "micn.enabled: unknown key"),
    ],
)
def test_bad_parameters_are_rejected_naming_the_key(tmp_path, section, values, message):
    cls = {"train": TrainConfig, "micn": MICNConfig}[section]
    with pytest.raises(MicnError) as e:
        load_section(write(tmp_path, {section: values}), section, cls)
    assert message in str(e.value) and "params.yaml" in str(e.value)


def test_hard_argmax_pow_p_may_be_infinite(tmp_path):
    assert load_section(write(tmp_path, {"micn": {"pow_p": float("inf")}}), "micn", MICNConfig).pow_p == float("inf")


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("grid", "seeds", [1, 2**63], "grid.seeds[1]"),
        ("grid", "seeds", [-1], "grid.seeds[0]"),
        ("grid", "seeds", [1, 1], "seeds must be distinct"),
        ("grid", "seeds", [], "grid.seeds"),
        ("grid", "connect_timeout_s", float("inf"), "grid.connect_timeout_s: expected a finite number"),
        ("samples", "seed", 2**64, "samples.seed"),
        ("samples", "test_frac", 0.95, "valid_frac + test_frac"),
        ("samples", "protocol", "sasrec", "samples.protocol"),
        ("generate", "seed", 2**63, "generate.seed"),
        ("generate", "format", 2014, "generate.format"),
        ("generate", "profile", "huge", "generate.profile"),
        ("datasets", "synthetic", {"enabled": True, "max_len": 0}, "datasets.synthetic.max_len"),
        ("experiments", "table2", {"enabled": True, "backbones": ["dinn"]}, "experiments.table2.backbones[0]"),
        ("experiments", "table3", {"phis": [float("nan")]}, "experiments.table3.phis[0]"),
    ],
)
def test_every_section_is_validated_by_load_params(tmp_path, section, key, value, message):
    params = repo_params()
    params[section][key] = value
    with pytest.raises(MicnError) as e:
        load_params(write(tmp_path, params))
    assert message in str(e.value) and "params.yaml" in str(e.value)


def test_one_error_names_every_bad_key(tmp_path):
    params = repo_params()
    params["train"]["lr"] = float("nan")
    params["micn"]["phi"] = 3.0
    params["grid"]["seeds"] = [1, 2**64]
    with pytest.raises(MicnError) as e:
        load_params(write(tmp_path, params))
    assert all(k in str(e.value) for k in ("train.lr", "micn.phi", "grid.seeds[1]")), str(e.value)
    assert "3 problems" in str(e.value)


def test_misspelled_section_is_rejected(tmp_path):
    params = repo_params()
    params["trian"] = params.pop("train")
    with pytest.raises(MicnError, match="unknown section.*trian"):
        load_params(write(tmp_path, params))
    with pytest.raises(MicnError, match="trian"):  # also when a stage reads only its own section
        load_section(write(tmp_path, params), "micn", MICNConfig)


def test_duplicate_yaml_key_is_rejected_with_its_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: 0.001\n  epochs: 2\n  lr: 0.1\n")
    with pytest.raises(MicnError) as e:
        load_section(path, "train", TrainConfig)
    assert "duplicate key 'lr'" in str(e.value) and "line 2" in str(e.value) and "line 4" in str(e.value)
    path.write_text("train: {}\ntrain: {}\n")
    with pytest.raises(MicnError, match="duplicate key 'train'"):
        load_params(path)


@pytest.mark.parametrize("name", ["synthetic\n", "synthetic ", " synthetic", "syn\tthetic", "syn/thetic", ""])
def test_dataset_names_with_whitespace_or_control_characters_are_rejected(tmp_path, name):
    params = repo_params()
    params["datasets"][name] = {"enabled": True}
    with pytest.raises(MicnError, match="datasets"):
        load_params(write(tmp_path, params))
    assert dataset_name_problem(name) is not None
    assert dataset_name_problem("electronics_2014-v2") is None


def test_seeds_on_the_command_line_fit_in_64_bits():
    assert seed_argument("0") == 0 and seed_argument(str(SEED_MAX)) == SEED_MAX
    import argparse

    for bad in (str(SEED_MAX + 1), "-1", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            seed_argument(bad)
    for bad in (SEED_MAX + 1, -1, True, 1.0):  # a seed in params.yaml is checked by its section type
        with pytest.raises(MicnError, match=r"generate\.seed"):
            from_mapping(GenerateConfig, {"seed": bad}, "params.yaml: generate")


def test_name_constants_match_the_registries():
    from micn.data.synthetic.profiles import PROFILES
    from micn.models import BACKBONES

    assert set(BACKBONE_NAMES) == set(BACKBONES)
    assert set(PROFILE_NAMES) == set(PROFILES)


def test_reading_params_imports_no_torch(tmp_path):
    code = ("import sys; from micn.experiment import load_experiment, plan_runs; from micn.config import load_params; "
            f"exp = load_experiment({str(REPO / 'params.yaml')!r}); load_params({str(REPO / 'params.yaml')!r}); "
            "plan_runs(exp); print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("key", ["grid:\n  seeds", "micn:\n  post_layers", "train:\n  epochs"])
def test_yaml_aliases_are_refused_before_they_can_expand(tmp_path, key):
    """Nine nested levels of nine aliases would expand to 387 million items from a few hundred bytes."""
    levels = "".join(f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
    text = "x0: &a0 [1]\n" + levels + f"{key}: *a9\n"
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    with pytest.raises(MicnError, match=r"an alias \(\*a0\); aliases and anchors are not allowed") as e:
        read_params(path)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


def test_a_long_bad_value_is_shown_cut_with_its_length(tmp_path):
    params = repo_params()
    params["grid"]["seeds"] = ["x" * 100_000]
    with pytest.raises(MicnError, match=r"grid\.seeds\[0\]: expected an integer \(got 'x{79}… \(100,002 characters\)\)"):
        load_params(write(tmp_path, params))
