"""MICN's auxiliary module (micn.models.micn_aux): its loss and random draws, its configuration, the
paper's tower after the capsules, the user capsules and the item table it exposes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from micn.models.micn_aux import MICNConfig
from micn.models.with_micn import AUX_NAME, build_with_micn
from micn.nn.capsule import adaptive_interest_count, interest_count_cap
from tests.helpers import N_CATEGORIES, N_ITEMS, N_USERS, build_micn, main_loss, make_batch

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# The loss and its random draws


def test_randomness_follows_torch_global_rng() -> None:
    model = build_micn("wide_deep")
    model.train()
    batch = make_batch(32, 10, seed=8)
    torch.manual_seed(3)
    a = model(batch).aux_losses[AUX_NAME]
    torch.manual_seed(3)
    b = model(batch).aux_losses[AUX_NAME]
    c = model(batch).aux_losses[AUX_NAME]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_micn_loss_uses_positive_rows_with_a_history_only() -> None:
    model = build_micn("din")
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


# ---------------------------------------------------------------------------------------------
# Configuration


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
# The training generator's state


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
    unseeded = build_micn("din")
    assert unseeded.rng_state() is None
    with pytest.raises(ValueError, match="no generator given at construction"):
        unseeded.set_rng_state(state)


# ---------------------------------------------------------------------------------------------
# The paper's tower after the capsules, the user capsules, the item table


TOWER = {"user_profile": True, "post_layers": (32, 24), "k_max": 4}


def test_paper_tower_shapes_masking_and_profile() -> None:
    model = build_micn("din", **TOWER)
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
    scaled = build_micn("din", **TOWER)
    with torch.no_grad():
        scaled.micn.tower[-1].weight.mul_(100)
    assert scaled.user_capsules(batch)[0].norm(dim=-1).max() > 1
    # the profile is the user's row: another user, other vectors; same user, same vectors
    other = dataclasses.replace(batch, user=(batch.user + 1) % (N_USERS - 2) + 2)
    assert not torch.allclose(model.user_capsules(other)[0][active], vectors[active])
    torch.testing.assert_close(model.user_capsules(batch)[0], vectors, rtol=0, atol=0)
    # without the profile, the user id plays no part
    layers_only = build_micn("din", post_layers=(32,))
    assert layers_only.micn.profile is None
    torch.testing.assert_close(layers_only.user_capsules(other)[0], layers_only.user_capsules(batch)[0], rtol=0, atol=0)


def test_paper_tower_changes_the_micn_loss_and_learns() -> None:
    """Same seed, same draws: the tower changes L_micn, and L_micn's gradient reaches the profile
    rows of the positive users and every tower layer."""
    batch = make_batch(32, 10, seed=4)
    losses = {}
    for key, kwargs in {"default": {}, "paper": TOWER}.items():
        torch.manual_seed(0)
        model = build_with_micn("din", N_USERS, N_ITEMS, N_CATEGORIES, 18, 18, MICNConfig(**kwargs),
                                generator=torch.Generator().manual_seed(1))
        losses[key] = model(batch).aux_losses[AUX_NAME]
        losses[key].backward()
    assert not torch.allclose(losses["default"], losses["paper"])
    micn = model.micn
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in micn.tower.parameters())
    rows = (batch.label > 0.5) & (batch.hist_len > 0)
    used = torch.zeros(N_USERS, dtype=torch.bool)
    used[batch.user[rows]] = True
    assert torch.all(micn.profile.weight.grad[used].abs().sum(1) > 0)
    assert torch.all(micn.profile.weight.grad[~used] == 0)


def test_ablation_flag_keeps_the_capsule_only_module_tree() -> None:
    assert build_micn("din").micn.tower is not None  # the default has MIND's layer after the capsules
    capsule_only = build_micn("din", post_layers=())  # the ablation: the capsules, nothing after them
    assert capsule_only.micn.tower is None and capsule_only.micn.profile is None
    assert not any("tower" in k or "profile" in k for k in capsule_only.state_dict())
    batch = make_batch(16, 10, seed=3)
    routing = capsule_only.micn.interests(batch, torch.Generator().manual_seed(2))
    vectors, active = capsule_only.user_capsules(batch, torch.Generator().manual_seed(2))
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
