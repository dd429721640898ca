"""Analysis of attention graphs: centrality, rollout, flow, sparsification.

Functions take dense attention (``A[i, j]``: destination ``i``, source ``j``),
``(edge_index, alpha)`` pairs or :func:`~pyg_attn.nn.capture_attention`
records, or networkx graphs in message direction (docs/guide/conventions.md; see
:mod:`pyg_attn.convert`).  No layers are imported.
"""
from .centrality import (
                         DISTANCES,
                         attention_betweenness,
                         attention_distance_graph,
                         attention_pagerank,
                         attention_paid,
                         attention_received,
                         attention_shortest_path,
)
from .flow import ALL_PAIRS_MAX_NODES, attention_flow, attention_max_flow
from .rollout import attention_rollout
from .sparsify import SparseAttention, sparsify_attention

__all__ = [
    "ALL_PAIRS_MAX_NODES",
    "DISTANCES",
    "SparseAttention",
    "attention_betweenness",
    "attention_distance_graph",
    "attention_flow",
    "attention_max_flow",
    "attention_paid",
    "attention_pagerank",
    "attention_received",
    "attention_rollout",
    "attention_shortest_path",
    "sparsify_attention",
]
