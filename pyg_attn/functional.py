"""Stateless attention functions (re-exported from :mod:`pyg_attn.ops`)."""
from .ops import (
                  attention_weights,
                  complete_graph_edge_index,
                  edge_softmax,
                  gat_attention,
                  gatv2_attention,
                  graph_attention,
                  prepare,
)

__all__ = ["attention_weights", "complete_graph_edge_index", "edge_softmax", "gat_attention",
           "gatv2_attention", "graph_attention", "prepare"]
