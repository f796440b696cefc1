"""The trainer's optimizers: lazy_adam is Adam on the rows a batch looks up and leaves every other
embedding row (weights and moments) alone; dense parameters get the same Adam as `adam`."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from micn.config import TrainConfig
from micn.optim import Optimizers, build_optimizer


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.Embedding(10, 3, padding_idx=0)
        self.head = nn.Linear(3, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.table(ids).sum(1)).squeeze(1)


def step(model: Tiny, optimizer, ids: list[list[int]]) -> None:
    optimizer.zero_grad(set_to_none=True)
    model(torch.tensor(ids)).square().sum().backward()
    optimizer.step()


def models(optimizer: str) -> tuple[Tiny, object]:
    model = Tiny()
    return model, build_optimizer(model, dataclasses.replace(TrainConfig(lr=0.1), optimizer=optimizer))


def test_lazy_adam_is_adam_on_the_rows_a_batch_touches():
    dense, dense_opt = models("adam")
    lazy, lazy_opt = models("lazy_adam")
    assert isinstance(lazy_opt, Optimizers) and lazy.table.sparse and not dense.table.sparse
    step(dense, dense_opt, [[1, 2], [2, 3]])
    step(lazy, lazy_opt, [[1, 2], [2, 3]])  # first step: untouched rows have zero moments in both
    for a, b in zip(dense.parameters(), lazy.parameters()):
        torch.testing.assert_close(a, b)
    before = lazy.table.weight.detach().clone()
    step(dense, dense_opt, [[4, 5]])
    step(lazy, lazy_opt, [[4, 5]])
    moved = (lazy.table.weight.detach() != before).any(dim=1)
    assert moved.tolist() == [False, False, False, False, True, True, False, False, False, False]
    assert (dense.table.weight.detach()[1:4] != lazy.table.weight.detach()[1:4]).any()  # dense Adam kept moving them
    torch.testing.assert_close(dense.head.weight, lazy.head.weight)  # the dense part is the same Adam
    assert not lazy.table.weight[0].any()  # padding stays zero


def test_the_state_of_both_parts_round_trips():
    lazy, opt = models("lazy_adam")
    step(lazy, opt, [[1, 2]])
    state = opt.state_dict()
    assert set(state) == {"dense", "sparse"}
    _, fresh = models("lazy_adam")
    fresh.load_state_dict(state)
    assert fresh.state_dict()["sparse"]["state"][0]["step"] == 1
    with pytest.raises(ValueError, match="expected"):
        fresh.load_state_dict({"dense": state["dense"]})


def test_lazy_adam_gives_torch_sparse_adams_numbers():
    """The reference computation: torch's SparseAdam on the same tables and gradients."""
    from micn.optim import LazyAdam

    torch.manual_seed(3)
    ours, theirs = nn.Embedding(50, 4, sparse=True), nn.Embedding(50, 4, sparse=True)
    theirs.load_state_dict(ours.state_dict())
    opt_ours, opt_theirs = LazyAdam(ours.parameters(), lr=0.05), torch.optim.SparseAdam(theirs.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(6):
        ids = torch.randint(0, 50, (32, 3), generator=g)  # repeats within a step are summed by both
        for table, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad(set_to_none=True)
            (table(ids) ** 3).sum().backward()
            opt.step()
        torch.testing.assert_close(ours.weight, theirs.weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(opt_ours.state[ours.weight]["exp_avg_sq"],
                               opt_theirs.state[theirs.weight]["exp_avg_sq"], rtol=1e-5, atol=1e-8)


def test_lazy_adam_refuses_dense_gradients():
    from micn.optim import LazyAdam

    table = nn.Embedding(5, 2)
    opt = LazyAdam(table.parameters())
    table(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()
