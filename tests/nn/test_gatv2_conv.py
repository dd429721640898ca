"""GATv2Conv: a drop-in for PyG's layer (weights, outputs, attention, gradients, inputs)."""
from __future__ import annotations


import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor
from torch_geometric.utils import coalesce, to_torch_coo_tensor, to_torch_csr_tensor

from pyg_attn.nn.conv.gatv2_conv import GATv2Conv
from pyg_attn.ops import prepare

from ..graphs import random_graph
from .test_gat_conv import (
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


def test_repr_state_dict_and_reset():
    for args, kwargs in [((16, 8), dict(heads=2)), (((8, 16), 4), dict(edge_dim=3, residual=True)),
                         ((16, 8), dict(bias=False, concat=False, edge_dim=2)),
                         ((16, 8), dict(share_weights=True)), ((-1, 8), {})]:
        ours, pyg = GATv2Conv(*args, **kwargs), pyg_nn.GATv2Conv(*args, **kwargs)
        assert repr(ours) == repr(pyg)
        assert list(ours.state_dict()) == list(pyg.state_dict())
        assert [n for n, _ in ours.named_parameters()] == [n for n, _ in pyg.named_parameters()]
        assert ours.aggr == pyg.aggr
    assert repr(GATv2Conv(16, 32, heads=2)) == "GATv2Conv(16, 32, heads=2)"
    conv = GATv2Conv(16, 8, heads=2, residual=True)
    conv.bias.data.fill_(1.0)
    conv.reset_parameters()
    assert not conv.bias.any()
    pyg = pyg_nn.GATv2Conv(16, 8, heads=2, residual=True)
    pyg.load_state_dict(conv.state_dict())  # both ways
    x, edge_index = torch.randn(10, 16), random_graph(10, 10, 30, seed=0)
    torch.testing.assert_close(conv(x, edge_index), pyg(x, edge_index), atol=1e-5, rtol=1e-5)


CONFIGS = {
    "one_head": dict(heads=1),
    "mean_heads": dict(heads=3, concat=False),
    "residual_shared": dict(heads=2, residual=True, share_weights=True),
    "no_loops": dict(heads=2, add_self_loops=False),
    "no_bias_slope": dict(heads=2, bias=False, negative_slope=0.05),
    "edge_mean": dict(heads=2, edge_dim=3),
    "edge_add": dict(heads=2, edge_dim=3, fill_value="add"),
    "edge_float": dict(heads=2, edge_dim=3, fill_value=0.5),
    "edge_tensor": dict(heads=2, edge_dim=3, fill_value=torch.tensor([0.1, -0.2, 0.3])),
    "edge_1d_min": dict(heads=2, edge_dim=1, fill_value="min"),
    "edge_no_loops": dict(heads=2, edge_dim=3, add_self_loops=False, residual=True),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_matches_pyg(config, graph, dtype):
    kwargs = CONFIGS[config]
    num_src, _, build = GRAPHS[graph]
    edge_index = build()
    ours, pyg = make_pair(GATv2Conv, pyg_nn.GATv2Conv, 8, 5, dtype=dtype, **kwargs)
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
        assert ei.size(1) == int((edge_index[0] != edge_index[1]).sum()) + num_src
        assert torch.equal(ei[:, -num_src:], torch.arange(num_src).repeat(2, 1))
    handle = ours.register_message_forward_hook(lambda *args: None)
    assert_same_run(expected, run(ours, x, edge_index, edge_attr), dtype)
    handle.remove()


@pytest.mark.parametrize("add_self_loops", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_inputs_match_pyg_and_edge_index(add_self_loops, dtype):
    n = 18
    edge_index = coalesce(random_graph(n, n, 70, seed=7, self_loops=4, isolated=3), num_nodes=n)
    ours, pyg = make_pair(GATv2Conv, pyg_nn.GATv2Conv, 6, 4, heads=2, dtype=dtype,
                          add_self_loops=add_self_loops)
    x = torch.randn(n, 6, dtype=dtype)
    plain = run(ours, x, edge_index)
    for name, adj in sparse_inputs(edge_index, n, n).items():
        got = run(ours, x, adj)
        assert_same_run(run(pyg, x, adj), got, dtype)
        torch.testing.assert_close(got[0], plain[0], atol=TOL[dtype]["out"], rtol=TOL[dtype]["out"])
        idx, alpha = attention_parts(got[1])
        src, dst = (idx[0], idx[1]) if name.startswith(("edge", "EdgeIndex")) else (idx[1], idx[0])
        lookup = {(j, i): k for k, (j, i) in enumerate(plain[1][0].t().tolist())}
        order = torch.tensor([lookup[(int(j), int(i))] for j, i in zip(src, dst)], dtype=torch.long)
        torch.testing.assert_close(alpha, plain[1][1][order])
    torch.testing.assert_close(ours(x, prepare(edge_index, n)), plain[0])
    # The message path (explainers) on every input form.
    handle = ours.register_message_forward_hook(lambda *args: None)
    for adj in sparse_inputs(edge_index, n, n).values():
        assert_same_run(run(pyg, x, adj), run(ours, x, adj), dtype)
    torch.testing.assert_close(ours(x, prepare(edge_index, n)), plain[0])
    handle.remove()


def test_sparse_edge_features():
    n = 14
    edge_index = coalesce(random_graph(n, n, 50, seed=8, self_loops=3), num_nodes=n)
    edge_attr = torch.randn(edge_index.size(1), 3)
    x = torch.randn(n, 6)
    ours, pyg = make_pair(GATv2Conv, pyg_nn.GATv2Conv, 6, 4, heads=2, edge_dim=3)
    for to_sparse in (to_torch_coo_tensor, to_torch_csr_tensor):
        adj = to_sparse(edge_index.flip(0), edge_attr, size=(n, n))
        assert_same_run(run(pyg, x, adj, attention=False), run(ours, x, adj, attention=False),
                        torch.float32)
    if WITH_TORCH_SPARSE:
        adj = SparseTensor.from_edge_index(edge_index.flip(0), edge_attr, sparse_sizes=(n, n))
        ours_nl, pyg_nl = make_pair(GATv2Conv, pyg_nn.GATv2Conv, 6, 4, heads=2, edge_dim=3,
                                    add_self_loops=False)
        assert_same_run(run(pyg_nl, x, adj), run(ours_nl, x, adj), torch.float32)
        # With self-loops (PyG raises NotImplementedError): as the edge_index form.
        row, col, _ = adj.coo()
        out = ours(x, adj)
        torch.testing.assert_close(out, ours(x, torch.stack([col, row]),
                                             edge_attr=adj.storage.value()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bipartite_matches_pyg(dtype):
    x_src, x_dst = torch.randn(20, 6, dtype=dtype), torch.randn(9, 5, dtype=dtype)
    edge_index = random_graph(20, 9, 60, seed=5, isolated=2, self_loops=3)
    edge_attr = torch.randn(edge_index.size(1), 2, dtype=dtype)
    for kwargs in (dict(heads=2), dict(heads=2, residual=True, edge_dim=2),
                   dict(heads=3, concat=False, add_self_loops=False)):
        ours, pyg = make_pair(GATv2Conv, pyg_nn.GATv2Conv, (6, 5), 4, dtype=dtype, **kwargs)
        ea = edge_attr if "edge_dim" in kwargs else None
        got = run(ours, (x_src, x_dst), edge_index, ea)
        assert_same_run(run(pyg, (x_src, x_dst), edge_index, ea), got, dtype)
        assert got[0].shape[0] == 9
        check_attention_normalised(got[1][0], got[1][1].detach(), 9)
    # Shared weights need equal feature sizes on both sides.
    ours, pyg = make_pair(GATv2Conv, pyg_nn.GATv2Conv, (6, 6), 4, heads=2, dtype=dtype,
                          share_weights=True)
    x_dst6 = torch.randn(9, 6, dtype=dtype)
    assert_same_run(run(pyg, (x_src, x_dst6), edge_index), run(ours, (x_src, x_dst6), edge_index),
                    dtype)
    unique = coalesce(edge_index, num_nodes=20)
    adjs = [to_torch_coo_tensor(unique.flip(0), size=(9, 20))]
    if WITH_TORCH_SPARSE:
        adjs.append(SparseTensor.from_edge_index(unique.flip(0), sparse_sizes=(9, 20)))
    ours, pyg = make_pair(GATv2Conv, pyg_nn.GATv2Conv, (6, 5), 4, heads=2, dtype=dtype)
    for adj in adjs:
        assert_same_run(run(pyg, (x_src, x_dst), adj), run(ours, (x_src, x_dst), adj), dtype)
    to_hetero_matches(GATv2Conv, pyg_nn.GATv2Conv)


@pytest.mark.parametrize("add_self_loops", [True, False])
def test_empty_graph_and_isolated_nodes(add_self_loops):
    x = torch.randn(6, 8)
    ours, pyg = make_pair(GATv2Conv, pyg_nn.GATv2Conv, 8, 4, heads=2,
                          add_self_loops=add_self_loops, edge_dim=2)
    empty = torch.empty(2, 0, dtype=torch.long)
    out, (ei, alpha) = ours(x, empty, edge_attr=torch.empty(0, 2), return_attention_weights=True)
    expected, (pei, palpha) = pyg(x, empty, edge_attr=torch.empty(0, 2),
                                  return_attention_weights=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(ei, pei) and alpha.shape == palpha.shape
    if add_self_loops:
        torch.testing.assert_close(alpha, torch.ones(6, 2))
    else:
        torch.testing.assert_close(out, ours.bias.expand(6, -1))
    ours = GATv2Conv(8, 4, heads=2, add_self_loops=False)
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 1]])
    out, (_, alpha) = ours(x, edge_index, return_attention_weights=True)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[[0, 3, 4, 5]], ours.bias.expand(4, -1))
    check_attention_normalised(edge_index, alpha.detach(), 6)


def test_lazy_initialisation():
    x_src, x_dst = torch.randn(10, 6), torch.randn(4, 3)
    for in_channels, x, n_dst in ((-1, x_src, 10), ((-1, -1), (x_src, x_dst), 4)):
        torch.manual_seed(0)
        ours = GATv2Conv(in_channels, 5, heads=2, residual=True, edge_dim=-1)
        pyg = pyg_nn.GATv2Conv(in_channels, 5, heads=2, residual=True, edge_dim=-1)
        ei = random_graph(10, n_dst, 25, seed=1)
        edge_attr = torch.randn(ei.size(1), 2)
        assert ours(x, ei, edge_attr=edge_attr).shape == (n_dst, 10)
        pyg(x, ei, edge_attr=edge_attr)
        pyg.load_state_dict(ours.state_dict())
        assert_same_run(run(pyg, x, ei, edge_attr), run(ours, x, ei, edge_attr), torch.float32)


def test_dropout_never_changes_reported_attention():
    x, edge_index = torch.randn(20, 8), random_graph(20, 20, 80, seed=3)
    conv = GATv2Conv(8, 4, heads=2, dropout=0.5)
    conv.eval()
    out_eval, (_, alpha_eval) = conv(x, edge_index, return_attention_weights=True)
    conv.train()
    torch.manual_seed(1)
    out_a, (_, alpha_a) = conv(x, edge_index, return_attention_weights=True)
    torch.manual_seed(1)
    out_b = conv(x, edge_index)
    torch.testing.assert_close(alpha_a, alpha_eval)
    torch.testing.assert_close(out_a, out_b, atol=0, rtol=0)
    assert not torch.allclose(out_a, out_eval)
    out_a.sum().backward()
    assert all(p.grad is not None for p in conv.parameters())


def test_message_path_and_explainers():
    attention_explainer_matches(GATv2Conv, pyg_nn.GATv2Conv)
    gnn_explainer_matches(GATv2Conv, pyg_nn.GATv2Conv, edge_dim=None)


def test_target_to_source_flow_uses_pyg_message_path():
    edge_index = random_graph(20, 20, 60, seed=3, self_loops=4)
    x, edge_attr = torch.randn(20, 8), torch.randn(64, 2)
    ours, pyg = make_pair(GATv2Conv, pyg_nn.GATv2Conv, 8, 4, heads=2, edge_dim=2,
                          flow="target_to_source")
    assert_same_run(run(pyg, x, edge_index, edge_attr), run(ours, x, edge_index, edge_attr),
                    torch.float32)


def test_double_backward():
    x = torch.randn(12, 6, dtype=torch.float64, requires_grad=True)
    edge_index = random_graph(12, 12, 40, seed=4)
    ours, pyg = make_pair(GATv2Conv, pyg_nn.GATv2Conv, 6, 4, heads=2, dtype=torch.float64)
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


def test_compile_and_autocast():
    x, edge_index = torch.randn(16, 8), random_graph(16, 16, 50, seed=14, self_loops=2)
    compile_matches(GATv2Conv(8, 4, heads=2, share_weights=True), x, edge_index)
    conv = GATv2Conv(8, 4, heads=2, edge_dim=3)
    pyg = pyg_nn.GATv2Conv(8, 4, heads=2, edge_dim=3)
    pyg.load_state_dict(conv.state_dict())
    edge_attr = torch.randn(52, 3)
    xs = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(xs, edge_index, edge_attr=edge_attr)
        expected = pyg(x, edge_index, edge_attr=edge_attr)
    assert out.dtype == expected.dtype
    torch.testing.assert_close(out.float(), expected.float(), atol=5e-2, rtol=5e-2)
    out.float().sum().backward()
    assert xs.grad is not None and torch.isfinite(xs.grad).all()


def test_bad_inputs():
    conv = GATv2Conv(4, 3, heads=2, edge_dim=2)
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match="edge_index"):
        conv(x, torch.tensor([[0, 7], [1, 2]]))
    with pytest.raises(TypeError, match="edge_index"):
        conv(x, torch.tensor([[0.0, 1.0], [1.0, 2.0]]))
    with pytest.raises(TypeError, match="edge_index"):
        conv(x, [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="edge_attr"):
        conv(x, torch.tensor([[0, 1], [1, 2]]), edge_attr=torch.randn(3, 2))
    with pytest.raises(ValueError, match="edge_attr"):
        GATv2Conv(4, 3)(x, torch.tensor([[0, 1], [1, 2]]), edge_attr=torch.randn(2, 2))
    with pytest.raises(ValueError, match="'x'"):
        conv((x, None), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="'x'"):
        conv(torch.randn(5), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="edge_index"):
        conv(x, to_torch_coo_tensor(torch.tensor([[0], [1]]), size=(7, 7)))
    with pytest.raises(ValueError, match="'heads'"):
        GATv2Conv(4, 3, heads=-1)
