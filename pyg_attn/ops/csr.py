"""Destination-sorted CSR (and source-sorted CSC) views of an ``edge_index``.

Conventions (docs/guide/conventions.md): ``edge_index[0]`` holds sources ``j``,
``edge_index[1]`` destinations ``i``; node ``i`` attends over its incoming
edges ``j -> i``.  A :class:`PreparedGraph` holds

* ``rowptr [N_dst + 1]``, ``col [E]`` (source of each CSR position) and
  ``perm [E]`` (caller's edge id of each CSR position), for the destination pass;
* ``colptr [N_src + 1]``, ``csc_row [E]`` (destination of each CSC slot) and
  ``csc_edge [E]`` (its caller's edge id), for the source pass of the backward;
* ``csc_slot [E]`` (the CSC slot of each CSR position), derived on first use by
  the Triton backward, whose destination pass hands per-edge results to the
  source pass in the order it reads them (the CPU kernel recomputes them instead).

The edge-level arrays (``col``, ``perm``, ``csc_*``) are ``int32`` whenever the
graph has fewer than 2^31 edges and nodes (:func:`index_dtype`), the row
pointers ``int64``.

Build it once with :func:`prepare` and pass it wherever an ``edge_index`` is
accepted.  Plain ``edge_index`` tensors go through a small LRU cache keyed by
tensor identity *and* version counter, so an in-place change of ``edge_index``
is never served stale and the cache never holds more than
:data:`CACHE_SIZE` graphs (nor keeps a dead tensor's graph).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch_geometric import EdgeIndex

from .identity_cache import IdentityCache

CACHE_SIZE = 16


def validate_edge_index(edge_index: Any, num_src: int, num_dst: int,
                        name: str = "edge_index") -> None:
    """Checks dtype, shape and index range of ``edge_index``.

    Raises:
        TypeError: if ``edge_index`` is not an integer tensor.
        ValueError: if it is not ``[2, E]`` or holds an index outside
            ``[0, num_src)`` (row 0) or ``[0, num_dst)`` (row 1).
    """
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor, got {type(edge_index).__name__}")
    if edge_index.dtype.is_floating_point or edge_index.dtype.is_complex or edge_index.dtype == torch.bool:
        raise TypeError(f"'{name}' must hold integer indices, got dtype {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'{name}' must have shape [2, E], got {list(edge_index.shape)}")
    if edge_index.numel() == 0:
        return
    edge_index = plain_edge_index(edge_index)
    low = int(edge_index.min())
    if low < 0:
        raise ValueError(f"'{name}' holds a negative index ({low})")
    for row, size, role in ((0, num_src, "source"), (1, num_dst, "destination")):
        high = int(edge_index[row].max())
        if high >= size:
            raise ValueError(f"'{name}' holds {role} index {high}, but there are only "
                             f"{size} {role} nodes")


@dataclass(frozen=True)
class PreparedGraph:
    """A validated graph in destination-CSR and source-CSC form (see module doc)."""

    num_src: int
    num_dst: int
    rowptr: Tensor
    col: Tensor
    perm: Tensor
    colptr: Tensor
    csc_row: Tensor
    csc_edge: Tensor
    extras: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_edges(self) -> int:
        return self.col.numel()

    @property
    def edge_index(self) -> Tensor:
        """The ``[2, E]`` edge list in the caller's order, rebuilt from the CSR once
        and shared by every caller: do not modify it in place."""
        if "edge_index" not in self.extras:
            dst = torch.repeat_interleave(
                torch.arange(self.num_dst, device=self.device), self.rowptr.diff())
            out = torch.empty(2, self.num_edges, dtype=torch.long, device=self.device)
            out[0, self.perm] = self.col.long()
            out[1, self.perm] = dst
            self.extras["edge_index"] = out
        return self.extras["edge_index"]

    @property
    def csc_slot(self) -> Tensor:
        """``[E]``: the CSC slot of each CSR position, derived once from ``perm``
        and ``csc_edge`` and cached in ``extras``."""
        if "csc_slot" not in self.extras:
            positions = torch.arange(self.num_edges, device=self.device, dtype=self.perm.dtype)
            csr_position_of_edge = torch.empty_like(positions)
            csr_position_of_edge[self.perm.long()] = positions
            slot = torch.empty_like(positions)
            slot[csr_position_of_edge[self.csc_edge.long()].long()] = positions
            self.extras["csc_slot"] = slot
        return self.extras["csc_slot"]

    @property
    def device(self) -> torch.device:
        return self.rowptr.device

    def to(self, device: torch.device | str) -> "PreparedGraph":
        """Returns a copy on ``device`` (derived data in ``extras`` is rebuilt there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        moved = {name: getattr(self, name).to(device) for name in _TENSOR_FIELDS}
        return PreparedGraph(num_src=self.num_src, num_dst=self.num_dst, **moved)

    def __repr__(self) -> str:
        return (f"PreparedGraph(num_src={self.num_src}, num_dst={self.num_dst}, "
                f"num_edges={self.num_edges}, device={self.device})")


_TENSOR_FIELDS = ("rowptr", "col", "perm", "colptr", "csc_row", "csc_edge")


def _pointer(index: Tensor, size: int) -> Tensor:
    counts = torch.bincount(index, minlength=size) if index.numel() else \
        torch.zeros(size, dtype=torch.long, device=index.device)
    ptr = torch.zeros(size + 1, dtype=torch.long, device=index.device)
    torch.cumsum(counts, 0, out=ptr[1:])
    return ptr


def _build(edge_index: Tensor, num_src: int, num_dst: int) -> PreparedGraph:
    """The CSR/CSC of ``edge_index`` with at most two stable sorts, fewer when the
    edges come grouped: destination-sorted edges (samplers, CSC order) need no
    sort for the CSR, source-sorted ones (a coalesced ``edge_index``, a ``Batch``
    of them) none for the CSC, whose slots are then the edges in their own order.
    Indices are sorted and gathered as int32 where they fit (half the bytes)."""
    reused = _from_sorted_edge_index(edge_index, num_src, num_dst)
    if reused is not None:
        return reused
    edge_index = plain_edge_index(edge_index)
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
    return _graph(num_src, num_dst, _pointer(dst.long(), num_dst), col, perm,
                  _pointer(src.long(), num_src), csc_edge, csc_row)


def _is_grouped(keys: Tensor) -> bool:
    """Whether ``keys`` is non-decreasing (one O(E) pass)."""
    return keys.numel() < 2 or bool((keys[1:] >= keys[:-1]).all())


def _stable_order(keys: Tensor) -> Tensor | None:
    """The stable sorting permutation of ``keys`` (``None`` when already sorted)."""
    return None if _is_grouped(keys) else torch.sort(keys, stable=True)[1]


def index_dtype(num_edges: int, num_src: int, num_dst: int) -> torch.dtype:
    """``int32`` for the edge-level index arrays of a graph whose edge and node
    counts fit (half the memory of ``int64``; what the fused kernels read), else
    ``int64``."""
    return torch.int32 if max(num_edges, num_src, num_dst) < 2**31 else torch.long


def _graph(num_src: int, num_dst: int, rowptr: Tensor, col: Tensor, perm: Tensor,
           colptr: Tensor, csc_edge: Tensor, csc_row: Tensor) -> PreparedGraph:
    """Assembles a graph from its CSR (``rowptr``, ``col``, ``perm``) and CSC
    (``colptr``, ``csc_edge``: the edge id of each CSC slot, ``csc_row``: its
    destination).

    Row pointers are ``int64``; ``col``, ``perm`` and the CSC arrays take
    :func:`index_dtype` (``int32`` unless the graph has 2^31 edges or nodes).
    """
    dtype = index_dtype(col.numel(), num_src, num_dst)
    return PreparedGraph(
        num_src=num_src, num_dst=num_dst, rowptr=rowptr.long(),
        col=col.to(dtype).contiguous(), perm=perm.to(dtype).contiguous(),
        colptr=colptr.long(), csc_row=csc_row.to(dtype).contiguous(),
        csc_edge=csc_edge.to(dtype).contiguous())


def plain_edge_index(edge_index: Tensor) -> Tensor:
    """A plain tensor view of ``edge_index`` (unwraps PyG's ``EdgeIndex``)."""
    return edge_index.as_tensor() if isinstance(edge_index, EdgeIndex) else edge_index


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
    return _graph(num_src, num_dst, rowptr, col, perm, colptr, src_perm, csc_row)


def prepare(edge_index: Tensor, num_nodes: int | tuple[int, int] | None = None) -> PreparedGraph:
    """Validates ``edge_index`` and builds its CSR/CSC form once.

    Args:
        edge_index: ``[2, E]`` integer tensor, row 0 = source, row 1 = destination.
        num_nodes: ``N`` for both sides, ``(N_src, N_dst)`` for a bipartite graph,
            or ``None`` for ``max index + 1``.

    Returns:
        A :class:`PreparedGraph` usable wherever an ``edge_index`` is accepted.

    Example:
        >>> import torch
        >>> g = prepare(torch.tensor([[0, 1, 2], [1, 2, 1]]), num_nodes=3)
        >>> g.rowptr.tolist()
        [0, 0, 2, 3]
    """
    num_src, num_dst = _sizes(edge_index, num_nodes)
    validate_edge_index(edge_index, num_src, num_dst)
    return _build(edge_index, num_src, num_dst)


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


_cache = IdentityCache(CACHE_SIZE)


def _unique(edge_index: Tensor, num_src: int) -> Tensor:
    """The distinct edges of ``edge_index``, sorted by (destination, source)."""
    edge_index = plain_edge_index(edge_index)
    key = torch.unique(edge_index[1].long() * max(num_src, 1) + edge_index[0].long())
    return torch.stack([key % max(num_src, 1), torch.div(key, max(num_src, 1), rounding_mode="floor")])


@torch.compiler.disable
def as_prepared(edge_index: Tensor | PreparedGraph, num_src: int, num_dst: int,
                unique: bool = False) -> PreparedGraph:
    """Returns the prepared form of ``edge_index`` for the given sizes.

    A :class:`PreparedGraph` is checked for matching sizes; a tensor is validated
    and converted, with the result cached (see module doc).  ``unique=True`` keeps
    each distinct edge once (sorted by destination, then source); that form is
    cached too, beside the graph's own.  Under ``torch.compile`` this runs
    eagerly (one graph break before the op), so compiled models hit the cache too.
    """
    if isinstance(edge_index, PreparedGraph):
        if (edge_index.num_src, edge_index.num_dst) != (num_src, num_dst):
            raise ValueError(
                f"'edge_index' was prepared for (N_src, N_dst) = ({edge_index.num_src}, "
                f"{edge_index.num_dst}) but the inputs have ({num_src}, {num_dst})")
        if not unique:
            return edge_index
        if "unique" not in edge_index.extras:
            edge_index.extras["unique"] = _build(_unique(edge_index.edge_index, num_src),
                                                 num_src, num_dst)
        return edge_index.extras["unique"]
    if not isinstance(edge_index, Tensor):
        raise TypeError("'edge_index' must be a LongTensor [2, E] or a PreparedGraph, "
                        f"got {type(edge_index).__name__}")
    stamp = (edge_index._version, num_src, num_dst)
    graph = _cache.get(edge_index, (unique,), stamp)
    if graph is not None:
        return graph
    validate_edge_index(edge_index, num_src, num_dst)
    graph = _build(_unique(edge_index, num_src) if unique else edge_index, num_src, num_dst)
    return _cache.put(edge_index, (unique,), stamp, graph)


def clear_cache() -> None:
    """Drops every implicitly cached graph."""
    _cache.clear()
