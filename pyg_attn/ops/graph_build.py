"""Builds :class:`~pyg_attn.ops.graph.PreparedGraph` s from ``edge_index`` tensors.

:func:`prepare` builds the CSR/CSC once and returns a graph that can be passed
wherever an ``edge_index`` is accepted: that is the one way to reuse a graph.  A
plain ``edge_index`` is treated as new on every call (no implicit cache, so an
in-place edit of it can never be served stale): on the CPU its CSR/CSC is built by
two counting sorts in the compiled extension (the custom op
``pyg_attn::build_graph``, traceable by ``torch.compile`` and ``torch.export``),
O(E + N), which check every index as they count, GAT's self-loop handling
included; elsewhere by at most two stable sorts.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric import EdgeIndex

from .cpu import extension_available, load_extension
from .graph import (
    PreparedGraph,
    assemble_graph,
    check_edge_index_layout,
    index_dtype,
    plain_edge_index,
    pointer_array,
    validate_edge_index,
)


def build_graph(edge_index: Tensor, num_src: int, num_dst: int) -> PreparedGraph:
    """The CSR/CSC of a validated ``edge_index`` (no checks here: callers validate).

    A sorted PyG ``EdgeIndex`` hands over the CSR/CSC it has cached.  Otherwise,
    on the CPU, two stable counting sorts in the compiled extension
    (:func:`native_graph`, O(E + N)); elsewhere, or without the extension, at most
    two stable ``torch.sort`` calls (:func:`sorted_graph`).  Both give the same
    arrays."""
    reused = _from_sorted_edge_index(edge_index, num_src, num_dst)
    if reused is not None:
        return reused
    edge_index = plain_edge_index(edge_index)
    built = native_graph(edge_index, num_src, num_dst)
    return built[0] if built is not None else sorted_graph(edge_index, num_src, num_dst)


def checked_graph(edge_index: Tensor, num_src: int, num_dst: int) -> PreparedGraph:
    """Validates ``edge_index`` and builds its graph, reading the indices once
    where it can: the extension's counting sort checks every index as it counts
    (a bad one is then named by :func:`validate_edge_index`), so only the other
    paths run the separate range check.

    Raises
    ------
    TypeError, ValueError
        As :func:`validate_edge_index`.
    """
    check_edge_index_layout(edge_index)
    if not isinstance(edge_index, EdgeIndex):
        built = native_graph(edge_index, num_src, num_dst)
        if built is not None:
            return built[0]
    validate_edge_index(edge_index, num_src, num_dst)
    return build_graph(edge_index, num_src, num_dst)


def build_looped_graph(edge_index: Tensor, num_src: int, num_dst: int,
                       num_loops: int) -> tuple[PreparedGraph, Tensor]:
    """GAT's self-loop handling and the graph of its result, for a plain
    ``edge_index`` whose layout is checked (:func:`check_edge_index_layout`; its
    indices are checked here, once): the edges ``j -> i`` with ``j != i`` in input order,
    then the loops ``t -> t`` for ``t < num_loops`` (what PyG's
    ``remove_self_loops`` then ``add_self_loops`` give).

    Returns
    -------
    (PreparedGraph, Tensor)
        The graph of that edge list, and ``[E_kept]`` (int64) the input
        position of each kept edge.

    Raises
    ------
    ValueError
        If an index is out of range.
    """
    built = native_graph(edge_index, num_src, num_dst, num_loops)
    if built is not None:
        return built
    validate_edge_index(edge_index, num_src, num_dst)
    plain = edge_index.long()
    kept = (plain[0] != plain[1]).nonzero().view(-1)
    loops = torch.arange(num_loops, device=plain.device)
    looped = torch.cat([plain.index_select(1, kept), loops.view(1, -1).repeat(2, 1)], dim=1)
    return sorted_graph(looped, num_src, num_dst), kept


def native_graph(edge_index: Tensor, num_src: int, num_dst: int, num_loops: int | None = None
                 ) -> tuple[PreparedGraph, Tensor] | None:
    """The graph of a plain ``[2, E]`` ``edge_index`` by the compiled extension's
    counting sorts (:func:`build_graph_arrays`): ``(graph, kept)``; with
    ``num_loops`` the edge list is GAT's (see :func:`build_looped_graph`) and
    ``kept`` the input position of each kept edge, else ``kept`` is empty.
    ``None`` where the extension does not apply (not on the CPU, not int32/int64
    indices, graphs needing int64 edge indices, extension unavailable).

    Raises
    ------
    ValueError
        If an index is out of range (the extension checks every index as it
        counts; :func:`validate_edge_index` then names the bad one).
    """
    if (edge_index.device.type != "cpu" or edge_index.dtype not in (torch.int32, torch.int64)
            or index_dtype(edge_index.size(1) + (num_loops or 0), num_src, num_dst)
            != torch.int32 or not extension_available()):
        return None
    # The op under torch.compile; its plain function otherwise (the dispatcher's
    # per-call work costs more than the build of a small graph).
    build = build_graph_arrays if torch.compiler.is_compiling() else _build_graph_arrays
    rowptr, col, perm, colptr, csc_row, csc_edge, kept = build(
        edge_index[0], edge_index[1], num_src, num_dst, num_loops is not None, num_loops or 0)
    return assemble_graph(num_src, num_dst, rowptr, col, perm, colptr, csc_edge, csc_row), kept


def _build_graph_arrays(src: Tensor, dst: Tensor, num_src: int, num_dst: int,
                        drop_loops: bool, num_loops: int
                        ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(rowptr, col, perm, colptr, csc_row, csc_edge, kept)`` of the edges
    ``src[k] -> dst[k]`` (without self-loops when ``drop_loops``) followed by
    ``num_loops`` loops ``t -> t``, by the extension's two stable counting sorts
    (``csrc/graph_build.h``; O(E + N), one pass over the indices that also
    checks their range).  Pointers are int64 ``[N + 1]``, edge arrays int32
    ``[E']``, ``kept`` int64 ``[E_kept]`` (empty unless ``drop_loops``).

    Raises
    ------
    ValueError
        If an index is outside ``[0, num_src) x [0, num_dst)``.
    """
    extension = load_extension()
    if extension is None:
        raise RuntimeError("pyg_attn::build_graph needs the compiled extension")
    arrays = extension.build_graph(src, dst, num_src, num_dst, drop_loops, num_loops)
    if not arrays:
        validate_edge_index(torch.stack([src, dst]), num_src, num_dst)
        raise AssertionError("the graph extension refused an edge_index that validates")
    return tuple(arrays)


#: The counting-sort graph build as a custom op: ``torch.compile`` and
#: ``torch.export`` trace through it (its fake gives the shapes; only the kept
#: count of a self-loop removal depends on the data).
build_graph_arrays = torch.library.custom_op("pyg_attn::build_graph", _build_graph_arrays,
                                             mutates_args=(), device_types="cpu")


@build_graph_arrays.register_fake
def _(src: Tensor, dst: Tensor, num_src: int, num_dst: int, drop_loops: bool, num_loops: int
      ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    num_kept = torch.library.get_ctx().new_dynamic_size() if drop_loops else src.size(0)
    num_edges = num_kept + num_loops
    edge: dict[str, Any] = dict(dtype=torch.int32, device=src.device)
    pointer: dict[str, Any] = dict(dtype=torch.long, device=src.device)
    return (src.new_empty(num_dst + 1, **pointer), src.new_empty(num_edges, **edge),
            src.new_empty(num_edges, **edge), src.new_empty(num_src + 1, **pointer),
            src.new_empty(num_edges, **edge), src.new_empty(num_edges, **edge),
            src.new_empty(num_kept if drop_loops else 0, **pointer))


def sorted_graph(edge_index: Tensor, num_src: int, num_dst: int) -> PreparedGraph:
    """The graph of a validated plain ``edge_index`` by at most two stable sorts,
    fewer when the edges come grouped: destination-sorted edges (samplers, CSC
    order) need no sort for the CSR, source-sorted ones (a coalesced
    ``edge_index``, a ``Batch`` of them) none for the CSC, whose slots are then
    the edges in their own order.  Indices are sorted and gathered as int32 where
    they fit (half the bytes).  The reference for :func:`native_graph`."""
    dtype = index_dtype(edge_index.size(1), num_src, num_dst)
    src, dst = edge_index[0].to(dtype), edge_index[1].to(dtype)
    positions = torch.arange(src.numel(), device=src.device, dtype=dtype)
    perm = _stable_order(dst)
    col = src if perm is None else src.index_select(0, perm)
    perm = positions if perm is None else perm.to(dtype)
    if _is_grouped(src):  # CSC slot k is edge k
        csc_edge, csc_row = positions, dst
    else:
        order = _stable_order(col)
        csc_edge = perm if order is None else perm.index_select(0, order)
        csc_row = dst.index_select(0, csc_edge)
    return assemble_graph(num_src, num_dst, pointer_array(dst.long(), num_dst), col, perm,
                  pointer_array(src.long(), num_src), csc_edge, csc_row)


def _is_grouped(keys: Tensor) -> bool:
    """Whether ``keys`` is non-decreasing (one O(E) pass)."""
    return keys.numel() < 2 or bool((keys[1:] >= keys[:-1]).all())


def _stable_order(keys: Tensor) -> Tensor | None:
    """The stable sorting permutation of ``keys`` (``None`` when already sorted)."""
    return None if _is_grouped(keys) else torch.sort(keys, stable=True)[1]


def _from_sorted_edge_index(edge_index: Tensor, num_src: int,
                            num_dst: int) -> PreparedGraph | None:
    """Reuses the CSC/CSR that a sorted PyG ``EdgeIndex`` has cached.

    PyG's CSC (over ``edge_index[1]``) is our destination CSR and its CSR (over
    ``edge_index[0]``) our source-sorted CSC; only the CSR position of each CSC
    slot has to be derived.  Returns ``None`` when there is nothing to reuse.
    """
    if (not isinstance(edge_index, EdgeIndex) or not edge_index.is_sorted
            or tuple(edge_index.sparse_size()) != (num_src, num_dst)):
        return None
    num_edges = edge_index.size(1)
    arange = torch.arange(num_edges, device=edge_index.device)
    (rowptr, col), perm = edge_index.get_csc()
    (colptr, csc_row), src_perm = edge_index.get_csr()
    perm = arange if perm is None else perm
    src_perm = arange if src_perm is None else src_perm
    return assemble_graph(num_src, num_dst, rowptr, col, perm, colptr, src_perm, csc_row)


def prepare(edge_index: Tensor, num_nodes: int | tuple[int, int] | None = None) -> PreparedGraph:
    """Validates ``edge_index`` and builds its CSR/CSC form once.

    Parameters
    ----------
    edge_index : Tensor
        ``[2, E]`` integer tensor, row 0 = source, row 1 = destination.
    num_nodes : int or tuple of int, optional
        ``N`` for both sides, ``(N_src, N_dst)`` for a bipartite graph, or
        ``None`` for ``max index + 1``.

    Returns
    -------
    PreparedGraph
        A graph usable wherever an ``edge_index`` is accepted.

    Raises
    ------
    TypeError
        If ``edge_index`` is not an integer tensor.
    ValueError
        If ``edge_index`` is not ``[2, E]``, holds an index out of range, or
        ``num_nodes`` is neither a non-negative int nor a pair.

    Examples
    --------
    >>> import torch
    >>> g = prepare(torch.tensor([[0, 1, 2], [1, 2, 1]]), num_nodes=3)
    >>> g.rowptr.tolist()
    [0, 0, 2, 3]
    """
    num_src, num_dst = _sizes(edge_index, num_nodes)
    return checked_graph(edge_index, num_src, num_dst)


def _sizes(edge_index: Any, num_nodes: int | tuple[int, int] | None) -> tuple[int, int]:
    if num_nodes is None:
        if isinstance(edge_index, Tensor) and edge_index.dim() == 2 and edge_index.numel():
            n = int(edge_index.max()) + 1
        else:
            n = 0
        return n, n
    if isinstance(num_nodes, (tuple, list)):
        if len(num_nodes) != 2:
            raise ValueError(f"'num_nodes' must be an int or a pair, got {num_nodes}")
        return int(num_nodes[0]), int(num_nodes[1])
    if not isinstance(num_nodes, int) or num_nodes < 0:
        raise ValueError(f"'num_nodes' must be a non-negative int, got {num_nodes!r}")
    return num_nodes, num_nodes


def _unique(edge_index: Tensor, num_src: int) -> Tensor:
    """The distinct edges of ``edge_index``, sorted by (destination, source)."""
    edge_index = plain_edge_index(edge_index)
    width = max(num_src, 1)
    key = torch.unique(edge_index[1].long() * width + edge_index[0].long())
    return torch.stack([key % width, torch.div(key, width, rounding_mode="floor")])


def as_prepared(edge_index: Tensor | PreparedGraph, num_src: int, num_dst: int,
                unique: bool = False) -> PreparedGraph:
    """Returns the prepared form of ``edge_index`` for the given sizes.

    A :class:`PreparedGraph` is checked for matching sizes (its de-duplicated
    form, asked for with ``unique=True``, is derived once and kept with it); a
    tensor is validated and converted on every call (see the module doc).
    ``unique=True`` keeps each distinct edge once (sorted by destination, then
    source).

    Parameters
    ----------
    edge_index : Tensor or PreparedGraph
        ``[2, E]`` integer tensor (row 0 = source) or a prepared graph.
    num_src, num_dst : int
        Number of source and destination nodes the inputs have.
    unique : bool
        Keep each distinct edge once.

    Returns
    -------
    PreparedGraph
        The prepared graph.

    Raises
    ------
    TypeError
        If ``edge_index`` is neither a tensor nor a :class:`PreparedGraph`, or
        holds no integers.
    ValueError
        If a prepared graph has other sizes, or ``edge_index`` is not
        ``[2, E]`` or holds an index out of range.
    """
    if isinstance(edge_index, PreparedGraph):
        if (edge_index.num_src, edge_index.num_dst) != (num_src, num_dst):
            raise ValueError(
                f"'edge_index' was prepared for (N_src, N_dst) = ({edge_index.num_src}, "
                f"{edge_index.num_dst}) but the inputs have ({num_src}, {num_dst})")
        if not unique:
            return edge_index
        if "unique" not in edge_index.extras:
            edge_index.extras["unique"] = build_graph(_unique(edge_index.edge_index, num_src),
                                                 num_src, num_dst)
        return edge_index.extras["unique"]
    if not isinstance(edge_index, Tensor):
        raise TypeError("'edge_index' must be a LongTensor [2, E] or a PreparedGraph, "
                        f"got {type(edge_index).__name__}")
    if not unique:
        return checked_graph(edge_index, num_src, num_dst)
    validate_edge_index(edge_index, num_src, num_dst)
    return build_graph(_unique(edge_index, num_src), num_src, num_dst)
