"""Sparse-input projections: the same function as the dense product, used only
where it is, and the layers that use it still equal PyG's on sparse features."""
from __future__ import annotations

import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric.nn import Linear as PygLinear

from pyg_attn.nn import GATConv, GATv2Conv, TransformerConv
from pyg_attn.nn.conv.projection import SparseInputLinear, project
from pyg_attn.ops.graph_cache import GRAPH_CACHE

from ..graphs import random_graph


def sparse_features(rows: int, cols: int, density: float, dtype=torch.float32, seed: int = 0):
    """``[rows, cols]`` with about ``density`` non-zeros, some rows all zero."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(rows, cols, generator=gen, dtype=dtype)
    x = torch.where(torch.rand(rows, cols, generator=gen) < density, x, torch.zeros((), dtype=dtype))
    x[::7] = 0
    return x


def project_counting(lin, x) -> tuple[torch.Tensor, int]:
    """``project(lin, x)`` and how many times it ran the sparse product."""
    calls = []
    original = SparseInputLinear.apply
    SparseInputLinear.apply = lambda *a: calls.append(1) or original(*a)
    try:
        return project(lin, x), len(calls)
    finally:
        SparseInputLinear.apply = original


def _uses_sparse(lin, x) -> bool:
    return project_counting(lin, x)[1] > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_values_and_weight_gradient_equal_the_dense_product(dtype, bias):
    x = sparse_features(50, 300, 0.02, dtype)
    lin = torch.nn.Linear(300, 12, bias=bias).to(dtype)
    out, sparse_calls = project_counting(lin, x)
    assert sparse_calls, "the sparse path was not taken"
    expected = lin(x)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out, expected, **tol)
    grad = torch.randn_like(expected)
    got = torch.autograd.grad(out, list(lin.parameters()), grad)
    want = torch.autograd.grad(expected, list(lin.parameters()), grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **tol)


def test_dense_inputs_and_inputs_needing_gradients_take_the_module():
    lin = torch.nn.Linear(40, 5)
    assert not _uses_sparse(lin, torch.randn(30, 40))  # dense
    assert not _uses_sparse(lin, sparse_features(30, 40, 0.02).requires_grad_())
    assert not _uses_sparse(lin, torch.zeros(0, 40))
    assert _uses_sparse(lin, sparse_features(30, 40, 0.02))


def test_lazy_linear_is_initialised_by_the_first_call():
    lin = PygLinear(-1, 6)
    x = sparse_features(20, 50, 0.03)
    out = project(lin, x)
    assert out.shape == (20, 6)
    torch.testing.assert_close(project(lin, x), lin(x), atol=1e-6, rtol=1e-5)


def test_in_place_change_of_x_is_never_served_stale():
    lin = torch.nn.Linear(60, 4)
    x = sparse_features(25, 60, 0.03)
    project(lin, x)
    x[3, 5] = 7.0
    torch.testing.assert_close(project(lin, x), lin(x), atol=1e-5, rtol=1e-5)
    GRAPH_CACHE.clear()


@pytest.mark.parametrize("layer", ["GATConv", "GATv2Conv", "TransformerConv"])
def test_layers_on_bag_of_words_features_equal_pyg(layer):
    torch.manual_seed(0)
    x = sparse_features(40, 200, 0.02)
    edge_index = random_graph(40, 40, 160, seed=3, isolated=3)
    ours_cls = {"GATConv": GATConv, "GATv2Conv": GATv2Conv,
                "TransformerConv": TransformerConv}[layer]
    theirs = getattr(pyg_nn, layer)(200, 4, heads=2)
    ours = ours_cls(200, 4, heads=2)
    ours.load_state_dict(theirs.state_dict())
    out, ref = ours(x, edge_index), theirs(x, edge_index)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), list(ours.parameters()))
    ref_grads = torch.autograd.grad(ref.square().sum(), list(theirs.parameters()))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)
