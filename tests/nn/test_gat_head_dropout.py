"""GAT's per-head input dropout (the paper's reference code): the projection
(pyg_attn.nn.conv.head_dropout), GATConv(input_dropout=, dropout_scheme=), the PyG
twin with the same scheme, and that hooks, capture_attention and explainers see
the layers while the default ``gat`` model trains."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torch_geometric.nn as pyg_nn
from torch_geometric.explain import Explainer
from torch_geometric.explain.algorithm import AttentionExplainer

from pyg_attn.nn import GATConv, capture_attention
from pyg_attn.nn.conv.head_dropout import HeadwiseDropoutLinear, headwise_dropout_projection
from pyg_attn.training.models import ModelConfig, build_model
from pyg_attn.training.node_classification import TrainConfig

EDGES = torch.tensor([[0, 1, 2, 3, 4, 0, 2, 2], [1, 2, 3, 4, 0, 2, 2, 1]])


def one_hot_rows(num_rows: int, num_features: int, *, requires_grad: bool = False):
    """``[N, F]`` with one non-zero (value 1 + row/N) per row: sparse enough for
    the sparse product; with ``requires_grad`` the dense path runs."""
    x = torch.zeros(num_rows, num_features, dtype=torch.float64)
    cols = torch.arange(num_rows) % num_features
    x[torch.arange(num_rows), cols] = 1.0 + torch.arange(num_rows, dtype=torch.float64) / num_rows
    return x.requires_grad_(requires_grad), cols


# ----------------------------------------------------------------------------- projection
@pytest.mark.parametrize("requires_grad", [False, True], ids=["sparse", "dense"])
def test_each_head_draws_its_own_input_mask(requires_grad):
    torch.manual_seed(0)
    heads, channels, features, rows, p = 4, 3, 50, 4000, 0.6
    x, _ = one_hot_rows(rows, features, requires_grad=requires_grad)
    weight = torch.randn(heads * channels, features, dtype=torch.float64)
    h = headwise_dropout_projection(x, weight, heads, p).detach()
    assert h.shape == (rows, heads, channels)
    # A row with one non-zero x_nf gives, per head, either 0 or x_nf W_k[:, f] / (1 - p).
    full = (x.detach() @ weight.t()).view(rows, heads, channels) / (1 - p)
    kept = torch.isclose(h, full).all(dim=-1)
    dropped = (h == 0).all(dim=-1)
    assert bool((kept ^ dropped).all())
    keep_rate = kept.double().mean(dim=0)
    assert torch.allclose(keep_rate, torch.full_like(keep_rate, 1 - p), atol=0.04)
    # Heads draw independently: both kept about (1-p)^2 of the time, not (1-p).
    both = (kept[:, 0] & kept[:, 1]).double().mean()
    assert abs(float(both) - (1 - p) ** 2) < 0.03


@pytest.mark.parametrize("requires_grad", [False, True], ids=["sparse", "dense"])
def test_projection_is_unbiased_and_trains_the_weight(requires_grad):
    torch.manual_seed(0)
    x = torch.rand(6, 40, dtype=torch.float64) * (torch.rand(6, 40) < 0.05)
    x.requires_grad_(requires_grad)
    weight = torch.randn(8, 40, dtype=torch.float64, requires_grad=True)
    draws = torch.stack([headwise_dropout_projection(x, weight, 2, 0.5) for _ in range(3000)])
    expected = (x @ weight.t()).view(6, 2, 4).detach()
    torch.testing.assert_close(draws.mean(0), expected, atol=float(0.08 * expected.abs().max()),
                               rtol=0)
    draws.sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_without_dropout_the_projection_is_the_linear_map():
    x = torch.randn(5, 7)
    weight = torch.randn(6, 7)
    torch.testing.assert_close(headwise_dropout_projection(x, weight, 3, 0.0),
                               (x @ weight.t()).view(5, 3, 2))


def test_empty_input():
    out = headwise_dropout_projection(torch.zeros(0, 7), torch.randn(6, 7), 3, 0.5)
    assert out.shape == (0, 3, 2)


def test_headwise_linear_keeps_the_weight_and_checks_arguments():
    linear = pyg_nn.Linear(7, 6, bias=False)
    wrapped = HeadwiseDropoutLinear(linear, 3, 0.5)
    assert wrapped.weight is linear.weight and list(wrapped.state_dict()) == ["weight"]
    x = torch.randn(5, 7)
    torch.testing.assert_close(wrapped.eval()(x), linear(x))
    assert wrapped.train()(x).shape == (5, 6)
    with pytest.raises(ValueError, match="'heads'"):
        HeadwiseDropoutLinear(linear, 4, 0.5)
    with pytest.raises(ValueError, match="'p'"):
        HeadwiseDropoutLinear(linear, 3, 1.5)
    with pytest.raises(ValueError, match="'linear'"):
        HeadwiseDropoutLinear(torch.nn.Linear(7, 6), 3, 0.5)


# ----------------------------------------------------------------------------- the layer
def per_head_conv(**kwargs) -> GATConv:
    return GATConv(6, 4, heads=3, input_dropout=0.5, dropout_scheme="per_head", **kwargs)


@pytest.mark.parametrize("concat", [True, False])
def test_without_dropout_the_layer_is_plain_gatconv(concat):
    torch.manual_seed(0)
    plain = GATConv(6, 4, heads=3, concat=concat).double().train()
    conv = GATConv(6, 4, heads=3, concat=concat, input_dropout=0.0,
                   dropout_scheme="per_head").double().train()
    conv.load_state_dict(plain.state_dict())
    x = torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(conv(x, EDGES), plain(x, EDGES))


@pytest.mark.parametrize("scheme", ["shared", "per_head"])
def test_state_dict_and_evaluation_are_pygs(scheme):
    torch.manual_seed(0)
    pyg = pyg_nn.GATConv(6, 4, heads=3, dropout=0.5).eval()
    conv = GATConv(6, 4, heads=3, dropout=0.5, input_dropout=0.5, dropout_scheme=scheme)
    assert list(conv.state_dict()) == list(pyg.state_dict())
    conv.load_state_dict(pyg.state_dict())
    x = torch.randn(5, 6)
    torch.testing.assert_close(conv.eval()(x, EDGES), pyg(x, EDGES))
    conv.train()
    first, second = conv(x, EDGES), conv(x, EDGES)
    assert first.shape == (5, 12) and not torch.equal(first, second)


def test_same_seed_same_masks():
    conv = per_head_conv(dropout=0.5).train()
    x, _ = one_hot_rows(5, 6)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        outs.append(conv(x.float(), EDGES))
    assert torch.equal(*outs)


def test_shared_scheme_is_one_input_dropout_outside_the_layer():
    conv = GATConv(6, 4, heads=3, input_dropout=0.5).train()
    x = torch.randn(5, 6)
    torch.manual_seed(1)
    inside = conv(x, EDGES)
    conv.input_dropout = 0.0
    torch.manual_seed(1)
    torch.testing.assert_close(inside, conv(F.dropout(x, 0.5), EDGES))


def test_message_path_runs_the_same_scheme():
    """With a message hook (explainers) the layer takes PyG's propagate path; with no
    attention dropout both paths draw the same masks and give the same output."""
    torch.manual_seed(0)
    conv = per_head_conv().double().train()
    x = torch.randn(5, 6, dtype=torch.float64)
    torch.manual_seed(2)
    fused = conv(x, EDGES)
    seen = []
    conv.register_message_forward_hook(lambda module, inputs, out: seen.append(out.shape))
    torch.manual_seed(2)
    torch.testing.assert_close(conv(x, EDGES), fused)
    assert seen == [torch.Size([EDGES.size(1) - 1 + 5, 3, 4])]  # self-loop replaced, + N


@pytest.mark.parametrize("kwargs, match", [
    ({"dropout_scheme": "heads"}, "dropout_scheme"),
    ({"input_dropout": 1.5}, "input_dropout"),
    ({"input_dropout": 0.5, "dropout_scheme": "per_head", "residual": True}, "per_head"),
])
def test_layer_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GATConv(6, 4, heads=2, **kwargs)


def test_per_head_needs_known_input_size():
    with pytest.raises(ValueError, match="in_channels"):
        GATConv(-1, 4, heads=2, input_dropout=0.5, dropout_scheme="per_head")


# ----------------------------------------------------------------------------- the models
def test_model_defaults_and_validation():
    assert ModelConfig().dropout_scheme == "per_head"
    assert ModelConfig(model="gatv2").dropout_scheme == "shared"
    assert ModelConfig(model="pyg-gat").dropout_scheme == "per_head"  # like for like with gat
    assert TrainConfig(model="transformer").dropout_scheme == "shared"
    assert TrainConfig().to_dict()["dropout_scheme"] == "per_head"
    with pytest.raises(ValueError, match="dropout_scheme"):
        ModelConfig(dropout_scheme="heads")
    with pytest.raises(ValueError, match="'gat', 'pyg-gat'"):
        ModelConfig(model="transformer", dropout_scheme="per_head")


def test_default_gat_drops_inside_its_layers():
    net = build_model(6, 3, "gat", hidden=4, heads=2)
    for conv in (net.conv1, net.conv2):
        assert (conv.dropout_scheme, conv.input_dropout) == ("per_head", 0.6)


@pytest.mark.parametrize("model", ["gat", "pyg-gat"])
def test_schemes_are_one_network_in_evaluation(model):
    torch.manual_seed(0)
    per_head = build_model(6, 3, model, hidden=4, heads=2, dropout_scheme="per_head")
    shared = build_model(6, 3, model, hidden=4, heads=2, dropout_scheme="shared")
    assert list(per_head.state_dict()) == list(shared.state_dict())
    shared.load_state_dict(per_head.state_dict())
    x = torch.randn(5, 6)
    torch.testing.assert_close(per_head.eval()(x, EDGES), shared.eval()(x, EDGES))
    per_head.train()
    out = per_head(x, EDGES)
    out.sum().backward()
    assert all(p.grad is not None for p in per_head.parameters())
    assert not torch.equal(out, per_head(x, EDGES))


def test_pyg_twin_with_the_per_head_scheme_matches_ours():
    """Same weights, same seed, no attention dropout: ours and PyG's GATConv under
    the per_head scheme (both models' default) draw the same masks, so they compare
    like for like."""
    torch.manual_seed(0)
    ours = build_model(6, 3, "gat", hidden=4, heads=2, attn_dropout=0.0).double().train()
    twin = build_model(6, 3, "pyg-gat", hidden=4, heads=2, attn_dropout=0.0).double().train()
    twin.load_state_dict(ours.state_dict())
    x = torch.randn(5, 6, dtype=torch.float64)
    torch.manual_seed(4)
    expected = ours(x, EDGES)
    torch.manual_seed(4)
    torch.testing.assert_close(twin(x, EDGES), expected)


# ------------------------------------------- hooks, capture and explainers while training
def training_step(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer = torch.optim.Adam(net.parameters(), lr=0.005)
    net.train()
    optimizer.zero_grad()
    F.cross_entropy(net(x, EDGES), y).backward()
    optimizer.step()


def test_capture_and_hooks_see_the_default_gat_model_training():
    torch.manual_seed(0)
    net = build_model(6, 3)  # the default: gat with the paper's dropout
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 0, 1])
    calls = []
    net.conv1.register_forward_hook(lambda module, inputs, out: calls.append(module))
    with capture_attention(net) as attn:
        training_step(net, x, y)
    assert calls == [net.conv1]
    assert set(attn) == {"conv1", "conv2"}
    for name, heads in (("conv1", 8), ("conv2", 1)):
        record = attn[name]
        assert record.alpha.shape == (record.edge_index.size(1), heads)
        assert int((record.edge_id == -1).sum()) == 5  # one added self-loop per node


def test_attention_explainer_sees_the_layers_while_training():
    torch.manual_seed(0)
    net = build_model(6, 3)
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 0, 1])
    seen = []
    for conv in (net.conv1, net.conv2):  # what AttentionExplainer listens to
        conv.register_message_forward_hook(lambda module, inputs, out: seen.append(module))
    training_step(net, x, y)
    assert seen == [net.conv1, net.conv2]
    explainer = Explainer(net, algorithm=AttentionExplainer(), explanation_type="model",
                          edge_mask_type="object",
                          model_config=dict(mode="multiclass_classification",
                                            task_level="node", return_type="raw"))
    explanation = explainer(x, EDGES, index=0)
    assert explanation.edge_mask.shape == (EDGES.size(1),)
    assert float(explanation.edge_mask.sum()) > 0
