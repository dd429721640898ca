"""Triton fused attention vs the reference backend: values, attention, gradients.

Runs on CPU tensors under Triton's interpreter (see ``conftest.py``), or on CUDA.
"""
from __future__ import annotations

import pytest
import torch

from pyg_attn.ops import graph_attention, prepare

from ..graphs import random_graph
from ..test_ops_attention import TOL, call, make_inputs
from .graphs import GRAPHS, mixed_graph

HALF_TOL = dict(atol=1e-2, rtol=1e-2)


def on(device: torch.device, inputs: dict) -> dict:
    """``inputs`` as fresh leaves on ``device``."""
    return {k: v.detach().to(device).requires_grad_() for k, v in inputs.items()}


def run(kind: str, inputs: dict, edge_index, backend: str, **options):
    """``(out, alpha, grads)`` of a fixed random loss of both outputs, on the
    inputs' device (the same dropout seed for every backend)."""
    torch.manual_seed(1234)
    outputs = call(kind, inputs, edge_index, backend=backend, return_attention=True, **options)
    gen = torch.Generator().manual_seed(7)
    loss = sum((t * torch.randn(t.shape, generator=gen).to(t)).sum() for t in outputs)
    return (*outputs, torch.autograd.grad(loss, list(inputs.values()), allow_unused=True))


def compare(kind: str, inputs: dict, edge_index: torch.Tensor, tol: dict, **options) -> None:
    """Output, attention and every input's gradient: triton vs reference."""
    expected = run(kind, inputs, edge_index, "reference", **options)
    actual = run(kind, inputs, edge_index, "triton", **options)
    assert actual[0].dtype == expected[0].dtype
    torch.testing.assert_close(actual[0], expected[0], **tol)
    torch.testing.assert_close(actual[1], expected[1], **tol)
    for name, g_ref, g_tri in zip(inputs, expected[2], actual[2]):
        assert (g_ref is None) == (g_tri is None), name
        if g_ref is not None:
            torch.testing.assert_close(g_tri, g_ref, **tol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("kind", ["dot", "gat", "gatv2"])
def test_edge_terms_mask_and_dropout_match_reference(device, graph, kind):
    num_src, num_dst, edge_index = GRAPHS[graph]()
    num_edges = edge_index.size(1)
    inputs = on(device, make_inputs(kind, num_src, num_dst, num_edges, torch.float32,
                                    extras=True))
    mask = torch.rand(num_edges, generator=torch.Generator().manual_seed(3)) > 0.3
    compare(kind, inputs, edge_index.to(device), TOL[torch.float32],
            edge_mask=mask.to(device), dropout=0.3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("kind", ["dot", "gat", "gatv2"])
def test_plain_scores_match_reference(device, kind, dtype):
    num_src, num_dst, edge_index = mixed_graph()
    inputs = on(device, make_inputs(kind, num_src, num_dst, edge_index.size(1), dtype,
                                    extras=False))
    compare(kind, inputs, edge_index.to(device),
            HALF_TOL if dtype == torch.float16 else TOL[torch.float32])


def test_float64_accumulates_in_float64(device):
    num_src, num_dst, edge_index = mixed_graph()
    inputs = on(device, make_inputs("dot", num_src, num_dst, edge_index.size(1), torch.float64,
                                    extras=True))
    compare("dot", inputs, edge_index.to(device), TOL[torch.float64], dropout=0.2)


def test_dropout_mask_is_the_cpu_backends(device):
    """Same seed, same mask: the fused CPU kernel and Triton give one output."""
    edge_index = random_graph(15, 15, 60, seed=9)
    q, k, v = (torch.randn(15, 2, 4, generator=torch.Generator().manual_seed(s))
               for s in range(3))
    torch.manual_seed(5)
    cpu = graph_attention(q, k, v, edge_index, dropout=0.5, backend="cpu")
    torch.manual_seed(5)
    tri = graph_attention(q.to(device), k.to(device), v.to(device), edge_index.to(device),
                          dropout=0.5, backend="triton")
    torch.testing.assert_close(tri.cpu(), cpu, **TOL[torch.float32])
    no_drop = graph_attention(q, k, v, edge_index, backend="cpu")
    assert not torch.allclose(cpu, no_drop)


def test_fully_masked_destination_and_empty_heads_are_zero(device):
    edge_index = torch.tensor([[0, 1, 2, 0], [1, 1, 0, 2]], device=device)
    mask = torch.tensor([False, False, True, True], device=device)
    q, k, v = (torch.randn(3, 2, 4, device=device, requires_grad=True) for _ in range(3))
    bias = torch.tensor([[0.0, float("-inf")]] * 4, device=device)
    out, alpha = graph_attention(q, k, v, edge_index, edge_mask=mask, edge_bias=bias,
                                 backend="triton", return_attention=True)
    assert torch.all(out[1] == 0) and torch.all(alpha[:2] == 0)
    assert torch.all(out[:, 1] == 0) and torch.all(alpha[:, 1] == 0)
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_one_item_per_row_gives_the_same_result_as_split_rows(device):
    """The chunk size changes the work split, not the result."""
    from pyg_attn.ops.triton.fused_attention import fused_attention_triton

    num_src, num_dst, edge_index = mixed_graph()
    graph = prepare(edge_index.to(device), (num_src, num_dst))
    q, k, v = (torch.randn(n, 2, 3, device=device) for n in (num_dst, num_src, num_src))
    args = (0, graph, q, k, v, None, None, None, None, None, None, 0.5, 0.0, 0.0, True)
    whole = fused_attention_triton(*args, chunk=1_000)
    split = fused_attention_triton(*args, chunk=4)
    for a, b in zip(whole, split):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_torch_compile_traces_the_op(device):
    """The custom op traces whole (fake implementation) and differentiates."""
    from pyg_attn.ops.spec import TRITON_OP
    from pyg_attn.ops.triton.fused_attention import triton_fused_attention
    from pyg_attn.ops.triton.work import triton_graph

    graph = prepare(random_graph(8, 8, 20, seed=4).to(device), 8)
    tensors = TRITON_OP.graph_tensors(triton_graph(graph, 4))
    q, k, v = (torch.randn(8, 2, 4, device=device, requires_grad=True) for _ in range(3))

    def fn(q, k, v):
        out, _, _ = triton_fused_attention(0, *tensors, q, k, v, None, None, None, None, None,
                                           None, 0.5, 0.0, 0.0, False)
        return out.relu().sum()

    got = torch.compile(fn, fullgraph=True, backend="aot_eager")(q, k, v)
    torch.testing.assert_close(got, fn(q, k, v))
    got.backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()

    def layer_fn(q, k, v):
        return graph_attention(q, k, v, graph, backend="triton").sum()

    torch.testing.assert_close(torch.compile(layer_fn, backend="aot_eager")(q, k, v),
                               layer_fn(q, k, v))


@pytest.mark.parametrize("kind", ["dot", "gatv2"])
def test_eager_function_equals_the_custom_op(device, kind, monkeypatch):
    """Outside ``torch.compile`` the launcher runs :class:`EagerTritonAttention`
    (no dispatcher); its outputs and attention equal the custom op's, and so do
    its gradients up to the order of atomic additions, with edge terms, a mask
    and dropout."""
    from pyg_attn.ops.triton import fused_attention as module

    _, _, edge_index = mixed_graph()
    inputs = on(device, make_inputs(kind, 20, 20, edge_index.size(1), torch.float32,
                                    extras=True))
    edge_index = edge_index.to(device)
    mask = (torch.rand(edge_index.size(1), generator=torch.Generator().manual_seed(2)) > 0.2)
    options = dict(edge_mask=mask.to(device), dropout=0.3)
    calls = []
    apply = module.EagerTritonAttention.apply
    monkeypatch.setattr(module.EagerTritonAttention, "apply",
                        lambda *args: calls.append("eager") or apply(*args))
    eager = run(kind, inputs, edge_index, "triton", **options)
    assert calls == ["eager"]
    monkeypatch.setattr(module, "outside_compile", lambda _function, op, *args: op(*args))
    op = run(kind, inputs, edge_index, "triton", **options)
    assert calls == ["eager"]
    for a, b in zip(eager[:2], op[:2]):
        assert torch.equal(a, b)
    for g_eager, g_op in zip(eager[2], op[2]):
        assert (g_eager is None) == (g_op is None)
        if g_eager is not None:  # a GPU adds split rows' gradients atomically, in any order
            torch.testing.assert_close(g_eager, g_op, atol=1e-6, rtol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["dot", "gat", "gatv2"])
def test_bfloat16_on_gpu(kind):
    num_src, num_dst, edge_index = mixed_graph()
    inputs = on(torch.device("cuda"), make_inputs(kind, num_src, num_dst, edge_index.size(1),
                                                  torch.bfloat16, extras=True))
    compare(kind, inputs, edge_index.cuda(), dict(atol=5e-2, rtol=5e-2), dropout=0.1)


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["dot", "gat", "gatv2"])
def test_large_power_law_graph_with_a_big_hub_on_gpu(kind, monkeypatch):
    from pyg_attn.ops.triton import fused_attention

    monkeypatch.setattr(fused_attention, "CHUNK_SIZE", 1024)
    edge_index = random_graph(20_000, 20_000, 200_000, seed=31, hub=7, hub_degree=100_000,
                              self_loops=500, duplicates=1000, isolated=100).cuda()
    inputs = on(torch.device("cuda"), make_inputs(kind, 20_000, 20_000, edge_index.size(1),
                                                  torch.float32, extras=True))
    compare(kind, inputs, edge_index, dict(atol=1e-4, rtol=1e-3), dropout=0.1)


@pytest.mark.parametrize("kind", ["dot", "gatv2"])
def test_gradcheck_float64(device, kind):
    """Gradients of every input (edge terms included) against finite differences."""
    edge_index = random_graph(5, 5, 12, seed=11, self_loops=1, duplicates=1, isolated=1)
    inputs = on(device, make_inputs(kind, 5, 5, edge_index.size(1), torch.float64,
                                    extras=True))

    def fn(*tensors):
        return call(kind, dict(zip(inputs, tensors)), edge_index.to(device), backend="triton",
                    return_attention=True)

    assert torch.autograd.gradcheck(fn, tuple(inputs.values()), atol=1e-8, fast_mode=True)


@pytest.mark.parametrize("wanted", ["query", "value"])
def test_gradient_of_one_input_only(device, wanted):
    """Kernels skip the gradients nobody asked for and still get the others right."""
    num_src, num_dst, edge_index = mixed_graph()
    inputs = make_inputs("dot", num_src, num_dst, edge_index.size(1), torch.float32,
                         extras=False)
    tensors = {k: v.detach().to(device).requires_grad_(k == wanted) for k, v in inputs.items()}
    grads = []
    for backend in ("reference", "triton"):
        out = graph_attention(*tensors.values(), edge_index.to(device), backend=backend)
        grads.append(torch.autograd.grad(out.square().sum(), tensors[wanted]))
    torch.testing.assert_close(grads[1], grads[0], **TOL[torch.float32])


def test_no_destinations(device):
    q = torch.empty(0, 2, 3, device=device)
    k = torch.randn(4, 2, 3, device=device)
    out = graph_attention(q, k, k, torch.empty(2, 0, dtype=torch.long, device=device),
                          backend="triton")
    assert out.shape == (0, 2, 3)
