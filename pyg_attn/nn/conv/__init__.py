from .kqv_conv import KQVConv
from .transformer_conv import TransformerConv

__all__ = ["KQVConv", "TransformerConv"]
