r"""Dense attention and the complete directed graph that carries it.

Transformer self-attention is graph attention on a complete directed graph:
:func:`attention_weights` computes the dense matrix ``A`` (``A[i, j]`` = weight of
query ``i`` on key ``j``, rows sum to 1, or to 0 when every key is masked), and
:func:`complete_graph_edge_index` lists the edges ``j -> i`` along which
:func:`~pyg_attn.ops.graph_attention` computes the very same weights, one per
edge (docs/guide/conventions.md: ``edge_index[0]`` = source ``j``, ``edge_index[1]`` =
destination ``i``; ``A`` is ``A[dst, src]``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["attention_weights", "complete_graph_edge_index", "masked_softmax"]


def masked_softmax(scores: Tensor) -> Tensor:
    r"""Softmax over the last dimension that maps a row of ``-inf`` to zeros.

    .. math::
        a_{ij} = \frac{\exp(s_{ij} - m_i)}{\sum_{j'} \exp(s_{ij'} - m_i)},
        \qquad m_i = \max_j s_{ij},

    with :math:`a_{i\cdot} = 0` (not NaN, and with zero gradients) where every
    :math:`s_{ij} = -\infty`.

    Parameters
    ----------
    scores : Tensor
        ``[..., S]`` floating-point scores; ``-inf`` marks an excluded entry.

    Returns
    -------
    Tensor
        Same shape as ``scores``; rows sum to 1, or to 0 when fully excluded.

    Examples
    --------
    >>> masked_softmax(torch.tensor([[0.0, 0.0], [float("-inf"), float("-inf")]]))
    tensor([[0.5000, 0.5000],
            [0.0000, 0.0000]])
    """
    dead = torch.isneginf(scores).all(dim=-1, keepdim=True)
    # Dead rows get a finite softmax (no NaN, forward or backward) that is then zeroed.
    return torch.softmax(scores.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)


def _check_features(name: str, t: Tensor) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"'{name}' must be a floating-point tensor, got dtype {t.dtype}")
    if t.dim() < 2:
        raise ValueError(f"'{name}' must have shape [..., L, C], got {list(t.shape)}")


def attention_weights(query: Tensor, key: Tensor, mask: Tensor | None = None,
                      scale: float | None = None) -> Tensor:
    r"""Dense scaled dot-product attention weights, ``softmax(Q K^T * scale)``.

    .. math::
        A_{ij} = \frac{\exp(\text{scale}\cdot q_i^\top k_j + b_{ij})}
                      {\sum_{j'} \exp(\text{scale}\cdot q_i^\top k_{j'} + b_{ij'})}

    ``A[..., i, j]`` is the weight of query ``i`` on key ``j`` (the edge
    ``j -> i`` of the complete directed graph); every row sums to 1, or is all
    zeros (not NaN) when the mask excludes every key of that query.

    Parameters
    ----------
    query : Tensor
        ``[..., L, C]``, e.g. ``[L, C]`` or multi-head ``[B, H, L, C]``.
    key : Tensor
        ``[..., S, C]``; leading dimensions broadcast against ``query``'s.
    mask : Tensor, optional
        Broadcastable to ``[..., L, S]``, as in
        :func:`torch.nn.functional.scaled_dot_product_attention`: a bool mask
        where ``True`` = query ``i`` may attend to key ``j``, or a float mask
        :math:`b_{ij}` added to the scores (``-inf`` excludes).
    scale : float, optional
        Score scale; ``None`` means :math:`1/\sqrt{C}`.

    Returns
    -------
    Tensor
        ``[..., L, S]`` row-stochastic weights (rows of zeros where fully masked).

    Raises
    ------
    TypeError
        If an input is not a floating-point tensor or ``mask`` is neither bool
        nor floating point.
    ValueError
        If shapes do not fit.

    Examples
    --------
    >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> attention_weights(q, q, scale=1.0)
    tensor([[0.7311, 0.2689],
            [0.2689, 0.7311]])
    >>> causal = torch.tensor([[True, False], [True, True]])
    >>> attention_weights(q, q, mask=causal, scale=1.0)
    tensor([[1.0000, 0.0000],
            [0.2689, 0.7311]])
    """
    _check_features("query", query)
    _check_features("key", key)
    if query.size(-1) != key.size(-1):
        raise ValueError(f"'query' and 'key' must have the same last dimension, got "
                         f"{query.size(-1)} and {key.size(-1)}")
    if scale is None:
        scale = 1.0 / math.sqrt(query.size(-1))
    scores = torch.matmul(query * scale, key.transpose(-1, -2))
    if mask is None:
        return torch.softmax(scores, dim=-1)
    if not isinstance(mask, Tensor):
        raise TypeError(f"'mask' must be a torch.Tensor, got {type(mask).__name__}")
    try:
        torch.broadcast_shapes(mask.shape, scores.shape)
    except RuntimeError:
        raise ValueError(f"'mask' of shape {list(mask.shape)} does not broadcast to the "
                         f"scores' shape {list(scores.shape)}") from None
    if mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask.is_floating_point():
        scores = scores + mask
    else:
        raise TypeError(f"'mask' must be a bool or floating-point tensor, got {mask.dtype}")
    return masked_softmax(scores)


def _check_batch(batch: Tensor, num_nodes: int) -> Tensor:
    if not isinstance(batch, Tensor) or batch.dtype not in (torch.int32, torch.int64):
        raise TypeError("'batch' must be an integer tensor [N], got "
                        f"{getattr(batch, 'dtype', type(batch).__name__)}")
    if batch.dim() != 1 or batch.numel() != num_nodes:
        raise ValueError(f"'batch' must have shape [{num_nodes}] (one entry per node), got "
                         f"{list(batch.shape)}")
    if batch.numel() and int(batch.min()) < 0:
        raise ValueError("'batch' must hold non-negative graph ids")
    return batch.long()


def complete_graph_edge_index(num_nodes: int, self_loops: bool = True, causal: bool = False,
                              batch: Tensor | None = None, *,
                              device: str | torch.device | None = None) -> Tensor:
    r"""The edges ``j -> i`` of the complete directed graph (dense attention's graph).

    Node ``i`` receives an edge from every node ``j`` (of its own graph when
    ``batch`` is given); ``causal=True`` keeps only :math:`j \le i` (:math:`j < i`
    without self-loops), the mask of
    ``scaled_dot_product_attention(..., is_causal=True)``.  Edges are grouped by
    destination ``i`` (in increasing order when ``batch`` is sorted, as PyG's
    is) and, within a destination, by increasing source ``j``, so attention returned per edge by
    :func:`~pyg_attn.ops.graph_attention` on a single complete graph reshapes
    to the dense ``[N, N]`` matrix ``A[i, j]``.

    Parameters
    ----------
    num_nodes : int
        Number of nodes ``N``.
    self_loops : bool
        Keep the edges ``i -> i``.
    causal : bool
        Keep only edges from earlier (or equal) nodes, by node index.
    batch : Tensor, optional
        ``[N]`` graph id of every node (PyG's ``batch`` vector, sorted or not):
        one complete graph per id, no edge between graphs.
    device : str or torch.device, optional
        Device of the result (``batch``'s device when given, else CPU).

    Returns
    -------
    Tensor
        ``[2, E]`` LongTensor, ``E = N^2`` for one graph with self-loops.

    Raises
    ------
    TypeError, ValueError
        If ``num_nodes`` is not a non-negative int or ``batch`` does not fit.

    Examples
    --------
    >>> complete_graph_edge_index(3)
    tensor([[0, 1, 2, 0, 1, 2, 0, 1, 2],
            [0, 0, 0, 1, 1, 1, 2, 2, 2]])
    >>> complete_graph_edge_index(3, self_loops=False, causal=True)
    tensor([[0, 0, 1],
            [1, 2, 2]])
    >>> complete_graph_edge_index(4, batch=torch.tensor([0, 0, 1, 1]))
    tensor([[0, 1, 0, 1, 2, 3, 2, 3],
            [0, 0, 1, 1, 2, 2, 3, 3]])
    """
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int):
        raise TypeError(f"'num_nodes' must be an int, got {type(num_nodes).__name__}")
    if num_nodes < 0:
        raise ValueError(f"'num_nodes' must be non-negative, got {num_nodes}")
    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long, device=device)
    else:
        batch = _check_batch(batch, num_nodes)
        if device is not None:
            batch = batch.to(device)
    # Nodes sorted by graph (stable: by index inside a graph); each node, as a
    # destination, is paired with every node of its graph, in sorted order.
    order = torch.sort(batch, stable=True).indices
    sizes = torch.bincount(batch)
    starts = torch.cumsum(sizes, 0) - sizes
    graph_of = batch[order]
    per_dst = sizes[graph_of]
    dst_pos = torch.repeat_interleave(torch.arange(num_nodes, device=batch.device), per_dst)
    first = torch.repeat_interleave(torch.cumsum(per_dst, 0) - per_dst, per_dst)
    src_pos = starts[graph_of][dst_pos] + torch.arange(dst_pos.numel(), device=batch.device) \
        - first
    src, dst = order[src_pos], order[dst_pos]
    keep = torch.ones_like(src, dtype=torch.bool)
    if not self_loops:
        keep &= src != dst
    if causal:
        keep &= src <= dst
    return torch.stack([src[keep], dst[keep]])
