"""What L_micn is trained to predict (`micn.supervision`): the paper's clicked target, or the next
behaviour after a prefix of the row's own history (micn.models.micn_aux.next_behaviour_pairs)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from micn.models import micn_aux
from micn.models.micn_aux import clicked_target_pairs, next_behaviour_pairs
from micn.models.with_micn import AUX_NAME
from micn.names import PADDING_ID
from tests.helpers import REPO, build_micn, main_loss, make_batch

pytestmark = pytest.mark.usefixtures("one_thread")

T = 10


def _batch(seed: int = 4, B: int = 48):
    lengths = torch.randint(0, T + 1, (B,), generator=torch.Generator().manual_seed(seed))
    return make_batch(B, T, seed=seed, lengths=lengths)


def test_history_pairs_are_a_prefix_and_the_behaviour_after_it() -> None:
    batch = _batch()
    pairs = next_behaviour_pairs(batch, torch.Generator().manual_seed(1))
    # every row with two behaviours or more, whatever its label; no other row
    assert pairs.rows.tolist() == (batch.hist_len >= 2).nonzero().squeeze(1).tolist()
    L = pairs.hist_items.shape[1]
    assert L == int(pairs.lengths.max())
    for j, row in enumerate(pairs.rows.tolist()):
        n, k = int(batch.hist_len[row]), int(pairs.lengths[j])
        behaviours = batch.hist_items[row, T - n:].tolist()  # oldest first
        categories = batch.hist_categories[row, T - n:].tolist()
        assert 1 <= k <= n - 1
        assert pairs.items[j].item() == behaviours[k] and pairs.categories[j].item() == categories[k]
        assert pairs.hist_items[j, L - k:].tolist() == behaviours[:k]  # the prefix, right-aligned
        assert pairs.hist_categories[j, L - k:].tolist() == categories[:k]
        assert set(pairs.hist_items[j, :L - k].tolist()) <= {PADDING_ID}


def test_history_pairs_reach_every_prefix_over_draws_and_never_the_target() -> None:
    batch = _batch(seed=6, B=12)
    generator = torch.Generator().manual_seed(0)
    seen: dict[int, set[int]] = {}
    for _ in range(300):
        pairs = next_behaviour_pairs(batch, generator)
        for row, k in zip(pairs.rows.tolist(), pairs.lengths.tolist()):
            seen.setdefault(row, set()).add(k)
    expected = {row: set(range(1, int(batch.hist_len[row]))) for row in pairs.rows.tolist()}
    assert seen == expected


@pytest.mark.parametrize("leak", ["the sample's target", "an empty prefix"])
def test_a_planted_leak_into_the_future_is_caught(monkeypatch: pytest.MonkeyPatch, leak: str) -> None:
    """A draw that makes the whole history the prefix (its positive would be the sample's own
    target, the future) or leaves no behaviour before the positive stops the step."""
    planted = {"the sample's target": lambda n, generator=None: n,
               "an empty prefix": lambda n, generator=None: torch.zeros_like(n)}[leak]
    monkeypatch.setattr(micn_aux, "draw_prefix_lengths", planted)
    model = build_micn("din", supervision="history")
    model.train()
    with pytest.raises(AssertionError, match="would read past its positive"):
        model(_batch())


def test_history_loss_never_reads_the_rows_target_or_label() -> None:
    """Under `history`, relabelling the rows and trading their (target, category) pairs leaves
    L_micn unchanged; under `target` the same change moves it (the check can fail)."""
    batch = _batch(seed=8)
    order = torch.randperm(batch.item.numel(), generator=torch.Generator().manual_seed(2))
    changed = dataclasses.replace(batch, label=1.0 - batch.label, item=batch.item[order],
                                  category=batch.category[order])
    losses = {}
    for supervision in ("history", "target"):
        model = build_micn("din", supervision=supervision)
        model.eval()  # no category recording (observe) in eval: only the pairs can differ
        for name, b in (("batch", batch), ("changed", changed)):
            model.micn.generator = torch.Generator().manual_seed(5)
            losses[supervision, name] = model.micn.loss(b)
    assert torch.equal(losses["history", "batch"], losses["history", "changed"])
    assert not torch.equal(losses["target", "batch"], losses["target", "changed"])


def test_history_supervision_trains_and_handles_rows_without_pairs() -> None:
    model = build_micn("dien", supervision="history")
    model.train()
    batch = _batch(seed=3)
    out = model(batch)
    (main_loss(out, batch.label) + out.aux_losses[AUX_NAME]).backward()
    assert model.micn.embedding.item.weight.grad is not None
    short = dataclasses.replace(batch, hist_len=torch.ones_like(batch.hist_len),
                                hist_items=batch.hist_items * (torch.arange(T) == T - 1))
    out = model(short)
    assert out.aux_losses[AUX_NAME].item() == 0.0  # one behaviour: nothing precedes a positive
    (main_loss(out, short.label) + out.aux_losses[AUX_NAME]).backward()


def test_target_pairs_are_the_positive_rows_and_their_clicks() -> None:
    batch = _batch(seed=5)
    pairs = clicked_target_pairs(batch)
    assert pairs.rows.tolist() == ((batch.label > 0.5) & (batch.hist_len > 0)).nonzero().squeeze(1).tolist()
    assert torch.equal(pairs.items, batch.item[pairs.rows])
    assert torch.equal(pairs.lengths, batch.hist_len[pairs.rows])


def test_a_history_run_trains_and_says_so_in_its_record(tiny_samples, tmp_path) -> None:
    """`micn train --supervision history` on tiny: L_micn finite and positive every epoch, the
    evidence taken, and the record (and its params) name the supervision; a base run names none."""
    import argparse
    import json

    from flows.train import add_arguments, job_from_args
    from micn.config import TrainConfig
    from micn.run import RunPaths
    from micn.train import train

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--dataset", "tiny", "--samples", str(tiny_samples), "--backbone", "din", "--seed", "1",
                              "--out", str(tmp_path / "run"), "--variant", "micn", "--supervision", "history",
                              "--params", str(REPO / "params.yaml")])
    job = job_from_args(args)
    assert job.run.micn.supervision == "history"
    run = dataclasses.replace(job.run, train=TrainConfig(epochs=2, batch_size=64, threads=1))
    record = train(run, RunPaths(tiny_samples, tmp_path / "run"))
    assert record.supervision == "history" and record.params["micn"]["supervision"] == "history"
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert all(h["train_micn"] > 0 for h in history)
    assert record.metrics["micn_recall"] is not None and record.metrics["grad_ratio"] is not None
    base = train(dataclasses.replace(run, variant="base"), RunPaths(tiny_samples, tmp_path / "base"))
    assert base.supervision is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--dataset", "d", "--samples", "s", "--backbone", "din", "--seed", "1", "--out", "o",
                           "--supervision", "next"])
