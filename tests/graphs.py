"""Random graphs with the pathologies the ops must handle."""
from __future__ import annotations

import torch


def random_graph(num_src: int, num_dst: int, num_edges: int, *, seed: int = 0,
                 hub: int | None = None, hub_degree: int = 0, self_loops: int = 0,
                 duplicates: int = 0, isolated: int = 0) -> torch.Tensor:
    """A ``[2, E]`` graph with the requested pathologies.

    ``isolated`` destinations (the last ones) receive no edge; ``hub`` receives
    ``hub_degree`` extra edges; ``self_loops`` edges ``i -> i`` and ``duplicates``
    repeated edges are appended; edges are then shuffled.
    """
    gen = torch.Generator().manual_seed(seed)
    reachable = max(num_dst - isolated, 1)
    src = torch.randint(0, num_src, (num_edges,), generator=gen)
    dst = torch.randint(0, reachable, (num_edges,), generator=gen)
    parts = [torch.stack([src, dst])]
    if hub is not None and hub_degree:
        parts.append(torch.stack([torch.randint(0, num_src, (hub_degree,), generator=gen),
                                  torch.full((hub_degree,), hub)]))
    if self_loops:
        nodes = torch.randint(0, min(num_src, reachable), (self_loops,), generator=gen)
        parts.append(torch.stack([nodes, nodes]))
    edge_index = torch.cat(parts, dim=1)
    if duplicates and edge_index.size(1):
        pick = torch.randint(0, edge_index.size(1), (duplicates,), generator=gen)
        edge_index = torch.cat([edge_index, edge_index[:, pick]], dim=1)
    order = torch.randperm(edge_index.size(1), generator=gen)
    return edge_index[:, order].contiguous()
