"""The synthetic world's interest-signal knob kappa: an item serves its category's topic with probability kappa."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from micn.data.oracle import Oracle
from micn.data.synthetic import generate_world
from micn.data.synthetic.catalogue import zipf
from micn.data.synthetic.profiles import PROFILES, Profile
from micn.data.synthetic.summary import WorldSummary
from micn.data.synthetic.world import RandomStreams, sample_world
from micn.errors import MicnError
from tests.helpers import RECORDED_WORLDS, generate_parser, read_lines, sha256_files

TINY = PROFILES["tiny"]


@pytest.fixture(scope="module")
def world14(tmp_path_factory: pytest.TempPathFactory) -> WorldSummary:
    return generate_world("tiny", tmp_path_factory.mktemp("w14"), seed=0)


KAPPA = 0.3


@pytest.fixture(scope="module")
def world_k(tmp_path_factory: pytest.TempPathFactory) -> WorldSummary:
    return generate_world("tiny", tmp_path_factory.mktemp("wk"), seed=7, kappa=KAPPA)


@pytest.fixture(scope="module")
def sequences_k(world_k: WorldSummary) -> pl.DataFrame:
    """Every review of the kappa world in (user, time) order, with the served topic of its item and
    the topic of its item's category."""
    gt = world_k.ground_truth_dir
    items = pl.read_parquet(gt / "items.parquet").join(
        pl.read_parquet(gt / "categories.parquet").select("category", pl.col("topic").alias("home")), on="category"
    )
    reviews = pl.DataFrame([json.loads(line) for line in read_lines(world_k.reviews_path)])
    return (
        reviews.select(pl.col("reviewerID").alias("user"), pl.col("asin").alias("item_id"), "unixReviewTime")
        .sort("user", "unixReviewTime")
        .join(items.select("item_id", "topic", "home"), on="item_id", how="left", maintain_order="left")
    )


@pytest.mark.parametrize("key", ["tiny-seed7-2014", "tiny-seed7-2018"])
def test_kappa_one_gives_the_recorded_world_byte_for_byte(tmp_path: Path, key: str) -> None:
    world = RECORDED_WORLDS[key]
    generate_world(world["profile"], tmp_path / "arg", seed=world["seed"], format=world["format"], kappa=1.0)
    generate_world(dataclasses.replace(TINY, kappa=1.0), tmp_path / "profile", seed=world["seed"],
                   format=world["format"])  # fmt: skip
    assert sha256_files(tmp_path / "arg") == sha256_files(tmp_path / "profile") == world["sha256"]


def test_kappa_world_files_and_summary(world_k: WorldSummary, world14: WorldSummary) -> None:
    items = pl.read_parquet(world_k.ground_truth_dir / "items.parquet")
    assert items.columns == ["item_id", "category", "topic", "p_item_given_category", "p_item_given_topic",
                             "has_meta", "n_reviews"]  # fmt: skip
    per_topic = items.group_by("topic").agg(pl.col("p_item_given_topic").sum())
    assert per_topic.height == TINY.n_topics
    np.testing.assert_allclose(per_topic["p_item_given_topic"].to_numpy(), 1.0, atol=1e-12)
    path = world_k.ground_truth_dir / "world.json"
    d = json.loads(path.read_text())
    assert d["profile_params"]["kappa"] == KAPPA and "P(i | topic(i))" in d["model"]
    assert WorldSummary.read(path) == world_k and world_k.kappa == KAPPA
    assert "kappa" not in json.loads((world14.ground_truth_dir / "world.json").read_text())["profile_params"]
    # Only the items changed: users, topic chains, days and ratings are the draws of kappa = 1.
    w1 = sample_world(TINY, RandomStreams.from_seed(7))
    wk = sample_world(dataclasses.replace(TINY, kappa=KAPPA), RandomStreams.from_seed(7))
    for field in ("user", "topic", "day", "rating"):
        assert (getattr(w1.reviews, field) == getattr(wk.reviews, field)).all(), field
    assert (wk.catalogue.item_topic[wk.reviews.item] == wk.reviews.topic).all()
    assert (wk.catalogue.item_cat[wk.reviews.item] == wk.reviews.cat).all()
    assert (w1.reviews.item != wk.reviews.item).mean() > 0.5


def test_kappa_moves_items_off_their_category_topic_at_the_modelled_rate(world_k: WorldSummary) -> None:
    """P(s_i != topic(c_i)) = (1 - kappa)(1 - pi_topic(c_i)): the count is within 5 sigma of its mean."""
    gt = world_k.ground_truth_dir
    items = pl.read_parquet(gt / "items.parquet").join(
        pl.read_parquet(gt / "categories.parquet").select("category", pl.col("topic").alias("home")), on="category"
    )
    pi = zipf(TINY.n_topics, TINY.topic_zipf)
    p = (1 - KAPPA) * (1 - pi[items["home"].to_numpy()])  # (I,)
    moved = int((items["topic"] != items["home"]).sum())
    assert abs(moved - p.sum()) < 5 * np.sqrt((p * (1 - p)).sum()), (moved, p.sum())
    assert 150 < moved < 300  # 235 of 400 at seed 7; 0 at kappa = 1


def test_consecutive_reviews_share_the_served_topic_at_the_chains_rate(
    world_k: WorldSummary, sequences_k: pl.DataFrame
) -> None:
    """Given z_j, review j+1 serves the same topic with probability rho + (1 - rho) w_u[z_j] (a
    martingale: the sum of the differences has variance sum p(1 - p)); the category topics agree far
    less often, so the item ids, not the categories, carry the interest."""
    oracle = Oracle.load(world_k.out_dir)
    u = oracle.user_index(sequences_k["user"].to_numpy())
    z, home = sequences_k["topic"].to_numpy(), sequences_k["home"].to_numpy()
    pair = u[1:] == u[:-1]  # (N - 1,) consecutive reviews of one user
    w = (oracle.user_weights[u[:-1]] * (oracle.user_topics[u[:-1]] == z[:-1, None])).sum(axis=1)
    p = (TINY.rho + (1 - TINY.rho) * w)[pair]
    same = int((z[1:] == z[:-1])[pair].sum())
    sigma = np.sqrt((p * (1 - p)).sum())
    assert abs(same - p.sum()) < 5 * sigma, (same, p.sum(), sigma)
    # rho + (1 - rho) sum_t w_t^2, averaged over the pairs: the same expectation without conditioning
    w_full = np.zeros((len(oracle.user_ids), TINY.n_topics))
    held = oracle.user_topics >= 0
    w_full[np.nonzero(held)[0], oracle.user_topics[held]] = oracle.user_weights[held]
    chain = (TINY.rho + (1 - TINY.rho) * (w_full**2).sum(axis=1))[u[:-1]][pair].sum()
    assert abs(same - chain) < 5 * sigma, (same, chain)
    same_home = int((home[1:] == home[:-1])[pair].sum())
    assert same_home < p.sum() - 40 * sigma, (same_home, p.sum())  # 649 vs 2,343 at seed 7


def test_oracle_follows_the_kappa_model_exactly(world_k: WorldSummary, sequences_k: pl.DataFrame) -> None:
    """The oracle sums to 1 over the catalogue, and the log-likelihood it gives the generated sequences
    equals its own expectation sum_j sum_i p_ij log p_ij within 5 sigma (-12,300 vs -12,241 ± 68 at
    seed 7; the kappa = 1 formula, reading topics off the categories, gives some reviews probability 0)."""
    oracle = Oracle.load(world_k.out_dir)
    users, items = sequences_k["user"].to_list(), sequences_k["item_id"].to_list()
    observed, expected, variance = 0.0, 0.0, 0.0
    for j, (user, item) in enumerate(zip(users, items, strict=True)):
        history = [items[j - 1]] if j > 0 and users[j - 1] == user else []
        proba = oracle.next_item_proba(user, history)
        assert abs(proba.sum() - 1.0) < 1e-9
        q = proba[proba > 0]
        e = (q * np.log(q)).sum()
        observed += np.log(proba[oracle.item_index([item])[0]])
        expected += e
        variance += (q * np.log(q) ** 2).sum() - e**2
    assert abs(observed - expected) < 5 * np.sqrt(variance), (observed, expected, np.sqrt(variance))


def test_every_topic_keeps_an_item_when_the_draws_leave_one_empty() -> None:
    """8 items, 8 topics, kappa = 0: the popularity draws almost surely miss a topic (they cover all
    8 with probability 8! prod pi < 1%); the anchors put back leave exactly one item per topic."""
    prof = Profile("one_each", n_users=50, n_items=8, n_categories=8, n_reviews=400, n_topics=8, kappa=0.0)
    for seed in range(5):
        world = sample_world(prof, RandomStreams.from_seed(seed))
        cat = world.catalogue
        assert (np.bincount(cat.item_topic, minlength=8) == 1).all()
        np.testing.assert_array_equal(cat.p_item_topic, 1.0)
        assert (cat.item_topic[world.reviews.item] == world.reviews.topic).all()
        again = sample_world(prof, RandomStreams.from_seed(seed)).catalogue
        assert (again.item_topic == cat.item_topic).all()


def test_bad_kappa_is_rejected_naming_it(tmp_path: Path) -> None:
    from micn.config import GenerateConfig, from_mapping, load_section

    for bad in (1.5, -0.1, float("nan"), True, "0.5"):
        with pytest.raises(MicnError, match=r"kappa=.* must be a number in \[0, 1\]"):
            generate_world("tiny", tmp_path, kappa=bad)
    assert not any(tmp_path.iterdir())  # rejected before any work
    with pytest.raises(ValueError, match=r"kappa must lie in \[0, 1\], got 1.5"):
        dataclasses.replace(TINY, kappa=1.5)
    with pytest.raises(MicnError, match=r"generate\.kappa: .*less than or equal to 1"):
        from_mapping(GenerateConfig, {"kappa": 1.5}, where="params.yaml: generate")
    params = tmp_path / "params.yaml"
    params.write_text("generate:\n  profile: tiny\n  kappa: -0.5\n")
    with pytest.raises(MicnError, match=r"params\.yaml: generate\.kappa: .*greater than or equal to 0"):
        load_section(params, "generate", GenerateConfig)
    assert GenerateConfig().kappa is None and GenerateConfig(kappa=0).kappa == 0.0


def test_kappa_flag_and_params_modes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flows.generate import config_from_args
    from micn.config import GenerateConfig

    parse = generate_parser().parse_args
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["generate"] = {"profile": "tiny", "seed": 7, "kappa": 0.25}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    from_file = config_from_args(parse(["--params", str(tmp_path / "params.yaml"), "--out", "w"]))
    from_flags = config_from_args(parse("--profile tiny --seed 7 --kappa 0.25 --out w".split()))
    assert from_file == from_flags == GenerateConfig(profile="tiny", seed=7, kappa=0.25)
    with pytest.raises(MicnError, match=r"--kappa cannot be combined with --params"):
        config_from_args(parse(["--params", str(tmp_path / "params.yaml"), "--kappa", "0.5", "--out", "w"]))
    for bad in ("1.5", "-1", "nan", "x"):
        with pytest.raises(SystemExit) as exit_info:
            parse(["--profile", "tiny", "--kappa", bad, "--out", "w"])
        assert exit_info.value.code == 2
        assert f"argument --kappa: must be a number in [0, 1], got '{bad}'" in capsys.readouterr().err
