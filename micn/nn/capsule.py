"""Multi-interest capsule layers (MIND, Li et al. CIKM'19, arXiv 1904.08030) used by MICN.

    squash(x)                                   capsule non-linearity
    scale_grad(x, s)                            identity forward, grad·s backward
    adaptive_interest_count(lengths, k_max)     K_u = max(1, min(K_max, ⌊log2 |I_u|⌋))
    interest_count_cap(max_len)                 the k_max that leaves ⌊log2 |I_u|⌋ uncut up to max_len
    B2IRouting(d_in, d_out, k_max, ...)         behavior-to-interest dynamic routing
    label_aware_attention(capsules, active, target, pow_p)
    sample_candidates(n, n_items, sampler)      uniform / log-uniform negatives + log expected counts
    sampled_softmax_loss(user, target, target_ids, sampled, sampled_ids, sampled_log_count)

Dimension glossary: B batch, T history length (left-padded, as `Batch`), D width, K interests
(K_max capsule slots, of which the first K_u are active for user u), M sampled candidates.

Where the reference implementations disagree, this module follows the MIND paper, DeepMatch after its 2022 fix (PR #76) and TF ComiRec:
- Routing logits are drawn FRESH from N(0, σ²) in every forward, per user, and are never
  trained (no parameter, no gradient). DeepMatch ≤ v0.2.0 kept one global logit tensor that was
  updated with `assign_add` across batches and shared by all users; that bug is not repeated.
- The routing softmax runs over the INTERESTS (each behavior distributes a unit of weight over
  the active capsules), not over the sequence as torch-rechub and PaddleRec do. Inactive
  capsules get −inf before the softmax, padded behaviors weight 0 after it.
- `r` iterations; S·e is detached in all but the last, so gradients flow through the final pass
  only (DeepMatch, ComiRec).
- K rounding: the paper's ⌊log2 |I_u|⌋, computed exactly on integers. DeepMatch uses
  ⌊log2(|I_u| + 1)⌋, one interest more at lengths 3, 7, 15. Lengths 0 and 1 give K_u = 1.
  The formula is capped by K_max (`MICNConfig.k_max`, default 5; MIND used 4 in practice, our
  earlier default): a cap k cuts it from length 2^(k+1) on, so the default 5 gives Table 4's
  length 50 (⌊log2 50⌋ = 5) the paper's 5 interests (4 would give it 4). The formula is uncut at every length up to max_len when k_max >= `interest_count_cap(max_len)`:
  5 for max_len 50, 4 for 20, 3 for 10.
- Label-aware attention (MIND Eq. 8 as the MICN paper writes it): softmax(pow(Vᵀe, p)). A raw
  power is not monotone in the score for even p (a strongly negative score gets a large weight:
  (−3)² > 1², so the capsule LEAST like the target would win), flips sign for odd p, and is
  undefined (NaN) for fractional p on negative scores; scores of unnormalised capsules and item
  vectors are negative about half the time, so this is not a corner case. We raise exp(score)
  to the power p instead: softmax(p · Vᵀe) = normalise(exp(Vᵀe)^p). For every p > 0 it ranks the
  capsules exactly as the scores do (exp and x ↦ p·x are increasing), which is what pow does
  on positive scores; it equals MIND/ComiRec at p = 1 (softmax of the scores), is uniform at
  p = 0, and tends to the argmax as p → ∞, which is where MIND's default p = 100 points: p ≥ 100
  (or inf) is a hard argmax gather, as in DeepMatch, and there both forms pick the capsule with
  the highest score whenever that score is positive.
- The routing window is cropped to the longest real history in the batch and the logits are
  drawn for that window only, so extra left padding changes nothing (same seed, same capsules).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

HARD_POW_P = 100.0  # pow_p at or above this selects the argmax interest (DeepMatch's switch)
SAMPLERS = ("log_uniform", "uniform")


def squash(x: torch.Tensor, dim: int = -1, eps: float = 1e-9) -> torch.Tensor:
    """‖x‖² / (1 + ‖x‖²) · x / ‖x‖ along `dim`: keeps the direction, maps the norm into [0, 1).

    `eps` inside the square root (as DeepMatch) keeps squash(0) = 0 with a finite gradient.
    """
    sq = (x * x).sum(dim=dim, keepdim=True)
    return sq / (1.0 + sq) * x / torch.sqrt(sq + eps)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, s: float) -> torch.Tensor:
        ctx.s = s
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.s, None


def scale_grad(x: torch.Tensor, s: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the incoming gradient by `s` in the backward pass.

    MICN's blend: e_aux feeds the backbone through scale_grad(·, φ) and MICN's own loss through
    scale_grad(·, 1 − φ), so the table receives (1 − φ)·∇_aux + φ·∇_main.
    """
    return x if s == 1.0 else _ScaleGrad.apply(x, float(s))


def adaptive_interest_count(lengths: torch.Tensor, k_max: int) -> torch.Tensor:
    """K_u = max(1, min(k_max, ⌊log2 lengths⌋)) per user, (B,) int64; 1 for lengths 0 and 1.

    Exact on integers: ⌊log2 n⌋ ≥ k  ⟺  n ≥ 2^k, so K_u = 1 + #{k in 2..k_max : n ≥ 2^k}.
    The cap k_max cuts the paper's formula from length 2^(k_max+1) on (32 for the default 4);
    see `interest_count_cap`.
    """
    count = torch.ones_like(lengths, dtype=torch.long)
    for k in range(2, k_max + 1):
        count += (lengths >= 2**k).long()
    return count


def interest_count_cap(max_len: int) -> int:
    """The smallest k_max that leaves K_u = ⌊log2 |I_u|⌋ uncut for every history up to `max_len`:
    max(1, ⌊log2 max_len⌋) (10 -> 3, 20 -> 4, 50 -> 5, 100 -> 6)."""
    assert max_len >= 0, f"max_len must be >= 0, got {max_len}"
    return max(1, max_len.bit_length() - 1)


@dataclass(frozen=True)
class Routing:
    capsules: torch.Tensor  # (B, K_max, D), zero on inactive slots
    active: torch.Tensor  # (B, K_max) bool, the first K_u slots
    weights: torch.Tensor  # (B, K_max, T) final coupling coefficients; 0 on padding and inactive slots


class B2IRouting(nn.Module):
    """Behavior-to-interest dynamic routing with ONE shared bilinear map S (MIND §3.2).

        b ~ N(0, σ²)  (B, K, T), fresh per call, no gradient
        repeat r times:
            w   = softmax over active interests of b, 0 on padded behaviors      (B, K, T)
            u   = squash(Σ_t w_kt · S e_t)                                        (B, K, D)
            b  += u_k · S e_t                                      (not after the last pass)
    S·e is detached except in the final pass. Histories are LEFT-padded: the real behaviors of
    row b are its last `lengths[b]` positions; whatever (finite) values the others hold are ignored.
    """

    def __init__(self, d_in: int, d_out: int, k_max: int, iterations: int = 3, routing_std: float = 1.0) -> None:
        super().__init__()
        assert d_in >= 1 and d_out >= 1, f"routing widths must be positive, got {d_in} and {d_out}"
        assert k_max >= 1 and iterations >= 1, f"k_max and iterations must be >= 1, got {k_max} and {iterations}"
        assert routing_std >= 0, f"routing_std must be >= 0, got {routing_std}"
        self.k_max, self.iterations, self.routing_std = k_max, iterations, routing_std
        # N(0, 1) as DeepMatch's CapsuleLayer (init_std=1.0): with small item embeddings the
        # capsules start in squash's near-linear range instead of its quadratic one.
        self.S = nn.Parameter(torch.randn(d_in, d_out))

    def forward(
        self, hist: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> Routing:
        B, T, _ = hist.shape
        K = self.k_max
        L = max(int(lengths.max()), 1) if B else 1  # routing window: the longest real history
        L = min(L, T)
        window = hist[:, T - L :]  # (B, L, D_in)
        mask = torch.arange(L, device=hist.device).unsqueeze(0) >= (L - lengths).unsqueeze(1)  # (B, L)
        active = torch.arange(K, device=hist.device).unsqueeze(0) < adaptive_interest_count(lengths, K).unsqueeze(1)

        # Σ_t w_kt · S e_t = (Σ_t w_kt e_t) S and u_k · S e_t = (u_k Sᵀ) · e_t: S is applied to the
        # K pooled vectors instead of the T behaviors (K·D² instead of T·D² per user); the
        # "detached S·e" of the early iterations is detached e and S. Padded positions are left
        # as they are (any finite value): their weight is 0 after the softmax.
        e_fixed, S_fixed = window.detach(), self.S.detach()
        # Drawn from the global RNG (or a generator the caller derived from it): reproducible
        # under the trainer's seeding and resume. Never a parameter, never a gradient.
        b = torch.randn(B, K, L, generator=generator, device=hist.device, dtype=hist.dtype) * self.routing_std
        inactive = (~active).unsqueeze(-1)  # (B, K, 1)
        behavior = mask.unsqueeze(1).to(hist.dtype)  # (B, 1, L)
        for i in range(self.iterations):
            last = i == self.iterations - 1
            w = torch.softmax(b.masked_fill(inactive, float("-inf")), dim=1) * behavior  # (B, K, L)
            if last:  # the only pass gradients flow through
                capsules = squash(torch.bmm(w, window) @ self.S)  # (B, K, D)
            else:
                capsules = squash(torch.bmm(w, e_fixed) @ S_fixed)  # (B, K, D)
                b = b + torch.bmm(capsules @ S_fixed.T, e_fixed.transpose(1, 2))  # (B, K, L)
        capsules = capsules * active.unsqueeze(-1).to(capsules.dtype)  # already 0; explicit
        weights = nn.functional.pad(w, (T - L, 0))  # (B, K, T)
        return Routing(capsules=capsules, active=active, weights=weights)


def label_aware_attention(
    capsules: torch.Tensor, active: torch.Tensor, target: torch.Tensor, pow_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """v_u = Σ_k a_k V_uk with a = softmax over active k of p · (V_uk · e_target).

    capsules (B, K, D), active (B, K) bool (at least one per row), target (B, D) ->
    (v (B, D), a (B, K)). pow_p ≥ HARD_POW_P or inf: a is one-hot on the best active capsule.
    See the module docstring for why p multiplies the score instead of being its exponent.
    """
    scores = torch.bmm(capsules, target.unsqueeze(-1)).squeeze(-1)  # (B, K)
    if pow_p >= HARD_POW_P:
        best = scores.masked_fill(~active, float("-inf")).argmax(dim=1)  # (B,)
        a = nn.functional.one_hot(best, capsules.shape[1]).to(capsules.dtype)  # (B, K)
    else:  # mask after scaling: p = 0 must give uniform over the active capsules, not 0·(−inf)
        a = torch.softmax((pow_p * scores).masked_fill(~active, float("-inf")), dim=1)  # (B, K)
    return torch.bmm(a.unsqueeze(1), capsules).squeeze(1), a  # (B, D), (B, K)


def candidate_log_prob(ids: torch.Tensor, n_items: int, sampler: str) -> torch.Tensor:
    """log q(id) of one draw of `sampler` over the real item ids 2 .. n_items − 1.

    log_uniform (TF's log_uniform_candidate_sampler on k = id − 2, R = n_items − 2 classes):
        q(k) = (log(k + 2) − log(k + 1)) / log(R + 1), Zipf-like; item indexes are ordered by
        descending training frequency, so this favours popular items.
    uniform: q = 1 / R.
    """
    R = n_items - 2
    if sampler == "uniform":
        return torch.full(ids.shape, -math.log(R), dtype=torch.float32, device=ids.device)
    if sampler == "log_uniform":
        k = (ids - 2).to(torch.float64)
        return (torch.log1p(1.0 / (k + 1.0)) / math.log(R + 1.0)).log().to(torch.float32)
    raise ValueError(f"sampler={sampler!r}; choose one of {', '.join(SAMPLERS)}")


def sample_candidates(
    n: int, n_items: int, sampler: str, generator: torch.Generator | None = None, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` draws WITH replacement over item ids 2 .. n_items − 1 -> (ids (n,) int64, log expected
    count (n,) = log(n · q(id))). Uses the global RNG unless a generator is given."""
    assert n_items >= 3, f"need at least one real item (ids 2 .. n_items − 1), got n_items={n_items}"
    R = n_items - 2
    if sampler == "uniform":
        ids = torch.randint(2, n_items, (n,), generator=generator, device=device)
    elif sampler == "log_uniform":
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        # inverse CDF: P(k' <= k) = log(k + 2) / log(R + 1)  =>  k = ⌊(R + 1)^u⌋ − 1
        k = (torch.exp(u * math.log(R + 1.0)).floor().long() - 1).clamp_(0, R - 1)
        ids = k + 2
    else:
        raise ValueError(f"sampler={sampler!r}; choose one of {', '.join(SAMPLERS)}")
    return ids, candidate_log_prob(ids, n_items, sampler) + math.log(n)


def sampled_softmax_loss(
    user: torch.Tensor,
    target: torch.Tensor,
    target_ids: torch.Tensor,
    sampled: torch.Tensor,
    sampled_ids: torch.Tensor,
    sampled_log_count: torch.Tensor,
) -> torch.Tensor:
    """Per-row sampled-softmax cross-entropy of the target against shared sampled candidates.

    user (N, D), target (N, D), target_ids (N,), sampled (M, D), sampled_ids (M,),
    sampled_log_count (M,) = log of each candidate's expected count among the M draws -> (N,).

        loss = −s⁺ + log(exp(s⁺) + Σ_m [id_m ≠ id⁺] exp(s_m − log E[count(id_m)]))

    Each draw's exp(s_m) / E[count] is an unbiased estimate of its share of the partition
    function over the non-target items, so duplicates are simply counted again (logQ
    correction) and the loss tends to the full softmax cross-entropy as M grows; with every item
    listed once and log count 0 it IS the full softmax. Sampled copies of the target
    (accidental hits) are masked. Unlike TF's `sampled_softmax_loss`, the target's own logit is
    not corrected: the target is given, not sampled.
    """
    pos = (user * target).sum(dim=-1, keepdim=True)  # (N, 1)
    neg = user @ sampled.T - sampled_log_count.unsqueeze(0)  # (N, M)
    neg = neg.masked_fill(sampled_ids.unsqueeze(0) == target_ids.unsqueeze(1), float("-inf"))
    return torch.logsumexp(torch.cat([pos, neg], dim=1), dim=1) - pos.squeeze(1)  # (N,)
