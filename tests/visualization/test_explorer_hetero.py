"""Heterogeneous attention: typed records (convert.hetero) and the explorer's hetero page data.

The page in a browser is driven by ``test_explorer_hetero_browser.py``.
"""
from __future__ import annotations

import re
from typing import Any

import networkx as nx
import pytest
import torch

from pyg_attn.analysis import attention_flow, attention_rollout
from pyg_attn.convert import hetero_attention, hetero_to_networkx
from pyg_attn.visualization import explorer

from .hetero_graphs import RELATIONS, hetero_conv_records, hetero_graph, to_hetero_records
from .test_explorer import embedded

#: Size bound of a 2-hop typed neighbourhood's page on a 100k-node heterogeneous graph.
MAX_HETERO_BYTES = 2_000_000


@pytest.fixture(scope="module")
def hetero() -> tuple[Any, dict[str, Any], dict[str, torch.Tensor]]:
    data = hetero_graph()
    records, out = to_hetero_records(data)
    return data, records, out


def typed_edges(content: dict[str, Any], layer: int) -> dict[tuple, list[float]]:
    """``{(relation, edge id, (src type, id), (dst type, id)): [H] weights}`` of a page layer."""
    types, kinds, ids = content["types"], content["node_type"], content["nodes"]
    node = [(types[t], v) for t, v in zip(kinds, ids)]
    data = content["layers"][layer]
    heads = data["heads"]
    return {(tuple(content["relations"][r]), e, node[s], node[d]):
            data["alpha"][k * heads:(k + 1) * heads]
            for k, (s, d, e, r) in enumerate(zip(data["src"], data["dst"], data["eid"],
                                                 data["rel"]))}


def record_edges(records: dict[str, Any], layer: str, shown: set) -> dict[tuple, list[float]]:
    """The same from the per-relation records, for edges between ``shown`` typed nodes."""
    found = {}
    for name, record in records.items():
        prefix, _, key = name.rpartition(".")
        if prefix != layer:
            continue
        src, rel, dst = key.split("__")
        for (j, i), e, a in zip(record.edge_index.t().tolist(), record.edge_id.tolist(),
                                record.alpha.tolist()):
            if (src, j) in shown and (dst, i) in shown:
                found[((src, rel, dst), e, (src, j), (dst, i))] = a
    return found


# ----------------------------------------------------------------------------- convert
def test_records_are_grouped_by_layer_on_one_node_range(hetero):
    data, records, _ = hetero
    typed = hetero_attention(records, data)
    assert list(typed) == ["conv1", "conv2"]
    assert typed.offsets == {"paper": 0, "author": 16, "topic": 24} and typed.num_nodes == 28
    assert typed.edge_types == [tuple(r[:3]) for r in RELATIONS]
    layer = typed["conv1"]
    assert layer.edge_index.size(1) == sum(r[3] for r in RELATIONS) and layer.num_heads == 2
    for k, edge_type in enumerate(typed.edge_types):  # each relation's edges, shifted
        record = records["conv1." + "__".join(edge_type)]
        mine = layer.relation == k
        shift = torch.tensor([[typed.offsets[edge_type[0]]], [typed.offsets[edge_type[2]]]])
        assert torch.equal(layer.edge_index[:, mine], record.edge_index + shift)
        assert torch.equal(layer.weight[mine], record.alpha.double())
        assert torch.equal(layer.edge_id[mine], record.edge_id)
    reached = torch.zeros(28)  # k_i: relations with an edge into node i
    for k in range(len(typed.edge_types)):
        reached[torch.unique(layer.edge_index[1, layer.relation == k])] += 1
    expected = layer.weight / reached[layer.edge_index[1]].unsqueeze(-1)
    assert torch.allclose(layer.alpha, expected)
    sums = torch.zeros(28, 2, dtype=torch.float64).index_add_(0, layer.edge_index[1], layer.alpha)
    has_edges = reached > 0
    assert torch.allclose(sums[has_edges], torch.ones_like(sums[has_edges]))
    assert int(reached.max()) == 3  # papers hear from authors, papers and topics
    kind, index = typed.typed_nodes(torch.tensor([0, 15, 16, 27]))
    assert kind.tolist() == [0, 0, 1, 2] and index.tolist() == [0, 15, 0, 3]


def test_hetero_conv_records_group_under_their_module(hetero):
    data, _, _ = hetero
    records = hetero_conv_records(data)
    assert "conv1.convs.<author___writes___paper>" in records and len(records) == 5
    typed = hetero_attention(records, data)
    assert list(typed) == ["conv1.convs"]
    content = explorer(records, data, node=("paper", 2)).data
    assert [layer["name"] for layer in content["layers"]] == ["conv1.convs"]
    assert (content["types"][content["node_type"][0]], content["nodes"][0]) == ("paper", 2)


def test_typed_networkx(hetero):
    data, records, _ = hetero
    plain = hetero_to_networkx(data)
    assert plain.number_of_nodes() == 28 and plain.number_of_edges() == sum(r[3] for r in RELATIONS)
    assert plain.nodes["topic", 3] == {"type": "topic"}
    j, i = data["author", "writes", "paper"].edge_index[:, 7].tolist()
    key = ("author__writes__paper", 7)
    assert plain.edges[("author", j), ("paper", i), key] == \
        {"relation": ("author", "writes", "paper"), "edge_id": 7}
    G = hetero_to_networkx(data, records, layer="conv2")
    record = records["conv2.author__writes__paper"]
    e = record.edge_id.tolist().index(7)
    attrs = G.edges[("author", j), ("paper", i), key]
    assert attrs["relation"] == ("author", "writes", "paper") and attrs["edge_id"] == 7
    assert [attrs["weight_h0"], attrs["weight_h1"]] == pytest.approx(record.alpha[e].tolist())
    assert attrs["weight"] == pytest.approx(float(record.alpha[e].mean()))
    assert G.graph["attention_heads"] == 2 and isinstance(G, nx.MultiDiGraph)
    with pytest.raises(ValueError, match="layer"):
        hetero_to_networkx(data, records)
    with pytest.raises(ValueError, match="layer"):
        hetero_to_networkx(data, records, layer="conv3")


# ----------------------------------------------------------------------------- page data
def test_page_keeps_types_relations_and_weights(hetero):
    data, records, out = hetero
    page = explorer(records, data, node=("paper", 0), hops=2,
                    predictions={"paper": out["paper"]})
    content = embedded(page.html)
    assert content == page.data and content["kind"] == "hetero"
    assert content["title"] == "Attention around (paper, 0)"
    types = content["types"]
    assert types == ["paper", "author", "topic"]
    shown = {(types[t], v) for t, v in zip(content["node_type"], content["nodes"])}
    assert len(shown) == len(content["nodes"])  # paper 0 and author 0 are distinct nodes
    assert (types[content["node_type"][0]], content["nodes"][0]) == ("paper", 0)
    for k, name in enumerate(["conv1", "conv2"]):
        got, want = typed_edges(content, k), record_edges(records, name, shown)
        assert got.keys() == want.keys() and got
        for key, weights in got.items():
            assert weights == pytest.approx(want[key], abs=1e-6), key
    labels = [int(data["paper"].y[v]) if types[t] == "paper" else -1
              for t, v in zip(content["node_type"], content["nodes"])]
    assert content["labels"] == labels
    predicted = out["paper"].argmax(-1)
    assert content["predictions"] == [int(predicted[v]) if types[t] == "paper" else -1
                                      for t, v in zip(content["node_type"], content["nodes"])]


def test_two_hop_typed_neighbourhood(hetero):
    data, records, _ = hetero
    content = explorer(records, data, node=("author", 1), hops=1).data
    types = content["types"]
    shown = {(types[t], v) for t, v in zip(content["node_type"], content["nodes"])}
    writes_back = data["paper", "rev_writes", "author"].edge_index
    sources = writes_back[0, writes_back[1] == 1].tolist()
    assert shown == {("author", 1), *(("paper", p) for p in sources)}


def test_typed_rollout_and_flow_equal_the_analysis(hetero):
    data, records, _ = hetero
    content = explorer(records, data, node=("paper", 0), hops=2, flow_targets=2).data
    typed = hetero_attention(records, data)
    types = content["types"]
    nodes = torch.tensor([typed.node_id(types[t], v)
                          for t, v in zip(content["node_type"], content["nodes"])])
    rollout = attention_rollout(typed, targets=nodes, num_nodes=typed.num_nodes).to_dense()
    flow = attention_flow(typed, targets=nodes[:2], num_nodes=typed.num_nodes)
    position = {int(v): k for k, v in enumerate(nodes.tolist())}
    for name, matrix in (("rollout", rollout), ("flow", flow)):
        for row, target in enumerate(content[name]):
            assert int(target) == row  # rows in the order of the shown nodes
            got = {s: w for s, w in content[name][target]}
            want = {position[int(v)]: float(matrix[row, v]) for v in nodes
                    if matrix[row, v] > 0}
            assert got == pytest.approx(want, abs=1e-6), (name, target)
    assert content["flow_targets"] == 2 and len(content["rollout"]) == nodes.numel()


def test_large_hetero_graph_page_is_small():
    data = hetero_graph(papers=60_000, authors=30_000, topics=10_000, scale=6_000)
    assert sum(data[t].num_nodes for t in data.node_types) == 100_000
    records, _ = to_hetero_records(data, heads=4)
    page = explorer(records, data, node=("paper", 0), hops=2)
    size = len(page.html.encode())
    assert size < MAX_HETERO_BYTES, size
    assert page.data["message"] is None or "Truncated" in page.data["message"]
    assert all(len(layer["src"]) <= 5000 for layer in page.data["layers"])


# ----------------------------------------------------------------------------- errors
def test_bad_hetero_arguments_name_the_argument(hetero):
    data, records, _ = hetero
    renamed = {"conv1.unknown": next(iter(records.values()))}
    cases = [
        (dict(node=0), TypeError, "node"),
        (dict(node=("venue", 0)), ValueError, "node"),
        (dict(node=("paper", 16)), ValueError, "node"),
        (dict(node=("paper", "0")), TypeError, "node"),
        (dict(data=None), ValueError, "records"),
        (dict(records=renamed), ValueError, "records"),
        (dict(records=list(records.values())), TypeError, "records"),
        (dict(predictions=torch.zeros(16)), TypeError, "predictions"),
        (dict(predictions={"paper": torch.zeros(5, dtype=torch.long)}), ValueError,
         "predictions['paper']"),
    ]
    for kwargs, error, name in cases:
        kwargs = {"records": records, "data": data, "node": ("paper", 0), **kwargs}
        with pytest.raises(error, match=re.escape(name)):
            explorer(**kwargs)
    heads = dict(records)
    key = "conv1.author__writes__paper"
    heads[key] = (records[key].edge_index, records[key].alpha[:, :1])
    with pytest.raises(ValueError, match="heads"):
        hetero_attention(heads, data)
    beyond = dict(records)
    beyond[key] = (records[key].edge_index + 100, records[key].alpha)
    with pytest.raises(ValueError, match=re.escape(f"records['{key}']")):
        hetero_attention(beyond, data)
