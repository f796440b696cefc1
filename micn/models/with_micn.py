"""Any backbone + MICN: the joint item embedding and the one wrapper (DESIGN §5).

    build_with_micn(backbone, n_users, n_items, n_categories, d_item, d_category, micn_cfg,
                    backbone_cfg=None, item_categories=None, generator=None) -> WithMICN
    WithMICN(backbone, micn).forward(batch) -> ModelOutput(logits, {**backbone aux, "micn": L_micn})
    WithMICN.rng_state() / .set_rng_state(state)   MICN's generator, for checkpoints

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

from micn.data.batch import Batch
from micn.models import build_backbone
from micn.models.base import BackboneConfig, ModelOutput, item_embedding_width
from micn.models.micn_aux import MICNAux, MICNConfig
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
        e_aux = scale_grad(self.micn.embed(items, categories), self.phi)  # (..., d_aux)
        return torch.cat([self.e_orig(items, categories), e_aux], dim=-1)  # (..., out_dim)


class WithMICN(nn.Module):
    """A backbone (built on a `JointItemEmbedding` of `micn`) trained beside MICN's loss."""

    def __init__(self, backbone: nn.Module, micn: MICNAux) -> None:
        super().__init__()
        self.micn = micn  # registered first, so shared parameters are named micn.* (named_parameters)
        self.backbone = backbone

    def forward(self, batch: Batch) -> ModelOutput:
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
    micn = MICNAux(micn_cfg, n_items, n_categories, item_categories, generator)
    joint = JointItemEmbedding(e_orig, micn, micn_cfg.phi)
    return WithMICN(build_backbone(backbone, backbone_cfg, joint, n_users), micn)


def item_categories_of(data, n_items: int) -> torch.Tensor:
    """(n_items,) category index of every item index seen in `data` (a SampleSet: targets and
    real history positions), 0 for items it never shows."""
    table = torch.zeros(n_items, dtype=torch.long)
    T = data.hist_items.shape[1]
    real = torch.arange(T).unsqueeze(0) >= (T - data.hist_len.long()).unsqueeze(1)  # (N, T)
    items = torch.cat([data.hist_items[real], data.item]).long()
    categories = torch.cat([data.hist_categories[real], data.category]).long()
    known = items >= 2  # OOV (1) stands for many items
    table[items[known]] = categories[known]
    return table
