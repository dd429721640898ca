"""Fused edge attention on Triton: kernels, launcher and ``torch.library`` op.

Algebra as ``csrc/fused_attention.cpp`` (score kinds in
:mod:`pyg_attn.ops.reference`): for every edge ``j -> i`` (CSR position ``p``,
caller's edge id ``e``) and head ``h``, ``a_ij = softmax_j(s_ij)`` over ``i``'s
incoming edges and ``out_i = sum_j drop(a_ij) (v_j + v^E_e)``.

* :func:`_fused_attention_fwd_kernel`: one program per work item (a chunk of
  one destination row, :mod:`pyg_attn.ops.triton.work`) covering all heads;
  online softmax (running max ``m`` and sum ``l``) over blocks of edges, writing
  ``out`` and the row statistics ``(m, log l)``.  Items of a split row write
  their partial ``(m, l, acc)`` instead and
  :func:`_fused_attention_merge_kernel` combines them.
* :func:`_fused_attention_alpha_kernel` writes ``a_ij`` in the caller's edge
  order on request.
* :func:`_fused_attention_bwd_dst_kernel` recomputes ``a_ij`` from the
  statistics; with ``delta_i = <dO_i, out_i> + sum_j a_ij dA_ij``,
  ``ds_ij = a_ij (drop_ij <dO_i, v_j + v^E_e> + dA_ij - delta_i)``.  It sums
  its row's destination-side gradients, writes the per-edge ones, and hands
  ``(drop(a_ij), ds_ij)`` to the source pass in CSC order (``[E, 2H]``).
* :func:`_fused_attention_bwd_src_kernel` walks the source-sorted CSC and sums
  each source's value and key/source gradients: no atomics on ``[E, H, C]``.

Split rows' node gradients are added with atomics on ``[N, H, C]`` rows (only
rows longer than the chunk); GATv2's attention-vector gradient is summed in
:data:`ATT_SLOTS` partial copies to spread atomic contention.

``pyg_attn::triton_fused_attention`` mirrors the CPU op
(:mod:`pyg_attn.ops.library`): same score kinds, same ``(out, stats, alpha)``
results (``stats [N_dst, H, 2]``: each row's score maximum and the log of the
sum of exponentials below it) and the same autograd wiring, so
``torch.compile`` traces it through its fake implementation.  Inputs may be
float16, bfloat16, float32 or float64, accumulated in float32 (float64 for
float64); ``out`` comes back in the inputs' dtype, ``alpha`` and the statistics
in the accumulation dtype, gradients in each input's dtype.  Under
``TRITON_INTERPRET=1`` (set before Triton is imported) the kernels run on CPU
tensors.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..graph import PreparedGraph
from ..library import outside_compile, register_fused_op
from ..score_kinds import KIND_IDS
from ..spec import FEATURES, TRITON_OP, accumulation_dtype
from .common import (
    DOT,
    EDGE,
    GAT,
    GATV2,
    att_vector,
    block_scores,
    dropout_factor,
    edge_block,
    leaky,
    leaky_grad,
    load_node,
    load_rows,
    load_scalars,
    row_shift,
    scored_block,
    store_node,
    work_item,
)
from .work import triton_graph

CHUNK_SIZE = 1024
"""Default number of edges per work item (rows longer than this are split)."""
ATT_SLOTS = 64
"""Partial copies of GATv2's attention-vector gradient (spreads the atomics)."""
TILE_ELEMENTS = 4096
"""Elements of one ``[BLOCK_E, BLOCK_H, BLOCK_C]`` tile; sets ``BLOCK_E``."""


@triton.jit
def _fused_attention_fwd_kernel(items, num_items, col, perm, dst, src, value, att, escore, efeat,
                                evalue, emask, out, stats, part_acc, part_stats,
                                H: tl.constexpr, D: tl.constexpr, CV: tl.constexpr, scalars,
                                seed, keep_threshold, KIND: tl.constexpr,
                                HAS_ESCORE: tl.constexpr, HAS_EFEAT: tl.constexpr,
                                HAS_EVALUE: tl.constexpr, HAS_MASK: tl.constexpr,
                                DROPOUT: tl.constexpr, ACC: tl.constexpr, BLOCK_E: tl.constexpr,
                                BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
                                BLOCK_CV: tl.constexpr):
    """Online softmax over one work item's edges: ``out`` and statistics, or partials."""
    scale, slope, keep_scale = load_scalars(scalars)
    row, start, end, slot = work_item(items, num_items, tl.program_id(0))
    offs_e = tl.arange(0, BLOCK_E)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    offs_c = tl.arange(0, BLOCK_CV)
    q = load_node(dst, row, offs_h, offs_d, H, D, ACC)
    a_vec = att_vector(KIND, att, q, offs_h, offs_d, H, D, ACC)
    m = tl.full([BLOCK_H], float("-inf"), ACC)
    l = tl.zeros([BLOCK_H], ACC)
    acc = tl.zeros([BLOCK_H, BLOCK_CV], ACC)
    for e0 in range(start, end, BLOCK_E):
        p, j, eid, in_range, mask2, x, s, v = scored_block(
            e0, offs_e, end, offs_h, offs_d, offs_c, q, a_vec, col, perm, emask, src, efeat,
            escore, value, evalue, H, D, CV, scale, slope, KIND, HAS_ESCORE, HAS_EFEAT,
            HAS_EVALUE, HAS_MASK, KIND != EDGE, ACC)
        m_new = tl.maximum(m, tl.max(s, axis=0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        rescale = tl.exp(m - m_safe)
        w = tl.exp(s - m_safe[None, :])
        l = l * rescale + tl.sum(w, axis=0)
        m = m_new
        if KIND != EDGE:
            if DROPOUT:
                w = w * dropout_factor(eid, offs_h, H, seed, keep_threshold, keep_scale)
            acc = acc * rescale[:, None] + tl.sum(w[:, :, None] * v, axis=0)
    hm = offs_h < H
    if slot < 0:
        has = l > 0
        o = acc / tl.where(has, l, 1.0)[:, None]
        store_node(out, row, o, offs_h, offs_c, H, CV, False)
        tl.store(stats + (row * H + offs_h) * 2, tl.where(has, m, float("-inf")), mask=hm)
        tl.store(stats + (row * H + offs_h) * 2 + 1,
                 tl.where(has, tl.log(tl.where(has, l, 1.0)), float("-inf")), mask=hm)
    else:
        store_node(part_acc, slot, acc, offs_h, offs_c, H, CV, False)
        tl.store(part_stats + (slot * H + offs_h) * 2, m, mask=hm)
        tl.store(part_stats + (slot * H + offs_h) * 2 + 1, l, mask=hm)


@triton.jit
def _fused_attention_merge_kernel(merge_ptr, slot_row, part_acc, part_stats, out, stats,
                                  H: tl.constexpr, CV: tl.constexpr, ACC: tl.constexpr,
                                  BLOCK_H: tl.constexpr, BLOCK_CV: tl.constexpr):
    """Combines the partial ``(m, l, acc)`` of a split row's items."""
    r = tl.program_id(0)
    first = tl.load(merge_ptr + r)
    last = tl.load(merge_ptr + r + 1)
    row = tl.load(slot_row + first).to(tl.int64)
    offs_h = tl.arange(0, BLOCK_H)
    offs_c = tl.arange(0, BLOCK_CV)
    hm = offs_h < H
    m = tl.full([BLOCK_H], float("-inf"), ACC)
    l = tl.zeros([BLOCK_H], ACC)
    acc = tl.zeros([BLOCK_H, BLOCK_CV], ACC)
    for slot in range(first, last):
        m_k = tl.load(part_stats + (slot * H + offs_h) * 2, mask=hm, other=float("-inf"))
        l_k = tl.load(part_stats + (slot * H + offs_h) * 2 + 1, mask=hm, other=0.0)
        acc_k = load_node(part_acc, slot, offs_h, offs_c, H, CV, ACC)
        m_new = tl.maximum(m, m_k)
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        old = tl.exp(m - m_safe)
        new = tl.exp(m_k - m_safe)
        l = l * old + l_k * new
        acc = acc * old[:, None] + acc_k * new[:, None]
        m = m_new
    has = l > 0
    store_node(out, row, acc / tl.where(has, l, 1.0)[:, None], offs_h, offs_c, H, CV, False)
    tl.store(stats + (row * H + offs_h) * 2, tl.where(has, m, float("-inf")), mask=hm)
    tl.store(stats + (row * H + offs_h) * 2 + 1,
             tl.where(has, tl.log(tl.where(has, l, 1.0)), float("-inf")), mask=hm)


@triton.jit
def _fused_attention_alpha_kernel(items, num_items, col, perm, dst, src, att, escore, efeat, emask,
                                  stats, alpha, H: tl.constexpr, D: tl.constexpr, scalars,
                                  KIND: tl.constexpr,
                                  HAS_ESCORE: tl.constexpr, HAS_EFEAT: tl.constexpr,
                                  HAS_MASK: tl.constexpr, ACC: tl.constexpr, BLOCK_E: tl.constexpr,
                                  BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    """``alpha [E, H]`` (caller's edge order) from the final row statistics."""
    scale, slope, _ = load_scalars(scalars)
    row, start, end, slot = work_item(items, num_items, tl.program_id(0))
    offs_e = tl.arange(0, BLOCK_E)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    q = load_node(dst, row, offs_h, offs_d, H, D, ACC)
    a_vec = att_vector(KIND, att, q, offs_h, offs_d, H, D, ACC)
    shift, log_sum = row_shift(stats, row, offs_h, H)
    for e0 in range(start, end, BLOCK_E):
        p, j, eid, in_range, mask2, mask3 = edge_block(e0, offs_e, end, offs_h, offs_d, H, D, col,
                                                       perm, emask, HAS_MASK)
        x, s = block_scores(j, eid, mask2, mask3, q, a_vec, src, efeat, escore, offs_h, offs_d, H,
                            D, scale, slope, KIND, HAS_ESCORE, HAS_EFEAT, ACC)
        a = tl.exp(s - shift[None, :] - log_sum[None, :])
        tl.store(alpha + eid[:, None] * H + offs_h[None, :], a,
                 mask=in_range[:, None] & (offs_h[None, :] < H))


@triton.jit
def _fused_attention_bwd_dst_kernel(items, num_items, col, perm, csc_slot, dst, src, value, att,
                                    escore, efeat, evalue, emask, stats, delta, gout, galpha, wd,
                                    g_dst, g_att, g_escore, g_efeat, g_evalue, H: tl.constexpr,
                                    D: tl.constexpr, CV: tl.constexpr, scalars,
                                    seed, keep_threshold, ATT_SLOTS,
                                    KIND: tl.constexpr, HAS_ESCORE: tl.constexpr,
                                    HAS_EFEAT: tl.constexpr, HAS_EVALUE: tl.constexpr,
                                    HAS_MASK: tl.constexpr, HAS_GALPHA: tl.constexpr,
                                    DROPOUT: tl.constexpr, NEED_DST: tl.constexpr,
                                    NEED_ATT: tl.constexpr, NEED_ESCORE: tl.constexpr,
                                    NEED_EFEAT: tl.constexpr, NEED_EVALUE: tl.constexpr,
                                    ACC: tl.constexpr, BLOCK_E: tl.constexpr,
                                    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
                                    BLOCK_CV: tl.constexpr):
    """Destination pass: per-edge gradients, the row's own, and the CSC hand-off."""
    scale, slope, keep_scale = load_scalars(scalars)
    pid = tl.program_id(0)
    row, start, end, slot = work_item(items, num_items, pid)
    offs_e = tl.arange(0, BLOCK_E)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    offs_c = tl.arange(0, BLOCK_CV)
    hm = offs_h < H
    q = load_node(dst, row, offs_h, offs_d, H, D, ACC)
    a_vec = att_vector(KIND, att, q, offs_h, offs_d, H, D, ACC)
    go = load_node(gout, row, offs_h, offs_c, H, CV, ACC)
    shift, log_sum = row_shift(stats, row, offs_h, H)
    dlt = tl.load(delta + row * H + offs_h, mask=hm, other=0.0)
    acc_dst = tl.zeros([BLOCK_H, BLOCK_D], ACC)
    acc_att = tl.zeros([BLOCK_H, BLOCK_D], ACC)
    for e0 in range(start, end, BLOCK_E):
        p, j, eid, in_range, mask2, x, s, v = scored_block(
            e0, offs_e, end, offs_h, offs_d, offs_c, q, a_vec, col, perm, emask, src, efeat,
            escore, value, evalue, H, D, CV, scale, slope, KIND, HAS_ESCORE, HAS_EFEAT,
            HAS_EVALUE, HAS_MASK, KIND != EDGE, ACC)
        a = tl.exp(s - shift[None, :] - log_sum[None, :])
        if DROPOUT:
            dfac = dropout_factor(eid, offs_h, H, seed, keep_threshold, keep_scale)
        else:
            dfac = tl.full([BLOCK_E, BLOCK_H], 1.0, ACC)
        w = a * dfac
        store2 = in_range[:, None] & hm[None, :]
        grad_a = tl.zeros([BLOCK_E, BLOCK_H], ACC)
        if KIND != EDGE:
            grad_a = tl.sum(go[None, :, :] * v, axis=2) * dfac
        if HAS_GALPHA:
            grad_a += tl.load(galpha + eid[:, None] * H + offs_h[None, :], mask=mask2,
                              other=0.0).to(ACC)
        ds = a * (grad_a - dlt[None, :])
        store3 = store2[:, :, None] & (offs_d[None, None, :] < D)
        node_d = offs_h[:, None] * D + offs_d[None, :]
        if KIND == DOT:
            stored = scale * ds
            acc_dst += tl.sum(stored[:, :, None] * x, axis=0)
            if NEED_EFEAT:
                tl.store(g_efeat + eid[:, None, None] * (H * D) + node_d[None, :, :],
                         stored[:, :, None] * q[None, :, :], mask=store3)
        elif KIND == GAT:
            stored = ds * leaky_grad(x, slope)
            acc_dst += tl.sum(stored, axis=0)[:, None]
        elif KIND == GATV2:
            stored = ds
            gz = ds[:, :, None] * a_vec[None, :, :] * leaky_grad(x, slope)
            acc_dst += tl.sum(gz, axis=0)
            if NEED_ATT:
                acc_att += tl.sum(ds[:, :, None] * leaky(x, slope), axis=0)
            if NEED_EFEAT:
                tl.store(g_efeat + eid[:, None, None] * (H * D) + node_d[None, :, :], gz,
                         mask=store3)
        else:
            stored = ds
        if NEED_ESCORE:
            tl.store(g_escore + eid[:, None] * H + offs_h[None, :],
                     stored if KIND == GAT else ds, mask=store2)
        if NEED_EVALUE:
            node_c = offs_h[:, None] * CV + offs_c[None, :]
            tl.store(g_evalue + eid[:, None, None] * (H * CV) + node_c[None, :, :],
                     w[:, :, None] * go[None, :, :],
                     mask=store2[:, :, None] & (offs_c[None, None, :] < CV))
        if KIND != EDGE:  # the source pass's input (an edge softmax has no source side)
            slot_q = tl.load(csc_slot + p, mask=in_range, other=0).to(tl.int64)
            tl.store(wd + slot_q[:, None] * (2 * H) + offs_h[None, :], w, mask=store2)
            tl.store(wd + slot_q[:, None] * (2 * H) + H + offs_h[None, :], stored, mask=store2)
    if NEED_DST:
        store_node(g_dst, row, acc_dst, offs_h, offs_d, H, D, slot >= 0)
    if NEED_ATT:
        store_node(g_att, pid % ATT_SLOTS, acc_att, offs_h, offs_d, H, D, True)


@triton.jit
def _fused_attention_bwd_src_kernel(items, num_items, csc_row, csc_edge, dst, src, att, efeat,
                                    gout, wd, g_src, g_value, H: tl.constexpr, D: tl.constexpr,
                                    CV: tl.constexpr, scalars, KIND: tl.constexpr,
                                    HAS_EFEAT: tl.constexpr, NEED_SRC: tl.constexpr,
                                    NEED_VALUE: tl.constexpr, ACC: tl.constexpr,
                                    BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr,
                                    BLOCK_D: tl.constexpr, BLOCK_CV: tl.constexpr):
    """Source pass: ``dV_j = sum_i drop(a_ij) dO_i`` and the key/source gradient."""
    _, slope, _ = load_scalars(scalars)
    j, start, end, slot = work_item(items, num_items, tl.program_id(0))
    offs_e = tl.arange(0, BLOCK_E)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    offs_c = tl.arange(0, BLOCK_CV)
    hm = offs_h < H
    xs = load_node(src, j, offs_h, offs_d, H, D, ACC)
    a_vec = att_vector(KIND, att, xs, offs_h, offs_d, H, D, ACC)
    acc_v = tl.zeros([BLOCK_H, BLOCK_CV], ACC)
    acc_s = tl.zeros([BLOCK_H, BLOCK_D], ACC)
    for q0 in range(start, end, BLOCK_E):
        pos = q0 + offs_e
        in_range = pos < end
        i = tl.load(csc_row + pos, mask=in_range, other=0).to(tl.int64)
        mask2 = in_range[:, None] & hm[None, :]
        mask3 = mask2[:, :, None] & (offs_d[None, None, :] < D)
        w = tl.load(wd + pos[:, None].to(tl.int64) * (2 * H) + offs_h[None, :], mask=mask2,
                    other=0.0)
        st = tl.load(wd + pos[:, None].to(tl.int64) * (2 * H) + H + offs_h[None, :],
                     mask=mask2, other=0.0)
        if NEED_VALUE:
            vmask = mask2[:, :, None] & (offs_c[None, None, :] < CV)
            acc_v += tl.sum(w[:, :, None] * load_rows(gout, i, offs_h, offs_c, H, CV, vmask, ACC),
                            axis=0)
        if NEED_SRC:
            if KIND == DOT:
                acc_s += tl.sum(st[:, :, None] * load_rows(dst, i, offs_h, offs_d, H, D, mask3,
                                                           ACC), axis=0)
            elif KIND == GAT:
                acc_s += tl.sum(st, axis=0)[:, None]
            elif KIND == GATV2:
                z = xs[None, :, :] + load_rows(dst, i, offs_h, offs_d, H, D, mask3, ACC)
                if HAS_EFEAT:
                    eid = tl.load(csc_edge + pos, mask=in_range, other=0).to(tl.int64)
                    z += load_rows(efeat, eid, offs_h, offs_d, H, D, mask3, ACC)
                acc_s += tl.sum(st[:, :, None] * a_vec[None, :, :] * leaky_grad(z, slope), axis=0)
    if NEED_VALUE:
        store_node(g_value, j, acc_v, offs_h, offs_c, H, CV, slot >= 0)
    if NEED_SRC:
        store_node(g_src, j, acc_s, offs_h, offs_d, H, D, slot >= 0)


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def launch_config(heads: int, dim: int, dim_v: int, num_edges: int, num_rows: int,
                  side: str = "dst", block_e: int | None = None) -> dict:
    """Block sizes and warps of the launches over one side's rows.

    All heads and channels of a node are in one tile (``BLOCK_H``, ``BLOCK_D``).
    The kernels are bound by the latency of their dependent gathers (index, then
    rows), so small tiles and many resident programs win: ``BLOCK_E`` is 4 over
    destination rows (``side="dst"``: forward, attention, backward destination
    pass) and 2 over source rows (``"src"``: backward source pass), 2 for a mean
    degree below 3, never more than fits in :data:`TILE_ELEMENTS`;
    ``num_warps`` gives each thread about 8 of the elements an edge block
    gathers (``BLOCK_E x BLOCK_H x (BLOCK_D + BLOCK_CV)``), 1 to 8 warps.

    Measured with ``benchmarks/tune_gpu.py`` on an H200 (H=8): at arxiv size
    every kernel is within about 10 % of the best of 16 ``(BLOCK_E, num_warps)``
    configurations for dot scores at C=8 and 16, GAT and GATv2 at C=8; larger
    blocks (the mean degree, or half of it) are slower at 50k, arxiv and
    products size alike (products, dot, C=16: 57 ms of kernels per step against
    96 ms with ``BLOCK_E`` 16 and 8).  ``block_e`` overrides the rule (for
    tuning; the warps follow it).
    """
    block_h, block_d, block_cv = _pow2(heads), _pow2(dim), _pow2(dim_v)
    cap = max(1, min(64, TILE_ELEMENTS // (block_h * max(block_d, block_cv))))
    cap = 1 << (cap.bit_length() - 1)
    mean_degree = -(-num_edges // max(num_rows, 1))
    if block_e is None:
        block_e = min(cap, max(2, min(_pow2(mean_degree), 4 if side == "dst" else 2)))
    gathered = block_e * block_h * (block_d + block_cv)
    num_warps = min(8, max(1, 1 << (max(gathered // 256, 1).bit_length() - 1)))
    return dict(BLOCK_E=block_e, BLOCK_H=block_h, BLOCK_D=block_d, num_warps=num_warps)


def _acc(dtype: torch.dtype) -> tuple[torch.dtype, object]:
    """The accumulation dtype, as a torch and a Triton dtype."""
    acc = accumulation_dtype(dtype)
    return acc, (tl.float64 if acc == torch.float64 else tl.float32)


def _dropout_args(p: float) -> dict:
    """``DROPOUT`` and ``keep_threshold = ceil(p * 2**24)`` (see ``dropout_factor``)."""
    return dict(DROPOUT=p > 0.0, keep_threshold=math.ceil(p * 16777216.0))


@functools.lru_cache(maxsize=64)
def _scalar_tensor(scale: float, slope: float, dropout: float, dtype: torch.dtype,
                   device: torch.device) -> Tensor:
    """``[scale, negative_slope, 1 / (1 - dropout)]`` in the accumulation dtype.

    Triton passes Python floats as float32; reading the scalars from a tensor
    keeps float64 inputs exact.  Cached, so a training loop copies them to the
    device once instead of once per call.
    """
    keep_scale = 1.0 / (1.0 - dropout) if dropout < 1.0 else 0.0
    return torch.tensor([scale, slope, keep_scale], dtype=dtype, device=device)


def _params(scale: float, slope: float, dropout: float, value: Tensor) -> dict:
    """The kernels' ``scalars`` argument for inputs like ``value``."""
    return dict(scalars=_scalar_tensor(scale, slope, dropout, _acc(value.dtype)[0],
                                       value.device))


def _launch(kernel, num_programs: int, num_warps: int = 4, **kwargs) -> None:
    """Launches ``kernel`` on ``num_programs`` programs of ``num_warps`` warps
    with the arguments it takes out of ``kwargs`` (callers pass one superset of
    named arguments)."""
    if num_programs:
        kernel[(num_programs,)](**{name: kwargs[name] for name in kernel.arg_names},
                                num_warps=num_warps)


def _inputs(args: Any) -> dict:
    """Kernel arguments for the op's inputs (``args``: a named tuple of
    :data:`~pyg_attn.ops.spec.TRITON_OP`'s arguments): absent ones replaced by a
    dummy pointer (never read: their ``HAS_*`` or ``DROPOUT`` flag is off), the
    scalars, sizes, kind and flags."""
    dst, value = args.dst, args.value

    def present(t: Tensor | None) -> Tensor:
        return dst if t is None else t

    mask = args.edge_mask
    return dict(dst=dst, src=args.src, value=value, att=present(args.att),
                escore=present(args.edge_score), efeat=present(args.edge_feat),
                evalue=present(args.edge_value),
                emask=present(None if mask is None else mask.view(torch.uint8)),
                seed=present(args.seed), **_dropout_args(args.dropout),
                **_params(args.scale, args.negative_slope, args.dropout, value),
                H=value.size(1), D=dst.size(2), CV=value.size(2), KIND=args.kind,
                HAS_ESCORE=args.edge_score is not None, HAS_EFEAT=args.edge_feat is not None,
                HAS_EVALUE=args.edge_value is not None, HAS_MASK=mask is not None,
                ACC=_acc(value.dtype)[1], BLOCK_CV=_pow2(value.size(2)))


def _items(items: Tensor, num_edges: int, inputs: dict, side: str = "dst") -> dict:
    """Arguments describing one side's work items, with its block sizes."""
    return dict(items=items, num_items=items.size(1),
                **launch_config(inputs["H"], inputs["D"], inputs["CV"], num_edges,
                               items.size(1), side))


def _alpha(col: Tensor, perm: Tensor, dst_items: Tensor, stats: Tensor, inputs: dict) -> Tensor:
    """``alpha [E, H]`` in the caller's edge order, from the row statistics."""
    alpha = stats.new_empty(col.numel(), inputs["H"])
    if col.numel():
        _launch(_fused_attention_alpha_kernel, dst_items.size(1), col=col, perm=perm, stats=stats,
                alpha=alpha, **_items(dst_items, col.numel(), inputs), **inputs)
    return alpha


def _triton_forward(*args: object) -> tuple[Tensor, Tensor, Tensor]:
    """The kernels on :data:`~pyg_attn.ops.spec.TRITON_OP`'s forward arguments:
    ``(out [N_dst, H, Cv], stats [N_dst, H, 2], alpha [E or 0, H])``."""
    a = TRITON_OP.forward_tuple(*args)
    col, value = a.col, a.value
    n_dst, heads, dim_v = a.rowptr.numel() - 1, value.size(1), value.size(2)
    acc_torch = _acc(value.dtype)[0]
    inputs = _inputs(a)
    out = value.new_empty(n_dst, heads, dim_v)
    stats = value.new_empty(n_dst, heads, 2, dtype=acc_torch)
    num_slots = a.slot_row.numel()
    part_acc = value.new_empty(max(num_slots, 1), heads, dim_v, dtype=acc_torch)
    part_stats = value.new_empty(max(num_slots, 1), heads, 2, dtype=acc_torch)
    _launch(_fused_attention_fwd_kernel, a.dst_items.size(1), col=col, perm=a.perm, out=out,
            stats=stats, part_acc=part_acc, part_stats=part_stats,
            **_items(a.dst_items, col.numel(), inputs), **inputs)
    _launch(_fused_attention_merge_kernel, a.merge_ptr.numel() - 1 if num_slots else 0,
            merge_ptr=a.merge_ptr, slot_row=a.slot_row, part_acc=part_acc,
            part_stats=part_stats, out=out, stats=stats, BLOCK_H=_pow2(heads), **inputs)
    alpha = (_alpha(col, a.perm, a.dst_items, stats, inputs) if a.need_alpha
             else stats.new_empty(0, heads))
    return out, stats, alpha


def _delta(rowptr: Tensor, perm: Tensor, out: Tensor, grad_out: Tensor, alpha: Tensor | None,
           grad_alpha: Tensor | None, acc_torch: torch.dtype) -> Tensor:
    """``delta_i = <dO_i, out_i> + sum_j a_ij dA_ij`` per head, ``[N_dst, H]``."""
    delta = (grad_out.to(acc_torch) * out.to(acc_torch)).sum(-1)
    if alpha is not None and alpha.numel():
        assert grad_alpha is not None, "alpha is only computed for a grad_alpha"
        rows = torch.repeat_interleave(torch.arange(rowptr.numel() - 1, device=rowptr.device),
                                       rowptr.diff())
        edges = perm.long()
        delta.index_add_(0, rows, alpha[edges] * grad_alpha[edges].to(acc_torch))
    return delta


def _triton_backward(*args: object) -> list[Tensor]:
    """Gradients of the :data:`~pyg_attn.ops.spec.FEATURES` on
    :data:`~pyg_attn.ops.spec.TRITON_OP`'s backward arguments; an entry whose
    flag in ``needs`` is false comes back empty."""
    a = TRITON_OP.backward_tuple(*args)
    kind, col, dst, value, grad_alpha = a.kind, a.col, a.dst, a.value, a.grad_alpha
    acc_torch = _acc(value.dtype)[0]
    inputs = _inputs(a)
    like = a[TRITON_OP.first_feature:TRITON_OP.first_feature + len(FEATURES)]
    need = [bool(flag) and t is not None for flag, t in zip(a.needs, like)]
    grads = [torch.zeros(t.shape, dtype=acc_torch, device=value.device)
             if flag and t is not None else None for t, flag in zip(like, need)]
    alpha = None if grad_alpha is None else (  # the forward's, saved with grad_alpha's
        a.alpha if a.alpha is not None else _alpha(col, a.perm, a.dst_items, a.lse, inputs))
    delta = _delta(a.rowptr, a.perm, a.out, a.grad_out, alpha, grad_alpha, acc_torch)
    heads, num_edges = value.size(1), col.numel()
    wd = value.new_empty(max(num_edges, 1) if kind != KIND_IDS["edge"] else 1, 2 * heads,
                         dtype=acc_torch)
    att_parts = value.new_zeros(ATT_SLOTS if need[3] else 1, heads, dst.size(2), dtype=acc_torch)
    g_dst, g_src, g_value, _, g_escore, g_efeat, g_evalue = (delta if g is None else g
                                                              for g in grads)
    _launch(_fused_attention_bwd_dst_kernel, a.dst_items.size(1), col=col, perm=a.perm,
            csc_slot=a.csc_slot, stats=a.lse, delta=delta, gout=a.grad_out,
            galpha=delta if grad_alpha is None else grad_alpha, wd=wd, g_dst=g_dst,
            g_att=att_parts, g_escore=g_escore, g_efeat=g_efeat, g_evalue=g_evalue,
            ATT_SLOTS=att_parts.size(0),
            HAS_GALPHA=grad_alpha is not None, NEED_DST=need[0], NEED_ATT=need[3],
            NEED_ESCORE=need[4], NEED_EFEAT=need[5], NEED_EVALUE=need[6],
            **_items(a.dst_items, num_edges, inputs), **inputs)
    if kind != KIND_IDS["edge"] and (need[1] or need[2]):
        _launch(_fused_attention_bwd_src_kernel, a.src_items.size(1), csc_row=a.csc_row,
                csc_edge=a.csc_edge, gout=a.grad_out, wd=wd, g_src=g_src, g_value=g_value,
                NEED_SRC=need[1], NEED_VALUE=need[2],
                **_items(a.src_items, num_edges, inputs, "src"), **inputs)
    if need[3]:
        assert a.att is not None, "need[3] holds only for a given att"
        grads[3] = att_parts.sum(0).view(a.att.shape)
    # grads[k] is None exactly where need[k] is false (always so for an absent t).
    return [value.new_empty(0) if grad is None or t is None else grad.to(t.dtype)
            for grad, t in zip(grads, like)]


_op = register_fused_op(TRITON_OP, _triton_forward, _triton_backward, "EagerTritonAttention")
triton_fused_attention = _op.op
triton_fused_attention_backward = _op.backward
EagerTritonAttention = _op.eager


def fused_attention_triton(kind: int, graph: PreparedGraph, *args: object,
                           chunk: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Launches the Triton op on a prepared graph: ``args`` are the op's
    arguments after the graph tensors (:data:`~pyg_attn.ops.spec.TRITON_OP`:
    the features, ``edge_mask``, ``seed``, ``scale``, ``negative_slope``,
    ``dropout``, ``need_alpha``), the tensors contiguous, of one floating dtype,
    on one device, the indices validated.

    ``chunk`` is the most edges one program handles (default
    :data:`CHUNK_SIZE`); longer rows are split and merged.  Returns
    ``(out, stats, alpha)`` as :func:`triton_fused_attention`: through the op
    under ``torch.compile``, through :class:`EagerTritonAttention` otherwise
    (less host time per call, which a GPU step waits for).
    """
    tg = triton_graph(graph, CHUNK_SIZE if chunk is None else int(chunk))
    return outside_compile(EagerTritonAttention, triton_fused_attention, kind,
                           *TRITON_OP.graph_tensors(tg), *args)
