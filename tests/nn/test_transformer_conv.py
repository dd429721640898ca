"""TransformerConv: a drop-in for PyG's layer (weights, outputs, attention, gradients); its
dropout test is in test_pyg_conformance.py with the GAT layers'."""
from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric import EdgeIndex
from torch_geometric.explain import Explainer
from torch_geometric.explain.algorithm import AttentionExplainer, GNNExplainer
from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor
from torch_geometric.utils import coalesce, to_torch_coo_tensor, to_torch_csr_tensor

from pyg_attn.nn.conv.transformer_conv import TransformerConv
from pyg_attn.ops import graph as graph_module
from pyg_attn.ops import prepare, select_backend

from ..graphs import random_graph

pytestmark = pytest.mark.filterwarnings("ignore:.*[Ss]parse.*:UserWarning")

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-11, rtol=1e-10)}
# Whether the fused CPU kernel is built (else everything runs on the reference backend).
FUSED = select_backend(None, torch.device("cpu")) == "cpu"
GRAD_REL = {torch.float32: 1e-4, torch.float64: 1e-10}

CONFIGS = {
    "default": dict(heads=1),
    "heads": dict(heads=3),
    "mean_beta": dict(heads=2, concat=False, beta=True),
    "edge_dim_beta": dict(heads=2, edge_dim=3, beta=True),
    "edge_dim_mean": dict(heads=3, edge_dim=2, concat=False),
    "no_root": dict(heads=2, root_weight=False, beta=True),
    "no_bias": dict(heads=2, bias=False, edge_dim=3),
}


def make_pair(in_channels, out_channels, dtype=torch.float32, **kwargs):
    """A PyG layer and ours holding the same weights (loaded from PyG)."""
    ref = pyg_nn.TransformerConv(in_channels, out_channels, **kwargs).to(dtype)
    ours = TransformerConv(in_channels, out_channels, **kwargs).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def assert_grads_close(ours, ref, dtype, what=""):
    """Each gradient within ``GRAD_REL`` of its own magnitude, with a floor at the largest
    gradient's magnitude (the key bias gets an analytically zero gradient: pure noise)."""
    floor = max(float(r.abs().max()) for r in ref if r is not None and r.numel())
    for g, r in zip(ours, ref):
        assert (g is None) == (r is None), what
        if r is None or r.numel() == 0:
            continue
        scale = max(float(r.abs().max()), 1e-3 * floor)
        err = float((g - r).abs().max()) / scale
        assert err <= GRAD_REL[dtype], f"{what}: relative gradient error {err:.2e}"


def run_both(ref, ours, x, edge_index, edge_attr=None, adj_ours=None):
    """Forward + backward through both layers; returns outputs, attention, grads."""
    results = []
    for conv, index in ((ref, edge_index), (ours, edge_index if adj_ours is None else adj_ours)):
        inputs = [t.detach().clone().requires_grad_() for t in (x if isinstance(x, tuple) else (x,))]
        xin = tuple(inputs) if isinstance(x, tuple) else inputs[0]
        ea = None if edge_attr is None else edge_attr.detach().clone().requires_grad_()
        out, att = conv(xin, index, ea, return_attention_weights=True)
        alpha = att.storage.value() if isinstance(att, SparseTensor) else att[1]
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(0),
                              dtype=out.dtype)
        alpha_weights = torch.rand(alpha.shape, generator=torch.Generator().manual_seed(1),
                                   dtype=alpha.dtype)
        ((out * weights).sum() + (alpha * alpha_weights).sum()).backward()
        grads = [t.grad for t in inputs] + ([] if ea is None else [ea.grad])
        grads += [p.grad for p in conv.parameters()]
        results.append((out.detach(), alpha.detach(), grads))
    return results


# ----------------------------------------------------------------------------- interface
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_repr_state_dict_keys_and_reset(name):
    kwargs = CONFIGS[name]
    ref = pyg_nn.TransformerConv(16, 8, **kwargs)
    ours = TransformerConv(16, 8, **kwargs)
    assert repr(ours) == repr(ref) == f"TransformerConv(16, 8, heads={kwargs['heads']})"
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}
    for attr in ("in_channels", "out_channels", "heads", "beta", "root_weight", "concat",
                 "dropout", "edge_dim"):
        assert getattr(ours, attr) == getattr(ref, attr)
    assert ours.backend is None and "backend" not in str(list(ours.state_dict()))
    # Same construction order and initialisers as PyG: same seed, same weights.
    torch.manual_seed(3)
    ref = pyg_nn.TransformerConv(16, 8, **kwargs)
    torch.manual_seed(3)
    ours = TransformerConv(16, 8, **kwargs)
    for (k, a), (_, b) in zip(ref.state_dict().items(), ours.state_dict().items()):
        assert torch.equal(a, b), k
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    ours.reset_parameters()
    assert any(not torch.equal(before[k], v) for k, v in ours.state_dict().items())


def test_generated_propagate_is_used():
    # PyG compiles `propagate` from a template that star-imports this layer's module;
    # a failure there silently falls back to the generic, slower propagate.
    TransformerConv(4, 2)
    assert TransformerConv.propagate.__module__.endswith("TransformerConv_propagate")


def test_state_dict_round_trip_both_ways():
    x, ei = torch.randn(12, 8), random_graph(12, 12, 40, seed=0)
    ea = torch.randn(40, 3)
    ours = TransformerConv(8, 4, heads=2, edge_dim=3, beta=True)
    ref = pyg_nn.TransformerConv(8, 4, heads=2, edge_dim=3, beta=True)
    ref.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x, ei, ea), ref(x, ei, ea), **TOL[torch.float32])
    back = TransformerConv(8, 4, heads=2, edge_dim=3, beta=True)
    back.load_state_dict(ref.state_dict())
    torch.testing.assert_close(back(x, ei, ea), ours(x, ei, ea), atol=0, rtol=0)


# ----------------------------------------------------------------------------- vs PyG
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_pyg(name, dtype):
    kwargs = CONFIGS[name]
    torch.manual_seed(0)
    # Self-loops, duplicate edges, isolated destinations and a hub.
    ei = random_graph(50, 50, 300, seed=7, self_loops=8, duplicates=20, isolated=5, hub=3,
                      hub_degree=120)
    x = torch.randn(50, 12, dtype=dtype)
    ea = torch.randn(ei.size(1), kwargs["edge_dim"], dtype=dtype) if "edge_dim" in kwargs else None
    ref, ours = make_pair(12, 6, dtype, **kwargs)
    (o_ref, a_ref, g_ref), (o, a, g) = run_both(ref, ours, x, ei, ea)
    torch.testing.assert_close(o, o_ref, **TOL[dtype])
    torch.testing.assert_close(a, a_ref, **TOL[dtype])
    assert_grads_close(g, g_ref, dtype, name)


@pytest.mark.parametrize("kwargs", [dict(heads=2), dict(heads=3, edge_dim=4, beta=True,
                                                        concat=False)])
def test_bipartite_matches_pyg(kwargs):
    x = (torch.randn(30, 10), torch.randn(9, 7))
    ei = random_graph(30, 9, 80, seed=4, isolated=2)
    ea = torch.randn(80, 4) if "edge_dim" in kwargs else None
    ref, ours = make_pair((10, 7), 5, **kwargs)
    (o_ref, a_ref, g_ref), (o, a, g) = run_both(ref, ours, x, ei, ea)
    assert o.shape == (9, 5 * kwargs["heads"] if kwargs.get("concat", True) else 5)
    torch.testing.assert_close(o, o_ref, **TOL[torch.float32])
    torch.testing.assert_close(a, a_ref, **TOL[torch.float32])
    assert_grads_close(g, g_ref, torch.float32, "bipartite")


@pytest.mark.parametrize("kwargs, edge_attr_shape", [
    (dict(heads=2), (2, 5)),          # edge_attr without edge_dim: added to the values
    (dict(heads=2), (1, 1)),
    (dict(heads=2, aggr="mean"), None),  # non-default aggregation: PyG's message path
])
def test_pyg_corner_cases_match(kwargs, edge_attr_shape):
    x, ei = torch.randn(20, 6), random_graph(20, 20, 70, seed=12, isolated=2)
    ea = None if edge_attr_shape is None else torch.randn(70, *edge_attr_shape)
    ref, ours = make_pair(6, 5, **kwargs)
    (o_ref, a_ref, g_ref), (o, a, g) = run_both(ref, ours, x, ei, ea)
    torch.testing.assert_close(o, o_ref, **TOL[torch.float32])
    torch.testing.assert_close(a, a_ref, **TOL[torch.float32])
    assert_grads_close(g, g_ref, torch.float32, str(kwargs))


@pytest.mark.parametrize("in_channels", [-1, (-1, -1)])
def test_lazy_initialisation(in_channels):
    x, ei = torch.randn(15, 9), random_graph(15, 15, 50, seed=2)
    ref = pyg_nn.TransformerConv(in_channels, 4, heads=2, beta=True)
    ours = TransformerConv(in_channels, 4, heads=2, beta=True)
    assert repr(ours) == repr(ref)
    ours.load_state_dict(ref.state_dict())  # both still uninitialised
    out = ours(x, ei)
    assert out.shape == (15, 8)
    ref(x, ei)
    ours.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours(x, ei), ref(x, ei), **TOL[torch.float32])
    lazy = TransformerConv(in_channels, 4, heads=2, beta=True)
    lazy.load_state_dict(ref.state_dict())  # materialised weights into a lazy layer
    torch.testing.assert_close(lazy(x, ei), ref(x, ei), **TOL[torch.float32])


# ----------------------------------------------------------------------------- inputs
def _unique_graph(num_src, num_dst, num_edges, seed):
    ei = random_graph(num_src, num_dst, num_edges, seed=seed, isolated=3)
    return coalesce(ei, num_nodes=max(num_src, num_dst))  # no duplicates; sorted by source


def _as_input(kind, ei, num_src, num_dst):
    if kind == "coo":
        return to_torch_coo_tensor(ei.flip(0), size=(num_dst, num_src))
    if kind == "csr":
        return to_torch_csr_tensor(ei.flip(0), size=(num_dst, num_src))
    if kind == "sparse_tensor":
        return SparseTensor.from_edge_index(ei.flip(0), sparse_sizes=(num_dst, num_src))
    if kind == "edge_index_obj":
        return EdgeIndex(ei, sparse_size=(num_src, num_dst))
    if kind == "edge_index_sorted":
        return EdgeIndex(ei, sparse_size=(num_src, num_dst)).sort_by("col")[0]
    raise AssertionError(kind)


def _stored_order(kind, adj, ei):
    """The caller's edge list in the edge order of input ``adj``."""
    if kind in ("coo", "csr", "sparse_tensor"):
        if isinstance(adj, SparseTensor):
            row, col, _ = adj.coo()
        else:
            dense = adj.to_sparse_coo().coalesce().indices()
            row, col = dense[0], dense[1]
        return torch.stack([col, row])
    return adj.as_tensor()


SPARSE_KINDS = ["coo", "csr", "edge_index_obj", "edge_index_sorted"] + \
    (["sparse_tensor"] if WITH_TORCH_SPARSE else [])


@pytest.mark.parametrize("bipartite", [False, True])
@pytest.mark.parametrize("kind", SPARSE_KINDS)
def test_sparse_and_edge_index_inputs_match_pyg(kind, bipartite):
    torch.manual_seed(0)  # inputs and weights independent of the tests run before
    num_src, num_dst = (20, 11) if bipartite else (20, 20)
    ei = _unique_graph(num_src, num_dst, 90, seed=11)
    adj = _as_input(kind, ei, num_src, num_dst)
    x = (torch.randn(num_src, 6), torch.randn(num_dst, 6)) if bipartite else torch.randn(20, 6)
    ordered = _stored_order(kind, adj, ei)
    ea = torch.randn(ordered.size(1), 3)  # in the input's stored edge order
    ref, ours = make_pair(6, 4, heads=2, edge_dim=3, beta=True)
    (o_ref, a_ref, g_ref), (o, a, g) = run_both(ref, ours, x, adj, ea)
    torch.testing.assert_close(o, o_ref, **TOL[torch.float32])
    torch.testing.assert_close(a, a_ref, **TOL[torch.float32])
    assert_grads_close(g, g_ref, torch.float32, kind)
    # Same as the plain edge_index in that order.
    torch.testing.assert_close(ours(x, ordered, ea), o, **TOL[torch.float32])
    # The attention comes back in the form PyG gives for the input type.
    _, att_ref = ref(x, adj, ea, return_attention_weights=True)
    _, att = ours(x, adj, ea, return_attention_weights=True)
    if isinstance(adj, SparseTensor):
        assert isinstance(att, SparseTensor)
        for a_, b_ in zip(att.coo(), att_ref.coo()):
            torch.testing.assert_close(a_, b_, **TOL[torch.float32])
    else:
        assert isinstance(att, tuple) and att[0] is adj and att_ref[0] is adj
        torch.testing.assert_close(att[1], att_ref[1], **TOL[torch.float32])


def test_sparse_values_used_as_edge_attr_like_pyg():
    ei = _unique_graph(15, 15, 60, seed=5)
    values = torch.randn(ei.size(1), 3)
    adj = SparseTensor.from_edge_index(ei.flip(0), values, sparse_sizes=(15, 15)) \
        if WITH_TORCH_SPARSE else None
    coo = torch.sparse_coo_tensor(ei.flip(0), values, (15, 15, 3)).coalesce()
    x = torch.randn(15, 6)
    ref, ours = make_pair(6, 4, heads=2, edge_dim=3)
    for a in (coo, adj):
        if a is not None:
            torch.testing.assert_close(ours(x, a), ref(x, a), **TOL[torch.float32])


def test_prepared_graph_input():
    x, ei = torch.randn(20, 6), random_graph(20, 20, 70, seed=3, duplicates=5)
    conv = TransformerConv(6, 4, heads=2)
    out, (ei_back, alpha) = conv(x, prepare(ei, 20), return_attention_weights=True)
    expected, (_, alpha_ref) = conv(x, ei, return_attention_weights=True)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(alpha, alpha_ref)
    assert torch.equal(ei_back, ei)


# ----------------------------------------------------------------------------- attention
def test_return_attention_forms_and_properties():
    num_nodes, isolated = 30, 6
    ei = random_graph(num_nodes, num_nodes, 120, seed=9, isolated=isolated, duplicates=10,
                      self_loops=4)
    x = torch.randn(num_nodes, 8)
    conv = TransformerConv(8, 4, heads=3)
    assert torch.is_tensor(conv(x, ei))
    assert torch.is_tensor(conv(x, ei, return_attention_weights=None))
    assert torch.is_tensor(conv(x, ei, return_attention_weights=False))  # PyG: a tuple
    out, (ei_back, alpha) = conv(x, ei, return_attention_weights=True)
    assert ei_back is ei and alpha.shape == (ei.size(1), 3)
    assert bool((alpha >= 0).all() and (alpha <= 1).all())
    sums = torch.zeros(num_nodes, 3).index_add_(0, ei[1], alpha)
    has_edge = torch.zeros(num_nodes, dtype=torch.bool)
    has_edge[ei[1]] = True
    torch.testing.assert_close(sums[has_edge], torch.ones(int(has_edge.sum()), 3))
    assert torch.equal(sums[~has_edge], torch.zeros(int((~has_edge).sum()), 3))
    # Isolated destinations get the root weight only.
    torch.testing.assert_close(out[~has_edge], conv.lin_skip(x)[~has_edge], atol=0, rtol=0)


@pytest.mark.parametrize("kwargs", [dict(heads=2), dict(heads=2, beta=True, edge_dim=3),
                                    dict(heads=2, root_weight=False, concat=False)])
def test_empty_edge_index(kwargs):
    x = torch.randn(7, 5)
    ei = torch.empty(2, 0, dtype=torch.long)
    ea = torch.empty(0, 3) if "edge_dim" in kwargs else None
    ref, ours = make_pair(5, 4, **kwargs)
    out, (_, alpha) = ours(x, ei, ea, return_attention_weights=True)
    assert alpha.shape == (0, 2)
    torch.testing.assert_close(out, ref(x, ei, ea), **TOL[torch.float32])
    if not kwargs.get("root_weight", True):
        assert torch.equal(out, torch.zeros_like(out))


# ----------------------------------------------------------------------------- backends
def test_fused_matches_reference_backend():
    x, ei = torch.randn(40, 8, dtype=torch.float64), random_graph(40, 40, 200, seed=2,
                                                                   duplicates=10)
    ea = torch.randn(ei.size(1), 3, dtype=torch.float64)
    conv = TransformerConv(8, 4, heads=2, edge_dim=3, beta=True).double()
    reference = copy.deepcopy(conv)
    reference.backend = "reference"
    (_, a, g), (_, a_ref, g_ref) = run_both(conv, reference, x, ei, ea)
    torch.testing.assert_close(a, a_ref, **TOL[torch.float64])
    assert_grads_close(g, g_ref, torch.float64, "fused vs reference")


def test_double_backward():
    x = torch.randn(15, 6, dtype=torch.float64, requires_grad=True)
    ei = random_graph(15, 15, 50, seed=6)
    ea = torch.randn(50, 2, dtype=torch.float64)
    ref, ours = make_pair(6, 3, torch.float64, heads=2, edge_dim=2, beta=True)
    (grad,) = torch.autograd.grad(ours(x, ei, ea).pow(2).sum(), x)  # first order is fine
    if FUSED:
        with pytest.raises(RuntimeError, match="double backward.*backend='reference'"):
            torch.autograd.grad(ours(x, ei, ea).pow(2).sum(), x, create_graph=True)
    ours.backend = "reference"
    results = []
    for conv in (ref, ours):
        (g1,) = torch.autograd.grad(conv(x, ei, ea).pow(2).sum(), x, create_graph=True)
        (g2,) = torch.autograd.grad(g1.pow(2).sum(), x)
        results.append((g1, g2))
    torch.testing.assert_close(results[1][0], results[0][0], **TOL[torch.float64])
    torch.testing.assert_close(results[1][1], results[0][1], **TOL[torch.float64])
    torch.testing.assert_close(grad, results[0][0], **TOL[torch.float64])


# ----------------------------------------------------------------------------- explain
class TwoLayers(torch.nn.Module):
    def __init__(self, conv_cls, in_channels=8, hidden=6, out_channels=3):
        super().__init__()
        self.conv1 = conv_cls(in_channels, hidden, heads=2, edge_dim=None)
        self.conv2 = conv_cls(2 * hidden, out_channels, heads=2, concat=False, beta=True)

    def forward(self, x, edge_index):
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index)


def _twin_models():
    torch.manual_seed(0)
    ref = TwoLayers(pyg_nn.TransformerConv)
    ours = TwoLayers(TransformerConv)
    ours.load_state_dict(ref.state_dict())
    return ref.eval(), ours.eval()


def test_attention_explainer_matches_pyg():
    x, ei = torch.randn(30, 8), random_graph(30, 30, 120, seed=8, isolated=3)
    masks = []
    for model in _twin_models():
        explainer = Explainer(model=model, algorithm=AttentionExplainer(),
                              explanation_type="model", edge_mask_type="object",
                              model_config=dict(mode="multiclass_classification",
                                                task_level="node", return_type="raw"))
        masks.append(explainer(x, ei, index=torch.tensor([0, 4, 7])).edge_mask)
    assert masks[0].shape == (ei.size(1),) and bool((masks[0] > 0).any())
    torch.testing.assert_close(masks[1], masks[0], **TOL[torch.float32])


def test_gnn_explainer_matches_pyg():
    x, ei = torch.randn(20, 8), random_graph(20, 20, 60, seed=5)
    masks = []
    for model in _twin_models():
        torch.manual_seed(0)
        explainer = Explainer(model=model, algorithm=GNNExplainer(epochs=5),
                              explanation_type="model", edge_mask_type="object",
                              model_config=dict(mode="multiclass_classification",
                                                task_level="node", return_type="raw"))
        masks.append(explainer(x, ei, index=2).edge_mask)
    torch.testing.assert_close(masks[1], masks[0], atol=1e-4, rtol=1e-4)


def test_edge_mask_and_hooks_take_the_message_path():
    x, ei = torch.randn(30, 8), random_graph(30, 30, 120, seed=8)
    ref, ours = _twin_models()
    edge_mask = torch.randn(ei.size(1))
    for model in (ref, ours):
        set_masks(model, torch.nn.Parameter(edge_mask.clone()), ei, apply_sigmoid=True)
    torch.testing.assert_close(ours(x, ei), ref(x, ei), **TOL[torch.float32])
    for model in (ref, ours):
        clear_masks(model)
    seen = []
    handle = ours.conv1.register_message_forward_hook(
        lambda module, inputs, out: seen.append(module._alpha.detach()))
    _, (_, alpha) = ours.conv1(x, ei, return_attention_weights=True)
    handle.remove()
    torch.testing.assert_close(seen[0], alpha, atol=0, rtol=0)
    assert ours.conv1._alpha is None
    torch.testing.assert_close(ours(x, ei), ref(x, ei), **TOL[torch.float32])


# ----------------------------------------------------------------------------- module
def test_deepcopy_save_load_and_to():
    x, ei = torch.randn(20, 6), random_graph(20, 20, 60, seed=1)
    ea = torch.randn(60, 2)
    conv = TransformerConv(6, 4, heads=2, edge_dim=2, beta=True)
    conv.backend = "reference"
    expected = conv(x, ei, ea)
    clone = copy.deepcopy(conv)
    assert clone.backend == "reference"
    torch.testing.assert_close(clone(x, ei, ea), expected, atol=0, rtol=0)
    buffer = io.BytesIO()
    torch.save(conv, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    torch.testing.assert_close(loaded(x, ei, ea), expected, atol=0, rtol=0)
    buffer = io.BytesIO()
    torch.save(conv.state_dict(), buffer)
    buffer.seek(0)
    fresh = TransformerConv(6, 4, heads=2, edge_dim=2, beta=True)
    fresh.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(fresh(x, ei, ea), expected, **TOL[torch.float32])
    moved = copy.deepcopy(conv).to("cpu", torch.float64)
    torch.testing.assert_close(moved(x.double(), ei, ea.double()), expected.double(),
                               **TOL[torch.float32])


def test_torch_compile_matches_eager():
    torch._dynamo.reset()
    x, ei = torch.randn(25, 8), random_graph(25, 25, 90, seed=4)
    _, model = _twin_models()
    expected = model(x, ei)
    compiled = torch.compile(model, backend="aot_eager")
    torch.testing.assert_close(compiled(x, ei.clone()), expected, **TOL[torch.float32])
    xg = x.clone().requires_grad_()
    compiled(xg, ei).sum().backward()
    xe = x.clone().requires_grad_()
    model(xe, ei).sum().backward()
    torch.testing.assert_close(xg.grad, xe.grad, **TOL[torch.float32])


@pytest.mark.cuda
def test_to_cuda_matches_cpu():
    x, ei = torch.randn(30, 8), random_graph(30, 30, 100, seed=2)
    ea = torch.randn(100, 3)
    conv = TransformerConv(8, 4, heads=2, edge_dim=3, beta=True)
    expected, (_, alpha) = conv(x, ei, ea, return_attention_weights=True)
    conv_cuda = copy.deepcopy(conv).to("cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out, (_, alpha_cuda) = conv_cuda(x.cuda(), ei.cuda(), ea.cuda(),
                                         return_attention_weights=True)
    torch.testing.assert_close(out.cpu(), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(alpha_cuda.cpu(), alpha, atol=1e-5, rtol=1e-4)


def test_autocast_bfloat16():
    x, ei = torch.randn(30, 8), random_graph(30, 30, 100, seed=2)
    ea = torch.randn(100, 3)
    conv = TransformerConv(8, 4, heads=2, edge_dim=3, beta=True)
    expected = conv(x, ei, ea)
    xg = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(xg, ei, ea)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert xg.grad is not None and bool(torch.isfinite(xg.grad).all())
    assert all(p.grad is not None for p in conv.parameters())
    torch.testing.assert_close(out.float(), expected, atol=0.1, rtol=0.05)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, name", [
    (dict(in_channels=0, out_channels=4), "in_channels"),
    (dict(in_channels=(4,), out_channels=4), "in_channels"),
    (dict(in_channels=4, out_channels=0), "out_channels"),
    (dict(in_channels=4, out_channels=4, heads=0), "heads"),
    (dict(in_channels=4, out_channels=4, dropout=1.5), "dropout"),
    (dict(in_channels=4, out_channels=4, edge_dim=0), "edge_dim"),
])
def test_bad_constructor_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        TransformerConv(**kwargs)


def test_bad_forward_inputs():
    x, ei = torch.randn(6, 4), torch.tensor([[0, 1, 2], [1, 2, 3]])
    conv = TransformerConv(4, 2, heads=2)
    edge_conv = TransformerConv(4, 2, heads=2, edge_dim=3)
    cases = [
        (TypeError, "'x'", lambda: conv([x], ei)),
        (TypeError, "'x'", lambda: conv(x.long(), ei)),
        (TypeError, "'edge_index'", lambda: conv(x, ei.tolist())),
        (TypeError, "'edge_index'", lambda: conv(x, ei.float())),
        (ValueError, "'edge_index'", lambda: conv(x, ei[0])),
        (ValueError, "'edge_index'", lambda: conv(x, torch.tensor([[0], [6]]))),
        (ValueError, "'edge_index'", lambda: conv(x, torch.tensor([[-1], [0]]))),
        (ValueError, "'edge_index'", lambda: conv(x, to_torch_coo_tensor(ei, size=(5, 5)))),
        (ValueError, "'edge_attr'", lambda: edge_conv(x, ei)),
        (ValueError, "'edge_attr'", lambda: edge_conv(x, ei, torch.randn(2, 3))),
        (ValueError, "'edge_attr'", lambda: edge_conv(x, ei, torch.randn(3, 5))),
        (TypeError, "'edge_attr'", lambda: edge_conv(x, ei, torch.ones(3, 3, dtype=torch.long))),
        (ValueError, "'edge_attr'", lambda: conv(x, ei, torch.randn(3, 7))),
    ]
    for error, name, call in cases:
        with pytest.raises(error, match=name):
            call()
    uncoalesced = torch.sparse_coo_tensor(torch.tensor([[1, 1], [0, 0]]), torch.ones(2), (6, 6))
    with pytest.raises(ValueError, match="'edge_index'.*coalesce"):
        conv(x, uncoalesced)
    conv.backend = "nope"
    with pytest.raises(ValueError, match="'backend'"):
        conv(x, ei)


@pytest.mark.skipif(not FUSED, reason="needs the fused CPU kernel")
@pytest.mark.parametrize("root_weight", [True, False])
def test_queries_only_for_attended_destinations(root_weight, monkeypatch):
    """A sampled-subgraph shape: 8 of 60 nodes receive edges. Only their queries are
    projected (once graphs this small are looked at), and values and gradients still
    equal PyG's; at the default threshold every query of so small a graph is."""
    torch.manual_seed(3)
    pyg, ours = make_pair(6, 4, heads=2, root_weight=root_weight)
    x = torch.randn(60, 6, requires_grad=True)
    edge_index = torch.stack([torch.randint(0, 60, (90,)), torch.randint(0, 8, (90,))])
    seen = []
    hook = ours.lin_query.register_forward_hook(lambda m, args, out: seen.append(args[0].size(0)))
    try:
        torch.testing.assert_close(ours(x, edge_index), pyg(x, edge_index))
    finally:
        hook.remove()
    assert seen == [60]  # below ATTENDED_MIN_ROWS: no look
    seen.clear()
    monkeypatch.setattr(graph_module, "ATTENDED_MIN_ROWS", 0)
    hook = ours.lin_query.register_forward_hook(lambda m, args, out: seen.append(args[0].size(0)))
    try:
        out = ours(x, edge_index)
    finally:
        hook.remove()
    assert seen == [int(edge_index[1].unique().numel())]
    expected = pyg(x, edge_index)
    torch.testing.assert_close(out, expected)
    weights = torch.randn_like(out)
    got = torch.autograd.grad((out * weights).sum(), [x, *ours.parameters()], allow_unused=True)
    want = torch.autograd.grad((expected * weights).sum(), [x, *pyg.parameters()],
                               allow_unused=True)
    assert_grads_close(got, want, torch.float32)
    # Most destinations attended: every query is projected, as before.
    dense = torch.stack([torch.randint(0, 60, (400,)), torch.arange(400) % 60])
    seen.clear()
    hook = ours.lin_query.register_forward_hook(lambda m, args, out: seen.append(args[0].size(0)))
    try:
        torch.testing.assert_close(ours(x, dense), pyg(x, dense))
    finally:
        hook.remove()
    assert seen == [60]
