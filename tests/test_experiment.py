"""params.yaml's experiment sections → the grid's runs; raw-data checks; task-runner choice."""

from __future__ import annotations

from collections import Counter

import pytest
import yaml

from micn.errors import MicnError
from micn.config import ADDRESS_ENV, GridConfig
from micn.experiment import (
    check_raw_data,
    load_experiment,
    micn_config,
    plan_runs,
)
from micn.grid import RUN_NAME
from tests.helpers import REPO


def write_params(tmp_path, **sections) -> str:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in sections.items():
        params[key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path)


def test_repository_params_plan_table2_over_every_backbone_variant_and_seed():
    exp = load_experiment(REPO / "params.yaml")
    runs = plan_runs(exp)
    t2 = exp.experiments["table2"]
    assert exp.enabled_datasets == ["synthetic"]
    assert len(runs) == len(t2.backbones) * len(t2.variants) * len(exp.grid.seeds)
    assert {r.run_id for r in runs} >= {f"synthetic/din-micn-phi{exp.micn.phi:g}-len20-seed{s}" for s in exp.grid.seeds}
    assert t2.variants == ("base", "control", "micn")  # the width-matched control is in the default experiment
    assert all(r.phi is None for r in runs if r.variant == "base")
    assert all(r.phi == exp.micn.phi for r in runs if r.variant != "base")  # control carries φ like micn
    assert {r.run_id for r in runs} >= {f"synthetic/dien-control-phi{exp.micn.phi:g}-len20-seed{s}" for s in exp.grid.seeds}
    assert all(r.experiments == ("table2",) for r in runs)
    assert exp.samples_needed() == [("synthetic", 20)]


def test_tables_3_and_4_add_their_runs_once_and_remember_who_asked(tmp_path):
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    experiments = base["experiments"]
    experiments["table3"]["enabled"] = True
    experiments["table4"]["enabled"] = True
    exp = load_experiment(write_params(tmp_path, experiments=experiments, grid={"seeds": [1, 2]}))
    runs = plan_runs(exp)
    ids = [r.run_id for r in runs]
    assert len(ids) == len(set(ids))
    phis = experiments["table3"]["phis"]
    lens = experiments["table4"]["max_lens"]
    # table2: 3 backbones x 3 variants; table3: DIEN base, one control (control_phis [0.3]) and one
    # MICN run per φ; table4: DIEN base/control/micn per length
    variants = ("base", "control", "micn")
    expected = {(b, v, 20, None if v == "base" else 0.3) for b in ("wide_deep", "din", "dien") for v in variants}
    expected |= {("dien", "base", 20, None), ("dien", "control", 20, 0.3)} | {("dien", "micn", 20, p) for p in phis}
    expected |= {("dien", v, n, None if v == "base" else 0.3) for n in lens for v in variants}
    assert {(r.backbone, r.variant, r.max_len, r.phi) for r in runs} == expected
    assert len(runs) == 2 * len(expected)
    assert len(expected) == 9 + len(phis) - 1 + 2 * 3  # shared runs counted once: 22 at the repository's sweeps
    for shared_id in ("synthetic/dien-micn-phi0.3-len20-seed1", "synthetic/dien-control-phi0.3-len20-seed1",
                      "synthetic/dien-base-len20-seed1"):
        assert next(r for r in runs if r.run_id == shared_id).experiments == ("table2", "table3", "table4")
    assert next(r for r in runs if r.run_id == "synthetic/dien-control-phi0.3-len50-seed2").experiments == ("table4",)
    assert not any(r.variant == "control" and r.phi != 0.3 for r in runs)
    assert next(r for r in runs if r.run_id == "synthetic/dien-micn-phi0.7-len20-seed2").experiments == ("table3",)
    assert exp.samples_needed() == [("synthetic", n) for n in sorted(set(lens) | {20})]


def test_control_runs_follow_phis_unless_control_phis_is_given(tmp_path):
    sweep = {"enabled": True, "backbones": ["din"], "variants": ["base", "control", "micn"], "phis": [0.2, 0.6]}
    exp = load_experiment(write_params(tmp_path, experiments={"table3": sweep}, grid={"seeds": [5]}))
    assert [r.run_id for r in plan_runs(exp)] == [
        "synthetic/din-base-len20-seed5", "synthetic/din-control-phi0.2-len20-seed5",
        "synthetic/din-control-phi0.6-len20-seed5", "synthetic/din-micn-phi0.2-len20-seed5",
        "synthetic/din-micn-phi0.6-len20-seed5"]
    exp = load_experiment(write_params(tmp_path, experiments={"table3": {**sweep, "control_phis": [0.3]}},
                                       grid={"seeds": [5]}))
    assert [(r.variant, r.phi) for r in plan_runs(exp)] == [("base", None), ("control", 0.3), ("micn", 0.2),
                                                            ("micn", 0.6)]


def test_backbone_seeds_give_some_backbones_more_seeds(tmp_path):
    """table2 with DIN at 4 seeds and the others at grid.seeds: every variant of DIN (base, control,
    micn) gets the same 4, so its paired lifts have 4 pairs."""
    table2 = {"enabled": True, "backbones": ["din", "dien"], "backbone_seeds": {"din": [1, 2, 3, 4]}}
    exp = load_experiment(write_params(tmp_path, experiments={"table2": table2}, grid={"seeds": [1, 2]}))
    runs = plan_runs(exp)
    assert {(r.backbone, r.variant): sorted(x.seed for x in runs if (x.backbone, x.variant) == (r.backbone, r.variant))
            for r in runs} == {("din", v): [1, 2, 3, 4] for v in ("base", "control", "micn")} | {
            ("dien", v): [1, 2] for v in ("base", "control", "micn")}
    with pytest.raises(MicnError, match=r"backbone_seeds\.din: repeated values"):
        load_experiment(write_params(tmp_path, experiments={"table2": {**table2, "backbone_seeds": {"din": [1, 1]}}}))
    with pytest.raises(MicnError, match=r"experiments\.table2\.backbone_seeds"):
        load_experiment(write_params(tmp_path, experiments={"table2": {**table2, "backbone_seeds": {"lstm": [1]}}}))


@pytest.mark.parametrize("section, value, needle", [
    ("experiments", {"table2": {"enabled": True, "variants": ["ctrl"]}}, "experiments.table2.variants[0]: input should be 'base', 'control' or 'micn' (got 'ctrl')"),
    ("experiments", {"table3": {"enabled": True, "control_phis": [-0.1]}}, "experiments.table3.control_phis[0]: input should be greater than or equal to 0"),
    ("experiments", {"table2": {"enabled": True, "backbones": ["lstm"]}}, "experiments.table2.backbones[0]: input should be 'wide_deep', 'din' or 'dien' (got 'lstm')"),
    ("experiments", {"table3": {"enabled": True, "phis": [1.5]}}, "experiments.table3.phis[0]: input should be less than or equal to 1"),
    ("experiments", {"table2": {"enabled": False}}, "experiments: none is enabled"),
    ("experiments", {"table2": {"enabled": True, "colour": "red"}}, "experiments.table2.colour: unknown key"),
    ("datasets", {"synthetic": {"enabled": False}}, "datasets: no dataset is enabled"),
    ("datasets", {"synthetic": {"enabled": True, "max_len": 0}}, "datasets.synthetic.max_len: input should be greater than or equal to 1"),
    ("datasets", {"a/b": {"enabled": True}}, "datasets.'a/b': a dataset name may hold"),
    ("grid", {"seeds": []}, "grid.seeds: tuple should have at least 1 item"),
    ("grid", {"seeds": [1, 1]}, "seeds must be distinct"),
    ("grid", {"runner": "spark"}, "grid.runner: input should be 'auto', 'thread' or 'dask'"),
    ("grid", {"runner": "ray"}, "grid.runner: input should be 'auto', 'thread' or 'dask' (got 'ray')"),
])
def test_bad_experiment_parameters_are_named(tmp_path, section, value, needle):
    with pytest.raises(MicnError) as e:
        load_experiment(write_params(tmp_path, **{section: value}))
    assert needle in str(e.value)


def test_enabled_real_dataset_without_raw_files_names_the_expected_paths(tmp_path):
    datasets = {"synthetic": {"enabled": True}, "electronics": {"enabled": True, "max_len": 10},
                "books": {"enabled": True}}
    exp = load_experiment(write_params(tmp_path, datasets=datasets))
    raw = tmp_path / "raw"
    (raw / "books").mkdir(parents=True)
    (raw / "books" / "Books_5.json.gz").write_bytes(b"")  # reviews present, metadata missing
    with pytest.raises(MicnError) as e:
        check_raw_data(exp, raw)
    msg = str(e.value)
    assert f"{raw}/electronics/reviews_Electronics_5.json.gz (2014) or {raw}/electronics/Electronics_5.json.gz (2018)" in msg
    assert f"{raw}/electronics/meta_Electronics.json.gz" in msg
    assert f"{raw}/books/meta_Books.json.gz is missing" in msg and "Books_5.json.gz (2018)" not in msg
    assert "jmcauley.ucsd.edu" in msg and "enabled: false" in msg
    (raw / "books" / "meta_Books.json.gz").write_bytes(b"")
    for name in ("reviews_Electronics_5.json", "meta_Electronics.json"):
        (raw / "electronics").mkdir(exist_ok=True)
        (raw / "electronics" / name).write_bytes(b"")
    check_raw_data(exp, raw)  # all present: no error (the synthetic dataset is the generate stage's)


def test_runner_follows_address_and_environment(monkeypatch):
    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    assert GridConfig().resolved() == ("thread", None)
    assert GridConfig(address="tcp://127.0.0.1:8786").resolved() == ("dask", "tcp://127.0.0.1:8786")
    with pytest.raises(MicnError, match=r"ray://head:10001 .* names a Ray cluster; the grid runs on local threads or a Dask"):
        GridConfig(address="ray://head:10001").resolved()
    monkeypatch.setenv(ADDRESS_ENV, "tcp://scheduler:8786")
    assert GridConfig(address="tcp://127.0.0.1:8786").resolved() == ("dask", "tcp://scheduler:8786")
    monkeypatch.delenv(ADDRESS_ENV)
    with pytest.raises(MicnError, match="no cluster address"):
        GridConfig(runner="dask").resolved()


@pytest.mark.parametrize("section, needle", [
    ({"profile": "huge"}, "generate.profile: input should be 'tiny', 'default', 'electronics' or 'books'"),
    ({"profile": "tiny", "format": "2016"}, "generate.format: input should be '2014' or '2018'"),
    ({"profile": "tiny", "colour": 1}, "generate.colour: unknown key"),
    ({"profile": "tiny", "seed": "7"}, "generate.seed: expected an integer"),
])
def test_bad_generate_section_is_named(tmp_path, section, needle):
    from micn.config import load_section
    from micn.config import GenerateConfig

    with pytest.raises(MicnError) as e:
        load_section(write_params(tmp_path, generate=section), "generate", GenerateConfig)
    assert needle in str(e.value)


def test_repository_generate_section_is_valid():
    from micn.config import load_section
    from micn.config import GenerateConfig

    assert load_section(REPO / "params.yaml", "generate", GenerateConfig).profile == "default"


def test_micn_config_of_a_run_is_the_section_with_its_phi():

    exp = load_experiment(REPO / "params.yaml")
    runs = plan_runs(exp)
    base = next(r for r in runs if r.variant == "base")
    micn = next(r for r in runs if r.variant == "micn")
    control = next(r for r in runs if r.variant == "control")
    assert micn_config(exp, base) is None  # the variant, not a flag, says whether MICN is used
    assert micn_config(exp, micn) == exp.micn.__class__(**{**exp.micn.__dict__, "phi": micn.phi})
    assert micn_config(exp, control) == micn_config(exp, micn)  # control: MICN's width and φ, without L_micn


def test_the_experiment_uses_the_section_types_of_micn_config():
    """One definition per section type: the experiment's sections are micn.config's classes."""
    from micn import config
    from micn.experiment import load_experiment

    exp = load_experiment(REPO / "params.yaml")
    assert type(exp.train) is config.TrainConfig and type(exp.micn) is config.MICNConfig
    assert type(exp.grid) is config.GridConfig and type(exp.samples) is config.SamplesConfig


# --- the mechanism experiment: κ worlds, shared runs, information ablations ------------------------


def mechanism_params(tmp_path, **overrides) -> str:
    experiments = yaml.safe_load((REPO / "params.yaml").read_text())["experiments"]
    experiments["mechanism"] = {**experiments["mechanism"], "enabled": True, **overrides}
    return write_params(tmp_path, experiments=experiments, grid={"seeds": [1, 2]})


def test_mechanism_plans_every_world_and_shares_table2s_runs_at_kappa_1(tmp_path):
    exp = load_experiment(mechanism_params(tmp_path))
    mech = exp.experiments["mechanism"]
    assert mech.kappas == (1.0, 0.5, 0.0)  # the sweep fixed in params.yaml
    runs = plan_runs(exp)
    assert len({r.run_id for r in runs}) == len(runs)
    worlds = {1.0: "synthetic", 0.5: "synthetic-kappa0p5", 0.0: "synthetic-kappa0"}
    assert exp.datasets_of(mech) == list(worlds.values()) and exp.kappa_worlds() == [
        ("synthetic-kappa0p5", 0.5), ("synthetic-kappa0", 0.0)]
    assert exp.all_datasets == ["synthetic", "synthetic-kappa0p5", "synthetic-kappa0"]
    # backbones x variants x seeds, the micn runs again with `history` supervision, base DIN x 2 ablations x seeds
    per_world = 3 * 3 * 2 + 3 * 2 + 2 * 2
    assert len(runs) == 3 * per_world  # the κ = 1 cells are Table 2's runs, planned once
    for dataset in worlds.values():
        mine = [r for r in runs if r.dataset == dataset]
        assert {(r.backbone, r.variant, r.ablation, r.supervision) for r in mine} == {
            (b, v, None, "target" if v == "micn" else None) for b in ("wide_deep", "din", "dien")
            for v in ("base", "control", "micn")} | {(b, "micn", None, "history") for b in ("wide_deep", "din", "dien")} | {
            ("din", "base", "no_item_ids", None), ("din", "base", "one_category", None)}
        shared = dataset == "synthetic"
        for r in mine:
            table2 = shared and r.ablation is None and r.supervision != "history"
            expected = ("mechanism", "table2") if table2 else ("mechanism",)
            assert r.experiments == expected, r.run_id
    ablated = next(r for r in runs if r.ablation == "no_item_ids" and r.dataset == "synthetic-kappa0")
    assert ablated.run_id == "synthetic-kappa0/din-base-no_item_ids-len20-seed1" and ablated.phi is None
    history = next(r for r in runs if r.supervision == "history" and r.dataset == "synthetic-kappa0")
    assert history.run_id == "synthetic-kappa0/dien-micn-history-phi0.3-len20-seed1"  # sorted by backbone name
    assert micn_config(exp, history).supervision == "history" and micn_config(exp, history).phi == 0.3
    assert RUN_NAME.fullmatch(history.run_id.split("/", 1)[1])
    only_din = plan_runs(load_experiment(mechanism_params(tmp_path, supervision_backbones=["din"])))
    assert {r.backbone for r in only_din if r.supervision == "history"} == {"din"}
    assert len(only_din) == len(runs) - 3 * 2 * 2  # two backbones x three worlds x two seeds fewer
    assert exp.samples_needed() == [("synthetic", 20), ("synthetic-kappa0", 20), ("synthetic-kappa0p5", 20)]


def test_mechanism_disabled_plans_nothing_of_it(tmp_path):
    exp = load_experiment(REPO / "params.yaml")
    assert not exp.experiments["mechanism"].enabled and exp.kappa_worlds() == []
    assert exp.all_datasets == ["synthetic"] and all(r.ablation is None for r in plan_runs(exp))


@pytest.mark.parametrize("overrides, message", [
    ({"kappas": [1.0, 0.5, 0.5]}, r"experiments\.mechanism: kappas: repeated values"),
    ({"kappas": [0.0, 0.5, 1.0]}, r"experiments\.mechanism: kappas: must be strictly decreasing"),
    ({"kappas": [1.0, 1.5]}, r"experiments\.mechanism\.kappas\[1\]: input should be less than or equal to 1"),
    ({"kappas": [1.0, -0.1]}, r"experiments\.mechanism\.kappas\[1\]: input should be greater than or equal to 0"),
    ({"ablations": ["no_item_ids", "no_item_ids"]}, r"experiments\.mechanism: ablations: repeated values"),
    ({"ablations": ["no_users"]}, r"experiments\.mechanism\.ablations\[0\]: input should be 'no_item_ids' or "
                                  r"'one_category'"),
])
def test_bad_sweeps_are_rejected_naming_the_key(tmp_path, overrides, message):
    with pytest.raises(MicnError, match=message):
        load_experiment(mechanism_params(tmp_path, **overrides))


def test_mechanism_needs_the_default_world_at_kappa_1(tmp_path):
    params = yaml.safe_load(open(mechanism_params(tmp_path)).read())
    params["generate"]["kappa"] = 0.5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(MicnError, match="generate.kappa is 0.5; leave generate.kappa unset"):
        load_experiment(tmp_path / "params.yaml")


def test_kappa_worlds_live_inside_the_synthetic_folder(tmp_path):
    from micn.data.layout import is_synthetic, kappa_dataset, raw_dir

    assert [kappa_dataset(k) for k in (1.0, 0.75, 0.5, 0.0)] == [
        "synthetic", "synthetic-kappa0p75", "synthetic-kappa0p5", "synthetic-kappa0"]
    assert raw_dir(tmp_path, "synthetic-kappa0p5") == tmp_path / "synthetic" / "kappa" / "synthetic-kappa0p5"
    assert raw_dir(tmp_path, "electronics") == tmp_path / "electronics"
    assert is_synthetic("synthetic-kappa0") and is_synthetic("synthetic") and not is_synthetic("books")
    exp = load_experiment(mechanism_params(tmp_path))
    check_raw_data(exp, tmp_path / "raw")  # κ worlds are the generate stage's: no raw files asked of the user


def test_the_electronics_study_plans_table2_at_the_papers_length():
    """studies/electronics: the default pipeline's settings but the electronics profile, max_len 10,
    DIN and Wide&Deep at 10 seeds in Table 2, and the mechanism sweep of all three backbones (DIN
    also with the `history` supervision); its dvc.yaml runs the same stage commands in its own folder."""
    from micn.config import load_params

    study = REPO / "studies" / "electronics"
    exp = load_experiment(study / "params.yaml")
    params, default = load_params(study / "params.yaml"), load_params(REPO / "params.yaml")
    assert params.generate.profile == "electronics" and exp.datasets["synthetic"].max_len == 10
    assert (exp.grid.seeds, exp.train, exp.micn, exp.samples) == (default.grid.seeds, default.train, default.micn,
                                                                   default.samples)
    runs = plan_runs(exp)
    seeds = len(default.grid.seeds)
    assert {r.max_len for r in runs} == {10} and all(r.ablation is None for r in runs)
    # Table 2 on the κ = 1 world (DIN and Wide&Deep at 10 seeds, their first 5 shared with the
    # sweep), the sweep at κ = 0.5 and 0, and DIN's `history` runs in all three worlds
    assert Counter((r.dataset, r.backbone) for r in runs) == {
        ("synthetic", "wide_deep"): 3 * 10, ("synthetic", "din"): 3 * 10 + seeds, ("synthetic", "dien"): 3 * seeds,
        **{(world, "din"): 4 * seeds for world in ("synthetic-kappa0p5", "synthetic-kappa0")},
        **{(world, b): 3 * seeds for world in ("synthetic-kappa0p5", "synthetic-kappa0") for b in ("wide_deep", "dien")}}
    assert {r.backbone for r in runs if r.supervision == "history"} == {"din"}
    stages = yaml.safe_load((study / "dvc.yaml").read_text())["stages"]
    root = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert {name: s["cmd"] for name, s in stages.items()} == {name: s["cmd"] for name, s in root.items()}


def test_the_books_study_plans_table2_at_the_papers_books_scale():
    """studies/books: the books profile (the paper's Table 1 counts), max_len 20, Table 2 alone at
    the default seeds and settings; the same stage commands as the root pipeline."""
    from micn.config import load_params
    from micn.data.synthetic.profiles import PROFILES

    study = REPO / "studies" / "books"
    exp = load_experiment(study / "params.yaml")
    params, default = load_params(study / "params.yaml"), load_params(REPO / "params.yaml")
    books = PROFILES[params.generate.profile]
    assert (books.n_users, books.n_items, books.n_categories) == (603_668, 367_982, 1_600)
    assert exp.datasets["synthetic"].max_len == 20
    assert (exp.grid.seeds, exp.train, exp.micn, exp.samples) == (default.grid.seeds, default.train, default.micn,
                                                                   default.samples)
    runs = plan_runs(exp)
    assert len(runs) == 3 * 3 * len(default.grid.seeds) and {r.dataset for r in runs} == {"synthetic"}
    stages = yaml.safe_load((study / "dvc.yaml").read_text())["stages"]
    assert stages == yaml.safe_load((REPO / "studies" / "electronics" / "dvc.yaml").read_text())["stages"]



def test_the_mechanism_study_is_the_default_pipeline_with_the_sweep_enabled():
    """studies/mechanism: params.yaml at the root with only experiments.mechanism.enabled turned on
    (both supervisions, as pre-registered there), and the studies' stage commands."""
    study = REPO / "studies" / "mechanism"
    mine, root = yaml.safe_load((study / "params.yaml").read_text()), yaml.safe_load((REPO / "params.yaml").read_text())
    assert mine["experiments"]["mechanism"].pop("enabled") is True and root["experiments"]["mechanism"].pop("enabled") is False
    assert mine == root
    runs = plan_runs(load_experiment(study / "params.yaml"))
    assert len(runs) == 3 * (3 * 4 + 2) * 5  # worlds x (backbones x (3 variants + history) + 2 ablations) x seeds
    stages = yaml.safe_load((study / "dvc.yaml").read_text())["stages"]
    assert stages == yaml.safe_load((REPO / "studies" / "electronics" / "dvc.yaml").read_text())["stages"]
