from .conv import KQVConv

__all__ = ["KQVConv"]
