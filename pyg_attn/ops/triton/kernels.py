"""Triton kernels of the fused edge attention (forward, merge, alpha, backward).

Algebra as ``csrc/fused_attention.cpp`` (see :mod:`pyg_attn.ops.reference` for
the score kinds): for every edge ``j -> i`` (CSR position ``p``, caller's edge
id ``e``) and head ``h``, ``a_ij = softmax_j(s_ij)`` over ``i``'s incoming edges
and ``out_i = sum_j drop(a_ij) (v_j + v^E_e)``.

* :func:`_fwd_kernel`, one program per work item (a chunk of one destination
  row, :mod:`pyg_attn.ops.triton.work`) covering all heads: online softmax
  (running max ``m`` and sum ``l``) over blocks of edges, writing ``out`` and
  the row statistics ``(m, log l)``; items of a split row write their partial
  ``(m, l, acc)`` instead and :func:`_merge_kernel` combines them.
* :func:`_alpha_kernel` writes ``a_ij`` in the caller's edge order on request.
* :func:`_bwd_dst_kernel` recomputes ``a_ij`` from the statistics; with
  ``delta_i = <dO_i, out_i> + sum_j a_ij dA_ij``,
  ``ds_ij = a_ij (drop_ij <dO_i, v_j + v^E_e> + dA_ij - delta_i)``.  It sums the
  destination-side gradients of its row, writes the per-edge ones, and hands
  ``(drop(a_ij), ds_ij)`` to the source pass in CSC order (``[E, 2H]``).
* :func:`_bwd_src_kernel` walks the source-sorted CSC and sums the value and
  key/source gradients of its source row: no atomics on ``[E, H, C]``.

Split rows' node gradients are added with atomics on ``[N, H, C]`` rows (only
for rows longer than the chunk); GATv2's attention-vector gradient is summed
in ``ATT_SLOTS`` partial copies to spread atomic contention.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .common import (DOT, EDGE, GAT, GATV2, dropout_factor, leaky, leaky_grad, load_node,
                     load_rows, score_from_operand, score_operand, store_node)


@triton.jit
def _item(items, num_items, pid):
    row = tl.load(items + pid).to(tl.int64)
    start = tl.load(items + num_items + pid)
    end = tl.load(items + 2 * num_items + pid)
    slot = tl.load(items + 3 * num_items + pid)
    return row, start, end, slot


@triton.jit
def _att_vector(KIND: tl.constexpr, att, like, offs_h, offs_d, H, D, ACC: tl.constexpr):
    """GATv2's attention vector ``[BH, BD]`` (``like`` for the other kinds)."""
    if KIND == GATV2:
        vec = load_node(att, 0, offs_h, offs_d, H, D, ACC)
    else:
        vec = like
    return vec


@triton.jit
def _row_shift(stats, row, offs_h, H):
    """``(shift, log_sum) [BH]`` to subtract from a score: zeros for a head
    without edges (statistics ``-inf``), so its ``-inf`` scores give 0."""
    hm = offs_h < H
    m = tl.load(stats + (row * H + offs_h) * 2, mask=hm, other=float("-inf"))
    log_l = tl.load(stats + (row * H + offs_h) * 2 + 1, mask=hm, other=float("-inf"))
    empty = m == float("-inf")
    return tl.where(empty, 0.0, m), tl.where(empty, 0.0, log_l)


@triton.jit
def _edge_block(e0, offs_e, end, offs_h, offs_d, H, D, col, perm, emask, HAS_MASK: tl.constexpr):
    """Positions ``p``, sources ``j``, edge ids ``eid`` (int64) of one edge block,
    the lanes in range (``in_range``) and the ``[BE, BH]`` / ``[BE, BH, BD]``
    masks of the edges that take part."""
    p = e0 + offs_e
    in_range = p < end
    j = tl.load(col + p, mask=in_range, other=0).to(tl.int64)
    eid = tl.load(perm + p, mask=in_range, other=0).to(tl.int64)
    live = in_range
    if HAS_MASK:
        live = live & (tl.load(emask + eid, mask=in_range, other=0) != 0)
    mask2 = live[:, None] & (offs_h[None, :] < H)
    mask3 = mask2[:, :, None] & (offs_d[None, None, :] < D)
    return p, j, eid, in_range, mask2, mask3


@triton.jit
def _scored_block(e0, offs_e, end, offs_h, offs_d, q, a_vec, col, perm, emask, src, efeat, escore,
                  H, D, scale, slope, KIND: tl.constexpr, HAS_ESCORE: tl.constexpr,
                  HAS_EFEAT: tl.constexpr, HAS_MASK: tl.constexpr, ACC: tl.constexpr):
    """One block of a row's edges with their scores: ``(p, j, eid, in_range,
    mask2, x, s)`` (see :func:`_edge_block`, :func:`score_operand` for ``x``;
    ``s [BE, BH]`` is ``-inf`` where an edge does not take part)."""
    p, j, eid, in_range, mask2, mask3 = _edge_block(e0, offs_e, end, offs_h, offs_d, H, D, col,
                                                    perm, emask, HAS_MASK)
    x = score_operand(KIND, j, eid, q, src, efeat, escore, offs_h, offs_d, H, D, mask3, mask2,
                      ACC, HAS_ESCORE, HAS_EFEAT)
    s = score_from_operand(KIND, x, q, a_vec, eid, escore, offs_h, H, scale, slope, mask2, ACC,
                           HAS_ESCORE)
    return p, j, eid, in_range, mask2, x, s


@triton.jit
def _fwd_kernel(items, num_items, col, perm, dst, src, value, att, escore, efeat, evalue, emask,
                out, stats, part_acc, part_stats, H, D, CV, scale, slope, seed, keep_threshold,
                keep_scale, KIND: tl.constexpr, HAS_ESCORE: tl.constexpr,
                HAS_EFEAT: tl.constexpr, HAS_EVALUE: tl.constexpr, HAS_MASK: tl.constexpr,
                DROPOUT: tl.constexpr, ACC: tl.constexpr, BLOCK_E: tl.constexpr,
                BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_CV: tl.constexpr):
    row, start, end, slot = _item(items, num_items, tl.program_id(0))
    offs_e = tl.arange(0, BLOCK_E)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    offs_c = tl.arange(0, BLOCK_CV)
    q = load_node(dst, row, offs_h, offs_d, H, D, ACC)
    a_vec = _att_vector(KIND, att, q, offs_h, offs_d, H, D, ACC)
    m = tl.full([BLOCK_H], float("-inf"), ACC)
    l = tl.zeros([BLOCK_H], ACC)
    acc = tl.zeros([BLOCK_H, BLOCK_CV], ACC)
    for e0 in range(start, end, BLOCK_E):
        p, j, eid, in_range, mask2, x, s = _scored_block(
            e0, offs_e, end, offs_h, offs_d, q, a_vec, col, perm, emask, src, efeat, escore, H,
            D, scale, slope, KIND, HAS_ESCORE, HAS_EFEAT, HAS_MASK, ACC)
        m_new = tl.maximum(m, tl.max(s, axis=0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        rescale = tl.exp(m - m_safe)
        w = tl.exp(s - m_safe[None, :])
        l = l * rescale + tl.sum(w, axis=0)
        m = m_new
        if KIND != EDGE:
            if DROPOUT:
                w = w * dropout_factor(eid, offs_h, H, seed, keep_threshold, keep_scale)
            vmask = (mask2[:, :, None] & (offs_c[None, None, :] < CV))
            v = load_rows(value, j, offs_h, offs_c, H, CV, vmask, ACC)
            if HAS_EVALUE:
                v += load_rows(evalue, eid, offs_h, offs_c, H, CV, vmask, ACC)
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
def _merge_kernel(merge_ptr, slot_row, part_acc, part_stats, out, stats, H, CV,
                  ACC: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_CV: tl.constexpr):
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
def _alpha_kernel(items, num_items, col, perm, dst, src, att, escore, efeat, emask, stats, alpha,
                  H, D, scale, slope, KIND: tl.constexpr, HAS_ESCORE: tl.constexpr,
                  HAS_EFEAT: tl.constexpr, HAS_MASK: tl.constexpr, ACC: tl.constexpr,
                  BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    """``alpha [E, H]`` (caller's edge order) from the final row statistics."""
    row, start, end, slot = _item(items, num_items, tl.program_id(0))
    offs_e = tl.arange(0, BLOCK_E)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    q = load_node(dst, row, offs_h, offs_d, H, D, ACC)
    a_vec = _att_vector(KIND, att, q, offs_h, offs_d, H, D, ACC)
    shift, log_sum = _row_shift(stats, row, offs_h, H)
    for e0 in range(start, end, BLOCK_E):
        p, j, eid, in_range, mask2, x, s = _scored_block(
            e0, offs_e, end, offs_h, offs_d, q, a_vec, col, perm, emask, src, efeat, escore, H,
            D, scale, slope, KIND, HAS_ESCORE, HAS_EFEAT, HAS_MASK, ACC)
        a = tl.exp(s - shift[None, :] - log_sum[None, :])
        tl.store(alpha + eid[:, None] * H + offs_h[None, :], a,
                 mask=in_range[:, None] & (offs_h[None, :] < H))


@triton.jit
def _bwd_dst_kernel(items, num_items, col, perm, csc_slot, dst, src, value, att, escore, efeat,
                    evalue, emask, stats, delta, gout, galpha, wd, g_dst, g_att, g_escore,
                    g_efeat, g_evalue, H, D, CV, scale, slope, seed, keep_threshold, keep_scale,
                    ATT_SLOTS, KIND: tl.constexpr, HAS_ESCORE: tl.constexpr,
                    HAS_EFEAT: tl.constexpr, HAS_EVALUE: tl.constexpr, HAS_MASK: tl.constexpr,
                    HAS_GALPHA: tl.constexpr, DROPOUT: tl.constexpr, NEED_DST: tl.constexpr,
                    NEED_ATT: tl.constexpr, NEED_ESCORE: tl.constexpr,
                    NEED_EFEAT: tl.constexpr, NEED_EVALUE: tl.constexpr, ACC: tl.constexpr,
                    BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
                    BLOCK_CV: tl.constexpr):
    pid = tl.program_id(0)
    row, start, end, slot = _item(items, num_items, pid)
    offs_e = tl.arange(0, BLOCK_E)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    offs_c = tl.arange(0, BLOCK_CV)
    hm = offs_h < H
    q = load_node(dst, row, offs_h, offs_d, H, D, ACC)
    a_vec = _att_vector(KIND, att, q, offs_h, offs_d, H, D, ACC)
    go = load_node(gout, row, offs_h, offs_c, H, CV, ACC)
    shift, log_sum = _row_shift(stats, row, offs_h, H)
    dlt = tl.load(delta + row * H + offs_h, mask=hm, other=0.0)
    acc_dst = tl.zeros([BLOCK_H, BLOCK_D], ACC)
    acc_att = tl.zeros([BLOCK_H, BLOCK_D], ACC)
    for e0 in range(start, end, BLOCK_E):
        p, j, eid, in_range, mask2, x, s = _scored_block(
            e0, offs_e, end, offs_h, offs_d, q, a_vec, col, perm, emask, src, efeat, escore, H,
            D, scale, slope, KIND, HAS_ESCORE, HAS_EFEAT, HAS_MASK, ACC)
        a = tl.exp(s - shift[None, :] - log_sum[None, :])
        if DROPOUT:
            dfac = dropout_factor(eid, offs_h, H, seed, keep_threshold, keep_scale)
        else:
            dfac = tl.full([BLOCK_E, BLOCK_H], 1.0, ACC)
        w = a * dfac
        store2 = in_range[:, None] & hm[None, :]
        grad_a = tl.zeros([BLOCK_E, BLOCK_H], ACC)
        if KIND != EDGE:
            vmask = mask2[:, :, None] & (offs_c[None, None, :] < CV)
            v = load_rows(value, j, offs_h, offs_c, H, CV, vmask, ACC)
            if HAS_EVALUE:
                v += load_rows(evalue, eid, offs_h, offs_c, H, CV, vmask, ACC)
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
        slot_q = tl.load(csc_slot + p, mask=in_range, other=0).to(tl.int64)
        tl.store(wd + slot_q[:, None] * (2 * H) + offs_h[None, :], w, mask=store2)
        tl.store(wd + slot_q[:, None] * (2 * H) + H + offs_h[None, :], stored, mask=store2)
    if NEED_DST:
        store_node(g_dst, row, acc_dst, offs_h, offs_d, H, D, slot >= 0)
    if NEED_ATT:
        store_node(g_att, pid % ATT_SLOTS, acc_att, offs_h, offs_d, H, D, True)


@triton.jit
def _bwd_src_kernel(items, num_items, csc_row, csc_edge, dst, src, att, efeat, gout, wd, g_src,
                    g_value, H, D, CV, slope, KIND: tl.constexpr, HAS_EFEAT: tl.constexpr,
                    NEED_SRC: tl.constexpr, NEED_VALUE: tl.constexpr, ACC: tl.constexpr,
                    BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
                    BLOCK_CV: tl.constexpr):
    """Source pass: ``dV_j = sum_i drop(a_ij) dO_i`` and the key/source gradient."""
    j, start, end, slot = _item(items, num_items, tl.program_id(0))
    offs_e = tl.arange(0, BLOCK_E)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    offs_c = tl.arange(0, BLOCK_CV)
    hm = offs_h < H
    xs = load_node(src, j, offs_h, offs_d, H, D, ACC)
    a_vec = _att_vector(KIND, att, xs, offs_h, offs_d, H, D, ACC)
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
