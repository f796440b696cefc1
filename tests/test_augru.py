"""AUGRU cell and runner: paper semantics, equality with torch.nn.GRUCell, padding."""

from __future__ import annotations

import torch
from torch import nn

from micn.nn import AUGRU, AUGRUCell


def make_cell(seed: int = 0, input_size: int = 5, hidden_size: int = 4) -> AUGRUCell:
    torch.manual_seed(seed)
    return AUGRUCell(input_size, hidden_size)


def test_attention_zero_leaves_the_state_unchanged_exactly() -> None:
    cell = make_cell()
    x, h = torch.randn(8, 5), torch.randn(8, 4)
    assert torch.equal(cell(x, h, torch.zeros(8)), h)


def test_attention_one_is_a_torch_gru_cell_step() -> None:
    cell = make_cell()
    gru = nn.GRUCell(5, 4)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(gru, name).copy_(getattr(cell, name))
    x, h = torch.randn(8, 5), torch.randn(8, 4)
    torch.testing.assert_close(cell(x, h, torch.ones(8)), gru(x, h), atol=1e-6, rtol=0)


def test_attention_interpolates_the_update_gate() -> None:
    """h' = h + a·(1 − z)·(n − h): the step's displacement is linear in a."""
    cell = make_cell()
    x, h = torch.randn(8, 5), torch.randn(8, 4)
    full = cell(x, h, torch.ones(8)) - h
    torch.testing.assert_close(cell(x, h, torch.full((8,), 0.3)) - h, 0.3 * full, atol=1e-6, rtol=1e-5)


def test_parameters_are_four_distinct_tensors() -> None:
    cell = make_cell()
    names = dict(cell.named_parameters())
    assert set(names) == {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}
    assert len({p.data_ptr() for p in names.values()}) == 4
    assert names["bias_ih"] is not names["bias_hh"]
    assert not torch.equal(names["bias_ih"], names["bias_hh"])
    assert names["weight_ih"].shape == (12, 5) and names["weight_hh"].shape == (12, 4)
    assert set(cell.state_dict()) == set(names)


def test_runner_matches_per_row_stepping_and_ignores_padded_steps() -> None:
    torch.manual_seed(0)
    rnn = AUGRU(5, 4)
    lengths = torch.tensor([4, 0, 2, 6, 1])
    x, att = torch.randn(5, 6, 5), torch.rand(5, 6)
    out = rnn(x, att, lengths)
    for b in range(5):
        h = torch.zeros(1, 4)
        for t in range(int(lengths[b])):
            h = rnn.cell(x[b, t : t + 1], h, att[b, t : t + 1])
        torch.testing.assert_close(out[b], h[0], atol=1e-6, rtol=0)
    # Garbage at padded steps changes nothing; and without lengths, zero attention there masks them.
    pad = torch.arange(6).unsqueeze(0) >= lengths.unsqueeze(1)  # (B, T)
    x2 = torch.where(pad.unsqueeze(-1), torch.randn(5, 6, 5) * 100, x)
    att2 = torch.where(pad, torch.rand(5, 6), att)
    assert torch.equal(rnn(x2, att2, lengths), out)
    torch.testing.assert_close(rnn(x2, att2 * ~pad), out, atol=1e-6, rtol=0)


def test_runner_gradients_match_finite_differences() -> None:
    torch.manual_seed(0)
    rnn = AUGRU(3, 2).double()
    lengths = torch.tensor([3, 1, 0, 2])
    x = torch.randn(4, 3, 3, dtype=torch.double, requires_grad=True)
    att = torch.rand(4, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, a: rnn(x, a, lengths), (x, att))
