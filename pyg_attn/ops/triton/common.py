"""Triton device functions shared by the attention kernels.

* the counter-based dropout stream of :mod:`pyg_attn.ops.dropout` (same bits
  as the CPU kernel and the reference for the same seed);
* LeakyReLU and its derivative;
* the per-edge score operand and score of every kind (``KIND``: ``DOT``,
  ``GAT``, ``GATV2``, ``EDGE``, from the table in :mod:`pyg_attn.ops.score_kinds`),
  and :func:`scored_block`, one block of a row's edges with their values and scores
  (:func:`edge_block`, :func:`value_block`, :func:`block_scores` separately);
* loads and stores of node rows, work-item fields
  (:mod:`pyg_attn.ops.triton.work`) and the row statistics.

Tiles are ``[BLOCK_E, BLOCK_H, BLOCK_D]`` (edges x heads x channels); GAT's
per-node scalars are read as ``[N, H, 1]`` features, so every kind uses the
same 3-D layout.  Offsets are widened to int64 before they are scaled by
feature sizes, so ``E * H * C`` may exceed ``2**31``.
"""
from __future__ import annotations

import triton
import triton.language as tl

from ..score_kinds import KIND_IDS

DOT = tl.constexpr(KIND_IDS["dot"])
GAT = tl.constexpr(KIND_IDS["gat"])
GATV2 = tl.constexpr(KIND_IDS["gatv2"])
EDGE = tl.constexpr(KIND_IDS["edge"])


@triton.jit
def _mix32(x):
    # lowbias32 mixer on uint32 (products wrap modulo 2**32, shifts are logical).
    x = x ^ (x >> 16)
    x = x * 0x21F0AAAD
    x = x ^ (x >> 15)
    x = x * 0x735A2D97
    return x ^ (x >> 15)


@triton.jit
def dropout_factor(eid, offs_h, H, seed, keep_threshold, keep_scale):
    """``[BE, BH]`` factors ``keep_scale`` or 0 of edges ``eid [BE]`` (int64).

    ``seed`` points to the op's 0-dim int64 seed, read here on the device (the
    host never waits for it).  Edge ``e``, head ``h`` is kept iff
    ``mix(mix(hi ^ seed) ^ lo) >> 8 >= keep_threshold`` with ``(hi, lo)`` the
    halves of ``e * H + h`` and
    ``keep_threshold = ceil(p * 2**24)`` (the exact integer form of
    ``u >= p``, ``u = (x >> 8) / 2**24``)."""
    counter = eid[:, None] * H + offs_h[None, :]
    hi = (counter >> 32).to(tl.uint32)
    lo = (counter & 0xFFFFFFFF).to(tl.uint32)
    x = _mix32(_mix32(hi ^ tl.load(seed).to(tl.uint32)) ^ lo)
    keep = (x >> 8).to(tl.int64) >= keep_threshold
    return tl.where(keep, keep_scale, 0.0)


@triton.jit
def load_scalars(scalars):
    """``(scale, negative_slope, keep_scale)`` from the op's ``[3]`` scalar tensor
    (in the accumulation dtype, so float64 runs keep every digit)."""
    return tl.load(scalars), tl.load(scalars + 1), tl.load(scalars + 2)


@triton.jit
def leaky(z, slope):
    return tl.where(z > 0, z, z * slope)


@triton.jit
def leaky_grad(z, slope):
    return tl.where(z > 0, 1.0, slope)


@triton.jit
def score_operand(KIND: tl.constexpr, j, eid, q, src, efeat, escore, offs_h, offs_d, H, D,
                  mask3, mask2, ACC: tl.constexpr, HAS_ESCORE: tl.constexpr,
                  HAS_EFEAT: tl.constexpr):
    """What the score of each edge is computed from, for source rows ``j [BE]``.

    ``q [BH, BD]`` is the destination's row.  DOT: the key ``k_j + k^E_e``;
    GATV2: the pre-activation ``x_j + x_i + x^E_e``; both ``[BE, BH, BD]``.
    GAT: the pre-activation ``src_j + dst_i + b_e`` ``[BE, BH]``.  EDGE: the
    edge scores ``[BE, BH]``.
    """
    node = offs_h[:, None] * D + offs_d[None, :]
    if KIND == EDGE:
        x = tl.load(escore + eid[:, None] * H + offs_h[None, :], mask=mask2, other=0.0).to(ACC)
    else:
        x = tl.load(src + j[:, None, None] * (H * D) + node[None, :, :], mask=mask3,
                    other=0.0).to(ACC)
        if HAS_EFEAT:
            x += tl.load(efeat + eid[:, None, None] * (H * D) + node[None, :, :], mask=mask3,
                         other=0.0).to(ACC)
        if KIND != DOT:
            x += q[None, :, :]
        if KIND == GAT:
            x = tl.sum(x, axis=2)
            if HAS_ESCORE:
                x += tl.load(escore + eid[:, None] * H + offs_h[None, :], mask=mask2,
                             other=0.0).to(ACC)
    return x


@triton.jit
def score_from_operand(KIND: tl.constexpr, x, q, att, eid, escore, offs_h, H, scale, slope,
                       mask2, ACC: tl.constexpr, HAS_ESCORE: tl.constexpr):
    """Scores ``[BE, BH]`` from :func:`score_operand`'s ``x``; ``-inf`` where
    ``mask2`` is false (padding lanes, masked edges)."""
    if KIND == DOT:
        s = scale * tl.sum(x * q[None, :, :], axis=2)
        if HAS_ESCORE:
            s += tl.load(escore + eid[:, None] * H + offs_h[None, :], mask=mask2,
                         other=0.0).to(ACC)
    elif KIND == GATV2:
        s = tl.sum(leaky(x, slope) * att[None, :, :], axis=2)
    elif KIND == GAT:
        s = leaky(x, slope)
    else:
        s = x
    return tl.where(mask2, s, float("-inf"))


@triton.jit
def load_node(ptr, row, offs_h, offs_c, H, C, ACC: tl.constexpr):
    """Row ``row`` of an ``[N, H, C]`` tensor as an ``[BH, BC]`` tile (zero padded)."""
    mask = (offs_h[:, None] < H) & (offs_c[None, :] < C)
    return tl.load(ptr + row * (H * C) + offs_h[:, None] * C + offs_c[None, :], mask=mask,
                   other=0.0).to(ACC)


@triton.jit
def load_rows(ptr, rows, offs_h, offs_c, H, C, mask3, ACC: tl.constexpr):
    """Rows ``rows [BE]`` (int64) of an ``[N, H, C]`` tensor as ``[BE, BH, BC]``."""
    node = offs_h[:, None] * C + offs_c[None, :]
    return tl.load(ptr + rows[:, None, None] * (H * C) + node[None, :, :], mask=mask3,
                   other=0.0).to(ACC)


@triton.jit
def store_node(ptr, row, tile, offs_h, offs_c, H, C, ATOMIC):
    """Stores (or, for a split row, atomically adds) an ``[BH, BC]`` node tile."""
    mask = (offs_h[:, None] < H) & (offs_c[None, :] < C)
    offs = ptr + row * (H * C) + offs_h[:, None] * C + offs_c[None, :]
    if ATOMIC:
        tl.atomic_add(offs, tile, mask=mask)
    else:
        tl.store(offs, tile, mask=mask)


@triton.jit
def work_item(items, num_items, pid):
    """``(row, start, end, slot)`` of work item ``pid`` (``items [4, num_items]``)."""
    row = tl.load(items + pid).to(tl.int64)
    start = tl.load(items + num_items + pid)
    end = tl.load(items + 2 * num_items + pid)
    slot = tl.load(items + 3 * num_items + pid)
    return row, start, end, slot


@triton.jit
def att_vector(KIND: tl.constexpr, att, like, offs_h, offs_d, H, D, ACC: tl.constexpr):
    """GATv2's attention vector ``[BH, BD]`` (``like`` for the other kinds)."""
    if KIND == GATV2:
        vec = load_node(att, 0, offs_h, offs_d, H, D, ACC)
    else:
        vec = like
    return vec


@triton.jit
def row_shift(stats, row, offs_h, H):
    """``(shift, log_sum) [BH]`` to subtract from a score: zeros for a head
    without edges (statistics ``-inf``), so its ``-inf`` scores give 0."""
    hm = offs_h < H
    m = tl.load(stats + (row * H + offs_h) * 2, mask=hm, other=float("-inf"))
    log_l = tl.load(stats + (row * H + offs_h) * 2 + 1, mask=hm, other=float("-inf"))
    empty = m == float("-inf")
    return tl.where(empty, 0.0, m), tl.where(empty, 0.0, log_l)


@triton.jit
def edge_block(e0, offs_e, end, offs_h, offs_d, H, D, col, perm, emask, HAS_MASK: tl.constexpr):
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
def block_scores(j, eid, mask2, mask3, q, a_vec, src, efeat, escore, offs_h, offs_d, H, D, scale,
                 slope, KIND: tl.constexpr, HAS_ESCORE: tl.constexpr, HAS_EFEAT: tl.constexpr,
                 ACC: tl.constexpr):
    """``(x, s)`` of one edge block from :func:`edge_block`'s fields (see
    :func:`score_operand`; ``s [BE, BH]`` is ``-inf`` where an edge does not
    take part)."""
    x = score_operand(KIND, j, eid, q, src, efeat, escore, offs_h, offs_d, H, D, mask3, mask2,
                      ACC, HAS_ESCORE, HAS_EFEAT)
    s = score_from_operand(KIND, x, q, a_vec, eid, escore, offs_h, H, scale, slope, mask2, ACC,
                           HAS_ESCORE)
    return x, s


@triton.jit
def value_block(value, evalue, j, eid, mask2, offs_h, offs_c, H, CV, HAS_EVALUE: tl.constexpr,
                ACC: tl.constexpr):
    """The values ``v_j + v^E_e`` ``[BE, BH, BC]`` of one edge block.  Kernels
    load them right after the block's indices, before the scores, so that the
    value and key gathers are in flight together."""
    vmask = mask2[:, :, None] & (offs_c[None, None, :] < CV)
    v = load_rows(value, j, offs_h, offs_c, H, CV, vmask, ACC)
    if HAS_EVALUE:
        v += load_rows(evalue, eid, offs_h, offs_c, H, CV, vmask, ACC)
    return v


@triton.jit
def scored_block(e0, offs_e, end, offs_h, offs_d, offs_c, q, a_vec, col, perm, emask, src, efeat,
                 escore, value, evalue, H, D, CV, scale, slope, KIND: tl.constexpr,
                 HAS_ESCORE: tl.constexpr, HAS_EFEAT: tl.constexpr, HAS_EVALUE: tl.constexpr,
                 HAS_MASK: tl.constexpr, WITH_VALUES: tl.constexpr, ACC: tl.constexpr):
    """One block of a row's edges with their values and scores, as the forward
    and the backward destination pass read it: ``(p, j, eid, in_range, mask2,
    x, s, v)`` (:func:`edge_block`, then :func:`value_block` when
    ``WITH_VALUES`` (else ``v`` is 0), then :func:`block_scores`)."""
    p, j, eid, in_range, mask2, mask3 = edge_block(e0, offs_e, end, offs_h, offs_d, H, D, col,
                                                   perm, emask, HAS_MASK)
    if WITH_VALUES:
        v = value_block(value, evalue, j, eid, mask2, offs_h, offs_c, H, CV, HAS_EVALUE, ACC)
    else:
        v = 0.0
    x, s = block_scores(j, eid, mask2, mask3, q, a_vec, src, efeat, escore, offs_h, offs_d, H, D,
                        scale, slope, KIND, HAS_ESCORE, HAS_EFEAT, ACC)
    return p, j, eid, in_range, mask2, x, s, v
