"""The synthetic Amazon world (micn.data.synthetic) and its oracle (micn.data.oracle), on the tiny profile."""

from __future__ import annotations

import ast
import datetime as dt
import errno
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from micn.data.oracle import Oracle
from micn.data.synthetic import generate_world
from micn.data.synthetic.profiles import PROFILES, Profile
from micn.data.synthetic.summary import WorldSummary
from micn.data.synthetic.world import RandomStreams, sample_world
from micn.errors import MicnError
from tests.helpers import RECORDED_WORLDS, generate_parser, read_lines, sha256_files, world_files

TINY = PROFILES["tiny"]
KEYS_2014 = ["reviewerID", "asin", "reviewerName", "helpful", "reviewText", "overall", "summary", "unixReviewTime",
             "reviewTime"]  # fmt: skip
OPTIONAL_2014 = {"reviewerName", "reviewText"}
KEYS_2018 = ["overall", "vote", "verified", "reviewTime", "reviewerID", "asin", "style", "reviewerName", "reviewText",
             "summary", "unixReviewTime"]  # fmt: skip
OPTIONAL_2018 = {"vote", "style", "reviewerName", "reviewText"}
META_KEYS_2018 = ["category", "tech1", "description", "fit", "title", "also_buy", "image", "tech2", "brand", "feature",
                  "rank", "also_view", "details", "main_cat", "similar_item", "date", "price", "asin"]  # fmt: skip


def _is_ordered_subsequence(keys: list[str], reference: list[str]) -> bool:
    positions = [reference.index(k) for k in keys if k in reference]
    return len(positions) == len(keys) and positions == sorted(positions)


@pytest.fixture(scope="module")
def world14(tmp_path_factory: pytest.TempPathFactory) -> WorldSummary:
    return generate_world("tiny", tmp_path_factory.mktemp("w14"), seed=0)


@pytest.fixture(scope="module")
def world18(tmp_path_factory: pytest.TempPathFactory) -> WorldSummary:
    return generate_world("tiny", tmp_path_factory.mktemp("w18"), seed=0, format="2018")


@pytest.fixture(scope="module")
def reviews14(world14: WorldSummary) -> list[dict]:
    return [json.loads(line) for line in read_lines(world14.reviews_path)]


@pytest.fixture(scope="module")
def oracle(world14: WorldSummary) -> Oracle:
    return Oracle.load(world14.out_dir)


# ---------------------------------------------------------------------------------------------
# Determinism and sizes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["2014", "2018"])
def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path, format: str) -> None:
    a = generate_world("tiny", tmp_path / "a", seed=7, format=format)
    b = generate_world("tiny", tmp_path / "b", seed=7, format=format)
    c = generate_world("tiny", tmp_path / "c", seed=8, format=format)
    files_a, files_b, files_c = world_files(a.out_dir), world_files(b.out_dir), world_files(c.out_dir)
    assert sorted(files_a) == sorted(
        [a.reviews_path.name, a.meta_path.name] + [f"ground_truth/{f}" for f in
         ("users.parquet", "items.parquet", "categories.parquet", "world.json")]
    )  # fmt: skip
    assert files_a == files_b
    for name in files_a:
        assert files_a[name] != files_c[name], name


@pytest.mark.parametrize("key", ["tiny-seed7-2014", "tiny-seed7-2018"])
def test_files_are_byte_identical_to_the_recorded_hashes(tmp_path: Path, key: str) -> None:
    """The generator's files match the pinned digests: no random draw and no output byte changes."""
    world = RECORDED_WORLDS[key]
    generate_world(world["profile"], tmp_path, seed=world["seed"], format=world["format"])
    assert sha256_files(tmp_path) == world["sha256"]


def test_declared_sizes_2014(world14: WorldSummary, reviews14: list[dict]) -> None:
    assert world14.reviews_path.name == "reviews_Tiny_5.json.gz"
    assert world14.meta_path.name == "meta_Tiny.json.gz"
    assert len(reviews14) == TINY.n_reviews == world14.n_review_lines
    assert len({r["reviewerID"] for r in reviews14}) == TINY.n_users
    meta = [ast.literal_eval(line) for line in read_lines(world14.meta_path)]
    # The metadata file holds every catalogue item except the planted missing-metadata ones.
    assert world14.n_missing_meta >= 1
    assert len(meta) == TINY.n_items - world14.n_missing_meta == world14.n_meta_lines
    assert len({m["asin"] for m in meta}) == len(meta)
    assert len({m["categories"][0][-1] for m in meta}) == TINY.n_categories

    items = pl.read_parquet(world14.ground_truth_dir / "items.parquet")
    assert items.height == TINY.n_items and items["item_id"].n_unique() == TINY.n_items
    reviewed = {r["asin"] for r in reviews14}
    assert len(reviewed) == world14.n_items_reviewed
    assert world14.item_coverage == pytest.approx(len(reviewed) / TINY.n_items)
    # Planted items: reviewed, absent from the metadata file, flagged in the ground truth.
    no_meta = set(items.filter(~pl.col("has_meta"))["item_id"])
    assert len(no_meta) == world14.n_missing_meta
    assert no_meta <= reviewed
    assert not no_meta & {m["asin"] for m in meta}
    # The metadata category (categories[0][-1]) is the ground-truth category.
    truth = dict(zip(items["item_id"], items["category"], strict=True))
    assert all(m["categories"][0][-1] == truth[m["asin"]] for m in meta)

    world = json.loads((world14.ground_truth_dir / "world.json").read_text())
    assert world["counts"]["n_reviews"] == TINY.n_reviews
    assert world["counts"]["n_missing_meta"] == world14.n_missing_meta
    assert world["files"]["reviews"] == "reviews_Tiny_5.json.gz"
    assert world["rho"] == TINY.rho and world["seed"] == 0 and world["fmt"] == "2014"


def test_every_user_has_at_least_five_reviews_on_strictly_increasing_days(reviews14: list[dict]) -> None:
    times: dict[str, list[int]] = defaultdict(list)
    for r in reviews14:
        times[r["reviewerID"]].append(r["unixReviewTime"])
        day = dt.datetime.fromtimestamp(r["unixReviewTime"], tz=dt.UTC)
        assert (day.hour, day.minute, day.second) == (0, 0, 0)
        assert r["reviewTime"] == f"{day.month:02d} {day.day}, {day.year}"
        assert dt.datetime(2000, 1, 1, tzinfo=dt.UTC) <= day < dt.datetime(2014, 7, 1, tzinfo=dt.UTC)
    lengths = np.array([len(t) for t in times.values()])
    assert lengths.min() >= 5 and lengths.sum() == TINY.n_reviews
    assert lengths.max() > 10  # lengths are skewed, not all equal
    for t in times.values():
        assert (np.diff(np.sort(t)) >= 86_400).all()


def test_2014_reviews_are_json_lines_with_the_real_keys_in_order(reviews14: list[dict]) -> None:
    for r in reviews14:
        keys = list(r)
        assert _is_ordered_subsequence(keys, KEYS_2014), keys
        assert set(KEYS_2014) - set(keys) <= OPTIONAL_2014
        assert isinstance(r["overall"], float) and 1.0 <= r["overall"] <= 5.0
        assert isinstance(r["unixReviewTime"], int)
        a, b = r["helpful"]
        assert isinstance(a, int) and isinstance(b, int) and 0 <= a <= b
        assert r["reviewerID"].startswith("A") and len(r["reviewerID"]) == 14 and r["reviewerID"].isupper()
        assert r["asin"].startswith("B00") and len(r["asin"]) == 10
    ratings = Counter(r["overall"] for r in reviews14)
    assert ratings.most_common(1)[0][0] == 5.0 and set(ratings) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_2014_meta_lines_are_python_literals_not_json(world14: WorldSummary) -> None:
    lines = read_lines(world14.meta_path)
    titles = []
    for line in lines:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
        d = ast.literal_eval(line)
        assert isinstance(d, dict) and isinstance(d["asin"], str)
        assert isinstance(d["categories"], list) and d["categories"][0][0] == "Electronics"
        titles.append(d["title"])
    assert any("'" in t for t in titles)
    assert any('"' in t for t in titles)
    assert any(not t.isascii() for t in titles)
    assert any(line.count('"') >= 2 for line in lines)  # repr switched to double quotes somewhere


def test_2018_files_parse_as_json_with_the_2018_keys(world18: WorldSummary) -> None:
    assert world18.reviews_path.name == "Tiny_5.json.gz"
    reviews = [json.loads(line) for line in read_lines(world18.reviews_path)]
    assert len(reviews) == world18.n_review_lines >= TINY.n_reviews
    # Planted style duplicates vanish when de-duplicating on (user, item, time), as the ingest does.
    assert len({(r["reviewerID"], r["asin"], r["unixReviewTime"]) for r in reviews}) == TINY.n_reviews
    assert len({r["reviewerID"] for r in reviews}) == TINY.n_users
    for r in reviews:
        keys = list(r)
        assert _is_ordered_subsequence(keys, KEYS_2018), keys
        assert set(KEYS_2018) - set(keys) <= OPTIONAL_2018
        assert isinstance(r["verified"], bool) and isinstance(r["overall"], float)
        if "vote" in r:
            assert isinstance(r["vote"], str) and r["vote"].replace(",", "").isdigit()
    assert any("style" in r for r in reviews) and any("vote" in r for r in reviews)

    meta = [json.loads(line) for line in read_lines(world18.meta_path)]
    assert len(meta) == world18.n_meta_lines == TINY.n_items - world18.n_missing_meta
    items = pl.read_parquet(world18.ground_truth_dir / "items.parquet")
    truth = dict(zip(items["item_id"], items["category"], strict=True))
    for m in meta:
        assert list(m) == META_KEYS_2018
        assert m["category"][-1] == truth[m["asin"]]
        assert isinstance(m["price"], str) and isinstance(m["rank"], str | list)
    assert len({m["category"][-1] for m in meta}) == TINY.n_categories


def test_ground_truth_is_a_consistent_model(world14: WorldSummary) -> None:
    gt = world14.ground_truth_dir
    users = pl.read_parquet(gt / "users.parquet")
    items = pl.read_parquet(gt / "items.parquet")
    cats = pl.read_parquet(gt / "categories.parquet")
    assert users.columns == ["user_id", "topics", "weights", "n_reviews"]
    assert items.columns == ["item_id", "category", "topic", "p_item_given_category", "has_meta", "n_reviews"]
    assert cats.columns == ["category", "topic", "topic_name", "p_category_given_topic", "n_items"]
    assert users.height == TINY.n_users and cats.height == TINY.n_categories
    assert users["user_id"].is_sorted() and items["item_id"].is_sorted()
    assert items["n_reviews"].sum() == TINY.n_reviews and users["n_reviews"].sum() == TINY.n_reviews
    assert users["topics"].list.len().is_between(1, 4).all()
    assert (users["topics"].list.n_unique() == users["topics"].list.len()).all()
    np.testing.assert_allclose(users["weights"].list.sum().to_numpy(), 1.0, atol=1e-12)
    per_cat = items.group_by("category").agg(pl.col("p_item_given_category").sum())
    np.testing.assert_allclose(per_cat["p_item_given_category"].to_numpy(), 1.0, atol=1e-12)
    per_topic = cats.group_by("topic").agg(pl.col("p_category_given_topic").sum())
    assert per_topic.height == TINY.n_topics
    np.testing.assert_allclose(per_topic["p_category_given_topic"].to_numpy(), 1.0, atol=1e-12)
    # An item's topic is its category's topic (categories partition the topics).
    joined = items.join(cats, on="category", suffix="_cat")
    assert joined.height == TINY.n_items and (joined["topic"] == joined["topic_cat"]).all()


# ---------------------------------------------------------------------------------------------
# Oracle
# ---------------------------------------------------------------------------------------------


def test_next_item_proba_sums_to_one_and_score_matches_it(oracle: Oracle) -> None:
    rng = np.random.default_rng(0)
    users = rng.choice(oracle.user_ids, size=6, replace=False)
    for k, user in enumerate(users):
        history = list(rng.choice(oracle.item_ids, size=k))  # k = 0 is the empty history
        proba = oracle.next_item_proba(str(user), history)
        assert proba.shape == oracle.item_ids.shape and (proba >= 0).all()
        assert abs(proba.sum() - 1.0) < 1e-9
        candidates = rng.choice(oracle.item_ids, size=25)
        last = history[-1] if history else None
        scores = oracle.score([str(user)] * 25, [last] * 25, candidates)
        np.testing.assert_allclose(scores, proba[oracle.item_index(candidates)], rtol=1e-12, atol=0)


def test_oracle_beats_popularity_on_the_generated_sequences(oracle: Oracle, reviews14: list[dict]) -> None:
    by_user: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in reviews14:
        by_user[r["reviewerID"]].append((r["unixReviewTime"], r["asin"]))
    users, lasts, targets = [], [], []
    for user, events in by_user.items():
        items = [asin for _, asin in sorted(events)]
        users += [user] * len(items)
        lasts += [None] + items[:-1]
        targets += items
    ll_oracle = np.log(oracle.score(users, lasts, targets)).mean()
    counts = Counter(targets)  # popularity fitted on the very same data: a generous baseline
    ll_pop = np.mean([np.log(counts[t] / len(targets)) for t in targets])
    assert ll_oracle > ll_pop + 0.5, (ll_oracle, ll_pop)


def test_click_proba_is_p_over_p_plus_q(oracle: Oracle) -> None:
    user, last = str(oracle.user_ids[3]), str(oracle.item_ids[10])
    candidates = oracle.item_ids[:50]
    q_all = np.full(len(oracle.item_ids), 1.0 / len(oracle.item_ids))
    p = oracle.score([user] * 50, [last] * 50, candidates)
    from_array = oracle.click_proba([user] * 50, [last] * 50, candidates, q_all)
    from_callable = oracle.click_proba([user] * 50, [last] * 50, candidates, lambda ids: np.full(len(ids), q_all[0]))
    np.testing.assert_allclose(from_array, p / (p + q_all[0]), rtol=1e-12)
    np.testing.assert_allclose(from_callable, from_array, rtol=1e-12)
    with pytest.raises(ValueError, match="aligned with oracle.item_ids"):
        oracle.click_proba([user], [last], candidates[:1], q_all[:-1])


def test_oracle_names_unknown_ids(oracle: Oracle, tmp_path: Path) -> None:
    item = str(oracle.item_ids[0])
    with pytest.raises(ValueError, match="ANOBODY"):
        oracle.next_item_proba("ANOBODY", [])
    with pytest.raises(ValueError, match="B00NOTHERE"):
        oracle.next_item_proba(str(oracle.user_ids[0]), ["B00NOTHERE", item])
    with pytest.raises(ValueError, match="B00NOTHERE"):
        oracle.score([str(oracle.user_ids[0])], [item], ["B00NOTHERE"])
    with pytest.raises(ValueError, match="ground truth"):
        Oracle.load(tmp_path)


# ---------------------------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------------------------


def test_bad_arguments_raise_value_errors_naming_the_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'huge'.*tiny"):
        generate_world("huge", tmp_path)
    with pytest.raises(ValueError, match=r"'2016'.*2014"):
        generate_world("tiny", tmp_path, format="2016")
    with pytest.raises(ValueError, match=r"seed=-1"):
        generate_world("tiny", tmp_path, seed=-1)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match=r"file\.txt.*not a directory"):
        generate_world("tiny", a_file)
    with pytest.raises(ValueError, match=r"n_reviews \(10\)"):
        Profile("bad", n_users=10, n_items=20, n_categories=4, n_reviews=10, n_topics=2)
    with pytest.raises(ValueError, match=r"rho must lie in \[0, 1\], got 1.5"):
        Profile("bad", n_users=10, n_items=20, n_categories=4, n_reviews=50, n_topics=2, rho=1.5)


def test_profiles_and_custom_names(tmp_path: Path) -> None:
    assert set(PROFILES) == {"tiny", "default", "electronics", "books"}
    e, b = PROFILES["electronics"], PROFILES["books"]
    assert (e.n_users, e.n_items, e.n_categories, e.n_reviews) == (192_403, 63_001, 801, 1_689_188)
    assert (b.n_users, b.n_items, b.n_categories, b.n_reviews) == (603_668, 367_982, 1_600, 8_898_041)
    small = Profile("small", n_users=20, n_items=30, n_categories=5, n_reviews=150, n_topics=2, rho=1.0)
    s = generate_world(small, tmp_path, seed=3, name="Musical_Instruments")
    assert s.reviews_path == tmp_path / "reviews_Musical_Instruments_5.json.gz"
    assert s.meta_path == tmp_path / "meta_Musical_Instruments.json.gz"
    # rho = 1: a user never leaves the first topic.
    oracle = Oracle.load(tmp_path)
    reviews = [json.loads(line) for line in read_lines(s.reviews_path)]
    topics_by_user: dict[str, set[int]] = defaultdict(set)
    for r in reviews:
        topics_by_user[r["reviewerID"]].add(int(oracle.item_topic[oracle.item_index([r["asin"]])[0]]))
    assert all(len(t) == 1 for t in topics_by_user.values())


# ---------------------------------------------------------------------------------------------
# The typed world, its summary, and the `generate` command's config
# ---------------------------------------------------------------------------------------------


def test_world_is_typed_with_the_documented_shapes() -> None:
    world = sample_world(TINY, RandomStreams.from_seed(7))
    T, C, I, U, N = TINY.n_topics, TINY.n_categories, TINY.n_items, TINY.n_users, TINY.n_reviews
    K = min(len(TINY.topics_per_user_p), T)
    cat, users, rev = world.catalogue, world.users, world.reviews
    assert cat.topic_pop.shape == (T,) and len(cat.topic_names) == T
    assert cat.cat_topic.shape == cat.p_cat.shape == cat.cat_cdf.shape == cat.cat_has_mid.shape == (C,)
    assert cat.item_cat.shape == cat.p_item.shape == cat.item_cdf.shape == cat.item_rank_in_cat.shape == (I,)
    assert users.topics.shape == users.weights.shape == (U, K) and users.k.shape == users.lengths.shape == (U,)
    assert {a.shape for a in (rev.user, rev.topic, rev.cat, rev.item, rev.day, rev.rating)} == {(N,)}
    assert world.ids.user.shape == (U,) and world.ids.item.shape == world.missing_meta.shape == (I,)
    # Invariants the samplers promise: grouped indices, topics of the chain held by the user, sorted days.
    assert (np.diff(cat.cat_topic) >= 0).all() and (np.diff(cat.item_cat) >= 0).all()
    assert (cat.cat_topic[rev.cat] == rev.topic).all() and (cat.item_cat[rev.item] == rev.cat).all()
    assert ((users.topics[rev.user] == rev.topic[:, None]).any(axis=1)).all()
    same_user = rev.user[1:] == rev.user[:-1]
    assert (np.diff(rev.day)[same_user] >= 1).all() and users.lengths.sum() == N
    assert world.item_counts.sum() == N


def test_world_json_is_the_serialisation_of_the_summary(world14: WorldSummary, world18: WorldSummary) -> None:
    for summary in (world14, world18):
        path = summary.ground_truth_dir / "world.json"
        assert path.read_text(encoding="utf-8") == summary.to_json()
        assert WorldSummary.read(path) == summary  # every stored field round-trips (seconds aside)
    assert (world18.format, world18.n_review_lines > world18.n_reviews) == ("2018", True)


def test_unreadable_world_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "ground_truth").mkdir()
    bad = tmp_path / "ground_truth" / "world.json"
    with pytest.raises(MicnError, match=r"world\.json: cannot read"):
        WorldSummary.read(bad)
    bad.write_text('{"profile": "tiny"}')
    with pytest.raises(MicnError, match=r"world\.json: not a world summary.*profile_params"):
        WorldSummary.read(bad)


def test_profile_names_every_bad_knob_at_once() -> None:
    with pytest.raises(ValueError, match=r"rho must lie in \[0, 1\], got 1.5; dirichlet_alpha must be > 0, got 0"):
        Profile("bad", n_users=10, n_items=20, n_categories=4, n_reviews=50, n_topics=2, rho=1.5, dirichlet_alpha=0)


def test_a_failed_write_is_one_paragraph_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("micn.data.synthetic.sink.GzipSink.__init__", lambda self, path: disk_full(path))
    with pytest.raises(MicnError, match=r"reviews_Tiny_5\.json\.gz: writing the synthetic world failed: disk full"):
        generate_world("tiny", tmp_path, seed=1)


def test_generate_flag_and_params_modes_build_the_same_config(tmp_path: Path) -> None:
    from flows.generate import config_from_args
    from micn.config import GenerateConfig

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["generate"] = {"profile": "tiny", "seed": 7, "format": "2018", "name": "Toys"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    parse = generate_parser().parse_args
    from_file = config_from_args(parse(["--params", str(tmp_path / "params.yaml"), "--out", "w"]))
    from_flags = config_from_args(parse("--profile tiny --seed 7 --format 2018 --name Toys --out w".split()))
    assert from_file == from_flags == GenerateConfig(profile="tiny", seed=7, format="2018", name="Toys")
    assert config_from_args(parse("--profile tiny --out w".split())) == GenerateConfig(profile="tiny")


@pytest.mark.parametrize(("argv", "message"), [
    ("--out w", r"give --profile .* or --params"),
    ("--params p.yaml --seed 3 --format 2018 --out w", r"--seed, --format cannot be combined with --params p\.yaml"),
    ("--profile tiny --name a/b --out w", r"name='a/b' must be a file-name piece"),
])  # fmt: skip
def test_generate_user_errors_name_the_flag(argv: str, message: str) -> None:
    from flows.generate import config_from_args

    with pytest.raises(MicnError, match=message):
        config_from_args(generate_parser().parse_args(argv.split()))
