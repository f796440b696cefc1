"""MICN: capsule layers, the auxiliary loss, the gradient blend, joining every backbone, interests."""

from __future__ import annotations

import ast
import dataclasses
import io
import math
import subprocess
import sys
import tokenize
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from micn.data.batch import Batch
from micn.errors import MicnError
from micn.interests import Vocab, capsule_purity, cluster_purity, format_interests, item_topics, load_model, user_interests
from micn.models import BACKBONES
from micn.models.micn_aux import MICNAux, MICNConfig
from micn.models.with_micn import (
    AUX_NAME,
    JointItemEmbedding,
    WithMICN,
    build_control,
    build_with_micn,
    item_categories_of,
)
from micn.nn import capsule
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
from tests.test_models import N_CATEGORIES, N_ITEMS, N_USERS, NAMES, make_batch, repad

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is fastest, and far faster than two on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, seed: int = 0, **micn_kwargs) -> WithMICN:
    torch.manual_seed(seed)
    return build_with_micn(name, N_USERS, N_ITEMS, N_CATEGORIES, 18, 18, MICNConfig(**micn_kwargs))


def main_loss(out, label: torch.Tensor) -> torch.Tensor:
    """BCE plus the backbone's own auxiliary losses (everything but MICN's), weight 1."""
    return F.binary_cross_entropy_with_logits(out.logits, label) + sum(
        v for k, v in out.aux_losses.items() if k != AUX_NAME
    )


def aux_table_grads(model: WithMICN) -> torch.Tensor:
    emb = model.micn.embedding
    return torch.cat([emb.item.weight.grad.flatten(), emb.category.weight.grad.flatten()])


# ---------------------------------------------------------------------------------------------
# The gradient blend


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("phi", [0.0, 0.3, 1.0])
def test_gradient_on_e_aux_is_the_phi_blend(name: str, phi: float, monkeypatch) -> None:
    """∇_{e_aux table} (L_main + λ L_micn) == (1 − φ)·∇(λ L_micn) + φ·∇L_main, where the right-hand
    terms are computed separately with autograd on the same model with gradient scaling removed.
    Routing logits and negatives are fixed by reseeding torch before each forward."""
    lam = 0.7
    model = build(name, phi=phi)
    batch = make_batch(32, 10, seed=4)

    def grads_of(which: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=False)
        torch.manual_seed(123)
        out = model(batch)
        loss = {"total": main_loss(out, batch.label) + lam * out.aux_losses[AUX_NAME],
                "main": main_loss(out, batch.label), "aux": lam * out.aux_losses[AUX_NAME]}[which]
        loss.backward()
        return aux_table_grads(model).clone(), {n: p.grad.clone() for n, p in model.named_parameters()}

    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    total, total_all = grads_of("total")
    with monkeypatch.context() as m:  # the same model without any gradient scaling
        m.setattr("micn.models.with_micn.scale_grad", lambda x, s: x)
        m.setattr("micn.models.micn_aux.scale_grad", lambda x, s: x)
        g_main, main_all = grads_of("main")
        g_aux, aux_all = grads_of("aux")

    assert g_main.abs().sum() > 0 and g_aux.abs().sum() > 0
    torch.testing.assert_close(total, (1 - phi) * g_aux + phi * g_main, atol=1e-7, rtol=1e-5)
    # Everything that is not the e_aux table gets its plain gradient: the backbone (and e_orig)
    # the main one, MICN's routing map S the λ-weighted auxiliary one.
    for n, g in total_all.items():
        if n.startswith("micn.embedding."):
            continue
        expected = main_all[n] + aux_all[n]
        torch.testing.assert_close(g, expected, atol=1e-7, rtol=1e-5, msg=f"{n}")
    torch.testing.assert_close(total_all["micn.routing.S"], aux_all["micn.routing.S"], atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_e_orig_gets_no_gradient_from_the_micn_loss(name: str) -> None:
    model = build(name)
    batch = make_batch(32, 10, seed=5)
    out = model(batch)
    out.aux_losses[AUX_NAME].backward()
    e_orig = model.backbone.item_embedding.e_orig
    for p in e_orig.parameters():
        assert p.grad is None or p.grad.abs().sum() == 0
    assert model.micn.embedding.item.weight.grad.abs().sum() > 0
    assert model.micn.routing.S.grad.abs().sum() > 0


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
    model = build("din")
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


def test_randomness_follows_torch_global_rng() -> None:
    model = build("wide_deep")
    model.train()
    batch = make_batch(32, 10, seed=8)
    torch.manual_seed(3)
    a = model(batch).aux_losses[AUX_NAME]
    torch.manual_seed(3)
    b = model(batch).aux_losses[AUX_NAME]
    c = model(batch).aux_losses[AUX_NAME]
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------------------------------------
# The MICN loss and the wrapper


def test_micn_loss_uses_positive_rows_with_a_history_only() -> None:
    model = build("din")
    model.eval()  # the loss is computed in eval too (no category recording there, which would differ)
    batch = make_batch(32, 10, seed=9, lengths=torch.randint(1, 11, (32,), generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(0)
    base = model.micn.loss(batch)
    # changing the NEGATIVE rows' histories and targets changes nothing
    neg = batch.label < 0.5
    changed = dataclasses.replace(
        batch,
        item=torch.where(neg, torch.full_like(batch.item, 5), batch.item),
        hist_items=torch.where(neg.unsqueeze(1) & (batch.hist_items > 0), torch.full_like(batch.hist_items, 6),
                               batch.hist_items),
    )
    torch.manual_seed(0)
    assert torch.equal(model.micn.loss(changed), base)
    # no positive row (or only empty histories): exactly 0, and the total loss still backpropagates
    none = dataclasses.replace(batch, label=torch.zeros(32))
    empty = dataclasses.replace(batch, hist_len=torch.zeros(32, dtype=torch.long),
                                hist_items=torch.zeros_like(batch.hist_items))
    model.train()
    for b in (none, empty):
        out = model(b)
        assert out.aux_losses[AUX_NAME].item() == 0.0
        (main_loss(out, b.label) + out.aux_losses[AUX_NAME]).backward()


def test_joint_embedding_is_injected_and_wider() -> None:
    model = build("din", d_aux=10)
    joint = model.backbone.item_embedding
    assert isinstance(joint, JointItemEmbedding) and joint.micn is model.micn
    assert joint.out_dim == 36 + 10 and model.micn.d_aux == 10
    items, cats = torch.tensor([[3, 0]]), torch.tensor([[4, 0]])
    e = joint(items, cats)
    assert e.shape == (1, 2, 46)
    torch.testing.assert_close(e[..., :36], joint.e_orig(items, cats))
    torch.testing.assert_close(e[..., 36:], model.micn.embed(items, cats))
    assert torch.equal(e[0, 1], torch.zeros(46))  # padding stays zero
    # parameters are shared, not copied: each listed once
    params = list(model.parameters())
    assert len(params) == len({id(p) for p in params})
    assert {id(p) for p in model.backbone.parameters()} == {id(p) for p in params}  # MICN sits in the joint embedding


@pytest.mark.parametrize("name", NAMES)
def test_every_backbone_trains_with_micn(name: str) -> None:
    model = build(name)
    batch = make_batch(64, 10, seed=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    first = None
    for step in range(300):
        torch.manual_seed(step)
        out = model(batch)
        assert set(out.aux_losses) == ({"dien_aux", AUX_NAME} if name == "dien" else {AUX_NAME})
        bce = F.binary_cross_entropy_with_logits(out.logits, batch.label)
        micn_loss = out.aux_losses[AUX_NAME]
        first = first or (bce.item(), micn_loss.item())
        opt.zero_grad()
        (main_loss(out, batch.label) + micn_loss).backward()
        opt.step()
        if bce.item() < 0.05 and step >= 100:
            break
    assert bce.item() < 0.1, f"{name}+MICN did not fit 64 samples: training BCE {bce.item():.3f}"
    assert micn_loss.item() < 0.5 * first[1], f"L_micn went from {first[1]:.3f} to {micn_loss.item():.3f}"


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_returns_backbone_outputs_and_round_trips(name: str) -> None:
    model = build(name)
    batch = make_batch(16, 10, seed=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        out = model(batch)
        (main_loss(out, batch.label) + out.aux_losses[AUX_NAME]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(batch)
        again = model(batch)  # logits never depend on MICN's random draws
    assert AUX_NAME not in out.aux_losses and torch.equal(out.logits, again.logits)
    clone = build(name, seed=1)
    clone.load_state_dict(model.state_dict())
    clone.eval()
    with torch.no_grad():
        assert torch.equal(clone(batch).logits, out.logits)
    assert torch.equal(clone.micn.item_category, model.micn.item_category)


def test_item_categories_are_recorded_from_batches() -> None:
    model = build("din")
    batch = make_batch(16, 10, seed=1)
    real = batch.hist_items > 0
    category_of = lambda items: items % 7 + 2  # noqa: E731 — one category per item, as in real data
    batch = dataclasses.replace(batch, category=category_of(batch.item),
                                hist_categories=torch.where(real, category_of(batch.hist_items), 0))
    assert model.micn.item_category.abs().sum() == 0
    model.eval()
    model(batch)
    assert model.micn.item_category.abs().sum() == 0  # eval: nothing recorded
    model.train()
    model(batch)
    table = model.micn.item_category
    seen = torch.cat([batch.item, batch.hist_items[real]])
    assert torch.equal(table[seen], category_of(seen))
    unseen = torch.ones(N_ITEMS, dtype=torch.bool)
    unseen[seen] = False
    assert torch.equal(table[unseen], torch.zeros(int(unseen.sum()), dtype=torch.long))

    class Split:  # the SampleSet fields item_categories_of reads (int32, like the epoch tensors)
        item, category, hist_len = batch.item.int(), batch.category.int(), batch.hist_len.int()
        hist_items, hist_categories = batch.hist_items.int(), batch.hist_categories.int()

    assert torch.equal(item_categories_of(Split, N_ITEMS), table)


def test_config_defaults_follow_the_paper() -> None:
    """λ 1, φ 0.3, 3 routing iterations, d_aux 36; k_max leaves K = ⌊log2 |I_u|⌋ uncut at the paper's
    longest history (Table 4's 50: 5 interests); MIND's ReLU layer after the capsules."""
    cfg = MICNConfig()
    assert (cfg.lambda_micn, cfg.phi, cfg.iterations, cfg.d_aux) == (1.0, 0.3, 3, 36)
    assert cfg.k_max >= interest_count_cap(50) == 5
    lengths = torch.tensor([1, 2, 3, 4, 10, 20, 31, 32, 50])
    assert adaptive_interest_count(lengths, cfg.k_max).tolist() == [1, 1, 1, 2, 3, 4, 4, 5, 5]
    assert cfg.post_layers == (64,) and not cfg.user_profile


@pytest.mark.parametrize(
    "key, value",
    [("phi", -0.1), ("phi", 1.5), ("lambda_micn", -1.0), ("k_max", 0), ("iterations", 0), ("n_neg", 0),
     ("d_aux", 0), ("d_aux", 1), ("sampler", "zipf"), ("pow_p", -1.0), ("routing_std", -0.5)],
)
def test_config_rejects_bad_values_naming_the_key(key: str, value) -> None:
    with pytest.raises(ValueError, match=rf"MICNConfig\n{key}\n"):  # pydantic's ValidationError names the field
        MICNConfig(**{key: value})


# ---------------------------------------------------------------------------------------------
# Model-agnostic: no backbone knows about MICN

BACKBONE_FILES = ["wide_deep.py", "din.py", "dien.py", "base.py"]
MICN_MODULES = ["micn.models.micn_aux", "micn.models.with_micn", "micn.nn.capsule", "micn.interests"]


def _mentions(path: Path) -> list[str]:
    """Every mention of MICN in a module's code: imports, names, attributes, strings and comments.
    Docstrings are exempt (they cite the MICN paper as the source of the baselines); the package
    root `micn.` in an import is the project's name, not the method."""
    source = path.read_text()
    tree = ast.parse(source)
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    found = []

    def check(text: str, where: str) -> None:
        if "micn" in text.lower():
            found.append(f"{path.name}: {where} {text!r}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check(alias.name.removeprefix("micn."), "import")
        elif isinstance(node, ast.ImportFrom):
            check((node.module or "").removeprefix("micn."), "import from")
            for alias in node.names:
                check(alias.name, "imported name")
        elif isinstance(node, ast.Name):
            check(node.id, "name")
        elif isinstance(node, ast.Attribute):
            check(node.attr, "attribute")
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            check(node.name, "definition")
        elif isinstance(node, ast.arg):
            check(node.arg, "argument")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            check(node.value, "string")
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            check(tok.string, "comment")
    return found


def test_no_backbone_module_imports_or_mentions_micn() -> None:
    paths = [REPO / "micn" / "models" / f for f in BACKBONE_FILES]
    assert all(p.is_file() for p in paths)
    found = [m for p in paths for m in _mentions(p)]
    assert not found, "backbone code must not know about MICN:\n" + "\n".join(found)
    # the checker itself catches a mention
    probe = REPO / "micn" / "models" / "with_micn.py"
    assert _mentions(probe)
    # importing every backbone (a fresh interpreter) loads none of MICN's modules
    code = ("import sys; import micn.models, micn.models.wide_deep, micn.models.din, micn.models.dien, "
            "micn.models.base; print(sorted(m for m in sys.modules if m in %r))" % MICN_MODULES)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_a_new_backbone_gains_micn_without_micn_changes(monkeypatch) -> None:
    from torch import nn

    from micn.models.base import BackboneConfig, ModelOutput, item_embedding_width

    class MeanPool(nn.Module):
        def __init__(self, cfg, item_embedding, n_users):
            super().__init__()
            self.item_embedding = item_embedding
            self.out = nn.Linear(2 * item_embedding_width(item_embedding), 1)

        def forward(self, batch):
            e = self.item_embedding(torch.cat([batch.item.unsqueeze(1), batch.hist_items], 1),
                                    torch.cat([batch.category.unsqueeze(1), batch.hist_categories], 1))
            return ModelOutput(self.out(torch.cat([e[:, 0], e[:, 1:].sum(1)], -1)).squeeze(-1), {})

    monkeypatch.setitem(BACKBONES, "mean_pool", (MeanPool, BackboneConfig))
    model = build("mean_pool", d_aux=8)
    batch = make_batch(8, 5)
    out = model(batch)
    assert out.logits.shape == (8,) and set(out.aux_losses) == {AUX_NAME}
    assert model.backbone.out.in_features == 2 * (36 + 8)


# ---------------------------------------------------------------------------------------------
# Interests


def test_cluster_purity() -> None:
    topics = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_purity(np.array([0, 0, 1, 1, 2, 2]), topics) == 1.0
    assert cluster_purity(np.zeros(6, dtype=int), topics) == pytest.approx(2 / 6)
    assert cluster_purity(np.array([0, 1, 0, 1, 0, 1]), topics) == pytest.approx(2 / 6)
    assert cluster_purity(np.array([0, 0, 1, 1, 1, 1]), topics) == pytest.approx(4 / 6)


def planted_batch(B: int = 40, T: int = 16, seed: int = 0) -> tuple[Batch, np.ndarray]:
    """Users whose histories mix two topics; item topic = item index mod 2 (items 2..N_ITEMS−1)."""
    g = torch.Generator().manual_seed(seed)
    hist = torch.randint(2, N_ITEMS, (B, T), generator=g)
    topics = np.full(N_ITEMS, -1)
    topics[2:] = np.arange(2, N_ITEMS) % 2
    batch = Batch(user=torch.randint(2, N_USERS, (B,), generator=g), item=torch.randint(2, N_ITEMS, (B,), generator=g),
                  category=torch.randint(2, N_CATEGORIES, (B,), generator=g), hist_items=hist,
                  hist_categories=hist % 2 + 2, hist_neg_items=hist, hist_neg_categories=hist % 2 + 2,
                  hist_len=torch.full((B,), T), label=torch.ones(B))
    return batch, topics


def test_user_interests_and_purity_on_planted_topics() -> None:
    model = build("din", k_max=2)
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
    from micn.data.dataset import SampleSet, load_feature_map

    fmap = load_feature_map(tiny_samples)
    vocab = Vocab.load(tiny_samples)
    assert len(vocab.item_ids) == fmap["n_items"] and len(vocab.categories) == fmap["n_categories"]
    assert tuple(vocab.item_ids[:2]) == ("<pad>", "<oov>")
    topics = item_topics(tiny_samples, tiny_world)
    assert topics.shape == (fmap["n_items"],) and (topics[:2] == -1).all() and (topics[2:] >= 0).all()
    model = build_with_micn("din", fmap["n_users"], fmap["n_items"], fmap["n_categories"], 18, 18,
                            MICNConfig())
    torch.save({"model": model.state_dict(), "backbone": "din", "config": {"d_item": 18, "d_category": 18},
                "micn": dataclasses.asdict(model.micn.cfg), "feature_map": fmap}, tmp_path / "model.pt")
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
    from tests.test_train import add_oracle_inputs

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
    monkeypatch.chdir(tmp_path)  # the old lookup only worked from the repository root
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
    from micn.data.dataset import load_feature_map
    from micn.interests import describe_user

    fmap = load_feature_map(tiny_samples)
    torch.save({"model": {}, "backbone": "din", "variant": "base", "config": {"d_item": 18, "d_category": 18},
                "micn": None, "feature_map": fmap}, tmp_path / "model.pt")  # what a base run's model.pt holds
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


def test_rng_state_round_trip_repeats_micns_random_draws() -> None:
    """The trainer checkpoints MICN's generator through WithMICN.rng_state / set_rng_state."""
    torch.manual_seed(0)
    model = build_with_micn("din", N_USERS, N_ITEMS, N_CATEGORIES, 18, 18, MICNConfig(n_neg=30),
                            generator=torch.Generator().manual_seed(5)).train()
    batch = make_batch(32, 10, seed=4)
    state = model.rng_state()
    first = model.micn.loss(batch)
    assert not torch.equal(model.rng_state(), state)  # the loss drew from the run's generator
    model.set_rng_state(state)
    assert torch.equal(model.micn.loss(batch), first)
    unseeded = build("din")
    assert unseeded.rng_state() is None
    with pytest.raises(ValueError, match="no generator given at construction"):
        unseeded.set_rng_state(state)


# ---------------------------------------------------------------------------------------------
# Issue 11: the width-matched control, today's form kept exactly, the paper's tower, evidence APIs

PREVIOUS_RELEASE = "78c8957"  # the commit whose MICN every earlier run trained (issues 10 and 13)

# Builds every backbone with MICN (default config, the trainer's own-generator set-up), runs three
# Adam steps and one evaluation and saves every number: run once against the previous release's
# code and once against this tree, the two files must be equal to the last bit.
OUTPUTS_SCRIPT = """
import sys, torch
from torch.nn import functional as F
from micn.config import MICNConfig
from micn.data.batch import random_batch
from micn.models.with_micn import build_with_micn
torch.set_num_threads(1)
out = {}
for name in ("wide_deep", "din", "dien"):
    torch.manual_seed(3)
    # the capsule-only ablation (the earlier default form), spelled so both trees accept it
    fields = MICNConfig.__dataclass_fields__
    ablation = {k: v for k, v in dict(n_neg=40, k_max=4, post_layers=(), user_profile=False).items() if k in fields}
    model = build_with_micn(name, 80, 500, 30, 18, 18, MICNConfig(**ablation),
                            generator=torch.Generator().manual_seed(11))
    batch = random_batch(64, 12, 80, 500, 30, torch.Generator().manual_seed(5), alternating_labels=True)
    out[name + "/keys"] = list(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(3):
        res = model(batch)
        loss = F.binary_cross_entropy_with_logits(res.logits, batch.label) + sum(res.aux_losses.values())
        out[f"{name}/{step}/logits"] = res.logits.detach().clone()
        for k, v in res.aux_losses.items():
            out[f"{name}/{step}/{k}"] = v.detach().clone()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out[name + "/eval"] = model(batch).logits
    out[name + "/rng"] = model.rng_state()
torch.save(out, sys.argv[1])
"""


def _outputs_of(code_root: Path, tmp_path: Path, tag: str) -> dict:
    script, result = tmp_path / "outputs.py", tmp_path / f"{tag}.pt"
    script.write_text(OUTPUTS_SCRIPT)
    env = {"PYTHONPATH": str(code_root), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(result)], check=True, cwd=code_root, env=env, timeout=300)
    return torch.load(result, weights_only=True)


def test_defaults_reproduce_the_previous_release_exactly(tmp_path: Path) -> None:
    """The ablation flag `post_layers: []` (no profile, k_max 4) is the earlier form: the previous release's code
    and this tree give the same module tree, logits, L_micn, DIEN aux loss and generator state,
    step by step, bit for bit (so the earlier 18 runs keep their numbers)."""
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", PREVIOUS_RELEASE, "micn"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"no git history with {PREVIOUS_RELEASE} here: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    before, now = _outputs_of(old, tmp_path, "old"), _outputs_of(REPO, tmp_path, "new")
    assert before.keys() == now.keys()
    for key in before:
        if key.endswith("/keys"):
            assert before[key] == now[key], key
        else:
            assert torch.equal(before[key], now[key]), key


def build_control_of(name: str, seed: int = 0, **micn_kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_control(name, N_USERS, N_ITEMS, N_CATEGORIES, 18, 18, MICNConfig(**micn_kwargs))


def _micn_name(control_name: str) -> str:
    """The MICN model's name of a control parameter: e_ctrl is MICN's e_aux, the rest is the backbone."""
    if control_name.startswith("item_embedding.e_ctrl."):
        return "micn.embedding." + control_name.removeprefix("item_embedding.e_ctrl.")
    return "backbone." + control_name


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tower", [{}, {"user_profile": True, "post_layers": (16,)}])
def test_control_is_the_micn_model_without_the_auxiliary_task(name: str, tower: dict) -> None:
    """Same joined width; at the same seed the same parameters (e_orig, e_ctrl = e_aux, the whole
    backbone) with the same values; the same logits; no L_micn; and e_ctrl's gradient is exactly
    the φ-scaled main-loss gradient MICN's e_aux gets, with nothing from L_micn."""
    phi = 0.3
    control, micn = build_control_of(name, phi=phi, **tower), build(name, phi=phi, **tower)
    assert control.item_embedding.out_dim == 18 + 18 + MICNConfig().d_aux == 72
    assert control.item_embedding.out_dim == micn.backbone.item_embedding.out_dim
    micn_params = dict(micn.named_parameters())
    control_params = dict(control.named_parameters())
    assert {_micn_name(n) for n in control_params} == {n for n in micn_params if not n.startswith("micn.")
                                                       or n.startswith("micn.embedding.")}
    for n, p in control_params.items():
        assert torch.equal(p, micn_params[_micn_name(n)]), n
    assert not any("routing" in n or "tower" in n or "profile" in n for n in control_params)

    batch = make_batch(32, 10, seed=6)
    out_c, out_m = control(batch), micn(batch)
    assert AUX_NAME not in out_c.aux_losses and set(out_c.aux_losses) == set(out_m.aux_losses) - {AUX_NAME}
    torch.testing.assert_close(out_c.logits, out_m.logits, rtol=0, atol=0)
    main_loss(out_c, batch.label).backward()
    main_loss(out_m, batch.label).backward(retain_graph=True)  # e_aux from the main loss only
    main_grads = aux_table_grads(micn).clone()
    ctrl = control.item_embedding.e_ctrl
    ctrl_grads = torch.cat([ctrl.item.weight.grad.flatten(), ctrl.category.weight.grad.flatten()])
    assert ctrl_grads.abs().sum() > 0
    torch.testing.assert_close(ctrl_grads, main_grads, rtol=1e-6, atol=1e-9)
    out_m.aux_losses[AUX_NAME].backward()  # MICN's e_aux then also gets L_micn's share; e_ctrl cannot
    assert not torch.allclose(aux_table_grads(micn), main_grads)


def test_control_scales_the_main_gradient_by_phi() -> None:
    """e_ctrl's gradient is φ times the gradient of the same model with φ = 1."""
    batch = make_batch(32, 10, seed=7)
    grads = {}
    for phi in (1.0, 0.3):
        control = build_control_of("din", phi=phi)
        main_loss(control(batch), batch.label).backward()
        grads[phi] = control.item_embedding.e_ctrl.item.weight.grad
    torch.testing.assert_close(grads[0.3], 0.3 * grads[1.0], rtol=1e-5, atol=1e-10)


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


TOWER = {"user_profile": True, "post_layers": (32, 24), "k_max": 4}


def test_paper_tower_shapes_masking_and_profile() -> None:
    model = build("din", **TOWER)
    micn = model.micn
    assert [type(m).__name__ for m in micn.tower] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert (micn.tower[0].in_features, micn.tower[-1].out_features) == (36 + 18, 36)
    assert micn.profile.weight.shape == (N_USERS, 18)
    lengths = torch.tensor([0, 1, 2, 3, 4, 7, 8, 15, 16, 10, 5, 9])
    batch = make_batch(12, 16, seed=2, lengths=lengths)
    vectors, active = model.user_capsules(batch)
    assert vectors.shape == (12, 4, 36) and active.shape == (12, 4)
    assert torch.equal(active.sum(1), adaptive_interest_count(lengths, 4))
    assert torch.all(vectors[~active] == 0) and torch.all(vectors[active].norm(dim=-1) > 0)
    # the tower is not bounded by squash: a user vector may be longer than 1
    scaled = build("din", **TOWER)
    with torch.no_grad():
        scaled.micn.tower[-1].weight.mul_(100)
    assert scaled.user_capsules(batch)[0].norm(dim=-1).max() > 1
    # the profile is the user's row: another user, other vectors; same user, same vectors
    other = dataclasses.replace(batch, user=(batch.user + 1) % (N_USERS - 2) + 2)
    assert not torch.allclose(model.user_capsules(other)[0][active], vectors[active])
    torch.testing.assert_close(model.user_capsules(batch)[0], vectors, rtol=0, atol=0)
    # without the profile, the user id plays no part
    layers_only = build("din", post_layers=(32,))
    assert layers_only.micn.profile is None
    torch.testing.assert_close(layers_only.user_capsules(other)[0], layers_only.user_capsules(batch)[0], rtol=0, atol=0)


def test_paper_tower_changes_the_micn_loss_and_learns() -> None:
    """Same seed, same draws: the tower changes L_micn, and L_micn's gradient reaches the profile
    rows of the positive users and every tower layer."""
    batch = make_batch(32, 10, seed=4)
    losses = {}
    for key, kwargs in {"today": {}, "paper": TOWER}.items():
        torch.manual_seed(0)
        model = build_with_micn("din", N_USERS, N_ITEMS, N_CATEGORIES, 18, 18, MICNConfig(**kwargs),
                                generator=torch.Generator().manual_seed(1))
        losses[key] = model(batch).aux_losses[AUX_NAME]
        losses[key].backward()
    assert not torch.allclose(losses["today"], losses["paper"])
    micn = model.micn
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in micn.tower.parameters())
    rows = (batch.label > 0.5) & (batch.hist_len > 0)
    used = torch.zeros(N_USERS, dtype=torch.bool)
    used[batch.user[rows]] = True
    assert torch.all(micn.profile.weight.grad[used].abs().sum(1) > 0)
    assert torch.all(micn.profile.weight.grad[~used] == 0)


def test_ablation_flag_keeps_the_capsule_only_module_tree() -> None:
    assert build("din").micn.tower is not None  # the default has MIND's layer after the capsules
    today = build("din", post_layers=())  # the ablation: the earlier capsule-only form
    assert today.micn.tower is None and today.micn.profile is None
    assert not any("tower" in k or "profile" in k for k in today.state_dict())
    batch = make_batch(16, 10, seed=3)
    routing = today.micn.interests(batch, torch.Generator().manual_seed(2))
    vectors, active = today.user_capsules(batch, torch.Generator().manual_seed(2))
    assert torch.equal(vectors, routing.capsules) and torch.equal(active, routing.active)  # the capsules themselves


def test_user_capsules_never_touch_the_training_generator() -> None:
    train_gen = torch.Generator().manual_seed(5)
    torch.manual_seed(0)
    model = build_with_micn("din", N_USERS, N_ITEMS, N_CATEGORIES, 18, 18, MICNConfig(**TOWER), generator=train_gen)
    batch = make_batch(32, 10, seed=4)
    state, global_state = model.rng_state().clone(), torch.get_rng_state()
    first = model.user_capsules(batch, torch.Generator().manual_seed(9))
    default = model.user_capsules(batch)  # a fresh seed-0 generator
    assert torch.equal(model.rng_state(), state) and torch.equal(torch.get_rng_state(), global_state)
    again = model.user_capsules(batch, torch.Generator().manual_seed(9))
    assert torch.equal(first[0], again[0]) and torch.equal(default[0], model.user_capsules(batch)[0])
    assert not first[0].requires_grad
    with pytest.raises(ValueError, match="not MICN's training generator"):
        model.user_capsules(batch, train_gen)
    # so a training step after an evaluation draws exactly what it would have drawn without it
    model.train()
    loss_after_eval = model.micn.loss(batch)
    model.set_rng_state(state)
    assert torch.equal(model.micn.loss(batch), loss_after_eval)


def test_item_table_is_e_aux_of_every_item_with_its_category() -> None:
    categories = torch.randint(2, N_CATEGORIES, (N_ITEMS,), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = build_with_micn("din", N_USERS, N_ITEMS, N_CATEGORIES, 18, 18, MICNConfig(), item_categories=categories)
    table = model.item_table()
    assert table.shape == (N_ITEMS, 36) and not table.requires_grad
    emb = model.micn.embedding
    expected = torch.cat([emb.item.weight, emb.category.weight[categories]], dim=1)  # item half ⊕ its category's half
    torch.testing.assert_close(table[1:], expected[1:], rtol=0, atol=0)
    assert torch.all(table[0, :18] == 0)  # padding item


@pytest.mark.parametrize("name", NAMES)
def test_grad_norms_are_the_two_gradients_reaching_e_aux(name: str) -> None:
    """grad_norms() after one backward of L_main + λ·L_micn equals the norms of the e_aux table
    gradients of L_main alone and of λ·L_micn alone (same draws), padding row excluded."""
    lam, phi = 0.7, 0.3
    model = build(name, phi=phi)
    batch = make_batch(32, 10, seed=4)

    def table_grad_of(which: str) -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(123)
        out = model(batch)
        loss = {"main": main_loss(out, batch.label), "micn": lam * out.aux_losses[AUX_NAME],
                "total": main_loss(out, batch.label) + lam * out.aux_losses[AUX_NAME]}[which]
        loss.backward()
        emb = model.micn.embedding
        return torch.cat([emb.item.weight.grad[1:].flatten(), emb.category.weight.grad[1:].flatten()])

    table_grad_of("total")
    assert model.grad_norms() is None  # off by default: nothing measured
    g_main, g_micn = table_grad_of("main"), table_grad_of("micn")
    model.measure_grad_norms(True)
    total = table_grad_of("total")
    main, micn = model.grad_norms()
    measured = torch.tensor([main, micn], dtype=torch.float64)
    torch.testing.assert_close(measured, torch.stack([g_main.norm(), g_micn.norm()]).double(), rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(total, g_main + g_micn, rtol=1e-5, atol=1e-9)
    model(batch)  # a new training forward forgets the last step's measurement
    assert model.grad_norms() is None
    model.measure_grad_norms(False)
    table_grad_of("total")
    assert model.grad_norms() is None
