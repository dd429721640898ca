"""The GAT paper's dropout scheme (pyg_attn.training.paper_dropout) and its use in the models."""
from __future__ import annotations

import pytest
import torch

from pyg_attn.nn import GATConv
from pyg_attn.training.models import ModelConfig, build_model
from pyg_attn.training.node_classification import TrainConfig
from pyg_attn.training.paper_dropout import headwise_dropout_projection, paper_dropout_gat

EDGES = torch.tensor([[0, 1, 2, 3, 4, 0, 2, 2], [1, 2, 3, 4, 0, 2, 2, 1]])


def one_hot_rows(num_rows: int, num_features: int, *, requires_grad: bool = False):
    """``[N, F]`` with one non-zero (value 1 + row/N) per row: sparse enough for
    the sparse product; with ``requires_grad`` the dense path runs."""
    x = torch.zeros(num_rows, num_features, dtype=torch.float64)
    cols = torch.arange(num_rows) % num_features
    x[torch.arange(num_rows), cols] = 1.0 + torch.arange(num_rows, dtype=torch.float64) / num_rows
    return x.requires_grad_(requires_grad), cols


@pytest.mark.parametrize("requires_grad", [False, True], ids=["sparse", "dense"])
def test_each_head_draws_its_own_input_mask(requires_grad):
    torch.manual_seed(0)
    heads, channels, features, rows, p = 4, 3, 50, 4000, 0.6
    x, cols = one_hot_rows(rows, features, requires_grad=requires_grad)
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


@pytest.mark.parametrize("concat", [True, False])
def test_without_dropout_the_layer_is_gatconv(concat):
    torch.manual_seed(0)
    conv = GATConv(6, 4, heads=3, concat=concat, dropout=0.0).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    expected = conv(x, EDGES)
    torch.testing.assert_close(paper_dropout_gat(conv, x, EDGES, 0.0), expected)


def test_layer_drops_in_training():
    torch.manual_seed(0)
    conv = GATConv(6, 4, heads=2, dropout=0.5)
    x = torch.randn(5, 6)
    first, second = (paper_dropout_gat(conv, x, EDGES, 0.5) for _ in range(2))
    assert first.shape == (5, 8) and not torch.equal(first, second)


@pytest.mark.parametrize("kwargs", [{"edge_dim": 2}, {"residual": True}])
def test_layer_rejects_what_the_paper_lacks(kwargs):
    conv = GATConv(6, 4, heads=2, **kwargs)
    with pytest.raises(ValueError, match="shared projection"):
        paper_dropout_gat(conv, torch.randn(5, 6), EDGES, 0.5)


def test_model_defaults_and_validation():
    assert ModelConfig().dropout_scheme == "paper"
    assert ModelConfig(model="gatv2").dropout_scheme == "shared"
    assert TrainConfig(model="transformer").dropout_scheme == "shared"
    assert TrainConfig().to_dict()["dropout_scheme"] == "paper"
    with pytest.raises(ValueError, match="dropout_scheme"):
        ModelConfig(dropout_scheme="heads")
    with pytest.raises(ValueError, match="model='gat'"):
        ModelConfig(model="transformer", dropout_scheme="paper")


def test_schemes_are_one_network_in_evaluation():
    torch.manual_seed(0)
    paper = build_model(6, 3, "gat", hidden=4, heads=2)
    shared = build_model(6, 3, "gat", hidden=4, heads=2, dropout_scheme="shared")
    shared.load_state_dict(paper.state_dict())
    x = torch.randn(5, 6)
    torch.testing.assert_close(paper.eval()(x, EDGES), shared.eval()(x, EDGES))
    paper.train()
    out = paper(x, EDGES)
    out.sum().backward()
    assert all(p.grad is not None for p in paper.parameters())
    assert not torch.equal(out, paper(x, EDGES))
