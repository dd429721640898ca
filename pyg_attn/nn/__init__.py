from .conv import KQVConv, TransformerConv

__all__ = ["KQVConv", "TransformerConv"]
