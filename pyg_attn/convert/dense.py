"""Dense attention ``A[i, j]`` (destination, source) to and from ``(edge_index, alpha)``."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .checks import as_dense_attention, as_edge_attention, as_float_tensor


def dense_to_edge_index(attn: Any) -> tuple[Tensor, Tensor]:
    """Dense attention to ``(edge_index, alpha)``.

    Every non-zero ``A[i, j]`` (for ``[H, N, N]``: non-zero in any head) gives
    an edge ``j -> i``; edges are ordered by destination, then source.

    Parameters
    ----------
    attn : Tensor
        ``[N, N]`` or ``[H, N, N]`` dense attention.

    Returns
    -------
    edge_index : Tensor
        ``[2, E]`` long, row 0 = source ``j``, row 1 = destination ``i``.
    alpha : Tensor
        ``[E]`` (or ``[E, H]``) weights ``A[i, j]``.

    Examples
    --------
    >>> A = torch.tensor([[0.25, 0.75], [0.0, 1.0]])
    >>> edge_index, alpha = dense_to_edge_index(A)
    >>> edge_index.tolist(), alpha.tolist()
    ([[0, 1, 1], [0, 0, 1]], [0.25, 0.75, 1.0])
    """
    attn = as_dense_attention(attn)
    heads = attn.dim() == 3
    nonzero = (attn != 0).any(0) if heads else attn != 0
    dst, src = nonzero.nonzero(as_tuple=True)
    alpha = attn[:, dst, src].t() if heads else attn[dst, src]
    return torch.stack([src, dst]), alpha


def edge_index_to_dense(edge_index: Any, alpha: Any, num_nodes: int | None = None) -> Tensor:
    """``(edge_index, alpha)`` to dense attention ``A[i, j]`` (destination, source).

    Duplicate edges are summed.  ``alpha`` ``[E]`` gives ``[N, N]``, ``[E, H]``
    gives ``[H, N, N]``.  This densifies: ``N * N`` floats per head.

    Parameters
    ----------
    edge_index : Tensor
        ``[2, E]`` (source, destination) node ids.
    alpha : Tensor
        ``[E]`` or ``[E, H]`` non-negative weights.
    num_nodes : int, optional
        Number of nodes ``N`` (default: largest id + 1).

    Returns
    -------
    Tensor
        ``[N, N]`` or ``[H, N, N]`` dense attention.

    Examples
    --------
    >>> edge_index = torch.tensor([[0, 1, 1], [0, 0, 1]])
    >>> edge_index_to_dense(edge_index, torch.tensor([0.25, 0.75, 1.0])).tolist()
    [[0.25, 0.75], [0.0, 1.0]]
    """
    edge_index, alpha, n = as_edge_attention(edge_index, alpha, num_nodes)
    flat = edge_index[1] * n + edge_index[0]
    if alpha.dim() == 1:
        return alpha.new_zeros(n * n).index_add_(0, flat, alpha).view(n, n)
    dense = alpha.new_zeros(n * n, alpha.size(1)).index_add_(0, flat, alpha)
    return dense.t().reshape(alpha.size(1), n, n)


def from_pyg_dense_adj(adj: Any) -> Tensor:
    """PyG-style dense adjacency ``adj[src, dst]`` to attention ``A[dst, src]``.

    **Transposes**: PyG's :func:`~torch_geometric.utils.to_dense_adj` puts the
    source in the row, while attention here is ``A[i, j]`` with ``i`` the
    destination.  ``[N, N]`` gives ``[N, N]``; ``[N, N, H]`` (``to_dense_adj``
    with ``[E, H]`` edge attributes, batch dimension removed) gives ``[H, N, N]``.

    Parameters
    ----------
    adj : Tensor or numpy.ndarray
        ``[N, N]`` or ``[N, N, H]`` dense adjacency ``adj[src, dst]``.

    Returns
    -------
    Tensor
        ``[N, N]`` or ``[H, N, N]`` attention ``A[dst, src]``.

    Raises
    ------
    ValueError
        Wrong rank, non-square, negative or non-finite values.

    Examples
    --------
    >>> from torch_geometric.utils import to_dense_adj
    >>> edge_index = torch.tensor([[0, 1], [1, 1]])
    >>> adj = to_dense_adj(edge_index, edge_attr=torch.tensor([1.0, 0.0]))[0]
    >>> from_pyg_dense_adj(adj).tolist()  # node 1 attends to node 0
    [[0.0, 0.0], [1.0, 0.0]]
    """
    adj = as_float_tensor(adj, "adj")
    if adj.dim() == 2:
        return as_dense_attention(adj.t(), "adj", ranks=(2,))
    if adj.dim() == 3:
        return as_dense_attention(adj.permute(2, 1, 0), "adj", ranks=(3,))
    raise ValueError(f"adj must be [N, N] or [N, N, H], got shape {tuple(adj.shape)}")

