"""Triton device functions shared by the attention kernels.

* the counter-based dropout stream of :mod:`pyg_attn.ops.dropout` (same bits
  as the CPU kernel and the reference for the same seed);
* LeakyReLU and its derivative;
* the per-edge score operand and score of every kind (``KIND``: ``DOT = 0``,
  ``GAT = 1``, ``GATV2 = 2``, ``EDGE = 3``, as ``pyg_attn.ops.library.KIND_IDS``).

Tiles are ``[BLOCK_E, BLOCK_H, BLOCK_D]`` (edges x heads x channels); GAT's
per-node scalars are read as ``[N, H, 1]`` features, so every kind uses the
same 3-D layout.  Offsets are widened to int64 before they are scaled by
feature sizes, so ``E * H * C`` may exceed ``2**31``.
"""
from __future__ import annotations

import triton
import triton.language as tl

DOT = tl.constexpr(0)
GAT = tl.constexpr(1)
GATV2 = tl.constexpr(2)
EDGE = tl.constexpr(3)


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

    Edge ``e``, head ``h`` is kept iff ``mix(mix(hi ^ seed) ^ lo) >> 8 >=
    keep_threshold`` with ``(hi, lo)`` the halves of ``e * H + h`` and
    ``keep_threshold = ceil(p * 2**24)`` (the exact integer form of
    ``u >= p``, ``u = (x >> 8) / 2**24``)."""
    counter = eid[:, None] * H + offs_h[None, :]
    hi = (counter >> 32).to(tl.uint32)
    lo = (counter & 0xFFFFFFFF).to(tl.uint32)
    x = _mix32(_mix32(hi ^ tl.cast(seed, tl.uint32)) ^ lo)
    keep = (x >> 8).to(tl.int64) >= keep_threshold
    return tl.where(keep, keep_scale, 0.0)


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
