"""Our GATConv and GATv2Conv against PyG's: one suite, parametrized over (our layer,
PyG's layer, configurations).  Weights, outputs, attention, gradients, every input
form, bipartite and empty graphs, lazy sizes, dropout, the message path and the
explainers, compile and autocast, bad inputs.  What only one layer has stays in its
own test module (test_gat_conv.py, test_gatv2_conv.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor
from torch_geometric.utils import coalesce, to_torch_coo_tensor, to_torch_csr_tensor

from pyg_attn.nn import TransformerConv
from pyg_attn.nn.conv.gat_conv import GATConv
from pyg_attn.nn.conv.gatv2_conv import GATv2Conv
from pyg_attn.ops import prepare

from ..graphs import random_graph
from .pyg_twins import (
    GRAPHS,
    TOL,
    assert_same_run,
    attention_explainer_matches,
    attention_parts,
    check_attention_normalised,
    compile_matches,
    gnn_explainer_matches,
    make_pair,
    run,
    sparse_inputs,
    to_hetero_matches,
)

#: Configurations both GAT layers take.
COMMON_CONFIGS = {
    "one_head": dict(heads=1),
    "mean_heads": dict(heads=3, concat=False),
    "no_loops": dict(heads=2, add_self_loops=False),
    "no_bias_slope": dict(heads=2, bias=False, negative_slope=0.05),
    "edge_mean": dict(heads=2, edge_dim=3),
    "edge_add": dict(heads=2, edge_dim=3, fill_value="add"),
    "edge_float": dict(heads=2, edge_dim=3, fill_value=0.5),
    "edge_tensor": dict(heads=2, edge_dim=3, fill_value=torch.tensor([0.1, -0.2, 0.3])),
    "edge_no_loops": dict(heads=2, edge_dim=3, add_self_loops=False, residual=True),
}


@dataclass(frozen=True)
class Twin:
    """Our layer, PyG's, and what differs between the layers in the suite."""

    ours: type
    pyg: type
    configs: Dict[str, Dict[str, Any]]  # besides COMMON_CONFIGS
    constructed: List[Dict[str, Any]] = field(default_factory=list)  # repr/state_dict cases
    compiled: Dict[str, Any] = field(default_factory=dict)  # compile_matches layer kwargs


TWINS = {
    "GATConv": Twin(GATConv, pyg_nn.GATConv,
                    {"residual": dict(heads=2, residual=True),
                     "edge_1d_max": dict(heads=2, edge_dim=1, fill_value="max")},
                    compiled=dict(residual=True)),
    "GATv2Conv": Twin(GATv2Conv, pyg_nn.GATv2Conv,
                      {"residual_shared": dict(heads=2, residual=True, share_weights=True),
                       "edge_1d_min": dict(heads=2, edge_dim=1, fill_value="min")},
                      constructed=[dict(share_weights=True)],
                      compiled=dict(share_weights=True)),
}
CASES = [(name, config) for name, twin in TWINS.items()
         for config in sorted({**COMMON_CONFIGS, **twin.configs})]


@pytest.fixture(params=sorted(TWINS))
def twin(request) -> Twin:
    return TWINS[request.param]


# ----------------------------------------------------------------------------- the module
def test_repr_state_dict_and_reset(twin):
    cases = [((16, 8), dict(heads=2)), (((8, 16), 4), dict(edge_dim=3, residual=True)),
             ((16, 8), dict(bias=False, concat=False, edge_dim=2)), ((-1, 8), {}),
             *(((16, 8), kwargs) for kwargs in twin.constructed)]
    for args, kwargs in cases:
        ours, pyg = twin.ours(*args, **kwargs), twin.pyg(*args, **kwargs)
        assert repr(ours) == repr(pyg)
        assert list(ours.state_dict()) == list(pyg.state_dict())
        assert [n for n, _ in ours.named_parameters()] == [n for n, _ in pyg.named_parameters()]
        assert ours.aggr == pyg.aggr
    name = twin.ours.__name__
    assert repr(twin.ours(16, 32, heads=2)) == f"{name}(16, 32, heads=2)"
    conv = twin.ours(16, 8, heads=2, residual=True)
    conv.bias.data.fill_(1.0)
    conv.reset_parameters()
    assert not conv.bias.any()
    assert conv.backend is None and "backend" not in str(conv.state_dict().keys())
    pyg = twin.pyg(16, 8, heads=2, residual=True)
    pyg.load_state_dict(conv.state_dict())  # both ways: PyG loads ours too
    x, edge_index = torch.randn(10, 16), random_graph(10, 10, 30, seed=0)
    torch.testing.assert_close(conv(x, edge_index), pyg(x, edge_index), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("layer, config", CASES)
def test_matches_pyg(layer, config, graph, dtype):
    twin = TWINS[layer]
    kwargs = {**COMMON_CONFIGS, **twin.configs}[config]
    num_src, _, build = GRAPHS[graph]
    edge_index = build()
    ours, pyg = make_pair(twin.ours, twin.pyg, 8, 5, dtype=dtype, **kwargs)
    x = torch.randn(num_src, 8, dtype=dtype)
    edge_attr = None
    if "edge_dim" in kwargs:
        dim = kwargs["edge_dim"]
        edge_attr = torch.randn(edge_index.size(1), *([dim] if dim > 1 else []), dtype=dtype)
    expected = run(pyg, x, edge_index, edge_attr)
    got = run(ours, x, edge_index, edge_attr)
    assert_same_run(expected, got, dtype)
    ei, alpha = got[1]
    check_attention_normalised(ei, alpha.detach(), num_src)
    if kwargs.get("add_self_loops", True):
        # Existing loops removed, one appended per node, at the end:
        assert ei.size(1) == int((edge_index[0] != edge_index[1]).sum()) + num_src
        assert torch.equal(ei[:, -num_src:], torch.arange(num_src).repeat(2, 1))
    # The message path (as used by explainers) agrees too.
    handle = ours.register_message_forward_hook(lambda *args: None)
    assert_same_run(expected, run(ours, x, edge_index, edge_attr), dtype)
    handle.remove()


@pytest.mark.parametrize("add_self_loops", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_inputs_match_pyg_and_edge_index(twin, add_self_loops, dtype):
    n = 18
    edge_index = coalesce(random_graph(n, n, 70, seed=7, self_loops=4, isolated=3),
                          num_nodes=n)  # no duplicates: sparse forms keep every edge
    ours, pyg = make_pair(twin.ours, twin.pyg, 6, 4, heads=2, dtype=dtype,
                          add_self_loops=add_self_loops)
    x = torch.randn(n, 6, dtype=dtype)
    plain = run(ours, x, edge_index)
    for name, adj in sparse_inputs(edge_index, n, n).items():
        got = run(ours, x, adj)
        assert_same_run(run(pyg, x, adj), got, dtype)
        # Same output as the edge_index form; same weight for every edge.
        torch.testing.assert_close(got[0], plain[0], atol=TOL[dtype]["out"],
                                   rtol=TOL[dtype]["out"])
        idx, alpha = attention_parts(got[1])
        src, dst = (idx[0], idx[1]) if name.startswith(("edge", "EdgeIndex")) else (idx[1], idx[0])
        lookup = {(j, i): k for k, (j, i) in enumerate(plain[1][0].t().tolist())}
        order = torch.tensor([lookup[(int(j), int(i))] for j, i in zip(src, dst)],
                             dtype=torch.long)
        torch.testing.assert_close(alpha, plain[1][1][order])
    # A prepared graph is accepted as well.
    torch.testing.assert_close(ours(x, prepare(edge_index, n)), plain[0])
    # The message path (explainers) on every input form.
    handle = ours.register_message_forward_hook(lambda *args: None)
    for adj in sparse_inputs(edge_index, n, n).values():
        assert_same_run(run(pyg, x, adj), run(ours, x, adj), dtype)
    torch.testing.assert_close(ours(x, prepare(edge_index, n)), plain[0])
    handle.remove()


def test_sparse_edge_features_match_pyg(twin):
    n = 14
    edge_index = coalesce(random_graph(n, n, 50, seed=8, self_loops=3), num_nodes=n)
    edge_attr = torch.randn(edge_index.size(1), 3)
    x = torch.randn(n, 6)
    ours, pyg = make_pair(twin.ours, twin.pyg, 6, 4, heads=2, edge_dim=3)
    # torch.sparse hybrid values are PyG's edge features (self-loops filled from them).
    # PyG cannot return attention for them; compare outputs and gradients.
    for to_sparse in (to_torch_coo_tensor, to_torch_csr_tensor):
        adj = to_sparse(edge_index.flip(0), edge_attr, size=(n, n))
        assert_same_run(run(pyg, x, adj, attention=False), run(ours, x, adj, attention=False),
                        torch.float32)
        out, (adj_alpha, alpha) = ours(x, adj, return_attention_weights=True)
        assert adj_alpha.shape == (n, n, 2) and alpha.shape == (adj_alpha._nnz(), 2)
    if WITH_TORCH_SPARSE:
        # SparseTensor values are edge features too (PyG: only without self-loops).
        adj = SparseTensor.from_edge_index(edge_index.flip(0), edge_attr, sparse_sizes=(n, n))
        ours_nl, pyg_nl = make_pair(twin.ours, twin.pyg, 6, 4, heads=2, edge_dim=3,
                                    add_self_loops=False)
        assert_same_run(run(pyg_nl, x, adj), run(ours_nl, x, adj), torch.float32)
        with pytest.raises(NotImplementedError):
            pyg(x, adj)
        # With self-loops (beyond PyG): same as the edge_index form, edge order mapped.
        row, col, _ = adj.coo()
        out, att = ours(x, adj, return_attention_weights=True)
        expected, (ei, alpha) = ours(x, torch.stack([col, row]), edge_attr=adj.storage.value(),
                                     return_attention_weights=True)
        torch.testing.assert_close(out, expected)
        r, c, value = att.coo()
        lookup = {(int(j), int(i)): k for k, (j, i) in enumerate(ei.t().tolist())}
        order = torch.tensor([lookup[(int(j), int(i))] for j, i in zip(c, r)])
        torch.testing.assert_close(value, alpha[order])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bipartite_matches_pyg(twin, dtype):
    x_src, x_dst = torch.randn(20, 6, dtype=dtype), torch.randn(9, 5, dtype=dtype)
    edge_index = random_graph(20, 9, 60, seed=5, isolated=2, self_loops=3)
    edge_attr = torch.randn(edge_index.size(1), 2, dtype=dtype)
    for kwargs in (dict(heads=2), dict(heads=2, residual=True, edge_dim=2),
                   dict(heads=3, concat=False, add_self_loops=False)):
        ours, pyg = make_pair(twin.ours, twin.pyg, (6, 5), 4, dtype=dtype, **kwargs)
        ea = edge_attr if "edge_dim" in kwargs else None
        got = run(ours, (x_src, x_dst), edge_index, ea)
        assert_same_run(run(pyg, (x_src, x_dst), edge_index, ea), got, dtype)
        assert got[0].shape[0] == 9
        check_attention_normalised(got[1][0], got[1][1].detach(), 9)
    # Sparse bipartite adjacency (row = destination).
    unique = coalesce(edge_index, num_nodes=20)
    adjs = [to_torch_coo_tensor(unique.flip(0), size=(9, 20)),
            to_torch_csr_tensor(unique.flip(0), size=(9, 20))]
    if WITH_TORCH_SPARSE:
        adjs.append(SparseTensor.from_edge_index(unique.flip(0), sparse_sizes=(9, 20)))
    ours, pyg = make_pair(twin.ours, twin.pyg, (6, 5), 4, heads=2, dtype=dtype)
    for adj in adjs:
        assert_same_run(run(pyg, (x_src, x_dst), adj), run(ours, (x_src, x_dst), adj), dtype)
    to_hetero_matches(twin.ours, twin.pyg)


@pytest.mark.parametrize("add_self_loops", [True, False])
def test_empty_graph_and_isolated_nodes(twin, add_self_loops):
    x = torch.randn(6, 8)
    ours, pyg = make_pair(twin.ours, twin.pyg, 8, 4, heads=2, add_self_loops=add_self_loops,
                          edge_dim=2)
    empty = torch.empty(2, 0, dtype=torch.long)
    out, (ei, alpha) = ours(x, empty, edge_attr=torch.empty(0, 2), return_attention_weights=True)
    expected, (pei, palpha) = pyg(x, empty, edge_attr=torch.empty(0, 2),
                                  return_attention_weights=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(ei, pei) and alpha.shape == palpha.shape
    if add_self_loops:  # every node attends to itself only
        torch.testing.assert_close(alpha, torch.ones(6, 2))
    else:  # nothing to attend to: the bias only
        assert alpha.shape == (0, 2)
        torch.testing.assert_close(out, ours.bias.expand(6, -1))
    assert torch.isfinite(out).all()
    # Without loops, a node with no incoming edge gets zero (+ bias), never NaN.
    ours = twin.ours(8, 4, heads=2, add_self_loops=False)
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 1]])
    out, (_, alpha) = ours(x, edge_index, return_attention_weights=True)
    assert torch.isfinite(out).all() and not out[[0, 3, 4, 5]].any()
    torch.testing.assert_close(out[[0, 3, 4, 5]], ours.bias.expand(4, -1))
    check_attention_normalised(edge_index, alpha.detach(), 6)


def test_lazy_initialisation(twin):
    x_src, x_dst = torch.randn(10, 6), torch.randn(4, 3)
    for in_channels, x, n_dst in ((-1, x_src, 10), ((-1, -1), (x_src, x_dst), 4)):
        torch.manual_seed(0)
        ours = twin.ours(in_channels, 5, heads=2, residual=True, edge_dim=-1)
        pyg = twin.pyg(in_channels, 5, heads=2, residual=True, edge_dim=-1)
        ei = random_graph(10, n_dst, 25, seed=1)
        edge_attr = torch.randn(ei.size(1), 2)
        assert ours(x, ei, edge_attr=edge_attr).shape == (n_dst, 10)  # materialises weights
        pyg(x, ei, edge_attr=edge_attr)
        pyg.load_state_dict(ours.state_dict())
        assert_same_run(run(pyg, x, ei, edge_attr), run(ours, x, ei, edge_attr), torch.float32)


@pytest.mark.parametrize("layer", [GATConv, GATv2Conv, TransformerConv])
def test_dropout_never_changes_reported_attention(layer):
    x, edge_index = torch.randn(20, 8), random_graph(20, 20, 80, seed=3)
    conv = layer(8, 4, heads=2, dropout=0.5)
    conv.eval()
    out_eval, (_, alpha_eval) = conv(x, edge_index, return_attention_weights=True)
    conv.train()
    torch.manual_seed(1)
    out_a, (_, alpha_a) = conv(x, edge_index, return_attention_weights=True)
    torch.manual_seed(1)
    out_b = conv(x, edge_index)
    torch.testing.assert_close(alpha_a, alpha_eval, atol=0, rtol=0)  # before dropout
    torch.testing.assert_close(out_a, out_b, atol=0, rtol=0)  # same seed, same mask
    assert not torch.allclose(out_a, out_eval)
    out_a.sum().backward()
    assert all(p.grad is not None for p in conv.parameters())


# ----------------------------------------------------------------------------- message path
def test_message_path_and_explainers(twin):
    attention_explainer_matches(twin.ours, twin.pyg)
    gnn_explainer_matches(twin.ours, twin.pyg)
    # explain=True with an edge mask: the mask multiplies the messages like in PyG.
    x, edge_index = torch.randn(12, 6), random_graph(12, 12, 40, seed=4, self_loops=2)
    ours, pyg = make_pair(twin.ours, twin.pyg, 6, 4, heads=2)
    mask = torch.rand(edge_index.size(1))
    outs = []
    for layer in (pyg, ours):
        set_masks(layer, mask, edge_index, apply_sigmoid=True)
        outs.append(layer(x, edge_index))
        clear_masks(layer)
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(outs[1], ours(x, edge_index))


def test_target_to_source_flow_uses_pyg_message_path(twin):
    edge_index = random_graph(20, 20, 60, seed=3, self_loops=4)
    x, edge_attr = torch.randn(20, 8), torch.randn(64, 2)
    ours, pyg = make_pair(twin.ours, twin.pyg, 8, 4, heads=2, edge_dim=2,
                          flow="target_to_source")
    assert_same_run(run(pyg, x, edge_index, edge_attr), run(ours, x, edge_index, edge_attr),
                    torch.float32)


def test_double_backward(twin):
    x = torch.randn(12, 6, dtype=torch.float64, requires_grad=True)
    edge_index = random_graph(12, 12, 40, seed=4)
    ours, pyg = make_pair(twin.ours, twin.pyg, 6, 4, heads=2, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(ours(x, edge_index).pow(2).sum(), x, create_graph=True)
    ours.backend = "reference"
    grads = []
    for layer in (pyg, ours):
        (g,) = torch.autograd.grad(layer(x, edge_index).pow(2).sum(), x, create_graph=True)
        (h,) = torch.autograd.grad(g.pow(2).sum(), x)
        grads.append((g, h))
    torch.testing.assert_close(grads[1][0], grads[0][0])
    torch.testing.assert_close(grads[1][1], grads[0][1])
    assert "backend" not in ours.state_dict()


def test_compile_and_autocast(twin):
    x, edge_index = torch.randn(16, 8), random_graph(16, 16, 50, seed=14, self_loops=2)
    compile_matches(twin.ours(8, 4, heads=2, **twin.compiled), x, edge_index)
    conv = twin.ours(8, 4, heads=2, edge_dim=3)
    pyg = twin.pyg(8, 4, heads=2, edge_dim=3)
    pyg.load_state_dict(conv.state_dict())
    edge_attr = torch.randn(50 + 2, 3)
    xs = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(xs, edge_index, edge_attr=edge_attr)
        expected = pyg(x, edge_index, edge_attr=edge_attr)
    assert out.dtype == expected.dtype
    torch.testing.assert_close(out.float(), expected.float(), atol=5e-2, rtol=5e-2)
    out.float().sum().backward()
    assert xs.grad is not None and torch.isfinite(xs.grad).all()


@pytest.mark.parametrize("call, error, match", [
    (lambda conv, x: conv(x, torch.tensor([[0, 7], [1, 2]])), ValueError, "edge_index"),
    (lambda conv, x: conv(x, torch.tensor([[0, -1], [1, 2]])), ValueError, "edge_index"),
    (lambda conv, x: conv(x, torch.tensor([[0.0, 1.0], [1.0, 2.0]])), TypeError, "edge_index"),
    (lambda conv, x: conv(x, torch.tensor([0, 1, 2])), ValueError, "edge_index"),
    (lambda conv, x: conv(x, [[0, 1], [1, 2]]), TypeError, "edge_index"),
    (lambda conv, x: conv(x, torch.tensor([[0, 1], [1, 2]]), edge_attr=torch.randn(3, 2)),
     ValueError, "edge_attr"),
    (lambda conv, x: conv(torch.randn(5, 2, 4), torch.tensor([[0], [1]])), ValueError, "'x'"),
    (lambda conv, x: conv(torch.randn(5), torch.tensor([[0], [1]])), ValueError, "'x'"),
    (lambda conv, x: conv("features", torch.tensor([[0], [1]])), TypeError, "'x'"),
    (lambda conv, x: conv(x, to_torch_csr_tensor(torch.tensor([[0], [1]]), size=(7, 7))),
     ValueError, "edge_index"),
    (lambda conv, x: conv(x, to_torch_coo_tensor(torch.tensor([[0], [1]]), size=(7, 7))),
     ValueError, "edge_index"),
    (lambda conv, x: type(conv)(4, 3, heads=0), ValueError, "'heads'"),
    (lambda conv, x: type(conv)(4, 3, heads=-1), ValueError, "'heads'"),
    (lambda conv, x: type(conv)(4, 3, dropout=1.5), ValueError, "'dropout'"),
])
def test_bad_inputs(twin, call, error, match):
    with pytest.raises(error, match=match):
        call(twin.ours(4, 3, heads=2, edge_dim=2), torch.randn(5, 4))
