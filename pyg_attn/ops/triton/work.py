"""Work items of the Triton kernels: CSR rows cut into chunks of bounded length.

One program handles one *item*, a contiguous range ``[start, end)`` of one row
of a CSR (a destination's incoming edges, or a source's outgoing ones in the
source-sorted CSC).  A row of degree ``d`` gives ``max(1, ceil(d / chunk))``
items, so a hub of degree :math:`10^5` is spread over many programs instead of
serialising the launch (FlashDecoding-style); an empty row still gets one item,
which writes its zero output.  Items of a split row carry a *slot*: the forward
writes their partial softmax state there and a merge kernel combines them; the
backward adds their partial node gradients atomically.  Items of unsplit rows
have slot ``-1`` and store their results directly.

All arrays are int32 (the kernels widen to int64 before scaling by feature
sizes) and are built once per graph and chunk size, cached in
``PreparedGraph.extras``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..graph import PreparedGraph

INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class WorkItems:
    """Chunks of the rows of one CSR.

    Attributes
    ----------
    items : Tensor
        ``[4, n_items]`` int32: row, start, end, slot of every item.
    merge_ptr : Tensor
        ``[n_split + 1]`` int32: slots of the ``r``-th split row are
        ``merge_ptr[r]:merge_ptr[r + 1]`` (slots of a row are consecutive).
    slot_row : Tensor
        ``[n_slots]`` int32: the row of each slot (its length sizes the
        forward's partial buffers without a device-to-host copy).
    """

    items: Tensor
    merge_ptr: Tensor
    slot_row: Tensor

    @property
    def num_items(self) -> int:
        return self.items.size(1)


def split_rows(ptr: Tensor, chunk: int) -> WorkItems:
    """Cuts the rows of the CSR pointer ``ptr [R + 1]`` into items of at most
    ``chunk`` entries (see the module doc).

    Parameters
    ----------
    ptr : Tensor
        ``[R + 1]`` integer pointer array (``rowptr`` or ``colptr``).
    chunk : int
        Most entries per item (positive).

    Returns
    -------
    WorkItems
        The items of every row, with the slots of the split rows.

    Raises
    ------
    ValueError
        If ``chunk < 1`` or the CSR has more than ``2**31 - 1`` entries.

    Examples
    --------
    >>> w = split_rows(torch.tensor([0, 0, 3, 4]), chunk=2)
    >>> w.items.tolist()
    [[0, 1, 1, 2], [0, 0, 2, 3], [0, 2, 3, 4], [-1, 0, 1, -1]]
    >>> w.merge_ptr.tolist(), w.slot_row.tolist()
    ([0, 2], [1, 1])
    """
    if chunk < 1:
        raise ValueError(f"'chunk' must be a positive number of edges, got {chunk}")
    ptr = ptr.long()
    device = ptr.device
    rows = ptr.numel() - 1
    if int(ptr[-1]) > INT32_MAX:
        raise ValueError(f"the Triton kernels index edges with int32; got {int(ptr[-1])} edges")
    deg = ptr.diff()
    pieces = torch.div(deg + chunk - 1, chunk, rounding_mode="floor").clamp_min(1)
    row = torch.repeat_interleave(torch.arange(rows, device=device), pieces)
    first = torch.cumsum(pieces, 0) - pieces
    k = torch.arange(row.numel(), device=device) - first[row]
    start = ptr[row] + k * chunk
    end = torch.minimum(start + chunk, ptr[row + 1])
    split = pieces[row] > 1
    slot = torch.full_like(row, -1)
    slot_row = row[split]
    slot[split] = torch.arange(slot_row.numel(), device=device)
    split_pieces = pieces[pieces > 1]
    merge_ptr = torch.zeros(split_pieces.numel() + 1, dtype=torch.long, device=device)
    torch.cumsum(split_pieces, 0, out=merge_ptr[1:])
    items = torch.stack([row, start, end, slot]).to(torch.int32).contiguous()
    return WorkItems(items, merge_ptr.to(torch.int32), slot_row.to(torch.int32).contiguous())


@dataclass(frozen=True)
class TritonGraph:
    """The int32 views of a :class:`PreparedGraph` that the kernels read.

    ``col``/``perm`` (destination CSR), ``csc_row``/``csc_edge``/``csc_slot``
    (source CSC, see :mod:`pyg_attn.ops.graph`), ``rowptr`` (int64, for
    ``torch.segment_reduce``) and the work items of both sides.
    """

    rowptr: Tensor
    col: Tensor
    perm: Tensor
    csc_row: Tensor
    csc_edge: Tensor
    csc_slot: Tensor
    dst_work: WorkItems
    src_work: WorkItems

    # The work items' tensors under the Triton op's argument names (pyg_attn.ops.spec).
    @property
    def dst_items(self) -> Tensor:
        return self.dst_work.items

    @property
    def merge_ptr(self) -> Tensor:
        return self.dst_work.merge_ptr

    @property
    def slot_row(self) -> Tensor:
        return self.dst_work.slot_row

    @property
    def src_items(self) -> Tensor:
        return self.src_work.items


def triton_graph(graph: PreparedGraph, chunk: int) -> TritonGraph:
    """Returns (and caches on ``graph``) its :class:`TritonGraph` for ``chunk``."""
    key = ("triton", chunk)
    if key not in graph.extras:
        def i32(t: Tensor) -> Tensor:
            return t.to(torch.int32).contiguous()

        graph.extras[key] = TritonGraph(
            rowptr=graph.rowptr, col=i32(graph.col), perm=i32(graph.perm),
            csc_row=i32(graph.csc_row), csc_edge=i32(graph.csc_edge),
            csc_slot=i32(graph.csc_slot), dst_work=split_rows(graph.rowptr, chunk),
            src_work=split_rows(graph.colptr, chunk))
    return graph.extras[key]
