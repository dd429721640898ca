"""``torch.compile`` without graph breaks and ``torch.export`` of the drop-in layers.

The graph preparation (the counting-sort CSR/CSC build, self-loops included) and
the fused kernels are ``torch.library`` custom ops with fake implementations, so
dynamo traces a layer call end to end.  GAT's self-loop removal keeps a
data-dependent number of edges: under ``torch.compile`` the layers mask the input's
loops instead (static shapes, the same output), so they trace without
``capture_dynamic_output_shape_ops`` (PyG's own ``GATConv`` breaks there; its tests
compile GAT with ``add_self_loops=False``); ``torch.export`` of the returned
attention handles the kept count as an unbacked symbol.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn.models import GAT as PygGAT

from pyg_attn.nn import GATConv, GATv2Conv, TransformerConv
from pyg_attn.nn.replace import replace_layers
from pyg_attn.ops import graph as graph_module
from pyg_attn.ops import select_backend

from ..graphs import random_graph

pytestmark = [
    pytest.mark.skipif(select_backend(None, torch.device("cpu")) != "cpu",
                       reason="needs the compiled CPU extension"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

LAYERS = {
    "GATConv": lambda loops: GATConv(8, 4, heads=2, add_self_loops=loops),
    "GATv2Conv": lambda loops: GATv2Conv(8, 4, heads=2, add_self_loops=loops),
    "TransformerConv": lambda loops: TransformerConv(8, 4, heads=2),
}
CASES = [(name, loops) for name in LAYERS for loops in (False, True)
         if not (name == "TransformerConv" and loops)]


def _inputs(num_nodes: int = 20, num_edges: int = 70, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, 8, generator=gen)
    edge_index = random_graph(num_nodes, num_nodes, num_edges, seed=seed, self_loops=3,
                              duplicates=2, isolated=2)
    return x, edge_index


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name,loops", CASES)
def test_no_graph_break(name, loops):
    layer = LAYERS[name](loops)
    x, edge_index = _inputs()
    explain = torch._dynamo.explain(layer)(x, edge_index)
    assert explain.graph_break_count == 0, [str(r.reason)[:200] for r in explain.break_reasons]


def test_pyg_gat_model_with_our_layers_has_no_graph_break():
    """PyG's ``test_compile_graph_breaks`` for ``models.GAT``, our layers swapped in."""
    model = PygGAT(8, 16, num_layers=2, add_self_loops=False)
    replace_layers(model)
    assert any(isinstance(m, GATConv) for m in model.modules())
    x = torch.randn(3, 8)
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    explain = torch._dynamo.explain(model)(x, edge_index)
    assert explain.graph_break_count == 0


@pytest.mark.parametrize("name,loops", CASES)
def test_fullgraph_compile_matches_eager_values_and_gradients(name, loops):
    torch.manual_seed(0)
    layer = LAYERS[name](loops)
    x, edge_index = _inputs()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    xc = x.clone().requires_grad_()
    out_c = compiled(xc, edge_index)
    xe = x.clone().requires_grad_()
    out_e = layer(xe, edge_index)
    torch.testing.assert_close(out_c, out_e, atol=1e-6, rtol=1e-5)
    upstream = torch.randn_like(out_e)
    (out_c * upstream).sum().backward()
    (out_e * upstream).sum().backward()
    torch.testing.assert_close(xc.grad, xe.grad, atol=1e-6, rtol=1e-5)


def test_compiled_transformer_projects_only_attended_queries(monkeypatch):
    """A sampled mini-batch (most destinations without incoming edges): the compiled
    layer projects the attended queries only, as eager, with equal values and
    gradients."""
    monkeypatch.setattr(graph_module, "ATTENDED_MIN_ROWS", 0)  # a graph this small too
    torch.manual_seed(0)
    layer = LAYERS["TransformerConv"](False)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(60, 8, generator=gen)
    edge_index = torch.stack([torch.randint(0, 60, (50,), generator=gen),
                              torch.randint(0, 12, (50,), generator=gen)])
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    outs, grads = [], []
    for run in (compiled, layer):
        xr = x.clone().requires_grad_()
        out = run(xr, edge_index)
        out.square().sum().backward()
        outs.append(out)
        grads.append(xr.grad)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["GATConv", "TransformerConv"])
def test_compiled_large_batch_keeps_the_row_sparse_gradient(name):
    """A batch with at least SPARSE_GRAD_MIN_ROWS nodes whose loss covers a few seed
    rows (a NeighborLoader step): the compiled layer's projections take the
    row-sparse gradient op, with no graph break and eager's gradients."""
    from pyg_attn.nn.conv.projection import SPARSE_GRAD_MIN_ROWS

    torch.manual_seed(0)
    layer = LAYERS[name](False)
    gen = torch.Generator().manual_seed(6)
    num_nodes = SPARSE_GRAD_MIN_ROWS + 100
    x = torch.randn(num_nodes, 8, generator=gen)
    edge_index = torch.stack([torch.randint(0, num_nodes, (3000,), generator=gen),
                              torch.randint(0, 64, (3000,), generator=gen)])

    def step(x: torch.Tensor) -> torch.Tensor:
        return layer(x, edge_index)[:64].square().sum()

    explain = torch._dynamo.explain(step)(x.clone().requires_grad_())
    assert explain.graph_break_count == 0, [str(r.reason)[:200] for r in explain.break_reasons]
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    grads = []
    for run in (compiled, step):
        layer.zero_grad()
        xr = x.clone().requires_grad_()
        run(xr).backward()
        grads.append([xr.grad, *(p.grad for p in layer.parameters() if p.grad is not None)])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_dynamic_batches_compile_once():
    """Mini-batches of varying size (as a NeighborLoader gives) reuse one graph."""
    layer = LAYERS["TransformerConv"](False)
    compiled = torch.compile(layer, dynamic=True, fullgraph=True, backend="aot_eager")
    counts = []
    with torch._dynamo.config.patch(error_on_recompile=False):
        for seed, (num_nodes, num_edges) in enumerate([(20, 70), (33, 120), (41, 90), (27, 200)]):
            x, edge_index = _inputs(num_nodes, num_edges, seed)
            torch.testing.assert_close(compiled(x, edge_index), layer(x, edge_index),
                                       atol=1e-6, rtol=1e-5)
            counts.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert counts[-1] == counts[0], counts  # no recompilation after the first batch


@pytest.mark.parametrize("name,loops", CASES)
def test_export_matches_eager(name, loops):
    layer = LAYERS[name](loops).eval()
    x, edge_index = _inputs()
    program = torch.export.export(layer, (x, edge_index))
    torch.testing.assert_close(program.module()(x, edge_index), layer(x, edge_index),
                               atol=1e-6, rtol=1e-5)
    x2, edge_index2 = _inputs(seed=5)  # same shapes, other values
    torch.testing.assert_close(program.module()(x2, edge_index2), layer(x2, edge_index2),
                               atol=1e-6, rtol=1e-5)


class TwoLayerGAT(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = GATConv(8, 4, heads=2)
        self.conv2 = GATConv(8, 3, heads=1, concat=False)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.elu(self.conv1(x, edge_index)), edge_index)


def test_export_two_layer_model_matches_eager():
    model = TwoLayerGAT().eval()
    x, edge_index = _inputs()
    program = torch.export.export(model, (x, edge_index))
    torch.testing.assert_close(program.module()(x, edge_index), model(x, edge_index),
                               atol=1e-6, rtol=1e-5)


def _whole_step(layer: torch.nn.Module, x: torch.Tensor, edge_index: torch.Tensor):
    """``(step, compiled step)`` of the loss ``layer(x, edge_index).square().sum()``
    as a function of ``x``, once dynamo has traced the step without a graph break."""

    def step(x: torch.Tensor) -> torch.Tensor:
        return layer(x, edge_index).square().sum()

    explain = torch._dynamo.explain(step)(x)
    assert explain.graph_break_count == 0, [str(r.reason)[:200] for r in explain.break_reasons]
    return step, torch.compile(step, fullgraph=True, backend="aot_eager")


DROPOUT_LAYERS = {
    "GATConv": lambda: GATConv(8, 4, heads=2, add_self_loops=False, dropout=0.4),
    "GATv2Conv": lambda: GATv2Conv(8, 4, heads=2, add_self_loops=False, dropout=0.4),
    "TransformerConv": lambda: TransformerConv(8, 4, heads=2, dropout=0.4),
}


@pytest.mark.parametrize("name", DROPOUT_LAYERS)
def test_training_step_with_attention_dropout_compiles_whole(name):
    """The dropout seed is a tensor (no ``.item()``): a training step with attention
    dropout has no graph break without ``capture_scalar_outputs``, and for one
    ``torch.manual_seed`` the compiled step draws the eager step's masks."""
    torch.manual_seed(0)
    layer = DROPOUT_LAYERS[name]().train()
    x, edge_index = _inputs()
    with torch._dynamo.config.patch(capture_scalar_outputs=False):
        step, compiled = _whole_step(layer, x, edge_index)
        compiled(x)  # compiles
        losses, grads = [], []
        for run in (compiled, step, compiled):
            torch.manual_seed(1)
            xr = x.clone().requires_grad_()
            loss = run(xr)
            loss.backward()
            losses.append(loss.detach())
            grads.append(xr.grad)
        torch.manual_seed(2)
        other = compiled(x).detach()
    for loss, grad in zip(losses[1:], grads[1:]):
        torch.testing.assert_close(loss, losses[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(grad, grads[0], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(other, losses[0])  # another seed, other masks


def test_per_head_input_dropout_compiles_whole():
    """``dropout_scheme="per_head"`` on a bag-of-words input: eager mode projects
    its non-zeros only, a choice made from the data; traced, the layer takes the
    dense per-head product (no ``.item()``), so a training step has no graph
    break, and drops (its loss is not the evaluation-mode one, which equals eager's)."""
    torch.manual_seed(0)
    layer = GATConv(8, 4, heads=2, input_dropout=0.5, dropout_scheme="per_head")
    x, edge_index = _inputs()
    x = x * (torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) < 0.05)
    with torch._dynamo.config.patch(capture_scalar_outputs=False):
        step, compiled = _whole_step(layer, x, edge_index)
        train_loss = compiled(x)
        train_loss.backward()
        assert layer.lin.weight.grad is not None
        assert torch.isfinite(layer.lin.weight.grad).all()
        layer.eval()
        eval_loss = compiled(x)
    torch.testing.assert_close(eval_loss, step(x), atol=1e-6, rtol=1e-5)
    assert not torch.allclose(train_loss.detach(), eval_loss)
