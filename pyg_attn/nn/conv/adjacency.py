"""Turns the adjacency inputs PyG layers accept into an ``edge_index`` and back.

Sparse adjacency matrices are transposed as in PyG: ``adj[i, j] != 0`` (row =
destination ``i``, column = source ``j``) is the edge ``j -> i``.  Edges of a
sparse input are taken in its stored (coalesced) order.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.typing import SparseTensor
from torch_geometric.utils import (
    is_torch_sparse_tensor,
    to_torch_coo_tensor,
    to_torch_csc_tensor,
    to_torch_csr_tensor,
)
from torch_geometric.utils.sparse import set_sparse_value, to_edge_index

from ...ops import PreparedGraph, prepare

_SPARSE_BUILDERS = {torch.sparse_coo: to_torch_coo_tensor, torch.sparse_csr: to_torch_csr_tensor,
                    torch.sparse_csc: to_torch_csc_tensor}
"""``torch.sparse`` tensor of a layout from ``(index [2, E], values, size)``."""


def adjacency_to_edge_index(adj: Any, num_src: int, num_dst: int
                            ) -> tuple[Tensor | PreparedGraph, int, int]:
    """Returns ``(edge_index, num_src, num_dst)`` for any supported input.

    ``edge_index`` tensors and prepared graphs pass through unchanged (a prepared
    graph brings its own sizes); sparse inputs become ``[2, E]`` and give theirs.

    Parameters
    ----------
    adj : Tensor, SparseTensor or PreparedGraph
        ``[2, E]`` edge index, ``SparseTensor`` / ``torch.sparse``
        ``[N_dst, N_src]`` adjacency, or a prepared graph.
    num_src, num_dst : int
        Node counts to use for an ``edge_index`` tensor.

    Returns
    -------
    edge_index : Tensor or PreparedGraph
        ``[2, E]`` (row 0 = source) or the prepared graph.
    num_src, num_dst : int
        Node counts of the two sides.

    Raises
    ------
    TypeError
        If ``adj`` is of an unsupported type.
    """
    if isinstance(adj, SparseTensor) or is_torch_sparse_tensor(adj):
        (row, col), _ = to_edge_index(adj)
        return torch.stack([col, row]), adj.size(1), adj.size(0)
    if isinstance(adj, PreparedGraph):
        return adj, adj.num_src, adj.num_dst
    if not isinstance(adj, Tensor):
        raise TypeError("'edge_index' must be a LongTensor, a SparseTensor, a torch.sparse "
                        f"tensor or a PreparedGraph, got {type(adj).__name__}")
    return adj, num_src, num_dst


def pack_attention(adj: Any, edge_index: Tensor, alpha: Tensor,
                   sparse_as_edge_index: bool = False) -> Any:
    """Formats attention weights as PyG returns them for the input type.

    ``(edge_index, alpha)`` for dense indices (and for ``torch.sparse`` inputs when
    ``sparse_as_edge_index``, as TransformerConv does), a ``SparseTensor`` with
    ``alpha`` as values, or ``(torch.sparse adj with alpha as values, alpha)``.

    Parameters
    ----------
    adj : Tensor or SparseTensor
        The adjacency the layer was called with.
    edge_index : Tensor
        ``[2, E]`` edge list the attention belongs to.
    alpha : Tensor
        ``[E, H]`` (or ``[E]``) attention weights, in ``edge_index``'s order.
    sparse_as_edge_index : bool
        Return ``(edge_index, alpha)`` for ``torch.sparse`` inputs too.

    Returns
    -------
    tuple or SparseTensor
        The attention in the input's format.  When the layer attended over fewer
        edges than the adjacency holds entries (``KQVConv`` counts a duplicated
        entry once), the sparse result is built over ``edge_index`` instead of
        taking the adjacency's pattern.
    """
    if isinstance(adj, SparseTensor):
        if adj.nnz() == alpha.size(0):
            return adj.set_value(alpha, layout="coo")
        return SparseTensor(row=edge_index[1], col=edge_index[0], value=alpha,
                            sparse_sizes=adj.sparse_sizes())
    if is_torch_sparse_tensor(adj) and not sparse_as_edge_index:
        if adj._nnz() == alpha.size(0):
            return set_sparse_value(adj, alpha), alpha
        return _SPARSE_BUILDERS[adj.layout](edge_index.flip(0), alpha, adj.shape[:2]), alpha
    return edge_index, alpha


def optional_pair(x: Any) -> tuple[Tensor, Tensor | None]:
    """Splits ``x`` or ``(x_src, x_dst)`` into its source and destination features."""
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(f"'x' must be a tensor or a pair (x_src, x_dst), got {len(x)} items")
        return x[0], x[1]
    return x, None


@torch.compiler.disable
def sparse_graph(adj: Any) -> PreparedGraph:
    """The prepared graph of a sparse adjacency (row = destination), built on
    every call (an edit of the adjacency is never served stale; pass a
    :class:`~pyg_attn.ops.PreparedGraph` to reuse one explicitly).

    Raises
    ------
    ValueError
        If ``adj`` is an uncoalesced ``torch.sparse_coo`` tensor.
    """
    if not isinstance(adj, SparseTensor) and adj.layout == torch.sparse_coo \
            and not adj.is_coalesced():
        raise ValueError("'edge_index' is an uncoalesced torch.sparse_coo tensor; call "
                         ".coalesce() first (its duplicate entries are ambiguous)")
    index, num_src, num_dst = adjacency_to_edge_index(adj, adj.size(1), adj.size(0))
    assert isinstance(index, Tensor), "a sparse adjacency becomes an edge_index tensor"
    return prepare(index, (num_src, num_dst))
