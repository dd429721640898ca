"""Attention between tensors and networkx graphs.

Conventions (docs/guide/conventions.md), the same in every function here:

* **Dense attention** ``A`` is ``[N, N]`` (or ``[H, N, N]`` for ``H`` heads) with
  ``A[i, j]`` the weight with which query/destination ``i`` attends to key/source
  ``j``; rows sum to 1 (0 for a node without incoming edges).  This is the
  *transpose* of PyG's :func:`~torch_geometric.utils.to_dense_adj`
  (``adj[src, dst]``); :func:`from_pyg_dense_adj` converts and says so.
* **Edge attention** is ``(edge_index, alpha)``: ``edge_index[0]`` = source ``j``,
  ``edge_index[1]`` = destination ``i``, ``alpha`` ``[E]`` or ``[E, H]``.
* **networkx graphs** follow message direction, like PyG's
  :func:`~torch_geometric.utils.to_networkx`: an edge ``j -> i`` carries
  ``weight = a_ij``.  With a head dimension, every head ``h`` is a scalar
  attribute ``weight_h{h}`` and ``weight`` is their mean.

Attention records of :func:`pyg_attn.nn.capture_attention` are accepted wherever
``(edge_index, alpha)`` is (anything with ``edge_index`` and ``alpha``
attributes); this package imports no layers.

Modules: :mod:`~pyg_attn.convert.checks` (input checks),
:mod:`~pyg_attn.convert.dense` (dense <-> edges),
:mod:`~pyg_attn.convert.networkx` (networkx graphs),
:mod:`~pyg_attn.convert.hetero` (records of heterogeneous models on the typed graph)
and :mod:`~pyg_attn.convert.tokens` (transformer attention over tokens as records);
their public functions are re-exported here.
"""
from .checks import (ROW_SUM_TOL, as_dense_attention, as_edge_attention, as_float_tensor,
                     check_row_sums, unpack_attention)
from .dense import dense_to_edge_index, edge_index_to_dense, from_pyg_dense_adj
from .hetero import HeteroAttention, TypedRecord, hetero_attention, hetero_to_networkx
from .networkx import (as_attention_graph, attention_to_networkx, dense_to_digraph,
                       digraph_to_dense, from_networkx, to_networkx)
from .records import AttentionRecord
from .tokens import TokenAttention, token_attention, token_stack

__all__ = [
    "ROW_SUM_TOL",
    "AttentionRecord",
    "HeteroAttention",
    "TokenAttention",
    "TypedRecord",
    "as_attention_graph",
    "as_dense_attention",
    "as_edge_attention",
    "as_float_tensor",
    "attention_to_networkx",
    "check_row_sums",
    "dense_to_digraph",
    "dense_to_edge_index",
    "digraph_to_dense",
    "edge_index_to_dense",
    "from_networkx",
    "from_pyg_dense_adj",
    "hetero_attention",
    "hetero_to_networkx",
    "to_networkx",
    "token_attention",
    "token_stack",
    "unpack_attention",
]
