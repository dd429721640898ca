"""Attention rollout (Abnar & Zuidema, 2020) for dense and graph attention."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.utils import coalesce

from ._layers import check_targets, dense_layers, is_dense, sparse_layers

__all__ = ["attention_rollout"]


def attention_rollout(attentions: Any, head_fusion: str = "mean", targets: Any = None,
                      residual: float = 0.5, num_nodes: int | None = None) -> Tensor:
    """How much each output node draws on each input node through ``L`` attention layers.

    .. math::

        R = \\hat A_L \\cdots \\hat A_2 \\hat A_1, \\qquad
        \\hat A_l = \\operatorname{rownorm}\\big((1 - r) A_l + r I\\big),

    with the heads of each layer fused first (``head_fusion``) and ``r = 0.5``
    by default (the residual connection).  ``R[i, j]`` is the share of output
    node ``i`` that comes from input node ``j``; rows sum to 1.

    Parameters
    ----------
    attentions : Tensor or list
        First layer first.  Dense: ``[L, N, N]`` or ``[L, H, N, N]`` (or a list
        of ``[N, N]`` / ``[H, N, N]``), ``A[i, j]`` = weight of destination ``i``
        on source ``j``.  Graph attention: a list of ``(edge_index, alpha)``
        pairs or :func:`~pyg_attn.nn.capture_attention` records (a dict of
        records is taken in its order, which is the order layers first ran).
        Every head's rows must sum to 1 or 0 (within
        :data:`pyg_attn.convert.ROW_SUM_TOL`).
    head_fusion : {"mean", "max", "min"}
        How heads are fused per layer.
    targets : sequence of int, optional
        Output nodes whose rows are computed (default: all).  Rows are
        propagated backwards, ``e_i^T Â_L ... Â_1``, so only the rows asked for
        are ever formed.
    residual : float
        Share ``r`` of the identity mixed into each layer.
    num_nodes : int, optional
        Number of nodes of graph attention (default: largest id + 1).

    Returns
    -------
    Tensor
        Dense input: a dense ``[N, N]`` (or ``[T, N]`` for ``T`` targets)
        tensor.  Graph attention: a coalesced sparse COO tensor of that shape;
        its rows hold only the ``L``-hop in-neighbourhood of each target, and
        the graph is never densified.

    Raises
    ------
    ValueError
        Wrong shapes, negative weights, rows summing to neither 1 nor 0,
        unknown ``head_fusion``, ``targets`` outside ``[0, N)``.
    TypeError
        ``attentions`` of another type.

    Examples
    --------
    Two layers over three tokens; the second mixes token 2 into token 0:

    >>> A1 = torch.eye(3)
    >>> A2 = torch.tensor([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    >>> attention_rollout(torch.stack([A1, A2])).tolist()[0]
    [0.75, 0.0, 0.25]

    The same as graph attention, for output node 0 only:

    >>> edge_index = torch.tensor([[0, 2, 1, 2], [0, 0, 1, 2]])
    >>> alpha = torch.tensor([0.5, 0.5, 1.0, 1.0])
    >>> layer1 = (torch.tensor([[0, 1, 2], [0, 1, 2]]), torch.ones(3))
    >>> attention_rollout([layer1, (edge_index, alpha)], targets=[0]).to_dense().tolist()
    [[0.75, 0.0, 0.25]]
    """
    if is_dense(attentions):
        layers = dense_layers(attentions, head_fusion, residual)
        n = layers.size(-1)
        if targets is None:
            rollout = layers[0]
            for layer in layers[1:]:
                rollout = layer @ rollout
            return rollout
        rows = torch.eye(n, dtype=layers.dtype, device=layers.device)[check_targets(targets, n)]
        for layer in layers.flip(0):
            rows = rows @ layer
        return rows
    sparse, n = sparse_layers(attentions, head_fusion, residual, num_nodes)
    wanted = torch.arange(n) if targets is None else check_targets(targets, n)
    weight0 = sparse[0][1]
    wanted = wanted.to(weight0.device)
    index = torch.stack([torch.arange(wanted.numel(), device=wanted.device), wanted])
    values = torch.ones(wanted.numel(), dtype=weight0.dtype, device=weight0.device)
    for edge_index, weight in reversed(sparse):
        index, values = _row_times_layer(index, values, edge_index, weight, n)
    return torch.sparse_coo_tensor(index, values, (wanted.numel(), n),
                                   check_invariants=True, is_coalesced=True)


def _row_times_layer(index: Tensor, values: Tensor, edge_index: Tensor, weight: Tensor,
                     n: int) -> tuple[Tensor, Tensor]:
    """Sparse rows ``S [T, N]`` (COO ``index``, ``values``) times ``Â`` (``Â[i, j]`` on
    edges ``j -> i``): every entry ``S[t, i]`` spreads over the incoming edges of
    ``i``.  Returns the coalesced product (sorted by row, then column)."""
    order = torch.argsort(edge_index[1], stable=True)
    counts = torch.bincount(edge_index[1], minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    degree = counts[index[1]]
    entry = torch.repeat_interleave(torch.arange(values.numel(), device=values.device), degree)
    first = torch.cumsum(degree, 0) - degree
    offset = torch.arange(entry.numel(), device=values.device) - first[entry]
    edge = order[starts[index[1]][entry] + offset]
    product = torch.stack([index[0][entry], edge_index[0][edge]])
    num_rows = int(index[0].max()) + 1 if index.numel() else 0
    return coalesce(product, values[entry] * weight[edge], num_nodes=max(n, num_rows),
                    reduce="sum")
