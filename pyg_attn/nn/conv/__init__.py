from .kqv_conv import KQVConv

__all__ = ["KQVConv"]
