"""A small synthetic ``HeteroData`` and GAT models on it (``to_hetero``, ``HeteroConv``)."""
from __future__ import annotations

from typing import Any

import torch
import torch_geometric.nn as pyg_nn
from torch_geometric.data import HeteroData

from pyg_attn.nn import capture_attention

from ..graphs import random_graph

#: ``(source type, relation, destination type, number of edges)`` of :func:`hetero_graph`.
RELATIONS = (("author", "writes", "paper", 30), ("paper", "rev_writes", "author", 30),
             ("paper", "cites", "paper", 40), ("topic", "about", "paper", 20),
             ("paper", "rev_about", "topic", 20))


def hetero_graph(papers: int = 16, authors: int = 8, topics: int = 4, seed: int = 5,
                 scale: int = 1) -> HeteroData:
    """Papers (with labels ``y``), authors and topics; ``scale`` multiplies the edges."""
    data = HeteroData()
    counts = {"paper": papers, "author": authors, "topic": topics}
    gen = torch.Generator().manual_seed(seed)
    for node_type, count in counts.items():
        data[node_type].x = torch.randn(count, 6, generator=gen)
    data["paper"].y = torch.arange(papers) % 3
    for k, (src, rel, dst, edges) in enumerate(RELATIONS):
        data[src, rel, dst].edge_index = random_graph(counts[src], counts[dst], edges * scale,
                                                      seed=seed + k)
    return data


class GAT(torch.nn.Module):
    """Two GAT layers for :func:`torch_geometric.nn.to_hetero` (lazy sizes, no self-loops:
    most relations join two node types)."""

    def __init__(self, hidden: int = 4, out: int = 3, heads: int = 2) -> None:
        super().__init__()
        self.conv1 = pyg_nn.GATConv((-1, -1), hidden, heads=heads, add_self_loops=False)
        self.conv2 = pyg_nn.GATConv((-1, -1), out, heads=heads, concat=False,
                                    add_self_loops=False)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index)


def to_hetero_records(data: HeteroData, seed: int = 0, heads: int = 2
                      ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(records, outputs)`` of a ``to_hetero`` GAT (``aggr="sum"``) in evaluation mode."""
    torch.manual_seed(seed)
    model = pyg_nn.to_hetero(GAT(heads=heads), data.metadata(), aggr="sum").eval()
    with torch.no_grad(), capture_attention(model) as records:
        out = model(data.x_dict, data.edge_index_dict)
    return records, out


def hetero_conv_records(data: HeteroData, seed: int = 0) -> dict[str, Any]:
    """The records of one ``HeteroConv`` of GAT layers (2 heads each)."""
    torch.manual_seed(seed)
    conv = pyg_nn.HeteroConv({edge_type: pyg_nn.GATConv((-1, -1), 4, heads=2,
                                                        add_self_loops=False)
                              for edge_type in data.edge_types}, aggr="sum")

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = conv

        def forward(self, x_dict, edge_index_dict):
            return self.conv1(x_dict, edge_index_dict)

    model = Model().eval()
    with torch.no_grad(), capture_attention(model) as records:
        model(data.x_dict, data.edge_index_dict)
    return records
