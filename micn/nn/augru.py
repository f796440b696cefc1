"""AUGRU: GRU with attentional update gate (DIEN, Zhou et al., AAAI 2019, eq. 6–7).

Paper form:  ũ_t = a_t · u_t;   h_t = (1 − ũ_t) ⊙ h_{t−1} + ũ_t ⊙ h̃_t.
So a_t = 0 leaves the state unchanged and a_t = 1 is a plain GRU step.

Mapping to torch.nn.GRUCell (gate order r, z, n in `weight_ih` / `weight_hh` rows):
    torch:  z = σ(W_iz x + b_iz + W_hz h + b_hz),  h' = (1 − z) ⊙ n + z ⊙ h
    paper:  u = 1 − z (torch's z is the KEEP gate, the paper's u the UPDATE gate),  h̃ = n
    AUGRU:  ũ = a · (1 − z),  h' = h + ũ ⊙ (n − h)   (= (1 − ũ) ⊙ h + ũ ⊙ n)
With a = 1 this is exactly GRUCell on the same weights; with a = 0, h' = h + 0 = h bit for bit.

Deviations from references:
- The DIEN reference code (`VecAttGRUCell`) computes `u = (1 − a)·u_keep; h = u·h + (1 − u)·h̃`:
  a = 0 gives a plain GRU step, not a skip. We follow the paper.
- DeepCTR-Torch's `AUGRUCell` registers `bias_hh` under the name `bias_ih` as well (one bias
  tensor, shared); its update gate also uses torch's z slot as the paper's u, so a = 1 is not a
  torch GRU step on the same weights. Here the four parameters are distinct tensors.
- The runner precomputes the input projection W_ih·x_t + b_ih for all steps in one matmul and,
  given lengths, only steps the rows that still have real behaviors (like packed sequences).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class AUGRUCell(nn.Module):
    """One AUGRU step: `forward(x (B, I), h (B, H), att (B,)) -> h' (B, H)`.

    Parameters have torch.nn.GRUCell's names, shapes, gate order and initialisation, so weights can
    be copied between the two.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        assert input_size > 0 and hidden_size > 0, f"sizes must be positive, got {input_size} and {hidden_size}"
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))  # rows: W_ir | W_iz | W_in
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))  # rows: W_hr | W_hz | W_hn
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)  # as torch.nn.GRUCell
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            nn.init.uniform_(p, -bound, bound)

    def input_projection(self, x: torch.Tensor) -> torch.Tensor:
        """W_ih·x + b_ih for any leading shape: (..., I) -> (..., 3H). Precompute it for all steps."""
        return F.linear(x, self.weight_ih, self.bias_ih)

    def step(self, gi: torch.Tensor, h: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        """One step from a precomputed input projection gi (B, 3H), state h (B, H), attention att (B,)."""
        H = self.hidden_size
        gh = F.linear(h, self.weight_hh, self.bias_hh)  # (B, 3H)
        rz = torch.sigmoid(gi[:, : 2 * H] + gh[:, : 2 * H])  # (B, 2H)
        r, z = rz[:, :H], rz[:, H:]  # (B, H) each; z is torch's keep gate
        n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])  # (B, H), candidate h̃
        u = att.unsqueeze(1) * (1.0 - z)  # (B, H), ũ = a · u with the paper's u = 1 − z
        return h + u * (n - h)  # (B, H)

    def forward(self, x: torch.Tensor, h: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        return self.step(self.input_projection(x), h, att)


class AUGRU(nn.Module):
    """Runs an AUGRUCell over a sequence and returns the final state.

    `forward(inputs (B, T, I), att (B, T), lengths (B,) | None, h0 (B, H) | None) -> (B, H)`.
    With `lengths`, inputs are RIGHT-padded (row b's real steps are 0 .. lengths[b]−1) and padded
    steps are not run at all, so the result is the state after each row's last real step (h0, or
    zeros, for length 0) and does not depend on T. Without `lengths` every step runs; a step with
    att = 0 leaves the state unchanged, so zero attention at padded positions masks them too.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.cell = AUGRUCell(input_size, hidden_size)
        self.hidden_size = hidden_size

    def forward(
        self,
        inputs: torch.Tensor,
        att: torch.Tensor,
        lengths: torch.Tensor | None = None,
        h0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, T, _ = inputs.shape
        assert att.shape == (B, T), f"att shape {tuple(att.shape)} != inputs' (B, T) = {(B, T)}"
        h = inputs.new_zeros(B, self.hidden_size) if h0 is None else h0  # (B, H)
        if lengths is None:
            order = None
            n_active = [B] * T
        else:
            assert lengths.shape == (B,), f"lengths shape {tuple(lengths.shape)} != (B,) = {(B,)}"
            # Sort rows by length, longest first: at step t the rows still running are a prefix.
            order = torch.argsort(lengths, descending=True, stable=True)  # (B,)
            steps = torch.arange(T, device=lengths.device)  # (T,)
            n_active = (lengths.unsqueeze(0) > steps.unsqueeze(1)).sum(1).tolist()  # rows running at each step
            n_active = [n for n in n_active if n > 0]  # steps after the longest row never run
            inputs, att, h = inputs[order], att[order], h[order]
        T_run = len(n_active)
        # Time-major input projection for all steps in one matmul, then per-step views via unbind
        # (slicing gi[:, t] in the loop would make backward allocate T full-size gradients: O(T²)).
        gi_steps = self.cell.input_projection(inputs[:, :T_run].transpose(0, 1)).unbind(0)  # T_run × (B, 3H)
        att_steps = att[:, :T_run].t().unbind(0)  # T_run × (B,)
        finished = []  # final states of rows that ran out of steps, highest row indices first
        for n, gi_t, att_t in zip(n_active, gi_steps, att_steps):
            if n < h.shape[0]:  # rows n.. have no more real steps: their state is final
                finished.append(h[n:])
                h = h[:n]  # (n, H)
            h = self.cell.step(gi_t[:n], h, att_t[:n])  # (n, H)
        h = torch.cat([h, *reversed(finished)], dim=0) if finished else h  # (B, H)
        if order is None:
            return h
        return h[torch.argsort(order)]  # (B, H), original row order
