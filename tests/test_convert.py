"""pyg_attn.convert: dense <-> edges <-> networkx, round trips and bad inputs."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_dense_adj

from pyg_attn.convert import (ROW_SUM_TOL, as_attention_graph, as_dense_attention,
                              as_edge_attention, as_float_tensor, attention_to_networkx,
                              check_row_sums, dense_to_digraph, dense_to_edge_index,
                              digraph_to_dense, edge_index_to_dense, from_networkx,
                              from_pyg_dense_adj, to_networkx)
from pyg_attn.nn import GATConv, capture_attention

from .attention_data import random_dense_attention, random_edge_attention
from .graphs import random_graph


# ----------------------------------------------------------------------------- dense
def test_dense_to_digraph_follows_message_direction():
    A = torch.tensor([[0.0, 0.25, 0.75], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    G = dense_to_digraph(A)
    assert list(G) == [0, 1, 2]  # all nodes, in order, node 0 has no edge pointing out
    assert sorted(G.edges(data="weight")) == [(1, 0, 0.25), (1, 1, 1.0), (2, 0, 0.75)]
    assert G.graph["attention_heads"] is None
    assert G.in_degree(0, weight="weight") == pytest.approx(1.0)  # paid by 0
    assert G.in_degree(2, weight="weight") == 0  # row of zeros: pays nothing


def test_dense_to_digraph_heads_labels_threshold():
    attn = random_dense_attention(3, 5, 5, seed=1)
    tokens = ["a", "b", "c", "d", "e"]
    G = dense_to_digraph(attn, labels=tokens, threshold=0.1)
    mean = attn.mean(0)
    assert list(G) == tokens and G.graph["attention_heads"] == 3
    assert G.number_of_edges() == int((mean > 0.1).sum())
    for j, i, data in G.edges(data=True):
        row, col = tokens.index(i), tokens.index(j)
        assert data["weight"] == pytest.approx(float(mean[row, col]))
        for h in range(3):
            assert data[f"weight_h{h}"] == pytest.approx(float(attn[h, row, col]))
    assert torch.allclose(digraph_to_dense(dense_to_digraph(attn)), attn)


def test_dense_to_digraph_accepts_numpy():
    attn = random_dense_attention(4, 4, seed=2).numpy()
    assert torch.allclose(digraph_to_dense(dense_to_digraph(attn)), torch.from_numpy(attn))


@pytest.mark.parametrize("bad, error, match", [
    (torch.ones(2, 3), ValueError, "square"),
    (torch.ones(4), ValueError, "2-D or 3-D"),
    (torch.ones(1, 1, 2, 2), ValueError, "2-D or 3-D"),
    (-torch.eye(2), ValueError, "non-negative"),
    (torch.tensor([[float("nan"), 0.0], [0.0, 1.0]]), ValueError, "finite"),
    ([[1.0]], TypeError, "attn"),
])
def test_dense_to_digraph_rejects(bad, error, match):
    with pytest.raises(error, match=match):
        dense_to_digraph(bad)


def test_dense_to_digraph_rejects_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        dense_to_digraph(torch.eye(2), labels=["a"])
    with pytest.raises(ValueError, match="distinct"):
        dense_to_digraph(torch.eye(2), labels=["the", "the"])


def test_tensor_conversion():
    sparse = torch.eye(3).to_sparse()
    assert torch.equal(as_float_tensor(sparse, "attn"), torch.eye(3))
    assert as_float_tensor(np.arange(3), "attn").is_floating_point()
    with pytest.raises(TypeError, match="weights must be"):
        as_float_tensor("0.5", "weights")


def test_row_sum_check_tolerance():
    check_row_sums(torch.tensor([1 + 0.9 * ROW_SUM_TOL, 0.0, 0.5 * ROW_SUM_TOL]), "attn")
    with pytest.raises(ValueError, match="attn.*sum to 1 or 0"):
        check_row_sums(torch.tensor([1 + 2 * ROW_SUM_TOL]), "attn")
    with pytest.raises(ValueError, match="sum to 1 or 0"):
        as_dense_attention(torch.full((2, 2), 0.3), stochastic=True)


@pytest.mark.parametrize("heads", [None, 3])
def test_dense_edge_index_round_trip(heads):
    shape = (5, 5) if heads is None else (heads, 5, 5)
    attn = random_dense_attention(*shape, seed=3, zero_rows=1)
    edge_index, alpha = dense_to_edge_index(attn)
    assert edge_index.dtype == torch.long and alpha.shape[0] == edge_index.size(1)
    dst, src = edge_index[1], edge_index[0]
    expected = attn[..., dst, src]
    assert torch.equal(alpha, expected if heads is None else expected.t())
    assert torch.equal(edge_index_to_dense(edge_index, alpha, num_nodes=5), attn)


def test_edge_index_to_dense_sums_duplicates_and_keeps_isolated_nodes():
    edge_index = torch.tensor([[0, 0, 1], [1, 1, 1]])
    dense = edge_index_to_dense(edge_index, torch.tensor([0.25, 0.25, 0.5]), num_nodes=3)
    assert dense.tolist() == [[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]


def test_from_pyg_dense_adj_transposes():
    edge_index, alpha = random_edge_attention(6, 15, seed=4)
    adj = to_dense_adj(edge_index, edge_attr=alpha, max_num_nodes=6)[0]
    assert torch.equal(from_pyg_dense_adj(adj), edge_index_to_dense(edge_index, alpha, 6))
    edge_index, alpha = random_edge_attention(6, 15, heads=2, seed=5)
    adj = to_dense_adj(edge_index, edge_attr=alpha, max_num_nodes=6)[0]  # [N, N, H]
    assert torch.equal(from_pyg_dense_adj(adj), edge_index_to_dense(edge_index, alpha, 6))
    with pytest.raises(ValueError, match="adj"):
        from_pyg_dense_adj(torch.ones(1, 2, 2, 2))


# ----------------------------------------------------------------------------- edges
@pytest.mark.parametrize("heads", [None, 1, 4])
def test_attention_to_networkx_round_trip_is_lossless(heads):
    edge_index, alpha = random_edge_attention(20, 60, heads=heads, seed=6, isolated=3)
    alpha = alpha.float() if heads == 1 else alpha  # float32 and float64 come back as such
    x = torch.randn(23, 3)
    kind = torch.arange(edge_index.size(1)) % 3
    G = attention_to_networkx(edge_index, alpha, num_nodes=23, node_attrs={"x": x},
                              edge_attrs={"kind": kind})
    assert G.number_of_nodes() == 23  # three isolated nodes beyond the largest id
    for e, (j, i) in enumerate(edge_index.t().tolist()):
        data = G.edges[j, i]
        assert data["edge_id"] == e and data["kind"] == int(kind[e])
        if heads is None:
            assert data["weight"] == float(alpha[e])
        else:
            assert [data[f"weight_h{h}"] for h in range(heads)] == alpha[e].tolist()
            assert data["weight"] == pytest.approx(float(alpha[e].mean()))
    back = from_networkx(G)
    assert back.num_nodes == 23
    assert torch.equal(back.edge_index, edge_index)  # input order, not networkx's
    assert torch.equal(back.alpha, alpha) and back.alpha.dtype == alpha.dtype
    assert torch.equal(back.x, x) and torch.equal(back.kind, kind)


def test_round_trip_of_empty_multi_head_graph():
    G = attention_to_networkx(torch.empty(2, 0, dtype=torch.long), torch.empty(0, 2),
                              num_nodes=4)
    back = from_networkx(G)
    assert back.num_nodes == 4 and back.edge_index.shape == (2, 0)
    assert back.alpha.shape == (0, 2)


def test_duplicate_edges_need_a_multigraph():
    edge_index = random_graph(10, 10, 30, seed=7, duplicates=5, self_loops=3)
    alpha = torch.rand(edge_index.size(1))
    with pytest.raises(ValueError, match="duplicate edge.*multigraph=True"):
        attention_to_networkx(edge_index, alpha)
    G = attention_to_networkx(edge_index, alpha, multigraph=True)
    assert isinstance(G, nx.MultiDiGraph) and G.number_of_edges() == edge_index.size(1)
    j, i = edge_index[:, 0].tolist()
    assert G.edges[j, i, 0]["weight"] == float(alpha[0])  # keyed by edge id
    back = from_networkx(G)
    assert torch.equal(back.edge_index, edge_index) and torch.equal(back.alpha, alpha)
    assert torch.allclose(digraph_to_dense(G).float(), edge_index_to_dense(edge_index, alpha))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(edge_index=torch.zeros(3, 2, dtype=torch.long), alpha=torch.ones(2)),
     ValueError, "edge_index must have shape"),
    (dict(edge_index=torch.zeros(2, 2), alpha=torch.ones(2)), TypeError, "edge_index"),
    (dict(edge_index=torch.zeros(2, 2, dtype=torch.long), alpha=torch.ones(3)),
     ValueError, "alpha must have one row per edge"),
    (dict(edge_index=torch.zeros(2, 2, dtype=torch.long), alpha=torch.ones(2, 2, 2)),
     ValueError, "alpha"),
    (dict(edge_index=torch.tensor([[0, -1], [0, 0]]), alpha=torch.ones(2)),
     ValueError, "non-negative node ids"),
    (dict(edge_index=torch.tensor([[0, 5], [0, 0]]), alpha=torch.ones(2), num_nodes=3),
     ValueError, "num_nodes"),
    (dict(edge_index=torch.tensor([[0, 1], [0, 0]]), alpha=torch.tensor([1.0, -0.5])),
     ValueError, "alpha must be non-negative"),
    (dict(edge_index=[[0], [0]], alpha=torch.ones(1)), TypeError, "edge_index"),
])
def test_attention_to_networkx_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        attention_to_networkx(**kwargs)


def test_as_edge_attention_requires_distributions_on_request():
    edge_index = torch.tensor([[0, 1, 0], [1, 1, 2]])
    as_edge_attention(edge_index, torch.tensor([0.5, 0.5, 1.0]), stochastic=True)
    with pytest.raises(ValueError, match="alpha.*sum to 1 or 0"):
        as_edge_attention(edge_index, torch.tensor([0.5, 0.4, 1.0]), stochastic=True)


# ----------------------------------------------------------------------------- Data
def test_to_networkx_with_capture_record():
    torch.manual_seed(0)
    edge_index = random_graph(12, 12, 30, seed=8, self_loops=2)
    edge_index = torch.unique(edge_index, dim=1)
    data = Data(x=torch.randn(12, 5), edge_index=edge_index,
                edge_weight=torch.arange(edge_index.size(1)).float(), y=torch.arange(12))
    layer = GATConv(5, 4, heads=2).eval()
    with capture_attention(layer) as attn:
        layer(data.x, data.edge_index)
    record = attn[""]
    G = to_networkx(data, attention=record, node_attrs=["y"], edge_attrs=["edge_weight"])
    assert G.number_of_edges() == record.edge_index.size(1)
    assert G.graph["attention_heads"] == 2
    for j, i, d in G.edges(data=True):
        e = d["edge_id"]
        assert (j, i) == tuple(record.edge_index[:, e].tolist())
        assert d["weight_h1"] == float(record.alpha[e, 1])
        assert d["input_edge_id"] == int(record.edge_id[e])
        if d["input_edge_id"] >= 0:  # an input edge: its attribute comes along
            assert d["edge_weight"] == float(data.edge_weight[d["input_edge_id"]])
            assert tuple(data.edge_index[:, d["input_edge_id"]].tolist()) == (j, i)
        else:  # a self-loop the layer added
            assert j == i and "edge_weight" not in d
    assert G.nodes[3]["y"] == 3
    # the same record as a pair, and without attention
    G_pair = to_networkx(data, attention=(record.edge_index, record.alpha))
    assert G_pair.number_of_edges() == G.number_of_edges()
    G_plain = to_networkx(data, edge_attrs=["edge_weight"])
    assert G_plain.number_of_edges() == edge_index.size(1)
    assert all("weight" not in d for _, _, d in G_plain.edges(data=True))
    back = from_networkx(G)
    assert torch.equal(back.edge_index, record.edge_index)
    assert torch.equal(back.alpha, record.alpha)
    assert torch.equal(back.input_edge_id, record.edge_id)


def test_to_networkx_rejects():
    with pytest.raises(TypeError, match="data"):
        to_networkx(torch.zeros(2, 2))
    data = Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=2, w=torch.ones(2))
    with pytest.raises(ValueError, match="edge_attrs"):
        to_networkx(data, (torch.tensor([[0], [1]]), torch.ones(1)), edge_attrs=["w"])
    with pytest.raises(TypeError, match="attention"):
        to_networkx(data, attention="alpha")
    with pytest.raises(ValueError, match="node attribute 'w'"):
        attention_to_networkx(data.edge_index, torch.ones(2), node_attrs={"w": torch.ones(5)})


def test_as_attention_graph_forms():
    attn = random_dense_attention(4, 4, seed=9)
    edge_index, alpha = dense_to_edge_index(attn)
    from_dense = as_attention_graph(attn)
    from_pair = as_attention_graph((edge_index, alpha))
    assert sorted(from_dense.edges(data="weight")) == sorted(from_pair.edges(data="weight"))
    assert as_attention_graph(from_dense) is from_dense
    bad = nx.DiGraph([(0, 1, {"weight": -1.0})])
    with pytest.raises(ValueError, match="non-negative"):
        as_attention_graph(bad)
    with pytest.raises(TypeError, match="DiGraph"):
        as_attention_graph(nx.Graph([(0, 1)]))
    with pytest.raises(ValueError, match="nodelist"):
        digraph_to_dense(from_dense, nodelist=[0, 1])
    assert np.allclose(digraph_to_dense(from_dense, nodelist=[3, 2, 1, 0]).numpy(),
                       attn.flip(0).flip(1).numpy())
