"""GATConv: a drop-in for PyG's layer (weights, outputs, attention, gradients, inputs).

The helpers at the top (``make_pair``, ``run``, ``assert_same_run`` ...) are shared
with ``test_gatv2_conv.py``.
"""
from __future__ import annotations


import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric import EdgeIndex
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor
from torch_geometric.utils import (
    coalesce,
    is_torch_sparse_tensor,
    to_torch_coo_tensor,
    to_torch_csr_tensor,
)

from pyg_attn.nn.conv import self_loops
from pyg_attn.nn.conv.gat_conv import GATConv
from pyg_attn.ops import prepare

from ..graphs import random_graph

TOL = {torch.float32: dict(out=1e-5, grad=1e-4), torch.float64: dict(out=1e-10, grad=1e-9)}
needs_torch_sparse = pytest.mark.skipif(not WITH_TORCH_SPARSE, reason="needs torch_sparse")

# name: (num_src, num_dst, edge_index builder); destination-side isolated nodes,
# self-loops and duplicate edges included on purpose.
GRAPHS = {
    "random": (30, 30, lambda: random_graph(30, 30, 120, seed=1, self_loops=6, duplicates=8)),
    "isolated": (25, 25, lambda: random_graph(25, 25, 60, seed=2, isolated=6)),
    "empty": (12, 12, lambda: torch.empty(2, 0, dtype=torch.long)),
}


# ----------------------------------------------------------------------------- helpers
def make_pair(ours_cls, pyg_cls, *args, dtype=torch.float32, seed=0, **kwargs):
    """``(ours, pyg)`` built alike, ours loaded from PyG's state_dict."""
    torch.manual_seed(seed)
    pyg = pyg_cls(*args, **kwargs).to(dtype)
    ours = ours_cls(*args, **kwargs).to(dtype)
    ours.load_state_dict(pyg.state_dict())
    return ours, pyg


def leaf(t):
    return None if t is None else t.detach().clone().requires_grad_(t.is_floating_point())


def attention_parts(att):
    """``(edge_index or structure, alpha)`` of whatever form the layer returned."""
    if isinstance(att, SparseTensor):
        row, col, value = att.coo()
        return torch.stack([row, col]), value
    first, alpha = att
    if is_torch_sparse_tensor(first):
        coo = first.to_sparse_coo().coalesce() if first.layout != torch.sparse_coo else first
        return coo.indices(), alpha
    return first, alpha


def run(layer, x, adj, edge_attr=None, attention=True, **kwargs):
    """Forward + backward of a fixed loss; returns out, attention, and all gradients."""
    xs = tuple(leaf(t) for t in x) if isinstance(x, tuple) else leaf(x)
    ea = leaf(edge_attr)
    layer.zero_grad()
    if edge_attr is not None:
        kwargs["edge_attr"] = ea
    result = layer(xs, adj, return_attention_weights=True if attention else None, **kwargs)
    out, att = result if attention else (result, None)
    gen = torch.Generator().manual_seed(123)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    if att is not None:
        _, alpha = attention_parts(att)
        loss = loss + (alpha * torch.randn(alpha.shape, generator=gen, dtype=alpha.dtype)).sum()
    loss.backward()
    grads = {name: p.grad for name, p in layer.named_parameters()}
    for i, t in enumerate(xs if isinstance(xs, tuple) else (xs,)):
        grads[f"x{i}"] = None if t is None else t.grad
    grads["edge_attr"] = None if ea is None else ea.grad
    return out, att, grads


def assert_grads_close(expected, got, tol):
    assert expected.keys() == got.keys()
    for name, g in expected.items():
        h = got[name]
        if g is None or h is None:
            assert (g is None or not g.abs().any()) and (h is None or not h.abs().any()), name
            continue
        assert g.shape == h.shape, name
        if g.numel() == 0:
            continue
        scale = max(float(g.abs().max()), 1e-6)
        err = float((g - h).abs().max())
        assert err <= tol * scale, f"grad of {name}: error {err:.3g} vs magnitude {scale:.3g}"


def assert_same_run(expected, got, dtype):
    """Compares two ``run`` results: outputs, attention (form and values), gradients."""
    tol = TOL[dtype]
    torch.testing.assert_close(got[0], expected[0], atol=tol["out"], rtol=tol["out"])
    if expected[1] is not None:
        assert type(got[1]) is type(expected[1])
        if isinstance(expected[1], tuple):
            assert type(got[1][0]) is type(expected[1][0])
            if is_torch_sparse_tensor(expected[1][0]):
                assert got[1][0].layout == expected[1][0].layout
                assert got[1][0].shape == expected[1][0].shape
        idx_e, alpha_e = attention_parts(expected[1])
        idx_g, alpha_g = attention_parts(got[1])
        assert torch.equal(idx_g, idx_e)
        torch.testing.assert_close(alpha_g, alpha_e, atol=tol["out"], rtol=tol["out"])
    assert_grads_close(expected[2], got[2], tol["grad"])


def check_attention_normalised(edge_index, alpha, num_dst):
    assert bool((alpha >= 0).all()) and bool((alpha <= 1 + 1e-6).all())
    sums = torch.zeros(num_dst, alpha.size(1), dtype=alpha.dtype)
    sums.index_add_(0, edge_index[1], alpha)
    has_edge = torch.zeros(num_dst, dtype=torch.bool)
    has_edge[edge_index[1]] = True
    torch.testing.assert_close(sums[has_edge], torch.ones_like(sums[has_edge]))
    assert not sums[~has_edge].any()


def sparse_inputs(edge_index, num_src, num_dst, edge_attr=None):
    """The same (duplicate-free) graph in every input form PyG accepts."""
    size = (num_dst, num_src)
    forms = {
        "edge_index": edge_index,
        "EdgeIndex": EdgeIndex(edge_index, sparse_size=(num_src, num_dst)),
        "EdgeIndex_sorted": EdgeIndex(edge_index, sparse_size=(num_src, num_dst)).sort_by("col")[0],
        "coo": to_torch_coo_tensor(edge_index.flip(0), size=size),
        "csr": to_torch_csr_tensor(edge_index.flip(0), size=size),
    }
    if WITH_TORCH_SPARSE:
        forms["SparseTensor"] = SparseTensor.from_edge_index(edge_index.flip(0), sparse_sizes=size)
    return forms


def compile_matches(layer, x, edge_index):
    """torch.compile (aot_eager) of a model around ``layer`` gives the eager result."""
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = layer

        def forward(self, x, edge_index):
            return self.conv(x, edge_index).relu().sum(dim=-1)

    model = Model()
    expected = model(x, edge_index)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager")
    got = compiled(x, edge_index)
    torch.testing.assert_close(got, expected)
    got.sum().backward()
    # Same graph object again (cache hit), then a different graph:
    torch.testing.assert_close(compiled(x, edge_index), expected)
    other = edge_index[:, : edge_index.size(1) // 2]
    torch.testing.assert_close(compiled(x, other), model(x, other))


def attention_explainer_matches(ours_cls, pyg_cls, **kwargs):
    """AttentionExplainer gives the same edge mask on a 2-layer model of either layer."""
    from torch_geometric.explain import AttentionExplainer, Explainer

    class Net(torch.nn.Module):
        def __init__(self, cls):
            super().__init__()
            self.conv1 = cls(8, 4, heads=2, **kwargs)
            self.conv2 = cls(8, 3, heads=1, **kwargs)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    torch.manual_seed(0)
    reference = Net(pyg_cls).eval()
    ours = Net(ours_cls).eval()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(20, 8)
    edge_index = random_graph(20, 20, 70, seed=9, self_loops=3)
    masks = []
    for model in (reference, ours):
        explainer = Explainer(model=model, algorithm=AttentionExplainer(), explanation_type="model",
                              edge_mask_type="object",
                              model_config=dict(mode="multiclass_classification",
                                                task_level="node", return_type="raw"))
        masks.append(explainer(x, edge_index, index=3).edge_mask)
    torch.testing.assert_close(masks[1], masks[0], atol=1e-6, rtol=1e-5)
    assert masks[0].abs().sum() > 0
    # Outside the explainer the layer takes the fused path again:
    assert not any(len(m._message_forward_hooks) for m in ours.modules()
                   if isinstance(m, (ours_cls,)))
    torch.testing.assert_close(ours(x, edge_index), reference(x, edge_index), atol=1e-5, rtol=1e-5)


def gnn_explainer_matches(ours_cls, pyg_cls, **kwargs):
    """GNNExplainer (explain=True and an edge mask on the message path) as with PyG."""
    from torch_geometric.explain import Explainer, GNNExplainer

    x = torch.randn(15, 6)
    edge_index = random_graph(15, 15, 50, seed=11)
    ours, pyg = make_pair(ours_cls, pyg_cls, 6, 4, heads=2, **kwargs)
    masks = []
    for model in (pyg, ours):
        explainer = Explainer(model=model, algorithm=GNNExplainer(epochs=5),
                              explanation_type="model", edge_mask_type="object",
                              model_config=dict(mode="regression", task_level="node",
                                                return_type="raw"))
        torch.manual_seed(5)
        masks.append(explainer(x, edge_index, index=2).edge_mask)
    torch.testing.assert_close(masks[1], masks[0], atol=1e-5, rtol=1e-4)
    assert ours.explain is False or ours.explain is None


def to_hetero_matches(ours_cls, pyg_cls):
    """``to_hetero`` of a 2-layer model (lazy, bipartite, no self-loops) as with PyG."""
    from torch_geometric.nn import to_hetero

    meta = (["a", "b"], [("a", "to", "b"), ("b", "to", "a"), ("a", "self", "a")])
    x = {"a": torch.randn(10, 5), "b": torch.randn(7, 3)}
    edge_index = {("a", "to", "b"): random_graph(10, 7, 30, seed=1),
                  ("b", "to", "a"): random_graph(7, 10, 30, seed=2),
                  ("a", "self", "a"): random_graph(10, 10, 30, seed=3)}

    class Net(torch.nn.Module):
        def __init__(self, cls):
            super().__init__()
            self.conv1 = cls((-1, -1), 4, heads=2, add_self_loops=False)
            self.conv2 = cls((-1, -1), 3, add_self_loops=False)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    reference, ours = to_hetero(Net(pyg_cls), meta), to_hetero(Net(ours_cls), meta)
    reference(x, edge_index), ours(x, edge_index)  # lazy initialisation
    ours.load_state_dict(reference.state_dict())
    expected, got = reference(x, edge_index), ours(x, edge_index)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- tests
def test_repr_state_dict_and_reset():
    for args, kwargs in [((16, 8), dict(heads=2)), (((8, 16), 4), dict(edge_dim=3, residual=True)),
                         ((16, 8), dict(bias=False, concat=False, edge_dim=2)), ((-1, 8), {})]:
        ours, pyg = GATConv(*args, **kwargs), pyg_nn.GATConv(*args, **kwargs)
        assert repr(ours) == repr(pyg)
        assert list(ours.state_dict()) == list(pyg.state_dict())
        assert [n for n, _ in ours.named_parameters()] == [n for n, _ in pyg.named_parameters()]
    assert repr(GATConv(16, 32, heads=2)) == "GATConv(16, 32, heads=2)"
    conv = GATConv(16, 8, heads=2, residual=True)
    conv.bias.data.fill_(1.0)
    conv.reset_parameters()
    assert not conv.bias.any()
    assert conv.backend is None and "backend" not in str(conv.state_dict().keys())
    # Both ways: PyG loads ours too.
    pyg = pyg_nn.GATConv(16, 8, heads=2, residual=True)
    pyg.load_state_dict(conv.state_dict())
    x, edge_index = torch.randn(10, 16), random_graph(10, 10, 30, seed=0)
    torch.testing.assert_close(conv(x, edge_index), pyg(x, edge_index), atol=1e-5, rtol=1e-5)


CONFIGS = {
    "one_head": dict(heads=1),
    "mean_heads": dict(heads=3, concat=False),
    "residual": dict(heads=2, residual=True),
    "no_loops": dict(heads=2, add_self_loops=False),
    "no_bias_slope": dict(heads=2, bias=False, negative_slope=0.05),
    "edge_mean": dict(heads=2, edge_dim=3),
    "edge_add": dict(heads=2, edge_dim=3, fill_value="add"),
    "edge_float": dict(heads=2, edge_dim=3, fill_value=0.5),
    "edge_tensor": dict(heads=2, edge_dim=3, fill_value=torch.tensor([0.1, -0.2, 0.3])),
    "edge_1d_max": dict(heads=2, edge_dim=1, fill_value="max"),
    "edge_no_loops": dict(heads=2, edge_dim=3, add_self_loops=False, residual=True),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_matches_pyg(config, graph, dtype):
    kwargs = CONFIGS[config]
    num_src, _, build = GRAPHS[graph]
    edge_index = build()
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, 8, 5, dtype=dtype, **kwargs)
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("in_channels", [4, 64])
def test_narrow_and_wide_inputs_match_pyg(in_channels, dtype):
    """Logits from the folded weight (F <= 2 H C) and from the [N, H, C] product
    (wider inputs) both match PyG, bipartite too."""
    _, _, build = GRAPHS["random"]
    edge_index = build()
    x = torch.randn(30, in_channels, dtype=dtype)
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, in_channels, 3, heads=2, dtype=dtype)
    assert_same_run(run(pyg, x, edge_index), run(ours, x, edge_index), dtype)
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, (in_channels, in_channels), 3, heads=2,
                          dtype=dtype, add_self_loops=False)
    pair = (x, torch.randn(30, in_channels, dtype=dtype))
    assert_same_run(run(pyg, pair, edge_index), run(ours, pair, edge_index), dtype)


@pytest.mark.parametrize("add_self_loops", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_inputs_match_pyg_and_edge_index(add_self_loops, dtype):
    n = 18
    base = random_graph(n, n, 70, seed=7, self_loops=4, isolated=3)
    edge_index = coalesce(base, num_nodes=n)  # no duplicates: sparse forms keep every edge
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, 6, 4, heads=2, dtype=dtype,
                          add_self_loops=add_self_loops)
    x = torch.randn(n, 6, dtype=dtype)
    plain = run(ours, x, edge_index)
    for name, adj in sparse_inputs(edge_index, n, n).items():
        expected = run(pyg, x, adj)
        got = run(ours, x, adj)
        assert_same_run(expected, got, dtype)
        # Same output as the edge_index form; same weight for every edge.
        torch.testing.assert_close(got[0], plain[0], atol=TOL[dtype]["out"], rtol=TOL[dtype]["out"])
        idx, alpha = attention_parts(got[1])
        if name.startswith("edge") or name.startswith("EdgeIndex"):
            src, dst = idx[0], idx[1]
        else:
            src, dst = idx[1], idx[0]
        plain_idx, plain_alpha = plain[1]
        lookup = {(int(j), int(i)): k for k, (j, i) in enumerate(plain_idx.t().tolist())}
        order = torch.tensor([lookup[(int(j), int(i))] for j, i in zip(src, dst)], dtype=torch.long)
        torch.testing.assert_close(alpha, plain_alpha[order])
    # A prepared graph is accepted as well.
    torch.testing.assert_close(ours(x, prepare(edge_index, n)), plain[0])
    # The message path (explainers) on every input form.
    handle = ours.register_message_forward_hook(lambda *args: None)
    for adj in sparse_inputs(edge_index, n, n).values():
        assert_same_run(run(pyg, x, adj), run(ours, x, adj), dtype)
    torch.testing.assert_close(ours(x, prepare(edge_index, n)), plain[0])
    handle.remove()


def test_sparse_edge_features_match_pyg():
    n = 14
    edge_index = coalesce(random_graph(n, n, 50, seed=8, self_loops=3), num_nodes=n)
    edge_attr = torch.randn(edge_index.size(1), 3)
    x = torch.randn(n, 6)
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, 6, 4, heads=2, edge_dim=3)
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
        ours_nl, pyg_nl = make_pair(GATConv, pyg_nn.GATConv, 6, 4, heads=2, edge_dim=3,
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
def test_bipartite_matches_pyg(dtype):
    x_src, x_dst = torch.randn(20, 6, dtype=dtype), torch.randn(9, 5, dtype=dtype)
    edge_index = random_graph(20, 9, 60, seed=5, isolated=2, self_loops=3)
    edge_attr = torch.randn(edge_index.size(1), 2, dtype=dtype)
    for kwargs in (dict(heads=2), dict(heads=2, residual=True, edge_dim=2),
                   dict(heads=3, concat=False, add_self_loops=False)):
        ours, pyg = make_pair(GATConv, pyg_nn.GATConv, (6, 5), 4, dtype=dtype, **kwargs)
        ea = edge_attr if "edge_dim" in kwargs else None
        got = run(ours, (x_src, x_dst), edge_index, ea)
        assert_same_run(run(pyg, (x_src, x_dst), edge_index, ea), got, dtype)
        assert got[0].shape[0] == 9
        check_attention_normalised(got[1][0], got[1][1].detach(), 9)
        assert_same_run(run(pyg, (x_src, x_dst), edge_index, ea, size=(20, 9)),
                        run(ours, (x_src, x_dst), edge_index, ea, size=(20, 9)), dtype)
    # Source features only (x_dst = None): destinations from `size`, no dst term.
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, 6, 4, heads=2, dtype=dtype)
    assert_same_run(run(pyg, (x_src, None), edge_index, size=(20, 9)),
                    run(ours, (x_src, None), edge_index, size=(20, 9)), dtype)
    # A layer built for bipartite inputs, called with one feature matrix.
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, (6, 6), 4, heads=2, dtype=dtype)
    square = random_graph(20, 20, 60, seed=6)
    assert_same_run(run(pyg, x_src, square), run(ours, x_src, square), dtype)
    # Sparse bipartite adjacency (row = destination).
    unique = coalesce(edge_index, num_nodes=20)
    adjs = [to_torch_csr_tensor(unique.flip(0), size=(9, 20))]
    if WITH_TORCH_SPARSE:
        adjs.append(SparseTensor.from_edge_index(unique.flip(0), sparse_sizes=(9, 20)))
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, (6, 5), 4, heads=2, dtype=dtype)
    for adj in adjs:
        assert_same_run(run(pyg, (x_src, x_dst), adj), run(ours, (x_src, x_dst), adj), dtype)
    to_hetero_matches(GATConv, pyg_nn.GATConv)


def test_looped_graph_edge_ids():
    """Every returned weight maps back to its edge in the caller's input (-1: added loop)."""
    edge_index = random_graph(12, 12, 40, seed=21, self_loops=4, duplicates=3)
    looped = self_loops.gat_graph(edge_index, 12, 12, True)
    ids = looped.edge_ids()
    kept = ids >= 0
    assert torch.equal(looped.edge_index[:, kept], edge_index[:, ids[kept]])
    assert torch.equal(looped.edge_index[0, ~kept], torch.arange(12))
    assert torch.equal(looped.edge_index[0, ~kept], looped.edge_index[1, ~kept])
    assert int(kept.sum()) == int((edge_index[0] != edge_index[1]).sum())
    unique = coalesce(edge_index, num_nodes=12)
    forms = [to_torch_coo_tensor(unique.flip(0), size=(12, 12)),
             to_torch_csr_tensor(unique.flip(0), size=(12, 12))]
    if WITH_TORCH_SPARSE:
        forms.append(SparseTensor.from_edge_index(unique.flip(0), sparse_sizes=(12, 12)))
    for adj in forms:
        stored = self_loops.gat_graph(adj, 12, 12, False).edge_index  # stored order
        looped = self_loops.gat_graph(adj, 12, 12, True)
        ids = looped.edge_ids()
        kept = ids >= 0
        assert torch.equal(looped.edge_index[:, kept], stored[:, ids[kept]])
        assert bool((looped.edge_index[0, ~kept] == looped.edge_index[1, ~kept]).all())
        assert int((~kept).sum()) == 12


@pytest.mark.parametrize("add_self_loops", [True, False])
def test_empty_graph_and_isolated_nodes(add_self_loops):
    x = torch.randn(6, 8)
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, 8, 4, heads=2, add_self_loops=add_self_loops,
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
    ours = GATConv(8, 4, heads=2, add_self_loops=False)
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 1]])
    out, (_, alpha) = ours(x, edge_index, return_attention_weights=True)
    assert torch.isfinite(out).all() and not out[[0, 3, 4, 5]].any()
    check_attention_normalised(edge_index, alpha.detach(), 6)


def test_lazy_initialisation():
    x_src, x_dst = torch.randn(10, 6), torch.randn(4, 3)
    edge_index = random_graph(10, 4, 25, seed=1)
    for in_channels, x in ((-1, x_src), ((-1, -1), (x_src, x_dst))):
        torch.manual_seed(0)
        ours = GATConv(in_channels, 5, heads=2, residual=True, edge_dim=-1)
        pyg = pyg_nn.GATConv(in_channels, 5, heads=2, residual=True, edge_dim=-1)
        ei = edge_index if isinstance(x, tuple) else random_graph(10, 10, 25, seed=1)
        edge_attr = torch.randn(ei.size(1), 2)
        out = ours(x, ei, edge_attr=edge_attr)  # materialises the lazy weights
        pyg(x, ei, edge_attr=edge_attr)
        assert out.shape == (x_dst.size(0) if isinstance(x, tuple) else 10, 10)
        pyg.load_state_dict(ours.state_dict())
        assert_same_run(run(pyg, x, ei, edge_attr), run(ours, x, ei, edge_attr), torch.float32)


def test_dropout_never_changes_reported_attention():
    x, edge_index = torch.randn(20, 8), random_graph(20, 20, 80, seed=3)
    conv = GATConv(8, 4, heads=2, dropout=0.5)
    conv.eval()
    out_eval, (_, alpha_eval) = conv(x, edge_index, return_attention_weights=True)
    conv.train()
    torch.manual_seed(1)
    out_a, (_, alpha_a) = conv(x, edge_index, return_attention_weights=True)
    torch.manual_seed(1)
    out_b = conv(x, edge_index)
    torch.testing.assert_close(alpha_a, alpha_eval)  # before dropout
    torch.testing.assert_close(out_a, out_b, atol=0, rtol=0)  # same seed, same mask
    assert not torch.allclose(out_a, out_eval)
    out_a.sum().backward()
    assert all(p.grad is not None for p in conv.parameters())


def test_message_path_and_explainers():
    attention_explainer_matches(GATConv, pyg_nn.GATConv)
    gnn_explainer_matches(GATConv, pyg_nn.GATConv)
    # explain=True with an edge mask: the mask multiplies the messages like in PyG.
    x, edge_index = torch.randn(12, 6), random_graph(12, 12, 40, seed=4, self_loops=2)
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, 6, 4, heads=2)
    mask = torch.rand(edge_index.size(1))
    from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
    outs = []
    for layer in (pyg, ours):
        set_masks(layer, mask, edge_index, apply_sigmoid=True)
        outs.append(layer(x, edge_index))
        clear_masks(layer)
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(outs[1], ours(x, edge_index))


def test_target_to_source_flow_uses_pyg_message_path():
    edge_index = random_graph(20, 20, 60, seed=3, self_loops=4)
    x, edge_attr = torch.randn(20, 8), torch.randn(64, 2)
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, 8, 4, heads=2, edge_dim=2,
                          flow="target_to_source")
    assert_same_run(run(pyg, x, edge_index, edge_attr), run(ours, x, edge_index, edge_attr),
                    torch.float32)


def test_double_backward():
    x, edge_index = torch.randn(12, 6, dtype=torch.float64, requires_grad=True), \
        random_graph(12, 12, 40, seed=4)
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, 6, 4, heads=2, dtype=torch.float64)
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


def test_compile_and_autocast():
    x, edge_index = torch.randn(16, 8), random_graph(16, 16, 50, seed=14, self_loops=2)
    compile_matches(GATConv(8, 4, heads=2, residual=True), x, edge_index)
    conv = GATConv(8, 4, heads=2, edge_dim=3)
    pyg = pyg_nn.GATConv(8, 4, heads=2, edge_dim=3)
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


def test_bad_inputs():
    conv = GATConv(4, 3, heads=2, edge_dim=2)
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match="edge_index"):
        conv(x, torch.tensor([[0, 7], [1, 2]]))
    with pytest.raises(ValueError, match="edge_index"):
        conv(x, torch.tensor([[0, -1], [1, 2]]))
    with pytest.raises(TypeError, match="edge_index"):
        conv(x, torch.tensor([[0.0, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="edge_index"):
        conv(x, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="edge_index"):
        conv(x, [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="edge_attr"):
        conv(x, torch.tensor([[0, 1], [1, 2]]), edge_attr=torch.randn(3, 2))
    with pytest.raises(ValueError, match="'x'"):
        conv(torch.randn(5, 2, 4), torch.tensor([[0], [1]]))
    with pytest.raises(TypeError, match="'x'"):
        conv("features", torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="size"):
        conv(x, torch.tensor([[0], [1]]), size=(6, 5))
    with pytest.raises(ValueError, match="edge_index"):
        conv(x, to_torch_csr_tensor(torch.tensor([[0], [1]]), size=(7, 7)))
    with pytest.raises(ValueError, match="'heads'"):
        GATConv(4, 3, heads=0)
    with pytest.raises(ValueError, match="'dropout'"):
        GATConv(4, 3, dropout=1.5)


@pytest.mark.parametrize("aggr", ["mean", "max"])
def test_non_sum_aggregation_takes_the_message_path(aggr):
    import torch_geometric.nn as pyg_nn

    from pyg_attn.nn import GATConv as OurGATConv

    torch.manual_seed(0)
    x, edge_index = torch.randn(10, 6), torch.randint(0, 10, (2, 40))
    theirs = pyg_nn.GATConv(6, 4, heads=2, aggr=aggr)
    ours = OurGATConv(6, 4, heads=2, aggr=aggr)
    ours.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(ours(x, edge_index), theirs(x, edge_index))
