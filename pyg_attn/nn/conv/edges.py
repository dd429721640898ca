"""Edge plumbing of the attention layers and of :func:`~pyg_attn.nn.capture_attention`.

One place for what every layer and the capture hooks do with their inputs:

* reading the graph of any input form the layers accept as ``edge_index`` (an
  ``[2, E]`` integer tensor or :class:`torch_geometric.EdgeIndex`, row 0 =
  source; a ``SparseTensor`` or ``torch.sparse`` COO/CSR/CSC adjacency
  ``[N_dst, N_src]``; a :class:`~pyg_attn.ops.PreparedGraph`):
  :func:`check_adjacency`, :func:`is_sparse_adjacency`, :func:`plain_edges`,
  :func:`num_nodes_of`, :func:`sparse_edge_values`, :func:`sparse_graph`;
* giving attention weights back in the input's form: :func:`pack_attention`;
* matching the edges a layer attended over to the caller's edges:
  :func:`match_edges`, :func:`edge_ids`;
* splitting node features ``x`` or ``(x_src, x_dst)``: :func:`split_input`.

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
from ...ops.graph import plain_edge_index

_SPARSE_BUILDERS = {torch.sparse_coo: to_torch_coo_tensor, torch.sparse_csr: to_torch_csr_tensor,
                    torch.sparse_csc: to_torch_csc_tensor}
"""``torch.sparse`` tensor of a layout from ``(index [2, E], values, size)``."""


# ----------------------------------------------------------------------------- input forms
def is_sparse_adjacency(adj: Any) -> bool:
    """``True`` for a ``SparseTensor`` or a ``torch.sparse`` adjacency ``[N_dst, N_src]``."""
    return isinstance(adj, SparseTensor) or (isinstance(adj, Tensor)
                                             and is_torch_sparse_tensor(adj))


def check_adjacency(adj: Any) -> None:
    """Raises ``TypeError`` naming ``'edge_index'`` unless ``adj`` is one of the
    input forms of the layers (see the module doc)."""
    if not isinstance(adj, (Tensor, SparseTensor, PreparedGraph)):
        raise TypeError("'edge_index' must be a LongTensor [2, E], an EdgeIndex, a "
                        "SparseTensor, a torch.sparse COO/CSR tensor or a PreparedGraph, "
                        f"got {type(adj).__name__}")


def plain_edges(adj: Any) -> Tensor:
    """The ``[2, E]`` (source, destination) edges of any input form, in its stored order.

    Parameters
    ----------
    adj : Tensor, EdgeIndex, SparseTensor or PreparedGraph
        ``[2, E]`` edge index (returned as a plain tensor), ``SparseTensor`` /
        ``torch.sparse`` ``[N_dst, N_src]`` adjacency (its stored order; an
        uncoalesced COO tensor is read as stored, not coalesced), or a prepared
        graph (its ``[2, E]`` edge list).

    Returns
    -------
    Tensor
        ``[2, E]`` edges, row 0 = source.

    Raises
    ------
    TypeError
        If ``adj`` is none of these.
    """
    check_adjacency(adj)
    if isinstance(adj, SparseTensor):
        row, col, _ = adj.coo()
        return torch.stack([col, row])
    if isinstance(adj, PreparedGraph):
        return adj.edge_index
    if is_torch_sparse_tensor(adj):
        if adj.layout == torch.sparse_coo:
            indices = adj._indices()  # stored order; no side effect on the input
            return torch.stack([indices[1], indices[0]])
        (row, col), _ = to_edge_index(adj)
        return torch.stack([col, row])
    return plain_edge_index(adj)


def num_nodes_of(adj: Any) -> tuple[int, int] | None:
    """``(num_src, num_dst)`` fixed by the graph itself (sparse inputs and prepared
    graphs), or ``None`` for ``[2, E]`` indices."""
    if isinstance(adj, PreparedGraph):
        return adj.num_src, adj.num_dst
    if is_sparse_adjacency(adj):
        return int(adj.size(1)), int(adj.size(0))
    return None


def sparse_edge_values(adj: Any) -> Tensor | None:
    """The values PyG's ``propagate`` takes as ``edge_attr`` for a sparse input.

    All values of a ``SparseTensor`` (``[E]`` or ``[E, D]``, or ``None``); the
    values of a ``torch.sparse`` tensor only when they are multi-dimensional
    (a hybrid tensor, ``[E, D]``); ``None`` otherwise.
    """
    if isinstance(adj, SparseTensor):
        return adj.storage.value()
    if is_sparse_adjacency(adj):
        _, values = to_edge_index(adj)
        return values if values.dim() > 1 else None
    return None


@torch.compiler.disable
def sparse_graph(adj: Any) -> PreparedGraph:
    """The prepared graph of a sparse adjacency ``[N_dst, N_src]`` (edges in its
    stored order), built on every call (an edit of the adjacency is never served
    stale; pass a :class:`~pyg_attn.ops.PreparedGraph` to reuse one explicitly).

    Raises
    ------
    ValueError
        If ``adj`` is an uncoalesced ``torch.sparse_coo`` tensor.
    """
    if not isinstance(adj, SparseTensor) and adj.layout == torch.sparse_coo \
            and not adj.is_coalesced():
        raise ValueError("'edge_index' is an uncoalesced torch.sparse_coo tensor; call "
                         ".coalesce() first (its duplicate entries are ambiguous)")
    return prepare(plain_edges(adj), (int(adj.size(1)), int(adj.size(0))))


def pack_attention(adj: Any, edge_index: Tensor, alpha: Tensor) -> Any:
    """Formats attention weights as PyG returns them for the input type.

    ``(edge_index, alpha)`` for index inputs and prepared graphs, a
    ``SparseTensor`` with ``alpha`` as values, or ``(torch.sparse adj with alpha
    as values, alpha)``.

    Parameters
    ----------
    adj : Tensor, SparseTensor or PreparedGraph
        The adjacency the layer was called with.
    edge_index : Tensor
        ``[2, E]`` edge list the attention belongs to.
    alpha : Tensor
        ``[E, H]`` (or ``[E]``) attention weights, in ``edge_index``'s order.

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
    if is_sparse_adjacency(adj):
        if adj._nnz() == alpha.size(0):
            return set_sparse_value(adj, alpha), alpha
        return _SPARSE_BUILDERS[adj.layout](edge_index.flip(0), alpha, adj.shape[:2]), alpha
    return edge_index, alpha


# ----------------------------------------------------------------------------- edge ids
def match_edges(given: Tensor, found: Tensor) -> Tensor:
    """Position in ``given`` of the first edge with each ``found`` edge's endpoints.

    Parameters
    ----------
    given : Tensor
        ``[2, E]`` integer edges (duplicates allowed).
    found : Tensor
        ``[2, E']`` integer edges to look up, in the same orientation.

    Returns
    -------
    Tensor
        ``[E']`` long positions into ``given``'s columns, ``-1`` where an edge of
        ``found`` is not in ``given``.  One stable sort of ``given``.
    """
    if found.size(1) == 0:
        return torch.empty(0, dtype=torch.long, device=found.device)
    if given.size(1) == 0:
        return torch.full((found.size(1),), -1, dtype=torch.long, device=found.device)
    width = int(torch.maximum(given.max(), found.max())) + 1
    keys_given = given[0] * width + given[1]
    keys_found = found[0] * width + found[1]
    sorted_given, perm = torch.sort(keys_given, stable=True)
    pos = torch.searchsorted(sorted_given, keys_found).clamp_max(keys_given.numel() - 1)
    hit = sorted_given[pos] == keys_found
    return torch.where(hit, perm[pos], torch.full_like(pos, -1))


def edge_ids(adj: Any, edge_index: Tensor, adds_loops: bool) -> Tensor:
    """``[E']`` position in the input ``adj`` of each edge a layer attended over.

    Parameters
    ----------
    adj : Tensor, EdgeIndex, SparseTensor or PreparedGraph
        The graph the layer was called with (see :func:`plain_edges`).
    edge_index : Tensor
        ``[2, E']`` long edges (row 0 = source) the layer returned attention for.
    adds_loops : bool
        Whether the layer dropped the input's self-loops and appended its own
        (the GAT layers with ``add_self_loops``).

    Returns
    -------
    Tensor
        ``[E']`` long positions into ``adj``'s edges (its stored order for sparse
        inputs), ``-1`` for a loop the layer added.  PyG's order for ``[2, E]``
        inputs (the input's edges, or with ``adds_loops`` its kept edges in input
        order and then the loops) is recognised directly, so duplicate edges map
        to themselves; otherwise edges are matched by ``(source, destination)``
        with :func:`match_edges` (the first input edge with them).
    """
    given = plain_edges(adj).to(edge_index.device).long()
    num_out = edge_index.size(1)
    if not adds_loops and given.shape == edge_index.shape and torch.equal(given, edge_index):
        return torch.arange(num_out, device=edge_index.device)
    is_loop = edge_index[0] == edge_index[1]
    if adds_loops:
        kept = (given[0] != given[1]).nonzero().view(-1)
        n = kept.numel()
        if (num_out >= n and torch.equal(edge_index[:, :n], given[:, kept])
                and bool(is_loop[n:].all())):
            return torch.cat([kept, kept.new_full((num_out - n,), -1)])
    ids = match_edges(given, edge_index)
    return ids.masked_fill(is_loop, -1) if adds_loops else ids


# ----------------------------------------------------------------------------- node features
def split_input(x: Any, name: str = "x") -> tuple[Tensor, Tensor | None]:
    """Node features ``x`` or ``(x_src, x_dst)`` -> ``(x_src, x_dst or None)``, checked.

    Parameters
    ----------
    x : Tensor or pair
        ``[N, F]`` features of all nodes, or ``([N_src, F_src], [N_dst, F_dst] or
        None)`` (a tuple or list of two).
    name : str
        The argument named in the errors.

    Returns
    -------
    x_src : Tensor
        ``[N_src, F_src]`` (``x`` itself for one tensor).
    x_dst : Tensor or None
        ``[N_dst, F_dst]``, ``None`` for one tensor or a pair without it.

    Raises
    ------
    TypeError
        If ``x`` is neither a tensor nor a pair, or a part is not a tensor.
    ValueError
        If a part is not 2-dimensional.
    """
    if isinstance(x, Tensor):
        x_src, x_dst = x, None
    elif isinstance(x, (tuple, list)) and len(x) == 2:
        x_src, x_dst = x
    else:
        raise TypeError(f"'{name}' must be a tensor or a pair (x_src, x_dst), got "
                        f"{type(x).__name__}")
    for part, value in (("source", x_src), ("destination", x_dst)):
        if value is None and part == "destination":
            continue
        if not isinstance(value, Tensor):
            raise TypeError(f"'{name}' ({part} features) must be a torch.Tensor, got "
                            f"{type(value).__name__}")
        if value.dim() != 2:
            raise ValueError(f"'{name}' ({part} features) must be 2-dimensional [N, F] "
                             f"(static graphs are not supported), got shape {list(value.shape)}")
    return x_src, x_dst
