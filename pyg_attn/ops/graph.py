"""The validated graph of the fused ops: :class:`PreparedGraph` and its checks.

Conventions (docs/guide/conventions.md): ``edge_index[0]`` holds sources ``j``,
``edge_index[1]`` destinations ``i``; node ``i`` attends over its incoming
edges ``j -> i``.  A :class:`PreparedGraph` holds

* ``rowptr [N_dst + 1]``, ``col [E]`` (source of each CSR position) and
  ``perm [E]`` (caller's edge id of each CSR position), for the destination pass;
* ``colptr [N_src + 1]``, ``csc_row [E]`` (destination of each CSC slot) and
  ``csc_edge [E]`` (its caller's edge id), for the source pass of the backward;
* ``csc_slot [E]`` (the CSC slot of each CSR position), derived on first use by
  the Triton backend for its backward.

The edge-level arrays (``col``, ``perm``, ``csc_*``) are ``int32`` whenever the
graph has fewer than 2^31 edges and nodes (:func:`index_dtype`), the row
pointers ``int64``.  Graphs exist only validated: the kernels index memory with
these arrays.  :mod:`pyg_attn.ops.graph_build` builds them from an ``edge_index``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch_geometric import EdgeIndex


def check_edge_index_layout(edge_index: Any, name: str = "edge_index") -> None:
    """Checks the type, dtype and shape of ``edge_index`` (reads no data).

    Raises
    ------
    TypeError
        If ``edge_index`` is not an integer tensor.
    ValueError
        If it is not ``[2, E]``.
    """
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor, got {type(edge_index).__name__}")
    dtype = edge_index.dtype
    if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
        raise TypeError(f"'{name}' must hold integer indices, got dtype {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'{name}' must have shape [2, E], got {list(edge_index.shape)}")


def validate_edge_index(edge_index: Any, num_src: int, num_dst: int,
                        name: str = "edge_index") -> None:
    """Checks dtype, shape and index range of ``edge_index``.

    Parameters
    ----------
    edge_index : Tensor
        ``[2, E]`` integer tensor, row 0 = source, row 1 = destination.
    num_src, num_dst : int
        Number of source and destination nodes.
    name : str
        Argument named in the error messages.

    Raises
    ------
    TypeError
        If ``edge_index`` is not an integer tensor.
    ValueError
        If it is not ``[2, E]`` or holds an index outside ``[0, num_src)``
        (row 0) or ``[0, num_dst)`` (row 1).
    """
    check_edge_index_layout(edge_index, name)
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


ATTENDED_MIN_ROWS = 1024
"""Fewest destinations for which :func:`attended_rows` looks for the attended ones:
below, projecting every row costs less than the look (on a 30-node graph the look
was about 15 us of a 213 us TransformerConv call)."""


def attended_rows(rowptr: Tensor) -> Tensor | None:
    """``[R]`` int64: the destinations with at least one incoming edge in the CSR
    ``rowptr [N_dst + 1]``, when they are at most half of all (as in a sampled
    mini-batch, whose outer hop has none); ``None`` otherwise, and for fewer than
    :data:`ATTENDED_MIN_ROWS` destinations (not looked at)."""
    if rowptr.numel() - 1 < ATTENDED_MIN_ROWS:
        return None
    rows = torch.nonzero(rowptr.diff()).squeeze(1)
    return rows if 2 * rows.numel() <= rowptr.numel() - 1 else None


@dataclass(frozen=True)
class PreparedGraph:
    """A validated graph in destination-CSR and source-CSC form (see module doc).

    Obtain one from :func:`prepare` (from an ``edge_index``) or
    :meth:`PreparedGraph.from_csr` (from a CSR).  Building one directly checks
    every field (lengths, dtypes, monotone pointers, index ranges and that the
    CSC is the transpose of the CSR; one pass over the edges, reading the values)
    and raises :class:`ValueError` naming the first inconsistent field: the fused
    kernels index memory with these arrays.

    Attributes
    ----------
    num_src, num_dst : int
        Number of source and destination nodes.
    rowptr : Tensor
        ``[N_dst + 1]`` int64 destination row pointers.
    col : Tensor
        ``[E]`` source of each CSR position.
    perm : Tensor
        ``[E]`` the caller's edge id of each CSR position.
    colptr : Tensor
        ``[N_src + 1]`` int64 source column pointers.
    csc_row : Tensor
        ``[E]`` destination of each CSC slot.
    csc_edge : Tensor
        ``[E]`` the caller's edge id of each CSC slot.
    extras : dict
        Data derived on first use (``edge_index``, ``csc_slot``, the
        de-duplicated graph, the Triton work items).

    Raises
    ------
    ValueError
        If a field is inconsistent with the others.
    """

    num_src: int
    num_dst: int
    rowptr: Tensor
    col: Tensor
    perm: Tensor
    colptr: Tensor
    csc_row: Tensor
    csc_edge: Tensor
    extras: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_layout(self)
        _check_values(self)

    @classmethod
    def _trusted(cls, num_src: int, num_dst: int, **tensors: Tensor) -> PreparedGraph:
        """A graph whose fields are consistent by construction (built from a
        validated ``edge_index`` or copied from a validated graph): no checks,
        so no device synchronisation."""
        graph = object.__new__(cls)
        for name, value in (("num_src", num_src), ("num_dst", num_dst), *tensors.items(),
                            ("extras", {})):
            object.__setattr__(graph, name, value)
        return graph

    @classmethod
    def from_csr(cls, rowptr: Tensor, col: Tensor, num_src: int,
                 perm: Tensor | None = None) -> PreparedGraph:
        """Validates a destination-sorted CSR and builds its graph (with the CSC).

        Parameters
        ----------
        rowptr : Tensor
            ``[N_dst + 1]`` non-decreasing integer row pointers from 0 to ``E``.
        col : Tensor
            ``[E]`` integer source of each CSR position, in ``[0, num_src)``.
        num_src : int
            Number of source nodes.
        perm : Tensor, optional
            ``[E]`` the caller's edge id of each CSR position (a permutation
            of ``0..E-1``; per-edge inputs such as ``edge_mask`` are indexed by
            it); ``None`` for ``0..E-1``, i.e. edges numbered in CSR order.

        Returns
        -------
        PreparedGraph
            A graph usable wherever an ``edge_index`` is accepted.

        Raises
        ------
        ValueError
            If ``rowptr`` is not a pointer array, or ``col`` or ``perm`` has the
            wrong length or an index out of range.

        Examples
        --------
        >>> import torch
        >>> g = PreparedGraph.from_csr(torch.tensor([0, 0, 2, 3]),
        ...                            torch.tensor([0, 2, 1]), num_src=3)
        >>> g.edge_index.tolist()
        [[0, 2, 1], [1, 1, 2]]
        """
        return _from_csr(rowptr, col, num_src, perm)

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

    def to(self, device: torch.device | str) -> PreparedGraph:
        """Returns a copy on ``device`` (derived data in ``extras`` is rebuilt there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        moved = {name: getattr(self, name).to(device) for name in _TENSOR_FIELDS}
        return PreparedGraph._trusted(self.num_src, self.num_dst, **moved)

    def __repr__(self) -> str:
        return (f"PreparedGraph(num_src={self.num_src}, num_dst={self.num_dst}, "
                f"num_edges={self.num_edges}, device={self.device})")


_TENSOR_FIELDS = ("rowptr", "col", "perm", "colptr", "csc_row", "csc_edge")
_EDGE_FIELDS = ("col", "perm", "csc_row", "csc_edge")


def _invalid(name: str, problem: str) -> ValueError:
    return ValueError(f"PreparedGraph: '{name}' {problem}")


def _check_layout(graph: PreparedGraph) -> None:
    """Types, dtypes, devices, contiguity and lengths of the fields (no data read)."""
    for name in ("num_src", "num_dst"):
        value = getattr(graph, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _invalid(name, f"must be a non-negative int, got {value!r}")
    for name in _TENSOR_FIELDS:
        t = getattr(graph, name)
        if not isinstance(t, Tensor):
            raise _invalid(name, f"must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 1:
            raise _invalid(name, f"must be 1-D, got shape {list(t.shape)}")
        if not t.is_contiguous():
            raise _invalid(name, "must be contiguous")
        if t.device != graph.rowptr.device:
            raise _invalid(name, f"is on {t.device} but 'rowptr' is on {graph.rowptr.device}")
    for name in ("rowptr", "colptr"):
        if getattr(graph, name).dtype != torch.long:
            raise _invalid(name, f"must be int64, got {getattr(graph, name).dtype}")
    dtype = index_dtype(graph.col.numel(), graph.num_src, graph.num_dst)
    for name in _EDGE_FIELDS:
        if getattr(graph, name).dtype not in (dtype, torch.long):
            raise _invalid(name, f"must be {dtype} or int64, got {getattr(graph, name).dtype}")
    _check_length(graph, "rowptr", graph.num_dst + 1)
    _check_length(graph, "colptr", graph.num_src + 1)
    for name in _EDGE_FIELDS[1:]:
        _check_length(graph, name, graph.num_edges)


def _check_length(graph: PreparedGraph, name: str, expected: int) -> None:
    if getattr(graph, name).numel() != expected:
        raise _invalid(name, f"must have {expected} elements, got {getattr(graph, name).numel()}")


def _check_values(graph: PreparedGraph) -> None:
    """Pointers, index ranges and the CSC's agreement with the CSR (reads the data)."""
    num_edges = graph.num_edges
    _check_pointer("rowptr", graph.rowptr, num_edges)
    _check_pointer("colptr", graph.colptr, num_edges)
    _check_range("col", graph.col, graph.num_src)
    _check_range("csc_row", graph.csc_row, graph.num_dst)
    csr_position = _inverse_permutation("perm", graph.perm)
    _inverse_permutation("csc_edge", graph.csc_edge)
    position = csr_position[graph.csc_edge.long()]
    slot_src = _owners(graph.colptr)
    if not bool((graph.col.long()[position] == slot_src).all()):
        raise _invalid("colptr",
                       "and 'csc_edge' do not give each edge the source that 'col' gives it")
    if not bool((_owners(graph.rowptr)[position] == graph.csc_row.long()).all()):
        raise _invalid("csc_row", "does not give each edge the destination that 'rowptr' gives it")


def _check_pointer(name: str, ptr: Tensor, num_edges: int) -> None:
    if int(ptr[0]) != 0:
        raise _invalid(name, f"must start at 0, got {int(ptr[0])}")
    if int(ptr[-1]) != num_edges:
        raise _invalid(name, f"must end at the number of edges ({num_edges}), got {int(ptr[-1])}")
    if not bool((ptr[1:] >= ptr[:-1]).all()):
        raise _invalid(name, "must be non-decreasing")


def _check_range(name: str, index: Tensor, size: int) -> None:
    if index.numel() == 0:
        return
    low, high = int(index.min()), int(index.max())
    if low < 0 or high >= size:
        raise _invalid(name, f"holds indices in [{low}, {high}], outside [0, {size})")


def _inverse_permutation(name: str, perm: Tensor) -> Tensor:
    """The inverse of ``perm`` (``int64``), which must be a permutation of ``0..E-1``."""
    _check_range(name, perm, perm.numel())
    counts = torch.bincount(perm.long(), minlength=perm.numel())
    if not bool((counts == 1).all()):
        raise _invalid(name, "must be a permutation of 0..E-1 (an edge id repeats)")
    inverse = torch.empty(perm.numel(), dtype=torch.long, device=perm.device)
    inverse[perm.long()] = torch.arange(perm.numel(), device=perm.device)
    return inverse


def _owners(ptr: Tensor) -> Tensor:
    """``[E]``: the row of each position of a (checked) pointer array."""
    rows = torch.arange(ptr.numel() - 1, device=ptr.device)
    return torch.repeat_interleave(rows, ptr.diff())


def _from_csr(rowptr: Tensor, col: Tensor, num_src: int, perm: Tensor | None) -> PreparedGraph:
    """:meth:`PreparedGraph.from_csr`: checks the CSR, then derives the CSC from it."""
    for name, t in (("rowptr", rowptr), ("col", col), ("perm", perm)):
        if t is not None and (not isinstance(t, Tensor) or t.dim() != 1 or t.dtype == torch.bool
                              or t.dtype.is_floating_point or t.dtype.is_complex):
            raise _invalid(name, "must be a 1-D integer tensor")
    if isinstance(num_src, bool) or not isinstance(num_src, int) or num_src < 0:
        raise _invalid("num_src", f"must be a non-negative int, got {num_src!r}")
    if rowptr.numel() == 0:
        raise _invalid("rowptr", "must have N_dst + 1 >= 1 elements")
    num_edges = col.numel()
    rowptr = rowptr.long()
    perm = torch.arange(num_edges, device=col.device) if perm is None else perm
    if perm.numel() != num_edges:
        raise _invalid("perm", f"must have {num_edges} elements (as 'col'), got {perm.numel()}")
    _check_pointer("rowptr", rowptr, num_edges)
    _check_range("col", col, num_src)
    _inverse_permutation("perm", perm)
    dst = _owners(rowptr)
    order = torch.sort(col.long(), stable=True)[1]
    return assemble_graph(num_src, rowptr.numel() - 1, rowptr, col, perm,
                          pointer_array(col.long(), num_src), perm.long()[order], dst[order])


def pointer_array(index: Tensor, size: int) -> Tensor:
    """``[size + 1]`` int64 pointers of the groups of ``index`` (values in ``[0, size)``)."""
    counts = torch.bincount(index, minlength=size) if index.numel() else \
        torch.zeros(size, dtype=torch.long, device=index.device)
    ptr = torch.zeros(size + 1, dtype=torch.long, device=index.device)
    torch.cumsum(counts, 0, out=ptr[1:])
    return ptr


def index_dtype(num_edges: int, num_src: int, num_dst: int) -> torch.dtype:
    """``int32`` for the edge-level index arrays of a graph whose edge and node
    counts fit (half the memory of ``int64``; what the fused kernels read), else
    ``int64``."""
    return torch.int32 if max(num_edges, num_src, num_dst) < 2**31 else torch.long


def assemble_graph(num_src: int, num_dst: int, rowptr: Tensor, col: Tensor, perm: Tensor,
                   colptr: Tensor, csc_edge: Tensor, csc_row: Tensor) -> PreparedGraph:
    """Assembles a graph from its CSR (``rowptr``, ``col``, ``perm``) and CSC
    (``colptr``, ``csc_edge``: the edge id of each CSC slot, ``csc_row``: its
    destination).

    Row pointers are ``int64``; ``col``, ``perm`` and the CSC arrays take
    :func:`index_dtype` (``int32`` unless the graph has 2^31 edges or nodes).
    """
    # int32 arrays fit by construction (and asking index_dtype would guard on the
    # size, data-dependent under torch.export after a self-loop removal).
    dtype = torch.int32 if col.dtype == torch.int32 else index_dtype(col.numel(), num_src,
                                                                     num_dst)
    return PreparedGraph._trusted(
        num_src, num_dst, rowptr=_index_array(rowptr, torch.long),
        col=_index_array(col, dtype), perm=_index_array(perm, dtype),
        colptr=_index_array(colptr, torch.long), csc_row=_index_array(csc_row, dtype),
        csc_edge=_index_array(csc_edge, dtype))


def _index_array(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` as a contiguous array of ``dtype``, itself when it is one already (the
    common case, the compiled build's arrays: the calls' argument handling cost
    more than a small graph's build)."""
    return t if t.dtype == dtype and t.is_contiguous() else t.to(dtype).contiguous()


def plain_edge_index(edge_index: Tensor) -> Tensor:
    """A plain tensor view of ``edge_index`` (unwraps PyG's ``EdgeIndex``)."""
    return edge_index.as_tensor() if isinstance(edge_index, EdgeIndex) else edge_index
