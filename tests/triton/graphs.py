"""Small graphs for the interpreter: every pathology in tens of nodes."""
from __future__ import annotations

import torch

from ..graphs import random_graph


def mixed_graph() -> tuple[int, int, torch.Tensor]:
    """20 nodes: 4 isolated destinations, a destination hub (45 extra edges), a
    source hub (node 1 -> 25 destinations), self-loops and duplicate edges."""
    base = random_graph(20, 20, 50, seed=21, hub=3, hub_degree=45, self_loops=6,
                        duplicates=8, isolated=4)
    source_hub = torch.stack([torch.ones(25, dtype=torch.long), torch.arange(25) % 16])
    return 20, 20, torch.cat([base, source_hub], dim=1)


GRAPHS = {
    "mixed": mixed_graph,
    "bipartite": lambda: (25, 9, random_graph(25, 9, 60, seed=22, isolated=2)),
    "empty": lambda: (7, 5, torch.empty(2, 0, dtype=torch.long)),
}
