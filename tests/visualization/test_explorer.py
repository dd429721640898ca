"""explorer: the embedded data equals the Python values, sizes, edge cases, bad input.

The page itself is driven in a browser by ``test_explorer_browser.py``.
"""
from __future__ import annotations

import html
import json
import re
from types import SimpleNamespace
from typing import Any, Dict, List, Tuple

import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric.data import Data

from pyg_attn import cli
from pyg_attn.analysis import attention_flow, attention_rollout
from pyg_attn.datasets import CACHE_ENV, DATA_ENV
from pyg_attn.nn import GATConv, capture_attention
from pyg_attn.visualization import AttentionExplorer, explorer
from pyg_attn.visualization.explorer import MAX_EDGES

from ..graphs import random_graph

#: Size bound of the page for a 2-hop Cora neighbourhood, 2 layers x 8 heads.
MAX_BYTES = 2_000_000


def embedded(page: str) -> Dict[str, Any]:
    """The JSON the page carries."""
    match = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>',
                      page, re.S)
    assert match is not None
    return json.loads(match.group(1))


class TwoLayers(torch.nn.Module):
    """Two attention layers (``heads`` each) in the direction of the conventions."""

    def __init__(self, conv: Any, channels: int, heads: int) -> None:
        super().__init__()
        self.conv1 = conv(channels, 4, heads=heads)
        self.conv2 = conv(4 * heads, 3, heads=heads)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index)


def capture(model: torch.nn.Module, x: torch.Tensor, edge_index: torch.Tensor
            ) -> Tuple[Dict[str, Any], torch.Tensor]:
    """``(records, logits)`` of one evaluation-mode forward pass."""
    with torch.no_grad(), capture_attention(model.eval()) as records:
        logits = model(x, edge_index)
    return records, logits


def load_cora(tmp_path_factory: Any) -> Any:
    """The shipped Cora, cached under the test session's temporary folder."""
    from pyg_attn.training.node_classification import load_node_data

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.getbasetemp() / "explorer_cache"))
        patch.delenv(DATA_ENV, raising=False)
        data, _, _ = load_node_data("Cora")
    return data


def cora_page(tmp_path_factory: Any, node: int = 0) -> Tuple[AttentionExplorer, Any, Dict]:
    """Node ``node``'s 2-hop explorer of an (untrained) 2-layer x 8-head GAT on Cora."""
    data = load_cora(tmp_path_factory)
    torch.manual_seed(0)
    model = TwoLayers(GATConv, data.num_features, heads=8)
    records, logits = capture(model, data.x, data.edge_index)
    return explorer(records, data, node=node, hops=2, predictions=logits), data, records


@pytest.fixture(scope="module")
def small():
    """A 30-node graph with an isolated node (29), our 2-layer GAT, labels, logits."""
    edge_index = random_graph(29, 29, 90, seed=71)
    data = Data(x=torch.randn(30, 5), edge_index=edge_index, y=torch.arange(30) % 4)
    torch.manual_seed(1)
    records, logits = capture(TwoLayers(GATConv, 5, heads=2), data.x, edge_index)
    return data, records, logits


def edge_weights(layer: Dict[str, Any], nodes: List[int]) -> Dict[Tuple[int, int, int], list]:
    """``{(source, target, edge id): [H] weights}`` of one embedded layer (global ids)."""
    heads = layer["heads"]
    return {(nodes[s], nodes[d], e): layer["alpha"][k * heads:(k + 1) * heads]
            for k, (s, d, e) in enumerate(zip(layer["src"], layer["dst"], layer["eid"]))}


# ----------------------------------------------------------------------------- data
def test_embedded_data_equals_the_records(small):
    data, records, logits = small
    page = explorer(records, data, node=3, hops=2, predictions=logits)
    content = embedded(page.html)
    assert content == page.data
    nodes = content["nodes"]
    assert nodes[0] == 3 and len(set(nodes)) == len(nodes)
    shown = set(nodes)
    assert [layer["name"] for layer in content["layers"]] == ["conv1", "conv2"]
    for layer, (name, record) in zip(content["layers"], records.items()):
        src, dst = record.edge_index.tolist()
        expected = {(s, d, e): a for s, d, e, a in zip(src, dst, record.edge_id.tolist(),
                                                       record.alpha.tolist())
                    if s in shown and d in shown}
        got = edge_weights(layer, nodes)
        assert got.keys() == expected.keys() and layer["heads"] == 2
        for key, weights in got.items():
            assert weights == pytest.approx(expected[key], abs=1e-6), (name, key)
    assert content["labels"] == [int(data.y[v]) for v in nodes]
    assert content["predictions"] == logits.argmax(-1)[nodes].tolist()
    classes = max(int(data.y.max()), int(logits.argmax(-1).max())) + 1  # over all nodes
    assert content["num_classes"] == classes and content["message"] is None


def test_neighbourhood_is_the_receptive_field(small):
    data, records, _ = small
    nodes = explorer(records, data, node=3, hops=1).data["nodes"]
    sources = data.edge_index[0, data.edge_index[1] == 3].tolist()
    assert set(nodes) == {3, *sources}


def test_rollout_and_flow_rows_equal_the_analysis(small):
    data, records, _ = small
    content = explorer(records, data, node=3, hops=2, flow_targets=2).data
    nodes = torch.tensor(content["nodes"])
    rollout = attention_rollout(records, targets=nodes, num_nodes=30).to_dense()
    flow = attention_flow(records, targets=nodes[:2], num_nodes=30)
    for name, matrix, count in (("rollout", rollout, nodes.numel()), ("flow", flow, 2)):
        assert len(content[name]) == count
        for row, target in enumerate(content[name]):
            values = {content["nodes"][s]: w for s, w in content[name][target]}
            expected = {int(v): float(matrix[row, v]) for v in nodes if matrix[row, v] > 0}
            assert values == pytest.approx(expected, abs=1e-6), (name, target)
            weights = [w for _, w in content[name][target]]
            assert weights == sorted(weights, reverse=True)
    assert content["flow_targets"] == 2


def test_records_of_pyg_layers_and_plain_pairs(small):
    data, _, _ = small
    for conv in (pyg_nn.GATConv, pyg_nn.GATv2Conv, pyg_nn.TransformerConv):
        torch.manual_seed(2)
        records, _ = capture(TwoLayers(conv, 5, heads=3), data.x, data.edge_index)
        content = explorer(records, data, node=0).data
        assert [layer["heads"] for layer in content["layers"]] == [3, 3]
        eids = content["layers"][0]["eid"]
        assert (-1 in eids) == (conv is not pyg_nn.TransformerConv)  # added self-loops
    edge_index = torch.tensor([[1, 2], [0, 0]])
    content = explorer([(edge_index, torch.tensor([0.25, 0.75]))]).data
    assert content["layers"][0] == {"name": "layer 0", "heads": 1, "src": [1, 2],
                                    "dst": [0, 0], "eid": [0, 1], "alpha": [0.25, 0.75]}
    assert content["nodes"] == [0, 1, 2] and content["labels"] is None


def test_isolated_node_and_node_without_incoming_edges(small):
    data, records, _ = small
    content = explorer(records, data, node=29).data  # isolated: only its added self-loop
    assert content["nodes"] == [29]
    assert [(layer["src"], layer["dst"], layer["eid"]) for layer in content["layers"]] == \
        [([0], [0], [-1])] * 2
    assert content["rollout"] == {"0": [[0, 1.0]]}
    edge_index = torch.tensor([[0, 0], [1, 2]])  # node 0 sends, nothing comes in
    pairs = [(edge_index, torch.ones(2, 2))] * 2
    content = explorer(pairs, Data(num_nodes=4), node=0).data
    assert content["nodes"] == [0] and content["layers"][0]["src"] == []
    assert content["rollout"] == {"0": [[0, 1.0]]} and content["flow"] == {"0": [[0, 1.0]]}
    assert explorer(pairs, Data(num_nodes=4), node=3).data["nodes"] == [3]


def test_whole_graph_and_truncation_message(small):
    data, records, _ = small
    whole = explorer(records, data).data
    assert whole["nodes"] == list(range(30)) and whole["message"] is None
    assert len(whole["layers"][0]["src"]) == records["conv1"].alpha.size(0)
    cut = explorer(records, data, max_edges=40).data
    assert 0 < len(cut["nodes"]) < 30 and "Truncated" in cut["message"]
    assert cut["nodes"] == list(range(len(cut["nodes"])))  # lowest ids kept
    assert all(len(layer["src"]) <= 40 for layer in cut["layers"])
    near = explorer(records, data, node=3, hops=3, max_edges=20).data
    assert near["nodes"][0] == 3 and "node 3" in near["message"]
    assert all(len(layer["src"]) <= 20 for layer in near["layers"])


# ----------------------------------------------------------------------------- files
def test_save_path_and_jupyter(small, tmp_path):
    data, records, _ = small
    page = explorer(records, data, node=3, path=tmp_path / "sub" / "a.html")
    assert (tmp_path / "sub" / "a.html").read_text(encoding="utf-8") == page.html
    assert page.save(tmp_path / "b.html") == tmp_path / "b.html"
    frame = page._repr_html_()
    assert frame.startswith("<iframe srcdoc=\"") and "<script" not in frame
    assert html.unescape(frame.split('srcdoc="', 1)[1].split('" style=', 1)[0]) == page.html
    assert repr(page).startswith("AttentionExplorer(") and "2 layers" in repr(page)


def test_page_is_self_contained_and_escapes_names():
    edge_index = torch.tensor([[1], [0]])
    page = explorer({"</script><b>x": (edge_index, torch.ones(1))},
                    title="a <title> & __DATA__").html
    assert page.count("</script>") == 2  # the data block and the code, nothing else closes
    assert embedded(page)["layers"][0]["name"] == "</script><b>x"
    assert "<title>a &lt;title&gt; &amp; __DATA__</title>" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched at view time


def test_cora_two_hop_page_is_small(tmp_path_factory):
    page, data, _ = cora_page(tmp_path_factory, node=0)
    assert len(page.html.encode()) < MAX_BYTES
    hub = int(torch.bincount(data.edge_index[1]).argmax())  # the largest neighbourhood
    page, _, _ = cora_page(tmp_path_factory, node=hub)
    size = len(page.html.encode())
    assert size < MAX_BYTES, size
    assert all(len(layer["src"]) <= MAX_EDGES for layer in page.data["layers"])


# ----------------------------------------------------------------------------- errors
def test_bad_arguments_name_the_argument(small, tmp_path):
    data, records, _ = small
    pairs = [(data.edge_index, torch.rand(data.edge_index.size(1)))]
    cases = [
        (dict(records=5), TypeError, "records"),
        (dict(records=[]), ValueError, "records"),
        (dict(records=["x"]), TypeError, "records"),
        (dict(records=[(data.edge_index, torch.rand(3))]), ValueError, "alpha"),
        (dict(records=[(data.edge_index[0], torch.rand(90))]), ValueError, "edge_index"),
        (dict(records=[(data.edge_index, -torch.rand(90))]), ValueError, "non-negative"),
        (dict(records=pairs), ValueError, "records"),  # rows do not sum to 1
        (dict(node=30), ValueError, "node"),
        (dict(node=-1), ValueError, "node"),
        (dict(node="3"), TypeError, "node"),
        (dict(node=True), TypeError, "node"),
        (dict(hops=0), ValueError, "hops"),
        (dict(hops=1.5), TypeError, "hops"),
        (dict(max_edges=0), ValueError, "max_edges"),
        (dict(flow_targets=-1), ValueError, "flow_targets"),
        (dict(path=3), TypeError, "path"),
        (dict(title=3), TypeError, "title"),
        (dict(data=object()), TypeError, "data"),
        (dict(data=Data(num_nodes=5)), ValueError, "data"),
        (dict(data=Data(num_nodes=30, y=torch.zeros(29, dtype=torch.long))), ValueError,
         "data.y"),
        (dict(predictions=torch.zeros(7, dtype=torch.long)), ValueError, "predictions"),
        (dict(predictions=[0] * 30), TypeError, "predictions"),
    ]
    for kwargs, error, name in cases:
        kwargs = {"records": records, "data": data, **kwargs}
        with pytest.raises(error, match=re.escape(name)):
            explorer(**kwargs)
    with pytest.raises(TypeError, match="path"):
        explorer(records, data).save(SimpleNamespace())
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- CLI
def test_explain_html_writes_the_page(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(DATA_ENV, raising=False)
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "Cora", "--epochs", "2", "--out", str(out),
                     "--hidden", "2", "--heads", "2", "--no-progress"]) == 0
    assert cli.main(["explain", "--checkpoint", str(out), "--node", "3", "--out",
                     str(tmp_path / "ex"), "--html"]) == 0
    page = tmp_path / "ex" / "attention.html"
    assert f"html: {page}" in capsys.readouterr().out
    content = embedded(page.read_text(encoding="utf-8"))
    assert content["nodes"][0] == 3 and [layer["heads"] for layer in content["layers"]] == [2, 1]
    assert content["labels"] is not None and content["predictions"] is not None
