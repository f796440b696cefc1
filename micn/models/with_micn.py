"""Any backbone + MICN: the joint item embedding and the one wrapper (docs/architecture.md, "MICN in brief").

    build_with_micn(backbone, n_users, n_items, n_categories, d_item, d_category, micn_cfg,
                    backbone_cfg=None, item_categories=None, generator=None) -> WithMICN
    WithMICN(backbone, micn).forward(batch) -> ModelOutput(logits, {**backbone aux, "micn": L_micn})
    WithMICN.rng_state() / .set_rng_state(state)   MICN's generator, for checkpoints
    WithMICN.user_capsules(batch, generator) / .item_table()   MICN as a retrieval model (evidence)
    WithMICN.measure_grad_norms(on) / .grad_norms()   ‖main‖, ‖L_micn‖ gradients reaching e_aux
    build_control(backbone, n_users, n_items, n_categories, d_item, d_category, micn_cfg,
                  backbone_cfg=None) -> the width-matched control (a backbone, no MICN)

The backbone is built by `build_backbone` exactly as without MICN, except that the injected
item embedding is `JointItemEmbedding`: e = e_orig ⊕ scale_grad(e_aux, φ), `out_dim` =
e_orig.out_dim + d_aux wide, so the backbone sizes itself for the wider input and uses e_aux
everywhere it embeds an item (target, history, DIEN's sampled negatives). MICN's own loss reads
its copy through scale_grad(·, 1 − φ) (`MICNAux.loss`). No backbone file knows about MICN, and a
backbone added to `BACKBONES` gains MICN with no change here.

The trainer weights the "micn" loss by λ (`MICNConfig.lambda_micn`). L_micn is computed in
training mode only: it is random (routing logits, sampled candidates) and evaluation only needs
logits, which never depend on MICN's randomness. Call `model.micn.loss(batch)` for it in eval.

The MICN module is registered twice (as `micn` here and inside the joint embedding): PyTorch
shares the parameters (`parameters()` lists each once), and `state_dict()` holds both names for
the same tensors, which `load_state_dict` accepts.
"""

from __future__ import annotations

import torch
from torch import nn

from micn.data.batch import Batch, history_mask
from micn.models import build_backbone
from micn.models.base import BackboneConfig, ModelOutput, item_embedding_width
from micn.config import MICNConfig
from micn.models.micn_aux import MICNAux
from micn.names import FIRST_REAL_ID
from micn.nn.capsule import scale_grad
from micn.nn.embedding import ItemEmbedding

AUX_NAME = "micn"  # the key of L_micn in ModelOutput.aux_losses and in the trainer's aux weights


class JointItemEmbedding(nn.Module):
    """e_orig(i, c) ⊕ scale_grad(micn.embed(i, c), φ): the backbone's view of an item."""

    def __init__(self, e_orig: nn.Module, micn: MICNAux, phi: float) -> None:
        super().__init__()
        assert 0.0 <= phi <= 1.0, f"phi must be in [0, 1], got {phi}"
        self.e_orig = e_orig
        self.micn = micn
        self.phi = phi
        self.out_dim = item_embedding_width(e_orig) + micn.d_aux

    def forward(self, items: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        e_aux = self.micn.embed(items, categories)  # (..., d_aux)
        self.micn.track_grad(e_aux, items, categories, "main")  # no-op unless measuring
        e_aux = scale_grad(e_aux, self.phi)
        return torch.cat([self.e_orig(items, categories), e_aux], dim=-1)  # (..., out_dim)


class WithMICN(nn.Module):
    """A backbone (built on a `JointItemEmbedding` of `micn`) trained beside MICN's loss."""

    def __init__(self, backbone: nn.Module, micn: MICNAux) -> None:
        super().__init__()
        self.micn = micn  # registered first, so shared parameters are named micn.* (named_parameters)
        self.backbone = backbone

    def forward(self, batch: Batch) -> ModelOutput:
        if self.training:
            self.micn.reset_grad_norms()  # grad_norms() then reports this step's backward only
        out = self.backbone(batch)
        if not self.training:
            return out
        if AUX_NAME in out.aux_losses:
            raise ValueError(f"backbone {type(self.backbone).__name__} already returns an aux loss named {AUX_NAME!r}")
        return ModelOutput(logits=out.logits, aux_losses={**out.aux_losses, AUX_NAME: self.micn.loss(batch)})

    def rng_state(self) -> torch.Tensor | None:
        """State of MICN's generator (routing logits, sampled candidates), for a checkpoint."""
        return self.micn.rng_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        """Restore `rng_state()`: a resumed run then draws exactly what an uninterrupted one would."""
        self.micn.set_rng_state(state)

    def user_capsules(
        self, batch: Batch, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K_max, d_aux) interest vectors and (B, K_max) active mask of every row, for MICN's
        retrieval evidence; routing logits from `generator`, never the training one
        (`MICNAux.user_capsules`)."""
        return self.micn.user_capsules(batch, generator)

    def item_table(self) -> torch.Tensor:
        """(n_items, d_aux) e_aux of every item index (rows 0 and 1 are padding and OOV)."""
        return self.micn.item_table()

    def measure_grad_norms(self, on: bool = True) -> None:
        """Switch the per-step measurement of the two gradients reaching e_aux on or off. Off by
        default: when on, each training step adds two tensor hooks and scatters the looked-up
        rows' gradients into two table-sized buffers (O(table + rows·d_aux) per step)."""
        self.micn.measure_grads = bool(on)
        self.micn.reset_grad_norms()

    def grad_norms(self) -> tuple[float, float] | None:
        """(main, micn): norms of the gradients that reached the e_aux table in the last backward,
        from the main loss (BCE plus the backbone's own aux losses, scaled by φ) and from λ·L_micn
        (scaled by 1 − φ); None when not measured. Their ratio is the record's `grad_ratio`."""
        return self.micn.grad_norms()


def build_with_micn(
    backbone: str,
    n_users: int,
    n_items: int,
    n_categories: int,
    d_item: int,
    d_category: int,
    micn_cfg: MICNConfig,
    backbone_cfg: BackboneConfig | None = None,
    item_categories: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> WithMICN:
    """e_orig, MICN, the joint embedding injected into `build_backbone(backbone, ...)`, wrapped.

    `item_categories` (n_items,) optionally pre-fills MICN's item → category map (see
    `item_categories_of`); `generator` (on the model's device) is the source of MICN's
    training-time randomness, torch's global RNG when None.
    """
    e_orig = ItemEmbedding(n_items, n_categories, d_item, d_category)
    micn = MICNAux(micn_cfg, n_items, n_categories, item_categories, generator, n_users=n_users)
    joint = JointItemEmbedding(e_orig, micn, micn_cfg.phi)
    return WithMICN(build_backbone(backbone, backbone_cfg, joint, n_users), micn)


class ControlItemEmbedding(nn.Module):
    """e_orig(i, c) ⊕ scale_grad(e_ctrl(i, c), φ): the control's view of an item, as wide as MICN's."""

    def __init__(self, e_orig: nn.Module, e_ctrl: ItemEmbedding, phi: float) -> None:
        super().__init__()
        assert 0.0 <= phi <= 1.0, f"phi must be in [0, 1], got {phi}"
        self.e_orig = e_orig
        self.e_ctrl = e_ctrl
        self.phi = phi
        self.out_dim = item_embedding_width(e_orig) + e_ctrl.out_dim

    def forward(self, items: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        e_ctrl = scale_grad(self.e_ctrl(items, categories), self.phi)  # (..., d_aux)
        return torch.cat([self.e_orig(items, categories), e_ctrl], dim=-1)  # (..., out_dim)


def build_control(
    backbone: str,
    n_users: int,
    n_items: int,
    n_categories: int,
    d_item: int,
    d_category: int,
    micn: MICNConfig,
    backbone_cfg: BackboneConfig | None = None,
) -> nn.Module:
    """The width-matched control: the MICN run's model without the auxiliary task.

    What it is: the backbone on e = e_orig ⊕ scale_grad(e_ctrl, φ), where e_ctrl is an embedding
    built and initialised exactly as MICN's e_aux (⌈d_aux/2⌉ item ⊕ ⌊d_aux/2⌋ category, N(0, 0.01²),
    padding rows zero), so the backbone sees items e_orig.out_dim + d_aux wide, as with MICN.
    e_ctrl is trained by the main loss only (BCE plus the backbone's own auxiliary losses), its
    gradient scaled by φ exactly as MICN's e_aux receives the main loss's gradient. No capsule
    network, no L_micn: forward returns the backbone's ModelOutput, its own aux losses only.

    Why it is the fair control: MICN changes two things at once, the auxiliary loss AND the
    backbone's input width (a second item table, wider first layers, more parameters). `base`
    differs from `micn` in both; the control differs in the auxiliary task only. With the same
    seed it starts where the MICN run starts: it builds a throw-away MICNAux from the same config
    (so the global RNG makes the same draws in the same order: e_orig, e_aux, routing map S, the
    tower if any) and keeps only its e_aux table as e_ctrl, so e_orig, e_ctrl = e_aux and every
    backbone weight are equal at initialisation to the MICN run's; same optimizer, same φ. So the
    paired lift micn − control measures what L_micn and its capsules add beyond the width.
    Under Adam (scale-invariant per parameter up to its ε) φ on a table that only one loss
    reaches changes little; it is kept so that nothing but L_micn differs.
    """
    e_orig = ItemEmbedding(n_items, n_categories, d_item, d_category)
    twin = MICNAux(micn, n_items, n_categories, n_users=n_users)  # the MICN run's draws, in its order
    e_ctrl = twin.embedding
    del twin
    joint = ControlItemEmbedding(e_orig, e_ctrl, micn.phi)
    assert joint.out_dim == item_embedding_width(e_orig) + micn.d_aux, (
        f"control width {joint.out_dim} != {item_embedding_width(e_orig)} + d_aux {micn.d_aux}")
    return build_backbone(backbone, backbone_cfg, joint, n_users)


def item_categories_of(data, n_items: int) -> torch.Tensor:
    """(n_items,) category index of every item index seen in `data` (a SampleSet: targets and
    real history positions), 0 for items it never shows."""
    table = torch.zeros(n_items, dtype=torch.long)
    real = history_mask(data.hist_len, data.hist_items.shape[1])  # (N, T)
    items = torch.cat([data.hist_items[real], data.item]).long()
    categories = torch.cat([data.hist_categories[real], data.category]).long()
    known = items >= FIRST_REAL_ID  # OOV stands for many items
    table[items[known]] = categories[known]
    return table
