"""MICN's interests (micn.interests): purity, a user's capsules and their items on planted topics, the
model-file loader, and `describe_user` on a short MICN run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from micn.errors import MicnError
from micn.evidence import capsule_purity, cluster_purity, item_topics
from micn.interests import Vocab, format_interests, load_model, user_interests
from micn.models.micn_aux import MICNConfig
from micn.models.with_micn import build_with_micn
from tests.helpers import add_oracle_inputs, build_micn, planted_batch

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cluster_purity() -> None:
    topics = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_purity(np.array([0, 0, 1, 1, 2, 2]), topics) == 1.0
    assert cluster_purity(np.zeros(6, dtype=int), topics) == pytest.approx(2 / 6)
    assert cluster_purity(np.array([0, 1, 0, 1, 0, 1]), topics) == pytest.approx(2 / 6)
    assert cluster_purity(np.array([0, 0, 1, 1, 1, 1]), topics) == pytest.approx(4 / 6)


def test_user_interests_and_purity_on_planted_topics() -> None:
    model = build_micn("din", k_max=2)
    batch, topics = planted_batch()
    # an e_aux whose category half separates the two topics (categories 2 and 3) perfectly
    with torch.no_grad():
        model.micn.embedding.item.weight.mul_(0.0)
        model.micn.embedding.category.weight[2] = torch.full((18,), 1.0)
        model.micn.embedding.category.weight[3] = torch.full((18,), -1.0)
        model.micn.routing.S.copy_(torch.eye(36))
    model.train()
    model(batch)  # records item -> category
    users = user_interests(model, batch, top_n=5, generator=torch.Generator().manual_seed(0))
    assert len(users) == 40 and all(len(u.interests) == 2 for u in users)  # K_u = ⌊log2 16⌋ capped at 2
    u = users[0]
    assert sum(i.n_behaviors for i in u.interests) == 16
    assert all(len(i.items) == 5 and i.items[0].score >= i.items[-1].score for i in u.interests)
    assert "capsule 0" in format_interests(users[:2])
    result = capsule_purity(model, [batch], topics, generator=torch.Generator().manual_seed(0))
    assert result.n_users == 40
    # Routing from random logits in 3 iterations does not always split two opposite topics
    # cleanly (two capsules can start on the same side), but it groups them far above chance.
    assert result.purity > 0.8 and result.purity > result.shuffled + 0.1 and result.purity > result.majority + 0.1


def test_vocab_topics_and_loader_on_tiny_samples(tiny_samples, tiny_world, tmp_path) -> None:
    from micn.data.dataset import SampleSet
    from micn.data.feature_map import load_feature_map

    fmap = load_feature_map(tiny_samples)
    vocab = Vocab.load(tiny_samples)
    assert len(vocab.item_ids) == fmap.n_items and len(vocab.categories) == fmap.n_categories
    assert tuple(vocab.item_ids[:2]) == ("<pad>", "<oov>")
    topics = item_topics(tiny_samples, tiny_world)
    assert topics.shape == (fmap.n_items,) and (topics[:2] == -1).all() and (topics[2:] >= 0).all()
    model = build_with_micn("din", fmap.n_users, fmap.n_items, fmap.n_categories, 18, 18,
                            MICNConfig())
    torch.save({"model": model.state_dict(), "backbone": "din", "config": {"d_item": 18, "d_category": 18},
                "micn": dataclasses.asdict(model.micn.cfg), "feature_map": fmap.to_json()}, tmp_path / "model.pt")
    loaded, _ = load_model(tmp_path)
    test = SampleSet.from_parquet(tiny_samples / "test.parquet", fmap)
    users = user_interests(loaded, test.batch(slice(0, 4)), vocab, top_n=3)
    assert users[0].interests[0].items[0].item_id in set(vocab.item_ids[2:])
    assert 0 < capsule_purity(loaded, test, topics, min_interests=1).n_users <= len(test) // 2


@pytest.fixture(scope="module")
def micn_run(tiny_samples, tiny_warehouse, tiny_world, tmp_path_factory):
    """(run dir, samples dir) of one short wide_deep + MICN run on the tiny samples (with oracle inputs)."""
    from micn.config import TrainConfig
    from micn.train import RunConfig, RunPaths, train

    root = tmp_path_factory.mktemp("micn_run")
    samples = add_oracle_inputs(tiny_samples, tiny_warehouse, tiny_world, root / "samples")
    run = RunConfig("wide_deep", "micn", 1, TrainConfig(epochs=1, batch_size=64, threads=1), MICNConfig(n_neg=20))
    train(run, RunPaths(samples, root / "run"))
    return root / "run", samples


def a_positive_user(samples: Path) -> str:
    import polars as pl

    test = pl.read_parquet(samples / "test.parquet", columns=["user_id", "label"])
    return test.filter(pl.col("label") == 1)["user_id"][0]


def test_interests_finds_the_runs_samples_itself_from_any_directory(micn_run, tmp_path, monkeypatch) -> None:
    from micn.interests import describe_user

    run_dir, samples = micn_run
    monkeypatch.chdir(tmp_path)  # not the repository root: the lookup must not depend on the working directory
    report = describe_user(run_dir, a_positive_user(samples), items_shown=2)
    assert report.startswith(f"user {a_positive_user(samples)} (test split)") and "capsule 0" in report
    assert "capsule purity vs planted topics" in report  # read from the samples' oracle/ folder


def test_model_file_with_pickle_payload_is_refused(tmp_path) -> None:
    import os

    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Payload()}, tmp_path / "model.pt")
    with pytest.raises(MicnError, match=r"model\.pt: refused to load this model file"):
        load_model(tmp_path)
    assert not marker.exists()


def test_interests_on_a_run_trained_without_micn_is_a_clear_error(tiny_samples, tmp_path) -> None:
    from micn.data.feature_map import load_feature_map
    from micn.interests import describe_user

    fmap = load_feature_map(tiny_samples)
    torch.save({"model": {}, "backbone": "din", "variant": "base", "config": {"d_item": 18, "d_category": 18},
                "micn": None, "feature_map": fmap.to_json()}, tmp_path / "model.pt")  # what a base run's model.pt holds
    with pytest.raises(MicnError, match="trained without MICN"):
        describe_user(tmp_path, "anyone", tiny_samples)


def test_interests_rejects_a_non_positive_item_count(micn_run) -> None:
    import argparse

    from flows.interests import add_arguments
    from micn.interests import describe_user

    run_dir, samples = micn_run
    with pytest.raises(MicnError, match="--items -5"):
        describe_user(run_dir, a_positive_user(samples), samples, items_shown=-5)
    parser = argparse.ArgumentParser()
    add_arguments(parser, "interests")
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--run", str(run_dir), "--user", "u", "--items", "-5"])
    assert e.value.code == 2


def test_interests_finds_a_grid_runs_samples_by_the_layout(micn_run, tmp_path) -> None:
    """A moved repository: the model file's samples path is stale, the grid layout still holds."""
    import shutil

    from micn.interests import describe_user

    run_dir, samples = micn_run
    grid_run = tmp_path / "models" / "tiny" / "wide_deep-micn-len10-seed1"
    shutil.copytree(run_dir, grid_run)
    shutil.copytree(samples, tmp_path / "data" / "samples" / "tiny" / "len10")
    saved = torch.load(grid_run / "model.pt", weights_only=True)
    torch.save({**saved, "samples_dir": str(tmp_path / "gone")}, grid_run / "model.pt")
    assert "(test split)" in describe_user(grid_run, a_positive_user(samples), items_shown=1)
    shutil.rmtree(tmp_path / "data")
    with pytest.raises(MicnError, match="cannot find the samples .* pass --samples DIR"):
        describe_user(grid_run, a_positive_user(samples), items_shown=1)
