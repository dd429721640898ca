"""Centrality of attention graphs equals networkx called directly."""
from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

from pyg_attn.analysis import (attention_betweenness, attention_distance_graph, attention_paid,
                               attention_pagerank, attention_received, attention_shortest_path)
from pyg_attn.convert import attention_to_networkx, dense_to_digraph

from ..attention_data import random_dense_attention, random_edge_attention


def as_tensor(values, G):
    return torch.tensor([values[node] for node in G], dtype=torch.float64)


@pytest.fixture
def graph_attention():
    edge_index, alpha = random_edge_attention(25, 80, heads=2, seed=11, isolated=3)
    return edge_index, alpha, attention_to_networkx(edge_index, alpha, num_nodes=25)


def test_received_and_paid(graph_attention):
    edge_index, alpha, G = graph_attention
    mean = alpha.mean(1)
    received = torch.zeros(25, dtype=torch.float64).index_add_(0, edge_index[0], mean)
    paid = torch.zeros(25, dtype=torch.float64).index_add_(0, edge_index[1], mean)
    assert torch.allclose(attention_received(G), received)
    assert torch.allclose(attention_paid((edge_index, alpha)), paid)
    assert torch.allclose(attention_received(G), as_tensor(dict(G.out_degree(weight="weight")), G))
    assert set(attention_paid(G).round(decimals=6).tolist()) <= {0.0, 1.0}
    head = attention_received(G, weight="weight_h1", as_dict=True)
    assert head == dict(G.out_degree(weight="weight_h1"))


def test_pagerank_walks_along_attention(graph_attention):
    _, _, G = graph_attention
    expected = nx.pagerank(G.reverse(), weight="weight")
    assert torch.allclose(attention_pagerank(G), as_tensor(expected, G))
    personal = {node: float(node == 0) for node in G}
    assert attention_pagerank(G, alpha=0.7, personalization=personal, as_dict=True) == \
        pytest.approx(nx.pagerank(G.reverse(), alpha=0.7, personalization=personal))


def test_pagerank_ranks_the_attended_node_first():
    # everybody attends to node 2 only
    A = torch.zeros(4, 4)
    A[:, 2] = 1.0
    ranks = attention_pagerank(A)
    assert int(ranks.argmax()) == 2


@pytest.mark.parametrize("distance", ["inverse", "neg_log"])
def test_betweenness_uses_explicit_distance(distance):
    attn = random_dense_attention(12, 12, seed=12)
    G = dense_to_digraph(attn, labels=[f"t{k}" for k in range(12)])
    D = nx.DiGraph()
    D.add_nodes_from(G)
    convert = (lambda a: 1 / a) if distance == "inverse" else (lambda a: -math.log(a))
    D.add_weighted_edges_from(((j, i, convert(a)) for j, i, a in G.edges(data="weight")),
                              weight="length")
    expected = nx.betweenness_centrality(D, weight="length")
    assert attention_betweenness(G, distance=distance, as_dict=True) == pytest.approx(expected)
    assert torch.allclose(attention_betweenness(attn, distance=distance),
                          torch.tensor(list(expected.values()), dtype=torch.float64))


def test_distance_graph_and_shortest_path():
    A = torch.tensor([[0.0, 0.1, 0.9, 0.0],
                      [0.0, 1.0, 0.0, 0.0],
                      [0.0, 0.8, 0.2, 0.0],
                      [0.0, 0.0, 0.0, 1.0]])
    D = attention_distance_graph(A, "neg_log")
    assert D.edges[1, 1]["distance"] == 0.0  # a certain step costs nothing
    assert not D.has_edge(0, 1)  # zero attention: no edge
    assert list(D) == [0, 1, 2, 3]
    # 1 -> 2 -> 0 has product 0.72 > 0.1 of the direct edge
    assert attention_shortest_path(A, 1, 0) == [1, 2, 0]
    assert attention_shortest_path(A, 1, 0, distance="inverse") == [1, 2, 0]
    with pytest.raises(ValueError, match="no attention path"):
        attention_shortest_path(A, 3, 0)
    with pytest.raises(ValueError, match="target=7"):
        attention_shortest_path(A, 1, 7)


def test_multigraph_distance_keeps_strongest_parallel_edge():
    edge_index = torch.tensor([[0, 0], [1, 1]])
    G = attention_to_networkx(edge_index, torch.tensor([0.25, 0.5]), multigraph=True)
    assert attention_distance_graph(G).edges[0, 1]["distance"] == 2.0


def test_centrality_rejects_bad_input():
    with pytest.raises(ValueError, match="distance"):
        attention_betweenness(torch.eye(3), distance="log")
    with pytest.raises(ValueError, match="non-negative"):
        attention_pagerank(nx.DiGraph([(0, 1, {"weight": -0.5})]))
    with pytest.raises(ValueError, match="square"):
        attention_received(torch.ones(2, 3))
    with pytest.raises(TypeError, match="attention"):
        attention_paid("attention")
