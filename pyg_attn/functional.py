"""Stateless attention functions (re-exported from :mod:`pyg_attn.ops`)."""
from .ops import edge_softmax, gat_attention, gatv2_attention, graph_attention, prepare

__all__ = ["edge_softmax", "gat_attention", "gatv2_attention", "graph_attention", "prepare"]
