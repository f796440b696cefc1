"""Generic layers shared by the backbones (and by MICN)."""

from micn.nn.attention import TargetAttention, masked_softmax
from micn.nn.augru import AUGRU, AUGRUCell
from micn.nn.embedding import ItemEmbedding
from micn.nn.mlp import MLP, Dice, PReLU, make_activation

__all__ = [
    "AUGRU",
    "AUGRUCell",
    "Dice",
    "ItemEmbedding",
    "MLP",
    "PReLU",
    "TargetAttention",
    "make_activation",
    "masked_softmax",
]
