"""MICN's capsule layers (micn.nn.capsule): the gradient scaler, B2I dynamic routing and its interest
count, label-aware attention, and the sampled softmax with its candidate samplers."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.nn import functional as F

from micn.nn.capsule import (
    B2IRouting,
    adaptive_interest_count,
    candidate_log_prob,
    interest_count_cap,
    label_aware_attention,
    sample_candidates,
    sampled_softmax_loss,
    scale_grad,
    squash,
)
from tests.helpers import build_micn, make_batch, repad

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# The gradient scaler


def test_scale_grad_is_identity_forward_and_scales_backward() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    for s in (0.0, 0.3, 1.0, 2.5):
        x.grad = None
        y = scale_grad(x, s)
        assert torch.equal(y, x)
        (y * torch.arange(12.0).view(3, 4)).sum().backward()
        torch.testing.assert_close(x.grad, s * torch.arange(12.0).view(3, 4))


# ---------------------------------------------------------------------------------------------
# Routing


def test_adaptive_interest_count_follows_floor_log2() -> None:
    lengths = torch.tensor([0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 100])
    assert adaptive_interest_count(lengths, 4).tolist() == [1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 4]
    assert adaptive_interest_count(lengths, 1).tolist() == [1] * 11
    n = torch.arange(1, 2000)
    expected = torch.tensor([max(1, min(6, math.floor(math.log2(v)))) for v in n.tolist()])
    assert torch.equal(adaptive_interest_count(n, 6), expected)


def test_k_follows_floor_log2_of_the_history_length_up_to_k_max() -> None:
    n = torch.arange(0, 300)
    paper = torch.tensor([max(1, math.floor(math.log2(v))) if v >= 1 else 1 for v in n.tolist()])
    assert torch.equal(adaptive_interest_count(n, 16), paper)  # no cap in reach: the paper's formula
    assert torch.equal(adaptive_interest_count(n, 4), paper.clamp(max=4))
    # the default cap 4 cuts the formula at the paper's Table 4 length 50 (⌊log2 50⌋ = 5) ...
    assert adaptive_interest_count(torch.tensor([31, 32, 50]), 4).tolist() == [4, 4, 4]
    assert math.floor(math.log2(50)) == 5
    # ... and k_max = interest_count_cap(max_len) never cuts it up to max_len
    assert [interest_count_cap(L) for L in (1, 10, 20, 50, 100)] == [1, 3, 4, 5, 6]
    for L in (10, 20, 50, 100):
        upto = torch.arange(0, L + 1)
        assert torch.equal(adaptive_interest_count(upto, interest_count_cap(L)), paper[: L + 1])
        assert adaptive_interest_count(upto, interest_count_cap(L) - 1).max() < paper[: L + 1].max()


def random_history(B: int, T: int, D: int, lengths: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=g) * 0.5
    real = torch.arange(T).unsqueeze(0) >= (T - lengths).unsqueeze(1)
    return x * real.unsqueeze(-1)


def test_routing_weights_sum_to_one_over_active_interests() -> None:
    torch.manual_seed(0)
    layer = B2IRouting(8, 8, k_max=4)
    lengths = torch.tensor([0, 1, 3, 4, 8, 12, 16, 20])
    hist = random_history(8, 20, 8, lengths)
    r = layer(hist, lengths)
    real = torch.arange(20).unsqueeze(0) >= (20 - lengths).unsqueeze(1)  # (B, T)
    K_u = adaptive_interest_count(lengths, 4)
    assert r.active.sum(dim=1).tolist() == K_u.tolist()
    sums = r.weights.sum(dim=1)  # (B, T)
    torch.testing.assert_close(sums[real], torch.ones(int(real.sum())))
    assert torch.equal(sums[~real], torch.zeros(int((~real).sum())))
    assert torch.equal(r.weights * (~r.active).unsqueeze(-1), torch.zeros_like(r.weights))
    assert torch.equal(r.capsules[~r.active], torch.zeros(int((~r.active).sum()), 8))
    assert torch.equal(r.capsules[0], torch.zeros(4, 8))  # no history: a zero capsule
    assert (r.capsules.norm(dim=-1) < 1).all()  # squash
    # with several interests a behavior's weight is spread by routing, not fixed at 1/K
    w = r.weights[7]  # (K, T), 4 active interests
    assert w.std(dim=0).mean() > 0.1


def test_padding_and_padded_ids_leave_capsules_unchanged() -> None:
    model = build_micn("din")
    batch = make_batch(16, 10, seed=6)
    pad = torch.arange(10).unsqueeze(0) < (10 - batch.hist_len).unsqueeze(1)
    garbage = dataclasses.replace(batch, hist_items=torch.where(pad, torch.full_like(batch.hist_items, 7),
                                                                batch.hist_items))
    results = []
    for b in (batch, repad(batch, 25), garbage):
        torch.manual_seed(9)
        results.append(model.micn.interests(b))
    for other in results[1:]:
        torch.testing.assert_close(other.capsules, results[0].capsules, atol=1e-6, rtol=0)
    torch.testing.assert_close(results[1].weights[:, :, 15:], results[0].weights, atol=1e-6, rtol=0)
    # and the loss, too (same sampled negatives, same routing logits)
    model.train()
    losses = []
    for b in (batch, repad(batch, 25), garbage):
        torch.manual_seed(9)
        losses.append(model.micn.loss(b))
    torch.testing.assert_close(losses[1], losses[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(losses[2], losses[0], atol=1e-6, rtol=0)


def reference_routing(hist: torch.Tensor, lengths: torch.Tensor, S: torch.Tensor, b0: torch.Tensor,
                      k_max: int, iterations: int) -> torch.Tensor:
    """MIND's Algorithm 1 user by user, over the real behaviors only, in plain loops."""
    T = hist.shape[1]
    out = torch.zeros(hist.shape[0], k_max, S.shape[1])
    for u in range(hist.shape[0]):
        n = int(lengths[u])
        if n == 0:
            continue
        K = max(1, min(k_max, math.floor(math.log2(n))))
        L = b0.shape[2]
        b = b0[u, :K, L - n :].clone()  # (K, n)
        e = hist[u, T - n :]  # (n, D)
        for it in range(iterations):
            last = it == iterations - 1
            se = e @ S if last else (e @ S).detach()
            w = torch.softmax(b, dim=0)  # over interests
            caps = []
            for k in range(K):
                z = sum(w[k, i] * se[i] for i in range(n))
                caps.append(z * (z @ z) / (1 + z @ z) / torch.sqrt(z @ z + 1e-9))
            caps = torch.stack(caps)  # (K, D)
            if not last:
                b = b + caps @ se.T
        out[u, :K] = caps
    return out


def test_routing_equals_a_per_user_loop_including_gradients() -> None:
    torch.manual_seed(0)
    layer = B2IRouting(6, 5, k_max=3, iterations=3, routing_std=0.7)
    lengths = torch.tensor([0, 2, 5, 9, 4])
    hist = random_history(5, 12, 6, lengths, seed=1).requires_grad_(True)
    torch.manual_seed(42)
    fast = layer(hist, lengths).capsules
    torch.manual_seed(42)
    b0 = torch.randn(5, 3, int(lengths.max())) * 0.7  # what the layer draws
    S = layer.S.detach().clone().requires_grad_(True)
    slow = reference_routing(hist, lengths, S, b0, 3, 3)
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)
    probe = torch.randn_like(fast)
    g_fast = torch.autograd.grad((fast * probe).sum(), [layer.S, hist])
    g_slow = torch.autograd.grad((slow * probe).sum(), [S, hist])
    for a, b in zip(g_fast, g_slow):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_routing_logits_are_fresh_per_call_and_follow_the_global_rng() -> None:
    torch.manual_seed(0)
    layer = B2IRouting(8, 8, k_max=4)
    lengths = torch.full((4,), 16)
    hist = random_history(4, 16, 8, lengths)
    assert not list(n for n, _ in layer.named_buffers())  # no stored routing logits
    assert [n for n, _ in layer.named_parameters()] == ["S"]
    torch.manual_seed(1)
    a, b = layer(hist, lengths).capsules, layer(hist, lengths).capsules
    torch.manual_seed(1)
    a2 = layer(hist, lengths).capsules
    assert torch.equal(a, a2)
    assert not torch.allclose(a, b)


def test_squash_keeps_direction_and_bounds_the_norm() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    y = squash(x)
    torch.testing.assert_close(y[0], x[0] / 5 * 25 / 26)
    assert torch.equal(y[1], torch.zeros(2))


# ---------------------------------------------------------------------------------------------
# Label-aware attention


def ordered_capsules() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Capsules along the target direction with scores −1.3, 0.9, 0.5, 0.1 (two users: K_u 4, 2)."""
    target = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    scales = torch.tensor([[-1.3, 0.9, 0.5, 0.1], [0.5, -0.2, 3.0, 2.0]])
    capsules = scales.unsqueeze(-1) * torch.tensor([1.0, 0.0, 0.0]) + torch.tensor([0.0, 0.3, 0.0])
    active = torch.tensor([[True, True, True, True], [True, True, False, False]])
    return capsules, active, target


def test_inactive_capsules_are_never_selected() -> None:
    capsules, active, target = ordered_capsules()  # user 1's inactive slots have the best scores
    for p in (0.0, 1.0, 2.0, 50.0, 100.0, float("inf")):
        _, a = label_aware_attention(capsules, active, target, p)
        assert torch.equal(a[~active], torch.zeros(int((~active).sum()))), p
        torch.testing.assert_close(a.sum(dim=1), torch.ones(2))
    _, a = label_aware_attention(capsules, active, target, 0.0)
    torch.testing.assert_close(a[1], torch.tensor([0.5, 0.5, 0.0, 0.0]))


def test_large_p_equals_hard_argmax() -> None:
    capsules, active, target = ordered_capsules()
    v_hard, a_hard = label_aware_attention(capsules, active, target, float("inf"))
    assert a_hard.argmax(dim=1).tolist() == [1, 0]
    assert torch.equal(a_hard, F.one_hot(torch.tensor([1, 0]), 4).float())
    v_100, _ = label_aware_attention(capsules, active, target, 100.0)
    assert torch.equal(v_100, v_hard)
    v_soft, a_soft = label_aware_attention(capsules, active, target, 99.0)  # soft path, gaps >= 0.4
    torch.testing.assert_close(a_soft, a_hard, atol=1e-12, rtol=0)
    torch.testing.assert_close(v_soft, v_hard, atol=1e-6, rtol=0)


def test_attention_is_monotone_in_the_score_and_p1_is_plain_softmax() -> None:
    capsules, active, target = ordered_capsules()
    scores = (capsules * target.unsqueeze(1)).sum(-1)  # (2, 4)
    _, a = label_aware_attention(capsules, active, target, 2.0)
    # user 0: scores −1.3 < 0.1 < 0.5 < 0.9 — the most negative score gets the smallest weight
    # (a raw pow(score, 2) would give it the largest)
    assert a[0].argsort().tolist() == scores[0].argsort().tolist()
    _, a1 = label_aware_attention(capsules, active, target, 1.0)
    torch.testing.assert_close(a1[0], torch.softmax(scores[0], dim=0))


# ---------------------------------------------------------------------------------------------
# Sampled softmax


def test_sampled_softmax_with_all_items_sampled_equals_the_full_softmax() -> None:
    g = torch.Generator().manual_seed(0)
    n_items, D, N = 40, 6, 7
    table = torch.randn(n_items, D, generator=g)
    user = torch.randn(N, D, generator=g)
    targets = torch.randint(2, n_items, (N,), generator=g)
    all_ids = torch.arange(2, n_items)  # every real item once: expected count 1, log 0
    got = sampled_softmax_loss(user, table[targets], targets, table[all_ids], all_ids, torch.zeros(n_items - 2))
    expected = F.cross_entropy(user @ table[2:].T, targets - 2, reduction="none")
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("sampler", ["uniform", "log_uniform"])
def test_sampled_softmax_with_duplicates_and_hits_tends_to_the_full_softmax(sampler: str) -> None:
    """With replacement (many duplicates, the target among them): logQ-corrected and hit-masked,
    the loss converges to the full softmax; without the correction it does not."""
    g = torch.Generator().manual_seed(1)
    n_items, D, N = 30, 4, 5
    table = torch.randn(n_items, D, generator=g)
    user = torch.randn(N, D, generator=g)
    targets = torch.tensor([2, 3, 10, 20, 29])
    user[0] = 3.0 * table[2]  # one row where the target dominates
    ids, log_count = sample_candidates(400_000, n_items, sampler, generator=torch.Generator().manual_seed(2))
    assert ids.unique().numel() == n_items - 2 and (ids.min(), ids.max()) == (2, n_items - 1)
    expected = F.cross_entropy(user @ table[2:].T, targets - 2, reduction="none")
    got = sampled_softmax_loss(user, table[targets], targets, table[ids], ids, log_count)
    torch.testing.assert_close(got, expected, atol=0.02, rtol=0)
    uncorrected = sampled_softmax_loss(user, table[targets], targets, table[ids], ids, torch.zeros_like(log_count))
    assert (uncorrected - expected).abs().max() > 1.0
    # Kept accidental hits count the target twice in the partition: loss + log(1 + p_target).
    unmasked = sampled_softmax_loss(user, table[targets], targets, table[ids], torch.full_like(ids, -1), log_count)
    p_target = torch.exp(-expected)
    assert p_target.max() > 0.1
    torch.testing.assert_close(unmasked - expected, torch.log1p(p_target), atol=0.02, rtol=0)


@pytest.mark.parametrize("sampler", ["uniform", "log_uniform"])
def test_sampler_frequencies_match_their_log_probabilities(sampler: str) -> None:
    n_items, n = 12, 300_000
    ids, log_count = sample_candidates(n, n_items, sampler, generator=torch.Generator().manual_seed(3))
    q = candidate_log_prob(torch.arange(2, n_items), n_items, sampler).exp()
    torch.testing.assert_close(q.sum(), torch.tensor(1.0), atol=1e-6, rtol=0)
    freq = torch.bincount(ids - 2, minlength=n_items - 2).float() / n
    torch.testing.assert_close(freq, q, atol=3e-3, rtol=0)
    torch.testing.assert_close(log_count, candidate_log_prob(ids, n_items, sampler) + math.log(n))
