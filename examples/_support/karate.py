"""A small trained attention model for the analysis examples: a 3-layer GAT on
Zachary's karate club (shipped with networkx, no download).

Each member (node) has a one-hot feature; the task is the club each member
joined after the split, learned from two labelled members per club.  Training
takes about a second on a CPU.  :func:`karate_attention` returns the graph and
the attention of every layer, captured with
:func:`pyg_attn.nn.capture_attention` (first layer first; each layer adds a
self-loop per node).
"""
from __future__ import annotations

from typing import List, NamedTuple

import networkx as nx
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import to_undirected

from pyg_attn.nn import AttentionRecord, GATConv, capture_attention

#: Members known to the model during training: the two leaders and two others each.
TRAIN = {0: 0, 1: 0, 2: 0, 33: 1, 32: 1, 31: 1}


class KarateGAT(torch.nn.Module):
    """GATConv(34 -> 4 x 8) -> GATConv(32 -> 4 x 8) -> GATConv(32 -> 2), ELU between."""

    def __init__(self, num_nodes: int, hidden: int = 8, heads: int = 4) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList([
            GATConv(num_nodes, hidden, heads=heads),
            GATConv(hidden * heads, hidden, heads=heads),
            GATConv(hidden * heads, 2, heads=1),
        ])

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for k, conv in enumerate(self.convs):
            x = conv(x, edge_index)
            if k < len(self.convs) - 1:
                x = F.elu(x)
        return x


class KarateAttention(NamedTuple):
    graph: nx.Graph             #: the club graph, with each member's "club"
    edge_index: Tensor          #: [2, 156] both directions of the 78 friendships
    labels: Tensor              #: [34] club after the split (0: Mr. Hi, 1: Officer)
    layers: List[AttentionRecord]  #: attention of each layer, first layer first
    accuracy: float             #: share of members whose club the model predicts


def karate_attention(epochs: int = 150, seed: int = 0) -> KarateAttention:
    """Trains :class:`KarateGAT` and captures its attention in evaluation mode."""
    torch.manual_seed(seed)
    graph = nx.karate_club_graph()
    n = graph.number_of_nodes()
    edge_index = to_undirected(torch.tensor(list(graph.edges)).t(), num_nodes=n)
    labels = torch.tensor([int(graph.nodes[v]["club"] != "Mr. Hi") for v in graph])
    x = torch.eye(n)
    model = KarateGAT(n)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    train = torch.tensor(list(TRAIN))
    target = torch.tensor(list(TRAIN.values()))
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x, edge_index)[train], target)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad(), capture_attention(model) as records:
        predicted = model(x, edge_index).argmax(-1)
    layers = [records[f"convs.{k}"] for k in range(len(model.convs))]
    accuracy = float((predicted == labels).float().mean())
    return KarateAttention(graph, edge_index, labels, layers, accuracy)
