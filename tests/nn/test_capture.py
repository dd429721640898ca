"""capture_attention: records of our layers and PyG's, in models, with every input type."""
from __future__ import annotations

import copy
import doctest

import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric import EdgeIndex
from torch_geometric.data import HeteroData
from torch_geometric.nn.models import GAT
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor
from torch_geometric.utils import coalesce, to_torch_coo_tensor, to_torch_csr_tensor

import pyg_attn.nn as ours
import pyg_attn.nn.capture as capture_module
from pyg_attn.nn import AttentionRecord, capture_attention, replace_layers
from pyg_attn.nn.conv.edges import plain_edges

from ..graphs import random_graph

needs_torch_sparse = pytest.mark.skipif(not WITH_TORCH_SPARSE, reason="needs torch_sparse")
N, F_IN = 24, 8


# ----------------------------------------------------------------------------- helpers
def check_record(record: AttentionRecord, adj, adds_loops: bool, num_nodes: int = N):
    """edge_id points at the record's edges in the caller's input; loops are -1."""
    assert isinstance(record, AttentionRecord)
    num_edges = record.edge_index.size(1)
    assert record.alpha.shape[0] == num_edges and record.alpha.dim() == 2
    assert record.edge_id.shape == (num_edges,) and record.edge_id.dtype == torch.long
    assert not record.alpha.requires_grad
    given = plain_edges(adj)
    found = record.edge_id >= 0
    assert torch.equal(given[:, record.edge_id[found]], record.edge_index[:, found])
    missing = record.edge_index[:, ~found]
    if adds_loops:
        # exactly one added loop per node, and no input self-loop survives
        assert torch.equal(missing[0], missing[1])
        assert torch.equal(missing[0].sort().values, torch.arange(num_nodes))
        assert bool((record.edge_index[0, found] != record.edge_index[1, found]).all())
    else:
        assert missing.size(1) == 0


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


class TwoLayer(torch.nn.Module):
    def __init__(self, conv, heads=2, **kwargs):
        super().__init__()
        self.conv1 = conv(F_IN, 6, heads=heads, **kwargs)
        self.conv2 = conv(6 * heads, 5, heads=1, **kwargs)

    def forward(self, x, edge_index, edge_attr=None):
        kw = {} if edge_attr is None else {"edge_attr": edge_attr}
        return self.conv2(self.conv1(x, edge_index, **kw).relu(), edge_index, **kw)


def pair(name, seed=0, **kwargs):
    """(ours, PyG's) two-layer models with the same weights, in eval mode."""
    torch.manual_seed(seed)
    pyg = TwoLayer(getattr(pyg_nn, name), **kwargs).eval()
    mine = TwoLayer(getattr(ours, name), **kwargs).eval()
    mine.load_state_dict(pyg.state_dict())
    return mine, pyg


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, F_IN, generator=gen)
    edge_index = random_graph(N, N, 70, seed=3, self_loops=5, duplicates=6)
    return x, edge_index


def test_docstring_examples():
    for module in (capture_module, ours.replace):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------- two-layer models
@pytest.mark.parametrize("name,kwargs", [
    ("GATConv", {}), ("GATv2Conv", {}), ("TransformerConv", {}),
    ("GATConv", {"edge_dim": 3}), ("TransformerConv", {"edge_dim": 3}),
    ("GATConv", {"add_self_loops": False}),
])
def test_ours_and_pyg_agree(data, name, kwargs):
    x, edge_index = data
    edge_attr = None
    if "edge_dim" in kwargs:
        edge_attr = torch.randn(edge_index.size(1), 3, generator=torch.Generator().manual_seed(1))
    mine, pyg = pair(name, **kwargs)
    adds_loops = name != "TransformerConv" and kwargs.get("add_self_loops", True)
    outs = {}
    for label, model in (("ours", mine), ("pyg", pyg)):
        plain = model(x, edge_index, edge_attr)
        before = hook_count(model)
        with capture_attention(model) as attn:
            out = model(x, edge_index, edge_attr)
        assert hook_count(model) == before == 0
        assert torch.equal(out, plain)  # the model sees exactly what it would have seen
        assert sorted(attn) == ["conv1", "conv2"] and attn.calls == {"conv1": 1, "conv2": 1}
        for record in attn.values():
            check_record(record, edge_index, adds_loops)
            assert record.num_heads in (1, 2)
        outs[label] = attn
    for layer in ("conv1", "conv2"):
        a, b = outs["ours"][layer], outs["pyg"][layer]
        assert torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.edge_id, b.edge_id)
        torch.testing.assert_close(a.alpha, b.alpha, atol=1e-5, rtol=1e-5)
    if adds_loops:  # PyG's order: kept edges in input order, then the loops
        record = outs["ours"]["conv1"]
        kept = (edge_index[0] != edge_index[1]).nonzero().view(-1)
        assert torch.equal(record.edge_id, torch.cat([kept, torch.full((N,), -1)]))


def test_gradients_unchanged(data):
    x, edge_index = data
    mine, _ = pair("GATConv")
    grads = []
    for capture in (False, True):
        mine.zero_grad()
        if capture:
            with capture_attention(mine) as attn:
                mine(x, edge_index).square().sum().backward()
            assert len(attn) == 2
        else:
            mine(x, edge_index).square().sum().backward()
        grads.append([p.grad.clone() for p in mine.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_training_mode_dropout(data):
    """Ours: weights before dropout (rows sum to 1), output unchanged for a given seed."""
    x, edge_index = data
    torch.manual_seed(0)
    model = TwoLayer(ours.GATConv, dropout=0.5).train()
    torch.manual_seed(7)
    plain = model(x, edge_index)
    torch.manual_seed(7)
    with capture_attention(model) as attn:
        out = model(x, edge_index)
    torch.testing.assert_close(out, plain)
    record = attn["conv1"]
    sums = torch.zeros(N, record.num_heads).index_add_(0, record.edge_index[1], record.alpha)
    torch.testing.assert_close(sums, torch.ones_like(sums))


# ----------------------------------------------------------------------------- call forms
@pytest.mark.parametrize("lib", [ours, pyg_nn])
def test_caller_requested_forms_are_kept(data, lib):
    x, edge_index = data
    torch.manual_seed(0)
    gat = lib.GATConv(F_IN, 4, heads=2).eval()
    tr = lib.TransformerConv(F_IN, 4, heads=2).eval()
    with capture_attention(gat) as attn:
        out = gat(x, edge_index, None, None, True)  # positional return_attention_weights
        assert isinstance(out, tuple) and torch.equal(out[1][0], attn[""].edge_index)
        out = gat(x, edge_index, return_attention_weights=True)
        assert isinstance(out, tuple)
        assert isinstance(gat(x, edge_index, return_attention_weights=False), torch.Tensor)
        assert isinstance(gat(x, edge_index, None, None, None), torch.Tensor)
    assert attn.calls[""] == 4
    with capture_attention(tr):
        assert isinstance(tr(x, edge_index), torch.Tensor)
        out = tr(x, edge_index, return_attention_weights=False)
        # PyG's TransformerConv returns a tuple for False; ours just the output
        assert isinstance(out, tuple) == (lib is pyg_nn)
        assert isinstance(tr(x, edge_index, None, True), tuple)


def test_repeated_calls_keep_the_last(data):
    x, edge_index = data
    conv = ours.GATConv(F_IN, F_IN, heads=1).eval()
    other = edge_index[:, :20]

    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(self.conv(x, edge_index), other)

    model = Twice()
    with capture_attention(model) as attn:
        model(x)
    assert attn.calls == {"conv": 2}
    check_record(attn["conv"], other, adds_loops=True)
    assert attn["conv"].edge_index.size(1) == int((other[0] != other[1]).sum()) + N


def test_hooks_removed_on_exception(data):
    x, edge_index = data
    model, _ = pair("GATConv")
    with pytest.raises(RuntimeError, match="boom"):
        with capture_attention(model) as attn:
            model(x, edge_index)
            raise RuntimeError("boom")
    assert hook_count(model) == 0 and len(attn) == 2
    with pytest.raises(ValueError):  # an error inside a layer
        with capture_attention(model):
            model(x, edge_index + 100)
    assert hook_count(model) == 0
    with capture_attention(model) as attn:  # still works afterwards
        model(x, edge_index)
    assert attn.calls == {"conv1": 1, "conv2": 1}


def test_kqv_conv_duplicates_map_to_first(data):
    x, edge_index = data
    conv = ours.KQVConv(F_IN, 4, heads=2).eval()
    with capture_attention(conv) as attn:
        conv(x, edge_index)
    record = attn[""]
    check_record(record, edge_index, adds_loops=False)
    assert record.edge_index.size(1) == coalesce(edge_index).size(1)  # deduplicated
    keys = (edge_index[0] * N + edge_index[1]).tolist()
    first = {}
    for pos, key in enumerate(keys):
        first.setdefault(key, pos)
    expected = [first[int(s) * N + int(d)] for s, d in record.edge_index.t()]
    assert record.edge_id.tolist() == expected


def test_edge_index_object(data):
    x, edge_index = data
    conv = ours.GATConv(F_IN, 4, heads=2).eval()
    with capture_attention(conv) as attn:
        conv(x, EdgeIndex(edge_index, sparse_size=(N, N)))
    assert type(attn[""].edge_index) is torch.Tensor
    check_record(attn[""], edge_index, adds_loops=True)


# ----------------------------------------------------------------------------- sparse inputs
def sparse_inputs(edge_index):
    out = {
        "coo": to_torch_coo_tensor(edge_index.flip(0), size=(N, N)),
        "csr": to_torch_csr_tensor(edge_index.flip(0), size=(N, N)),
    }
    if WITH_TORCH_SPARSE:
        out["sparse_tensor"] = SparseTensor.from_edge_index(edge_index, sparse_sizes=(N, N)).t()
    return out


@pytest.mark.parametrize("name", ["GATConv", "GATv2Conv", "TransformerConv"])
@pytest.mark.parametrize("kind", ["coo", "csr", pytest.param("sparse_tensor",
                                                             marks=needs_torch_sparse)])
def test_sparse_inputs(data, name, kind):
    x, edge_index = data
    edge_index = coalesce(edge_index)  # sparse inputs sum duplicates: none here
    adj = sparse_inputs(edge_index)[kind]
    mine, pyg = pair(name)
    adds_loops = name != "TransformerConv"
    records = {}
    for label, model in (("ours", mine), ("pyg", pyg)):
        plain = model(x, adj)
        with capture_attention(model) as attn:
            out = model(x, adj)
        assert torch.equal(out, plain)
        for record in attn.values():
            check_record(record, adj, adds_loops)
        records[label] = attn
    # the same weights as with the edge_index input, edge by edge
    with capture_attention(mine) as by_index:
        mine(x, edge_index)
    for layer in ("conv1", "conv2"):
        a, b, ref = records["ours"][layer], records["pyg"][layer], by_index[layer]
        assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.edge_id, b.edge_id)
        torch.testing.assert_close(a.alpha, b.alpha, atol=1e-5, rtol=1e-5)
        keys = lambda ei: (ei[0] * N + ei[1]).tolist()  # noqa: E731
        lookup = dict(zip(keys(ref.edge_index), ref.alpha))
        expected = torch.stack([lookup[k] for k in keys(a.edge_index)])
        torch.testing.assert_close(a.alpha, expected, atol=1e-5, rtol=1e-5)
        # sparse inputs: positions in the stored order
        stored = plain_edges(adj)
        found = a.edge_id >= 0
        assert torch.equal(stored[:, a.edge_id[found]], a.edge_index[:, found])


# ----------------------------------------------------------------------------- models.GAT
@pytest.mark.parametrize("v2", [False, True])
def test_models_gat(data, v2):
    x, edge_index = data
    torch.manual_seed(0)
    pyg = GAT(F_IN, 16, num_layers=3, out_channels=3, heads=4, v2=v2).eval()
    mine = replace_layers(copy.deepcopy(pyg))
    results = []
    for model in (pyg, mine):
        plain = model(x, edge_index)
        with capture_attention(model) as attn:
            out = model(x, edge_index)
        torch.testing.assert_close(out, plain, atol=0, rtol=0)
        assert sorted(attn) == ["convs.0", "convs.1", "convs.2"]
        assert [attn[f"convs.{i}"].num_heads for i in range(3)] == [4, 4, 4]
        for record in attn.values():
            check_record(record, edge_index, adds_loops=True)
        results.append(attn)
    for name in results[0]:
        a, b = results[0][name], results[1][name]
        assert torch.equal(a.edge_id, b.edge_id)
        torch.testing.assert_close(a.alpha, b.alpha, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- to_hetero
def hetero_data():
    gen = torch.Generator().manual_seed(5)
    data = HeteroData()
    data["author"].x = torch.randn(7, 6, generator=gen)
    data["paper"].x = torch.randn(9, 5, generator=gen)
    data["author", "writes", "paper"].edge_index = random_graph(7, 9, 20, seed=6)
    data["paper", "rev_writes", "author"].edge_index = random_graph(9, 7, 20, seed=7)
    data["paper", "cites", "paper"].edge_index = random_graph(9, 9, 25, seed=8, self_loops=2)
    return data


class HeteroNet(torch.nn.Module):
    def __init__(self, conv):
        super().__init__()
        kwargs = {"add_self_loops": False} if conv is not pyg_nn.TransformerConv else {}
        self.conv1 = conv((-1, -1), 8, heads=2, **kwargs)
        self.conv2 = conv((-1, -1), 4, heads=1, **kwargs)

    def forward(self, x, edge_index):
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index)


@pytest.mark.parametrize("conv", [pyg_nn.GATConv, pyg_nn.TransformerConv])
def test_to_hetero(conv):
    data = hetero_data()
    torch.manual_seed(0)
    model = pyg_nn.to_hetero(HeteroNet(conv), data.metadata(), aggr="sum").eval()
    model(data.x_dict, data.edge_index_dict)  # initialise the lazy layers
    mine = replace_layers(copy.deepcopy(model))
    expected = {f"{layer}.{'__'.join(edge_type)}"
                for layer in ("conv1", "conv2") for edge_type in data.edge_types}
    results = []
    for net in (model, mine):
        plain = net(data.x_dict, data.edge_index_dict)
        with capture_attention(net) as attn:
            out = net(data.x_dict, data.edge_index_dict)
        for node_type in plain:
            assert torch.equal(out[node_type], plain[node_type])
        assert set(attn) == expected
        for name, record in attn.items():
            edge_type = tuple(name.split(".", 1)[1].split("__"))
            num_dst = data[edge_type[2]].num_nodes
            check_record(record, data[edge_type].edge_index, adds_loops=False,
                         num_nodes=num_dst)
            assert record.edge_index.size(1) == data[edge_type].num_edges
            assert record.num_heads == (2 if name.startswith("conv1") else 1)
        assert hook_count(net) == 0
        results.append(attn)
    for name in expected:
        torch.testing.assert_close(results[0][name].alpha, results[1][name].alpha,
                                   atol=1e-5, rtol=1e-5)
