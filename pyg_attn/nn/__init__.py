from .conv import GATConv, GATv2Conv, KQVConv, TransformerConv

__all__ = ["GATConv", "GATv2Conv", "KQVConv", "TransformerConv"]
