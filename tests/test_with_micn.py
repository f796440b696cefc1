"""MICN joined to a backbone (micn.models.with_micn): the gradient blend on e_aux, the joint item
embedding, training and evaluation with every backbone, the width-matched control, the gradient
norms it measures, and that no backbone knows about MICN."""

from __future__ import annotations

import ast
import dataclasses
import io
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from micn.models import BACKBONES
from micn.models.micn_aux import MICNConfig
from micn.models.with_micn import AUX_NAME, JointItemEmbedding, WithMICN, build_control, item_categories_of
from tests.helpers import N_CATEGORIES, N_ITEMS, N_USERS, NAMES, REPO, build_micn, main_loss, make_batch

pytestmark = pytest.mark.usefixtures("one_thread")


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
    model = build_micn(name, phi=phi)
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
    model = build_micn(name)
    batch = make_batch(32, 10, seed=5)
    out = model(batch)
    out.aux_losses[AUX_NAME].backward()
    e_orig = model.backbone.item_embedding.e_orig
    for p in e_orig.parameters():
        assert p.grad is None or p.grad.abs().sum() == 0
    assert model.micn.embedding.item.weight.grad.abs().sum() > 0
    assert model.micn.routing.S.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# The joint embedding, training and evaluation with every backbone


def test_joint_embedding_is_injected_and_wider() -> None:
    model = build_micn("din", d_aux=10)
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
    model = build_micn(name)
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
    model = build_micn(name)
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
    clone = build_micn(name, seed=1)
    clone.load_state_dict(model.state_dict())
    clone.eval()
    with torch.no_grad():
        assert torch.equal(clone(batch).logits, out.logits)
    assert torch.equal(clone.micn.item_category, model.micn.item_category)


def test_item_categories_are_recorded_from_batches() -> None:
    model = build_micn("din")
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
    model = build_micn("mean_pool", d_aux=8)
    batch = make_batch(8, 5)
    out = model(batch)
    assert out.logits.shape == (8,) and set(out.aux_losses) == {AUX_NAME}
    assert model.backbone.out.in_features == 2 * (36 + 8)


# ---------------------------------------------------------------------------------------------
# The width-matched control


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
    control, micn = build_control_of(name, phi=phi, **tower), build_micn(name, phi=phi, **tower)
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


# ---------------------------------------------------------------------------------------------
# The two gradients' norms on e_aux


@pytest.mark.parametrize("name", NAMES)
def test_grad_norms_are_the_two_gradients_reaching_e_aux(name: str) -> None:
    """grad_norms() after one backward of L_main + λ·L_micn equals the norms of the e_aux table
    gradients of L_main alone and of λ·L_micn alone (same draws), padding row excluded."""
    lam, phi = 0.7, 0.3
    model = build_micn(name, phi=phi)
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
