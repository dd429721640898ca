"""Random attention for the convert/analysis/visualization tests: rows sum to 1 or 0."""
from __future__ import annotations

import torch
from torch_geometric.utils import softmax

from .graphs import random_graph


def random_edge_attention(num_nodes: int, num_edges: int, heads: int | None = None, *,
                          seed: int = 0, isolated: int = 0, dtype=torch.float64):
    """``(edge_index, alpha)`` without duplicate edges; ``alpha`` softmax per destination."""
    edge_index = random_graph(num_nodes, num_nodes, num_edges, seed=seed, isolated=isolated)
    edge_index = torch.unique(edge_index, dim=1)
    edge_index = edge_index[:, torch.randperm(edge_index.size(1),
                                              generator=torch.Generator().manual_seed(seed))]
    gen = torch.Generator().manual_seed(seed + 1)
    shape = (edge_index.size(1),) if heads is None else (edge_index.size(1), heads)
    scores = 2 * torch.randn(shape, generator=gen, dtype=dtype)
    return edge_index, softmax(scores, edge_index[1], num_nodes=num_nodes)


def random_dense_attention(*shape: int, seed: int = 0, zero_rows: int = 0,
                           dtype=torch.float64) -> torch.Tensor:
    """Row-stochastic ``[..., N, N]`` with some zero entries; the last ``zero_rows`` rows 0."""
    gen = torch.Generator().manual_seed(seed)
    scores = 2 * torch.randn(shape, generator=gen, dtype=dtype)
    scores = scores.masked_fill(torch.rand(shape, generator=gen) < 0.3, float("-inf"))
    scores[..., torch.arange(shape[-1]), torch.arange(shape[-1])] = 0.0  # no empty row
    attn = torch.softmax(scores, -1)
    if zero_rows:
        attn[..., shape[-2] - zero_rows:, :] = 0
    return attn
