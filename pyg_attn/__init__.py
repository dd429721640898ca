"""pyg_attn: attention on graphs for PyTorch Geometric."""
from . import convert, functional, nn, ops
from .ops import edge_softmax, gat_attention, gatv2_attention, graph_attention, prepare

__version__ = "0.1.0"

__all__ = [
    "__version__", "convert", "edge_softmax", "functional", "gat_attention", "gatv2_attention",
    "graph_attention", "nn", "ops", "prepare",
]
