"""Sparsify attention: thresholds, top-k and top-p (nucleus) per destination."""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..convert import as_edge_attention, dense_to_edge_index, unpack_attention

__all__ = ["SparseAttention", "sparsify_attention"]

#: Relative slack in the top-p comparison, so float rounding of cumulative
#: sums does not keep an extra edge.
TOP_P_SLACK = 1e-6


class SparseAttention(NamedTuple):
    """Result of :func:`sparsify_attention`."""

    #: ``[2, E']`` kept edges, in their input order.
    edge_index: Tensor
    #: ``[E']`` or ``[E', H]`` their weights (renormalised on request).
    alpha: Tensor
    #: Fraction of the total attention mass kept (before renormalising).
    kept_mass: float


def _sort_within_destination(dst: Tensor, score: Tensor) -> Tensor:
    """Edge order by destination, then descending score (ties: input order)."""
    by_score = torch.argsort(score, descending=True, stable=True)
    return by_score[torch.argsort(dst[by_score], stable=True)]


def _ranked_mask(dst: Tensor, score: Tensor, n: int, top_k: int | None = None,
                 top_p: float | None = None) -> Tensor:
    """Edges kept by ``top_k`` or ``top_p`` among each destination's sorted scores."""
    order = _sort_within_destination(dst, score)
    counts = torch.bincount(dst, minlength=n)
    group_start = (torch.cumsum(counts, 0) - counts)[dst[order]]  # in sorted order
    keep = torch.zeros_like(score, dtype=torch.bool)
    if top_k is not None:
        rank = torch.arange(order.numel(), device=score.device) - group_start
        keep[order] = rank < top_k
        return keep
    assert top_p is not None  # one of top_k, top_p
    sorted_score = score[order].double()
    exclusive = torch.cumsum(sorted_score, 0) - sorted_score
    before = exclusive - exclusive[group_start]  # mass of the larger edges of the group
    totals = torch.zeros(n, dtype=torch.float64, device=score.device)
    totals.index_add_(0, dst, score.double())
    needed = top_p * totals[dst[order]] * (1 - TOP_P_SLACK)
    keep[order] = (before < needed) & (sorted_score > 0)
    return keep


def sparsify_attention(attention: Any, threshold: float | None = None,
                       top_k: int | None = None, top_p: float | None = None,
                       renormalize: bool = False, num_nodes: int | None = None
                       ) -> SparseAttention:
    """Keeps the strongest attention edges of each destination.

    Exactly one criterion, applied to the edge score ``s_e`` (the weight; the
    mean over heads for ``[E, H]``, so all heads keep the same edges):

    * ``threshold``: keep ``s_e >= threshold``;
    * ``top_k``: keep the ``k`` largest scores of each destination (ties:
      the earlier edge);
    * ``top_p``: keep, per destination ``i``, the smallest set of its largest
      scores whose sum reaches ``p`` times the destination's total,
      :math:`\\min\\{m : \\sum_{r \\le m} s_{(r)} \\ge p \\sum_r s_{(r)}\\}`
      (up to a relative ``1e-6``).

    Parameters
    ----------
    attention : (edge_index, alpha), record or Tensor
        Edge attention (``alpha`` ``[E]`` or ``[E, H]``) or dense ``[N, N]`` /
        ``[H, N, N]`` attention (converted with
        :func:`pyg_attn.convert.dense_to_edge_index`).
    threshold, top_k, top_p : optional
        The criterion (give exactly one).  ``top_k >= 1``, ``0 < top_p <= 1``.
    renormalize : bool
        Rescale each destination's kept weights (per head) to sum to 1.
    num_nodes : int, optional
        Number of nodes (default: largest id + 1).

    Returns
    -------
    SparseAttention
        ``(edge_index, alpha, kept_mass)``: kept edges in input order, their
        weights, and the share of the total weight kept (1.0 for no weight).

    Examples
    --------
    >>> edge_index = torch.tensor([[0, 1, 2, 0, 2], [1, 1, 1, 2, 2]])
    >>> alpha = torch.tensor([0.6, 0.3, 0.1, 0.5, 0.5])
    >>> kept = sparsify_attention((edge_index, alpha), top_p=0.8)
    >>> kept.edge_index.tolist(), round(kept.kept_mass, 3)
    ([[0, 1, 0, 2], [1, 1, 2, 2]], 0.95)
    >>> sparsify_attention((edge_index, alpha), top_k=1, renormalize=True).alpha.tolist()
    [1.0, 1.0]
    """
    given = [name for name, value in (("threshold", threshold), ("top_k", top_k),
                                      ("top_p", top_p)) if value is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of threshold, top_k, top_p (got {given or 'none'})")
    if isinstance(attention, (Tensor, np.ndarray)):
        edge_index, alpha = dense_to_edge_index(attention)
    else:
        edge_index, alpha = unpack_attention(attention)
    edge_index, alpha, n = as_edge_attention(edge_index, alpha, num_nodes)
    score = alpha.mean(1) if alpha.dim() == 2 else alpha
    if threshold is not None:
        keep = score >= threshold
    elif top_k is not None:
        if not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        keep = _ranked_mask(edge_index[1], score, n, top_k=top_k)
    else:
        assert top_p is not None  # exactly one of the three was given
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        keep = _ranked_mask(edge_index[1], score, n, top_p=top_p)
    kept_alpha = alpha[keep]
    kept_index = edge_index[:, keep]
    total = float(alpha.sum())
    kept_mass = float(kept_alpha.sum()) / total if total > 0 else 1.0
    if renormalize:
        sums = kept_alpha.new_zeros((n,) + tuple(alpha.shape[1:]))
        sums.index_add_(0, kept_index[1], kept_alpha)
        kept_alpha = kept_alpha / sums[kept_index[1]].clamp_min(torch.finfo(alpha.dtype).tiny)
    return SparseAttention(kept_index, kept_alpha, kept_mass)
