"""Edge-attention kernels: reference, fused CPU, dispatch (see docs/guide/kernels.md)."""
from .attention import BACKENDS, gat_attention, gatv2_attention, graph_attention, select_backend
from .dense import attention_weights, complete_graph_edge_index
from .edge_softmax import edge_softmax
from .graph import PreparedGraph
from .graph_build import prepare

__all__ = [
    "BACKENDS", "PreparedGraph", "attention_weights",
    "complete_graph_edge_index", "edge_softmax", "gat_attention",
    "gatv2_attention", "graph_attention", "prepare", "select_backend",
]
