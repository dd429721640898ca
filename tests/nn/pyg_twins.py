"""Helpers of the tests that compare a layer of ``pyg_attn.nn`` with its PyG twin:
build the pair with one set of weights (``make_pair``), run both with gradients
(``run``), compare outputs, attention and gradients (``assert_same_run``), and the
same model around either layer under torch.compile, the explainers and ``to_hetero``.
"""
from __future__ import annotations

import torch
from torch_geometric import EdgeIndex
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor
from torch_geometric.utils import (
    coalesce,
    is_torch_sparse_tensor,
    to_torch_coo_tensor,
    to_torch_csr_tensor,
)

from ..graphs import random_graph

TOL = {torch.float32: dict(out=1e-5, grad=1e-4), torch.float64: dict(out=1e-10, grad=1e-9)}

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
