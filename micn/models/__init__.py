"""CTR backbones. `build_backbone(name, cfg, item_embedding, n_users)` is the one way to make one."""

from __future__ import annotations

from torch import nn

from micn.models.base import BackboneConfig, ModelOutput
from micn.models.dien import DIEN, DIENConfig
from micn.models.din import DIN, DINConfig
from micn.models.wide_deep import WideDeep, WideDeepConfig

# name -> (model class, its config class). A new backbone is one more line here.
BACKBONES: dict[str, tuple[type[nn.Module], type[BackboneConfig]]] = {
    "wide_deep": (WideDeep, WideDeepConfig),
    "din": (DIN, DINConfig),
    "dien": (DIEN, DIENConfig),
}


def build_backbone(name: str, cfg: BackboneConfig | None, item_embedding: nn.Module, n_users: int) -> nn.Module:
    """The backbone `name` with config `cfg` (None: that backbone's defaults) and the injected embedding."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(sorted(BACKBONES))}")
    model_cls, config_cls = BACKBONES[name]
    if cfg is None:
        cfg = config_cls()
    if not isinstance(cfg, config_cls):
        raise TypeError(f"backbone {name!r} needs a {config_cls.__name__}, got {type(cfg).__name__}")
    return model_cls(cfg, item_embedding, n_users)


__all__ = [
    "BACKBONES",
    "DIEN",
    "DIENConfig",
    "DIN",
    "DINConfig",
    "BackboneConfig",
    "ModelOutput",
    "WideDeep",
    "WideDeepConfig",
    "build_backbone",
]
