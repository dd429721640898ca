"""Self-loop handling of :class:`GATConv` / :class:`GATv2Conv`.

PyG's GAT layers (with ``add_self_loops=True``) remove every self-loop of the
input graph and append one loop ``i -> i`` per node ``i < min(N_src, N_dst)``;
loop edge features are filled by ``fill_value`` from the features of the kept
edges (:func:`torch_geometric.utils.add_self_loops`).  The edge order they use,
and so the order of the attention weights they return, depends on the input:

* ``[2, E]`` tensors (and :class:`torch_geometric.EdgeIndex`): the kept edges in
  the caller's order, then the loops ``0 .. N-1``;
* ``torch.sparse`` COO/CSR: the stored order of the re-built (coalesced) matrix;
* ``torch_sparse.SparseTensor``: the CSR order after ``set_diag()``.

:func:`gat_graph` reproduces exactly that and returns a :class:`LoopedGraph`
holding the adjacency in the caller's format (what PyG propagates over and
returns attention with), the ``[2, E']`` edge list in attention order, its
:class:`~pyg_attn.ops.PreparedGraph`, and where each edge's features come from
(:func:`loop_edge_attr`).  Which input edge each returned weight belongs to is
worked out from the edges alone by :func:`~pyg_attn.nn.conv.edges.edge_ids`.

Every input is treated as new: the graph is built on each call (for ``[2, E]``
tensors on the CPU by one O(E + N) counting-sort pass of the compiled extension,
loops included), so no edit of an input can be served stale.  A
:class:`~pyg_attn.ops.PreparedGraph` passed with ``add_self_loops=False`` is used
as it is: the explicit way to reuse a graph.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.typing import SparseTensor, torch_sparse
from torch_geometric.utils import add_self_loops as pyg_add_self_loops
from torch_geometric.utils import is_torch_sparse_tensor
from torch_geometric.utils import remove_self_loops as pyg_remove_self_loops
from torch_geometric.utils.loop import compute_loop_attr
from torch_geometric.utils.sparse import to_edge_index

from ...ops.graph import PreparedGraph, check_edge_index_layout, plain_edge_index
from ...ops.graph_build import as_prepared, build_graph, build_looped_graph, checked_graph
from .edges import check_adjacency, is_sparse_adjacency, match_edges

FillValue = float | int | Tensor | str | None


@dataclasses.dataclass(frozen=True, eq=False)
class LoopedGraph:
    """A graph after GAT's self-loop handling (see the module doc).

    Attributes
    ----------
    adj : EdgeIndex, SparseTensor, torch.sparse tensor or None
        The graph in the caller's format after loop handling: what PyG's
        layer would pass to ``propagate`` and return attention with; ``None``
        when that is the ``[2, E']`` edge list itself (plain tensor and
        :class:`PreparedGraph` inputs): see :attr:`adjacency`.
    graph : PreparedGraph
        The prepared (CSR/CSC) form of :attr:`edge_index`.
    num_src, num_dst : int
        Node counts of the two sides.
    num_input_edges : int
        Number of edges of the input.
    num_loops : int
        Number of loops appended (``0`` without self-loop handling).
    kept : Tensor or None
        ``[E_kept]`` input positions of the edges that stay, in input order
        (``None``: no loop handling, every edge stays in place).
    attr_index : Tensor or None
        ``[E']`` index of each edge into ``cat([kept, loops])`` (``None``: that
        order itself, as for index inputs).
    plain_edge_index : Tensor or None
        ``[2, E']`` edge list, when already at hand.
    sparse_kept_dst : Tensor or None
        Sparse inputs: ``[E_kept]`` destinations of the kept edges (see
        :attr:`kept_dst`).
    edge_mask : Tensor or None
        ``[E']`` bool, set only by :func:`gat_graph`'s ``static_shapes``: every
        input edge stays in the graph, in input order, its self-loops masked out
        (``False``), followed by the loops (``True``); :attr:`kept` is then
        ``None``.  The attention over it equals that over the graph without those
        edges (a masked edge has zero weight), and its size does not depend on the
        data.

    Only what cannot be derived is stored (the cache may hold big graphs):
    the edge list of a plain tensor input (1 GB at ogbn-products size) is rebuilt
    from the CSR when asked for, and :attr:`kept_dst` is computed when asked for.
    """

    adj: Any
    graph: PreparedGraph
    num_src: int
    num_dst: int
    num_input_edges: int
    num_loops: int = 0
    kept: Tensor | None = None
    attr_index: Tensor | None = None
    plain_edge_index: Tensor | None = None
    sparse_kept_dst: Tensor | None = None
    edge_mask: Tensor | None = None

    @property
    def num_edges(self) -> int:
        return self.graph.num_edges

    @property
    def edge_index(self) -> Tensor:
        """The ``[2, E']`` edge list (row 0 = source) in attention order."""
        if self.plain_edge_index is not None:
            return self.plain_edge_index
        return self.graph.edge_index

    @property
    def adjacency(self) -> Any:
        """The graph in the caller's format after loop handling (:attr:`adj`, or
        the ``[2, E']`` edge list where that is the format)."""
        return self.edge_index if self.adj is None else self.adj

    @property
    def returned_edge_index(self) -> Tensor:
        """The edge list PyG returns with the attention weights for index inputs:
        :attr:`adjacency` itself when it is an index tensor (an ``EdgeIndex`` stays one)."""
        adj = self.adjacency
        if isinstance(adj, Tensor) and not is_torch_sparse_tensor(adj):
            return adj
        return self.edge_index

    @property
    def identity(self) -> bool:
        """``True`` when the edges are the input's, in its order (no loop handling)."""
        return self.kept is None

    @property
    def kept_dst(self) -> Tensor | None:
        """``[E_kept]`` destinations of the kept edges, in input order."""
        if self.kept is None or self.sparse_kept_dst is not None:
            return self.sparse_kept_dst
        return self.edge_index[1, : self.kept.numel()]  # index inputs: kept edges first


# ----------------------------------------------------------------------------- builders
def _from_index(edge_index: Tensor, num_src: int, num_dst: int, num_loops: int,
                keep_type: bool) -> LoopedGraph:
    """Tensor / EdgeIndex input: kept edges in order, then the loops."""
    plain = plain_edge_index(edge_index)
    check_edge_index_layout(plain)
    graph, kept = build_looped_graph(plain, num_src, num_dst, num_loops)
    adj = None  # the edge list itself, rebuilt from the CSR when asked for
    if keep_type and isinstance(edge_index, EdgeIndex):
        # Exactly PyG's object (an EdgeIndex with its sparse size and flags):
        adj, _ = pyg_remove_self_loops(edge_index)
        adj, _ = pyg_add_self_loops(adj, num_nodes=num_loops)
    return LoopedGraph(
        adj=adj, graph=graph, num_src=num_src, num_dst=num_dst,
        num_input_edges=plain.size(1), num_loops=num_loops, kept=kept)


def _from_sparse(adj: Any, add_loops: bool) -> LoopedGraph:
    """``SparseTensor`` / ``torch.sparse`` input (row = destination)."""
    num_dst, num_src = int(adj.size(0)), int(adj.size(1))
    (row, col), values = to_edge_index(adj)
    given = torch.stack([col, row])
    structure = None  # `None`: the input itself
    if not isinstance(adj, SparseTensor) and values.dim() > 1:
        # A hybrid tensor (edge features as values): keep only its 2-D structure,
        # so that the attention can be returned in it (PyG fails there).
        structure = _structure(adj, row.numel())
    if not add_loops:
        return LoopedGraph(adj=structure, graph=build_graph(given, num_src, num_dst),
                           num_src=num_src, num_dst=num_dst, num_input_edges=row.numel(),
                           plain_edge_index=given)
    num_loops = min(num_src, num_dst)
    if isinstance(adj, SparseTensor):
        # PyG: torch_sparse.set_diag(adj).  Values play no part in the structure
        # (and set_diag fails on multi-dimensional ones), so drop them first.
        looped_adj = torch_sparse.set_diag(adj.set_value(None, layout="coo"))
    else:
        # PyG: remove_self_loops + add_self_loops re-build (and sort) the matrix.
        looped_adj, _ = pyg_remove_self_loops(adj if structure is None else structure)
        looped_adj, _ = pyg_add_self_loops(looped_adj)
    (out_row, out_col), _ = to_edge_index(looped_adj)
    edge_index = torch.stack([out_col, out_row])
    kept = (row != col).nonzero().view(-1)
    attr_index = out_row.clone() + kept.numel()  # loops: num_kept + node
    not_loop = (out_row != out_col).nonzero().view(-1)
    # Every edge that is not a loop is a kept one: its index into the kept list.
    attr_index[not_loop] = match_edges(given[:, kept], edge_index[:, not_loop])
    return LoopedGraph(
        adj=looped_adj, graph=build_graph(edge_index, num_src, num_dst), num_src=num_src,
        num_dst=num_dst, num_input_edges=row.numel(), num_loops=num_loops, kept=kept,
        attr_index=attr_index, plain_edge_index=edge_index, sparse_kept_dst=row[kept])


def _structure(adj: Tensor, nnz: int) -> Tensor:
    """A ``torch.sparse`` matrix with ``adj``'s 2-D pattern and values of one."""
    ones = torch.ones(nnz, device=adj.device)
    size = adj.size()[:2]
    if adj.layout == torch.sparse_coo:
        return torch.sparse_coo_tensor(adj.indices(), ones, size).coalesce()
    if adj.layout == torch.sparse_csr:
        return torch.sparse_csr_tensor(adj.crow_indices(), adj.col_indices(), ones, size)
    raise ValueError(f"'edge_index': unsupported sparse layout {adj.layout}")


def gat_graph(adj: Any, num_src: int, num_dst: int, add_self_loops: bool,
              static_shapes: bool = False) -> LoopedGraph:
    """Applies GAT's self-loop handling to ``adj`` (see the module doc).

    Parameters
    ----------
    adj : Tensor, EdgeIndex, SparseTensor or PreparedGraph
        ``[2, E]`` integer tensor or ``EdgeIndex`` (row 0 = source),
        ``SparseTensor`` / ``torch.sparse`` COO or CSR adjacency (row =
        destination) or a :class:`~pyg_attn.ops.PreparedGraph`.
    num_src, num_dst : int
        Node counts of the two sides (taken from the adjacency itself for
        sparse inputs and prepared graphs).
    add_self_loops : bool
        Remove existing loops and append one per node
        ``i < min(num_src, num_dst)``, as PyG's GAT layers do.
    static_shapes : bool
        For a ``[2, E]`` tensor with ``add_self_loops``: mask the existing loops
        instead of removing them (:attr:`LoopedGraph.edge_mask`), so that no size
        depends on the data and ``torch.compile`` traces the call without
        ``capture_dynamic_output_shape_ops``.  Only for callers that need the
        attention output alone (no returned weights, edge features or PyG's
        message path, which take the edge list itself).

    Returns
    -------
    LoopedGraph
        The graph after loop handling, with ``E'`` edges in attention order.

    Raises
    ------
    TypeError, ValueError
        If ``adj`` is of an unsupported type, or holds bad indices.
    """
    if isinstance(adj, PreparedGraph):
        if not add_self_loops:  # nothing to build
            return LoopedGraph(adj=adj, graph=adj, num_src=adj.num_src, num_dst=adj.num_dst,
                               num_input_edges=adj.num_edges)
        num_loops = min(adj.num_src, adj.num_dst)
        return _from_index(adj.edge_index, adj.num_src, adj.num_dst, num_loops, False)
    if is_sparse_adjacency(adj):
        return _sparse_gat_graph(adj, add_self_loops)
    check_adjacency(adj)  # a tensor from here on
    if not add_self_loops:
        plain = plain_edge_index(adj)
        return LoopedGraph(adj=adj, graph=as_prepared(adj, num_src, num_dst),
                           num_src=num_src, num_dst=num_dst,
                           num_input_edges=plain.size(1), plain_edge_index=plain)
    if static_shapes:
        return _masked_loops(adj, num_src, num_dst)
    return _from_index(adj, num_src, num_dst, min(num_src, num_dst), True)


def _masked_loops(edge_index: Tensor, num_src: int, num_dst: int) -> LoopedGraph:
    """Tensor / EdgeIndex input: every edge in order, its loops masked, then the
    loops ``0 .. N-1`` (see ``static_shapes`` of :func:`gat_graph`)."""
    plain = plain_edge_index(edge_index)
    check_edge_index_layout(plain)
    num_loops = min(num_src, num_dst)
    loops = torch.arange(num_loops, dtype=plain.dtype, device=plain.device)
    looped = torch.cat([plain, loops.expand(2, num_loops)], dim=1)
    mask = torch.cat([plain[0] != plain[1],
                      torch.ones(num_loops, dtype=torch.bool, device=plain.device)])
    return LoopedGraph(adj=None, graph=checked_graph(looped, num_src, num_dst),
                       num_src=num_src, num_dst=num_dst, num_input_edges=plain.size(1),
                       num_loops=num_loops, plain_edge_index=looped, edge_mask=mask)


@torch.compiler.disable
def _sparse_gat_graph(adj: Any, add_self_loops: bool) -> LoopedGraph:
    """:func:`gat_graph` of a sparse adjacency (run eagerly: PyG's sparse
    conversions are not traceable)."""
    looped = _from_sparse(adj, add_self_loops)
    return dataclasses.replace(looped, adj=adj) if looped.adj is None else looped


def loop_edge_attr(looped: LoopedGraph, edge_attr: Tensor, fill_value: FillValue) -> Tensor:
    """Edge features in the order of ``looped``, loop features filled as PyG does.

    ``edge_attr`` is ``[E]`` or ``[E, D]`` in the input's edge order (stored order
    for sparse inputs).  Kept edges keep their features; the loop of node ``i``
    gets ``fill_value`` (a float, a ``[D]`` tensor, or the ``"add"``, ``"mean"``,
    ``"min"``, ``"max"``, ``"mul"`` reduction of the features of the kept edges
    into ``i``), computed by :func:`torch_geometric.utils.loop.compute_loop_attr`.

    Parameters
    ----------
    looped : LoopedGraph
        The graph from :func:`gat_graph`.
    edge_attr : Tensor
        ``[E]`` or ``[E, D]`` features of the input's edges.
    fill_value : float, Tensor, str or None
        Features of the loops: a value, a ``[D]`` tensor, a reduction name, or
        ``None`` for ones.

    Returns
    -------
    Tensor
        ``[E']`` or ``[E', D]`` in the order of ``looped``.

    Raises
    ------
    TypeError, ValueError
        If ``edge_attr`` is not a tensor with one row per edge.
    """
    if not isinstance(edge_attr, Tensor):
        raise TypeError(f"'edge_attr' must be a torch.Tensor, got {type(edge_attr).__name__}")
    if edge_attr.dim() == 0 or edge_attr.size(0) != looped.num_input_edges:
        raise ValueError(f"'edge_attr' must have one row per edge ({looped.num_input_edges}), "
                         f"got shape {list(edge_attr.shape)}")
    if looped.identity:
        return edge_attr
    assert looped.kept is not None and looped.kept_dst is not None
    kept = edge_attr.index_select(0, looped.kept)
    loop_attr = compute_loop_attr(looped.kept_dst.expand(2, -1), kept, looped.num_loops, False,
                                  fill_value)
    full = torch.cat([kept, loop_attr], dim=0)
    if looped.attr_index is None:
        return full
    return full.index_select(0, looped.attr_index)
