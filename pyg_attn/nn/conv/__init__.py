from .gat_conv import GATConv
from .gatv2_conv import GATv2Conv
from .kqv_conv import KQVConv
from .transformer_conv import TransformerConv

__all__ = ["GATConv", "GATv2Conv", "KQVConv", "TransformerConv"]
