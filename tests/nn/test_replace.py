"""replace_layers: PyG's attention layers swapped for ours inside existing models."""
from __future__ import annotations

import copy

import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric.explain import Explainer
from torch_geometric.explain.algorithm import AttentionExplainer
from torch_geometric.nn.models import GAT

import pyg_attn.nn as ours
from pyg_attn.nn import replace_layers

from ..graphs import random_graph

N, F_IN = 20, 8
PAIRS = {pyg_nn.GATConv: ours.GATConv, pyg_nn.GATv2Conv: ours.GATv2Conv,
         pyg_nn.TransformerConv: ours.TransformerConv}
# attributes that define each layer (constructor arguments and MessagePassing state)
ATTRS = ("in_channels", "out_channels", "heads", "concat", "negative_slope", "dropout",
         "add_self_loops", "edge_dim", "fill_value", "residual", "share_weights", "beta",
         "root_weight", "aggr", "flow", "node_dim", "decomposed_layers", "training")


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, F_IN, generator=gen)
    edge_index = random_graph(N, N, 60, seed=2, self_loops=4, duplicates=4)
    edge_attr = torch.randn(edge_index.size(1), 3, generator=gen)
    return x, edge_index, edge_attr


def swapped_layers(before, after):
    """``[(old, new)]`` of the attention layers, by name; checks the swap itself."""
    old = dict(before.named_modules())
    new = dict(after.named_modules())
    assert old.keys() == new.keys()
    pairs = []
    for name, layer in old.items():
        if type(layer) in PAIRS:
            assert type(new[name]) is PAIRS[type(layer)], name
            for attr in ATTRS:
                if hasattr(layer, attr):
                    assert getattr(new[name], attr) == getattr(layer, attr), (name, attr)
            pairs.append((layer, new[name]))
    assert pairs
    return pairs


def check_state(model, keys, params):
    assert list(model.state_dict().keys()) == keys
    assert [id(p) for p in model.parameters()] == params  # the same Parameter objects


# ----------------------------------------------------------------------------- models.GAT
@pytest.mark.parametrize("v2", [False, True])
@pytest.mark.parametrize("edge_dim", [None, 3])
def test_models_gat(data, v2, edge_dim):
    x, edge_index, edge_attr = data
    edge_attr = edge_attr if edge_dim else None
    torch.manual_seed(0)
    model = GAT(F_IN, 16, num_layers=3, out_channels=4, heads=4, v2=v2, edge_dim=edge_dim,
                dropout=0.3).eval()
    reference = copy.deepcopy(model)
    keys, params = list(model.state_dict().keys()), [id(p) for p in model.parameters()]
    before = model(x, edge_index, edge_attr=edge_attr)
    assert replace_layers(model) is model
    swapped_layers(reference, model)
    check_state(model, keys, params)
    after = model(x, edge_index, edge_attr=edge_attr)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    # gradients agree too
    for net in (reference, model):
        net.zero_grad()
        net(x, edge_index, edge_attr=edge_attr).square().sum().backward()
    for p, q in zip(reference.parameters(), model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-4)


def test_training_mode_dtype_and_requires_grad_kept(data):
    x, edge_index, _ = data
    model = GAT(F_IN, 8, num_layers=2, heads=2).double().train()
    model.convs[1].eval()
    model.convs[0].att_src.requires_grad_(False)
    replace_layers(model)
    assert model.convs[0].training and not model.convs[1].training
    assert not model.convs[0].att_src.requires_grad
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model(x.double(), edge_index).dtype == torch.float64


def test_optimizer_keeps_training(data):
    x, edge_index, _ = data
    torch.manual_seed(0)
    model = GAT(F_IN, 8, num_layers=2, heads=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    replace_layers(model)
    weight = model.convs[0].lin.weight.detach().clone()
    model(x, edge_index).square().sum().backward()
    optimizer.step()
    assert not torch.equal(model.convs[0].lin.weight, weight)


# ----------------------------------------------------------------------------- hand-written
class Mixed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gat = pyg_nn.GATConv(F_IN, 6, heads=2, concat=False, bias=False, fill_value="add",
                                  edge_dim=3, negative_slope=0.1)
        self.v2 = pyg_nn.GATv2Conv(6, 5, heads=3, share_weights=True, residual=True,
                                   add_self_loops=False)
        self.blocks = torch.nn.ModuleDict({
            "tr": pyg_nn.TransformerConv(15, 4, heads=2, beta=True, edge_dim=3, dropout=0.2),
            "tr2": pyg_nn.TransformerConv(8, 4, heads=2, root_weight=False, bias=False,
                                          concat=False),
        })
        self.head = torch.nn.Linear(4 * 2 + 4, 3)

    def forward(self, x, edge_index, edge_attr):
        h = self.gat(x, edge_index, edge_attr=edge_attr).relu()
        h = self.v2(h, edge_index).relu()
        h = self.blocks["tr"](h, edge_index, edge_attr)
        g = self.blocks["tr2"](x, edge_index)
        return self.head(torch.cat([h, g], dim=-1))


def test_hand_written_model(data):
    x, edge_index, edge_attr = data
    torch.manual_seed(0)
    model = Mixed().eval()
    reference = copy.deepcopy(model)
    keys, params = list(model.state_dict().keys()), [id(p) for p in model.parameters()]
    before = model(x, edge_index, edge_attr)
    replace_layers(model)
    assert len(swapped_layers(reference, model)) == 4
    assert model.v2.lin_r is model.v2.lin_l  # share_weights
    assert model.gat.bias is None and model.blocks["tr2"].lin_key.bias is None
    check_state(model, keys, params)
    torch.testing.assert_close(model(x, edge_index, edge_attr), before, atol=1e-5, rtol=1e-5)


def test_select_layers_and_shared_layers(data):
    x, edge_index, edge_attr = data
    model = Mixed().eval()
    replace_layers(model, layers="TransformerConv")
    assert type(model.gat) is pyg_nn.GATConv and type(model.v2) is pyg_nn.GATv2Conv
    assert type(model.blocks["tr"]) is ours.TransformerConv

    shared = pyg_nn.GATConv(F_IN, F_IN)
    seq = torch.nn.ModuleList([shared, shared])
    replace_layers(seq)
    assert type(seq[0]) is ours.GATConv and seq[0] is seq[1]


def test_single_layer_and_subclass(data):
    x, edge_index, _ = data
    layer = pyg_nn.GATv2Conv(F_IN, 4, heads=2).eval()
    new = replace_layers(layer)
    assert type(new) is ours.GATv2Conv
    torch.testing.assert_close(new(x, edge_index), layer(x, edge_index), atol=1e-5, rtol=1e-5)

    class MyGAT(pyg_nn.GATConv):
        pass

    model = torch.nn.Sequential(MyGAT(F_IN, 4))
    replace_layers(model)
    assert type(model[0]) is MyGAT  # subclasses are left alone


def test_lazy_layers(data):
    x, edge_index, _ = data
    torch.manual_seed(0)
    model = GAT(-1, 8, num_layers=2, heads=2).eval()
    uninitialised = copy.deepcopy(model)
    before = model(x, edge_index)  # initialises the lazy weights
    replace_layers(model)
    torch.testing.assert_close(model(x, edge_index), before, atol=1e-5, rtol=1e-5)
    assert model.convs[0].lin.in_channels == F_IN

    replace_layers(uninitialised)  # stays lazy until its first forward
    assert type(uninitialised.convs[0]) is ours.GATConv
    assert uninitialised(x, edge_index).shape == before.shape
    assert uninitialised.convs[0].lin.weight.shape == (8, F_IN)


def test_to_hetero_model():
    from .test_capture import HeteroNet, hetero_data

    data = hetero_data()
    torch.manual_seed(0)
    model = pyg_nn.to_hetero(HeteroNet(pyg_nn.GATConv), data.metadata(), aggr="sum").eval()
    before = model(data.x_dict, data.edge_index_dict)
    reference = copy.deepcopy(model)
    replace_layers(model)
    assert len(swapped_layers(reference, model)) == 2 * len(data.edge_types)
    after = model(data.x_dict, data.edge_index_dict)
    for node_type in before:
        torch.testing.assert_close(after[node_type], before[node_type], atol=1e-5, rtol=1e-5)


def test_errors():
    model = Mixed()
    with pytest.raises(ValueError, match="layers"):
        replace_layers(model, layers=("GCNConv",))
    with pytest.raises(TypeError, match="model"):
        replace_layers("GAT")
    handle = model.v2.register_forward_hook(lambda *args: None)
    with pytest.raises(ValueError, match="hooks"):
        replace_layers(model)
    assert type(model.gat) is pyg_nn.GATConv  # nothing swapped
    handle.remove()


def test_non_sum_aggregation_is_replaced_and_kept():
    torch.manual_seed(0)
    model = torch.nn.Sequential(pyg_nn.GATConv(4, 4, aggr="mean"))
    x, edge_index = torch.randn(8, 4), torch.randint(0, 8, (2, 30))
    expected = model[0](x, edge_index)
    replace_layers(model)
    assert model[0].__class__.__module__.startswith("pyg_attn")
    torch.testing.assert_close(model[0](x, edge_index), expected)


# ----------------------------------------------------------------------------- explainers
@pytest.mark.parametrize("v2", [False, True])
def test_attention_explainer_same_mask(data, v2):
    x, edge_index, _ = data
    torch.manual_seed(0)
    model = GAT(F_IN, 8, num_layers=2, out_channels=3, heads=2, v2=v2).eval()
    mine = replace_layers(copy.deepcopy(model))
    masks = []
    for net in (model, mine):
        explainer = Explainer(
            model=net, algorithm=AttentionExplainer(), explanation_type="model",
            edge_mask_type="object",
            model_config=dict(mode="multiclass_classification", task_level="node",
                              return_type="raw"))
        explanation = explainer(x, edge_index, index=3)
        masks.append(explanation.edge_mask)
    assert masks[0].shape == (edge_index.size(1),) and bool((masks[0] > 0).any())
    torch.testing.assert_close(masks[1], masks[0], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- hook list
def test_hook_list_mirrors_message_passing():
    """The one list of PyG's hook dictionaries is exactly those MessagePassing adds
    to a Module, and replace_layers refuses a hook in any of them."""
    from torch_geometric.nn.conv import MessagePassing

    from pyg_attn.nn.conv.message_path import MESSAGE_PASSING_HOOK_DICTS

    added = set(vars(MessagePassing())) - set(vars(torch.nn.Module()))
    assert set(MESSAGE_PASSING_HOOK_DICTS) == {name for name in added if name.endswith("_hooks")}
    for name in MESSAGE_PASSING_HOOK_DICTS:
        layer = pyg_nn.GATConv(4, 2)
        getattr(layer, name)[0] = lambda *args: None
        with pytest.raises(ValueError, match=name):
            replace_layers(layer)
