"""The trainer's optimizer (`train.optimizer`).

    optimizer = build_optimizer(model, cfg)   # zero_grad / step / state_dict / load_state_dict

adam       torch's Adam (fused) over every parameter: each step reads and writes every row of every
           embedding table and both of its moments, whichever rows the batch looked up, so a step
           costs O(catalogue + users).
lazy_adam  the embedding tables (every `nn.Embedding` of the model) get sparse gradients and
           `LazyAdam` (below); every other parameter gets the fused Adam. A row's weights and
           moments change only on the steps whose batch looked it up, so a step costs O(batch), not
           O(catalogue). This is the "lazy Adam" of TensorFlow's LazyAdamOptimizer: on a touched row it
           is Adam's update; an untouched row's moments do not decay in between (dense Adam would keep
           moving it by its decaying first moment). Same lr, betas and eps as `adam`.

Both give the same update on a step that touches every row; on sparse data they differ, which is a
modelling choice measured in docs/findings (same Table 2 within the intervals, a step whose cost
does not grow with the catalogue).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from micn.config import TrainConfig
from micn.nn.embedding import sum_rows


class Optimizers:
    """Optimizers over disjoint parameter sets, stepped as one (the `torch.optim.Optimizer` calls the trainer uses)."""

    def __init__(self, **parts: torch.optim.Optimizer) -> None:
        self.parts = parts

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.parts.values():
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.parts.values():
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {name: optimizer.state_dict() for name, optimizer in self.parts.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != set(self.parts):
            raise ValueError(f"optimizer state for {sorted(state)}, expected {sorted(self.parts)}")
        for name, optimizer in self.parts.items():
            optimizer.load_state_dict(state[name])


class LazyAdam(torch.optim.Optimizer):
    """Adam on the rows a step's sparse gradient looks up; every other row, with its moments, is left as is.

    The update of `torch.optim.SparseAdam` (one step count per table, its bias correction), done with
    a handful of row gathers and scatters instead of sparse-tensor arithmetic: `sum_rows` sums the
    gradient rows of each looked-up id, then the moments and weights of those rows are read,
    updated and written back. Several times cheaper per step than SparseAdam on CPU; the same
    numbers up to float rounding (tests/test_optim.py)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None) -> None:  # noqa: ARG002 - the Optimizer signature
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise RuntimeError("LazyAdam needs sparse gradients (nn.Embedding(sparse=True))")
                state = self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                grad = p.grad  # (N, D) values at N looked-up ids, repeats not summed
                rows, g = sum_rows(grad._indices()[0], grad._values())  # (U,), (U, D)
                m = state["exp_avg"].index_select(0, rows).mul_(beta1).add_(g, alpha=1 - beta1)
                v = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(g, g, value=1 - beta2)
                state["exp_avg"].index_copy_(0, rows, m)
                state["exp_avg_sq"].index_copy_(0, rows, v)
                step_size = lr * math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
                p.index_add_(0, rows, m.div_(v.sqrt_().add_(eps)).mul_(-step_size))


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer | Optimizers:
    """The optimizer `cfg.optimizer` names, over every parameter of `model` (lazy_adam switches the
    model's embedding tables to sparse gradients)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)  # one fused kernel per step
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    for table in tables:
        table.sparse = True  # its backward gives the looked-up rows only
    sparse = {id(t.weight): t.weight for t in tables}
    dense = [p for p in model.parameters() if id(p) not in sparse]
    return Optimizers(dense=torch.optim.Adam(dense, lr=cfg.lr, fused=True),
                      sparse=LazyAdam(list(sparse.values()), lr=cfg.lr))
