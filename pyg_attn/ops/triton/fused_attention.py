"""Fused edge attention on Triton: launcher and ``torch.library`` registration.

``pyg_attn::triton_fused_attention`` mirrors the CPU op
(:mod:`pyg_attn.ops.library`): same score kinds, same ``(out, stats, alpha)``
results (``stats [N_dst, H, 2]`` = each row's score maximum and log-sum-exp below
it) and the same autograd wiring, so ``torch.compile`` traces it through its
fake implementation.  The kernels are in :mod:`pyg_attn.ops.triton.kernels`.

Inputs may be float16, bfloat16, float32 or float64; float32 (float64 for
float64 inputs) is the accumulation type.  ``out`` comes back in the inputs'
dtype, ``alpha`` and the statistics in the accumulation type, gradients in each
input's dtype.  Under ``TRITON_INTERPRET=1`` (set before this module is
imported) the kernels run on CPU tensors.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..csr import PreparedGraph
from ..library import KIND_IDS, register_fused_autograd
from . import kernels
from .work import TritonGraph, triton_graph

CHUNK_SIZE = 1024
"""Default number of edges per work item (rows longer than this are split)."""
ATT_SLOTS = 64
"""Partial copies of GATv2's attention-vector gradient (spreads the atomics)."""
TILE_ELEMENTS = 4096
"""Elements of one ``[BLOCK_E, BLOCK_H, BLOCK_C]`` tile; sets ``BLOCK_E``."""


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def _blocks(heads: int, dim: int, dim_v: int, num_edges: int, num_rows: int) -> dict:
    """Block sizes: all heads and channels of a node in one tile; ``BLOCK_E``
    edges per step, the mean degree rounded up to a power of two (lanes past a
    row's end are wasted work) between 4 and what fits in :data:`TILE_ELEMENTS`."""
    block_h, block_d = _pow2(heads), _pow2(dim)
    cap = max(1, min(64, TILE_ELEMENTS // (block_h * max(block_d, _pow2(dim_v)))))
    cap = 1 << (cap.bit_length() - 1)
    mean_degree = -(-num_edges // max(num_rows, 1))
    return dict(BLOCK_E=min(cap, max(4, _pow2(mean_degree))), BLOCK_H=block_h, BLOCK_D=block_d)


def _acc(dtype: torch.dtype) -> tuple[torch.dtype, object]:
    """The accumulation dtype, as a torch and a Triton dtype."""
    return (torch.float64, tl.float64) if dtype == torch.float64 else (torch.float32, tl.float32)


def _dropout_args(p: float) -> dict:
    """``keep_threshold = ceil(p * 2**24)`` and ``keep_scale = 1 / (1 - p)``."""
    return dict(DROPOUT=p > 0.0, keep_threshold=math.ceil(p * 16777216.0),
                keep_scale=1.0 / (1.0 - p) if p < 1.0 else 0.0)


def _launch(kernel, num_programs: int, **kwargs) -> None:
    """Launches ``kernel`` on ``num_programs`` programs with the arguments it
    takes out of ``kwargs`` (callers pass one superset of named arguments)."""
    if num_programs:
        kernel[(num_programs,)](**{name: kwargs[name] for name in kernel.arg_names})


def _inputs(kind: int, dst: Tensor, src: Tensor, value: Tensor, att: Optional[Tensor],
            edge_score: Optional[Tensor], edge_feat: Optional[Tensor],
            edge_value: Optional[Tensor], edge_mask: Optional[Tensor]) -> dict:
    """Kernel arguments for the op's inputs: absent ones replaced by a dummy
    pointer (never read: their ``HAS_*`` flag is off), sizes, kind and flags."""
    def present(t: Optional[Tensor]) -> Tensor:
        return dst if t is None else t

    return dict(dst=dst, src=src, value=value, att=present(att), escore=present(edge_score),
                efeat=present(edge_feat), evalue=present(edge_value),
                emask=present(None if edge_mask is None else edge_mask.view(torch.uint8)),
                H=value.size(1), D=dst.size(2), CV=value.size(2), KIND=kind,
                HAS_ESCORE=edge_score is not None, HAS_EFEAT=edge_feat is not None,
                HAS_EVALUE=edge_value is not None, HAS_MASK=edge_mask is not None,
                ACC=_acc(value.dtype)[1], BLOCK_CV=_pow2(value.size(2)))


def _items(items: Tensor, num_edges: int, inputs: dict) -> dict:
    """Arguments describing one side's work items, with its block sizes."""
    return dict(items=items, num_items=items.size(1),
                **_blocks(inputs["H"], inputs["D"], inputs["CV"], num_edges, items.size(1)))


def _alpha(col: Tensor, perm: Tensor, dst_items: Tensor, stats: Tensor, inputs: dict,
           **params) -> Tensor:
    """``alpha [E, H]`` in the caller's edge order, from the row statistics."""
    alpha = stats.new_empty(col.numel(), inputs["H"])
    if col.numel():
        _launch(kernels._alpha_kernel, dst_items.size(1), col=col, perm=perm, stats=stats,
                alpha=alpha, **_items(dst_items, col.numel(), inputs), **inputs, **params)
    return alpha


@torch.library.custom_op("pyg_attn::triton_fused_attention", mutates_args=())
def triton_fused_attention(
    kind: int, rowptr: Tensor, col: Tensor, perm: Tensor, csc_row: Tensor, csc_edge: Tensor,
    csc_slot: Tensor, dst_items: Tensor, merge_ptr: Tensor, slot_row: Tensor, src_items: Tensor,
    dst: Tensor, src: Tensor, value: Tensor, att: Optional[Tensor], edge_score: Optional[Tensor],
    edge_feat: Optional[Tensor], edge_value: Optional[Tensor], edge_mask: Optional[Tensor],
    scale: float, negative_slope: float, dropout: float, seed: int, need_alpha: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns ``(out [N_dst, H, Cv], stats [N_dst, H, 2], alpha [E or 0, H])``."""
    n_dst, heads, dim_v = rowptr.numel() - 1, value.size(1), value.size(2)
    acc_torch = _acc(value.dtype)[0]
    inputs = _inputs(kind, dst, src, value, att, edge_score, edge_feat, edge_value, edge_mask)
    params = dict(scale=scale, slope=negative_slope)
    out = value.new_empty(n_dst, heads, dim_v)
    stats = value.new_empty(n_dst, heads, 2, dtype=acc_torch)
    num_slots = slot_row.numel()
    part_acc = value.new_empty(max(num_slots, 1), heads, dim_v, dtype=acc_torch)
    part_stats = value.new_empty(max(num_slots, 1), heads, 2, dtype=acc_torch)
    _launch(kernels._fwd_kernel, dst_items.size(1), col=col, perm=perm, out=out, stats=stats,
            part_acc=part_acc, part_stats=part_stats, seed=seed, **_dropout_args(dropout),
            **_items(dst_items, col.numel(), inputs), **inputs, **params)
    _launch(kernels._merge_kernel, merge_ptr.numel() - 1 if num_slots else 0,
            merge_ptr=merge_ptr, slot_row=slot_row, part_acc=part_acc, part_stats=part_stats,
            out=out, stats=stats, BLOCK_H=_pow2(heads), **inputs)
    alpha = (_alpha(col, perm, dst_items, stats, inputs, **params) if need_alpha
             else stats.new_empty(0, heads))
    return out, stats, alpha


@triton_fused_attention.register_fake
def _(kind, rowptr, col, perm, csc_row, csc_edge, csc_slot, dst_items, merge_ptr, slot_row,
      src_items, dst, src, value, att, edge_score, edge_feat, edge_value, edge_mask, scale,
      negative_slope, dropout, seed, need_alpha):
    n_dst, heads = rowptr.size(0) - 1, value.size(1)
    acc_torch = _acc(value.dtype)[0]
    return (value.new_empty(n_dst, heads, value.size(2)),
            value.new_empty(n_dst, heads, 2, dtype=acc_torch),
            value.new_empty(col.size(0) if need_alpha else 0, heads, dtype=acc_torch))


def _delta(rowptr: Tensor, perm: Tensor, out: Tensor, grad_out: Tensor, alpha: Optional[Tensor],
           grad_alpha: Optional[Tensor], acc_torch: torch.dtype) -> Tensor:
    """``delta_i = <dO_i, out_i> + sum_j a_ij dA_ij`` per head, ``[N_dst, H]``."""
    delta = (grad_out.to(acc_torch) * out.to(acc_torch)).sum(-1)
    if alpha is not None and alpha.numel():
        rows = torch.repeat_interleave(torch.arange(rowptr.numel() - 1, device=rowptr.device),
                                       rowptr.diff())
        edges = perm.long()
        delta.index_add_(0, rows, alpha[edges] * grad_alpha[edges].to(acc_torch))
    return delta


@torch.library.custom_op("pyg_attn::triton_fused_attention_backward", mutates_args=())
def triton_fused_attention_backward(
    kind: int, rowptr: Tensor, col: Tensor, perm: Tensor, csc_row: Tensor, csc_edge: Tensor,
    csc_slot: Tensor, dst_items: Tensor, merge_ptr: Tensor, slot_row: Tensor, src_items: Tensor,
    dst: Tensor, src: Tensor, value: Tensor, att: Optional[Tensor], edge_score: Optional[Tensor],
    edge_feat: Optional[Tensor], edge_value: Optional[Tensor], edge_mask: Optional[Tensor],
    out: Tensor, lse: Tensor, grad_out: Tensor, grad_alpha: Optional[Tensor], scale: float,
    negative_slope: float, dropout: float, seed: int, needs: list[bool],
) -> list[Tensor]:
    """Gradients of ``(dst, src, value, att, edge_score, edge_feat, edge_value)``;
    an entry whose flag in ``needs`` is false comes back empty."""
    acc_torch = _acc(value.dtype)[0]
    inputs = _inputs(kind, dst, src, value, att, edge_score, edge_feat, edge_value, edge_mask)
    params = dict(scale=scale, slope=negative_slope)
    like = (dst, src, value, att, edge_score, edge_feat, edge_value)
    need = [bool(flag) and t is not None for flag, t in zip(needs, like)]
    grads = [torch.zeros(t.shape, dtype=acc_torch, device=value.device) if flag else None
             for t, flag in zip(like, need)]
    alpha = None if grad_alpha is None else _alpha(col, perm, dst_items, lse, inputs, **params)
    delta = _delta(rowptr, perm, out, grad_out, alpha, grad_alpha, acc_torch)
    heads, num_edges = value.size(1), col.numel()
    wd = value.new_empty(max(num_edges, 1), 2 * heads, dtype=acc_torch)
    att_parts = value.new_zeros(ATT_SLOTS if need[3] else 1, heads, dst.size(2), dtype=acc_torch)
    g_dst, g_src, g_value, _, g_escore, g_efeat, g_evalue = (delta if g is None else g
                                                              for g in grads)
    _launch(kernels._bwd_dst_kernel, dst_items.size(1), col=col, perm=perm, csc_slot=csc_slot,
            stats=lse, delta=delta, gout=grad_out,
            galpha=delta if grad_alpha is None else grad_alpha, wd=wd, g_dst=g_dst,
            g_att=att_parts, g_escore=g_escore, g_efeat=g_efeat, g_evalue=g_evalue, seed=seed,
            **_dropout_args(dropout), ATT_SLOTS=att_parts.size(0),
            HAS_GALPHA=grad_alpha is not None, NEED_DST=need[0], NEED_ATT=need[3],
            NEED_ESCORE=need[4], NEED_EFEAT=need[5], NEED_EVALUE=need[6],
            **_items(dst_items, num_edges, inputs), **inputs, **params)
    if kind != KIND_IDS["edge"] and (need[1] or need[2]):
        _launch(kernels._bwd_src_kernel, src_items.size(1), csc_row=csc_row, csc_edge=csc_edge,
                gout=grad_out, wd=wd, g_src=g_src, g_value=g_value, NEED_SRC=need[1],
                NEED_VALUE=need[2], **_items(src_items, num_edges, inputs), **inputs, **params)
    if need[3]:
        grads[3] = att_parts.sum(0).view(att.shape)
    return [grad.to(t.dtype) if flag else value.new_empty(0)
            for grad, t, flag in zip(grads, like, need)]


@triton_fused_attention_backward.register_fake
def _(kind, rowptr, col, perm, csc_row, csc_edge, csc_slot, dst_items, merge_ptr, slot_row,
      src_items, dst, src, value, att, edge_score, edge_feat, edge_value, edge_mask, out, lse,
      grad_out, grad_alpha, scale, negative_slope, dropout, seed, needs):
    like = (dst, src, value, att, edge_score, edge_feat, edge_value)
    return [t.new_empty(t.shape) if (flag and t is not None) else value.new_empty(0)
            for t, flag in zip(like, needs)]


register_fused_autograd("pyg_attn::triton_fused_attention", triton_fused_attention_backward,
                        num_graph=10)


def _graph_tensors(g: TritonGraph) -> tuple[Tensor, ...]:
    return (g.rowptr, g.col, g.perm, g.csc_row, g.csc_edge, g.csc_slot, g.dst_work.items,
            g.dst_work.merge_ptr, g.dst_work.slot_row, g.src_work.items)


def fused_attention_triton(kind: int, graph: PreparedGraph, dst: Tensor, src: Tensor,
                           value: Tensor, att: Optional[Tensor], edge_score: Optional[Tensor],
                           edge_feat: Optional[Tensor], edge_value: Optional[Tensor],
                           edge_mask: Optional[Tensor], scale: float, negative_slope: float,
                           dropout: float, seed: int, need_alpha: bool,
                           chunk: Optional[int] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Launches the Triton op on a prepared graph (inputs as the CPU op's:
    contiguous, one floating dtype, one device, indices validated).

    ``chunk`` is the most edges one program handles (default
    :data:`CHUNK_SIZE`); longer rows are split and merged.  Returns
    ``(out, stats, alpha)`` as :func:`triton_fused_attention`.
    """
    tg = triton_graph(graph, CHUNK_SIZE if chunk is None else int(chunk))
    return triton_fused_attention(
        kind, *_graph_tensors(tg), dst, src, value, att, edge_score, edge_feat, edge_value,
        edge_mask, float(scale), float(negative_slope), float(dropout), int(seed),
        bool(need_alpha))
