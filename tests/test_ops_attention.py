"""Fused CPU backend vs the reference: values, gradients, dropout, edge cases."""
from __future__ import annotations

import pytest
import torch

from pyg_attn.ops import gat_attention, gatv2_attention, graph_attention, prepare

from .graphs import random_graph

TOL = {torch.float32: dict(atol=2e-5, rtol=1e-4), torch.float64: dict(atol=1e-12, rtol=1e-10)}
HEADS, CHANNELS, VALUE_CHANNELS = 3, 5, 4


def make_inputs(kind: str, num_src: int, num_dst: int, num_edges: int, dtype: torch.dtype,
                *, extras: bool, seed: int = 0, heads: int = HEADS, channels: int = CHANNELS,
                value_channels: int = VALUE_CHANNELS) -> dict:
    """Random leaf inputs for one score kind (with edge terms when ``extras``)."""
    gen = torch.Generator().manual_seed(seed)

    def leaf(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_()

    H, C, Cv = heads, channels, value_channels
    if kind == "dot":
        inputs = dict(query=leaf(num_dst, H, C), key=leaf(num_src, H, C), value=leaf(num_src, H, Cv))
        if extras:
            inputs.update(edge_bias=leaf(num_edges, H), edge_key=leaf(num_edges, H, C),
                          edge_value=leaf(num_edges, H, Cv))
    elif kind == "gat":
        inputs = dict(alpha_src=leaf(num_src, H), alpha_dst=leaf(num_dst, H),
                      value=leaf(num_src, H, Cv))
        if extras:
            inputs.update(edge_logit=leaf(num_edges, H))
    else:
        inputs = dict(x_src=leaf(num_src, H, C), x_dst=leaf(num_dst, H, C), att=leaf(H, C))
        if extras:
            inputs.update(edge_feat=leaf(num_edges, H, C))
    return inputs


OPS = {"dot": graph_attention, "gat": gat_attention, "gatv2": gatv2_attention}


def run(kind: str, inputs: dict, edge_index, backend: str, loss_rows=None,
        alpha_loss: bool = True, **options):
    """Output, attention and the gradient of every input that requires one, of a
    fixed random loss: over the rows ``loss_rows`` of the output (a bool mask; all
    rows if ``None``), plus a term in the attention if ``alpha_loss``."""
    torch.manual_seed(1234)  # same dropout seed for every backend
    out, alpha = call(kind, inputs, edge_index, backend=backend, return_attention=True,
                      **options)
    gen = torch.Generator().manual_seed(7)
    weight = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.dtype)
    if loss_rows is not None:
        weight[~loss_rows] = 0
    loss = (out * weight).sum()
    if alpha_loss:
        loss = loss + (alpha * torch.randn(alpha.shape, generator=gen,
                                           dtype=torch.float64).to(alpha.dtype)).sum()
    wanted = [tensor for tensor in inputs.values() if tensor.requires_grad]
    grads = torch.autograd.grad(loss, wanted, allow_unused=True)
    return out, alpha, grads


def call(kind: str, inputs: dict, edge_index, **options):
    if kind == "dot":
        rest = {k: v for k, v in inputs.items() if k not in ("query", "key", "value")}
        return graph_attention(inputs["query"], inputs["key"], inputs["value"], edge_index,
                               **rest, **options)
    positional = list(inputs.values())[:3]
    rest = dict(list(inputs.items())[3:])
    return OPS[kind](*positional, edge_index, **rest, **options)


def assert_close_grads(expected, actual, dtype):
    """Gradients agree to TOL, the absolute part scaled by the gradient's magnitude
    (sums over hundreds of edges, e.g. ``att``'s, round at that scale in float32)."""
    for g_ref, g_cpu in zip(expected, actual):
        if g_ref is None:
            assert g_cpu is None or torch.count_nonzero(g_cpu) == 0
            continue
        magnitude = max(1.0, g_ref.abs().max().item()) if g_ref.numel() else 1.0
        tol = dict(TOL[dtype], atol=TOL[dtype]["atol"] * magnitude)
        torch.testing.assert_close(g_cpu, g_ref, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["dot", "gat", "gatv2"])
@pytest.mark.parametrize("extras", [False, True])
def test_cpu_matches_reference(graph, kind, dtype, extras):
    _, num_src, num_dst, edge_index = graph
    inputs = make_inputs(kind, num_src, num_dst, edge_index.size(1), dtype, extras=extras)
    ref = run_both(kind, inputs, edge_index, dtype)
    assert ref[0].shape[0] == num_dst


def run_both(kind, inputs, edge_index, dtype, **options):
    out_ref, alpha_ref, grads_ref = run(kind, inputs, edge_index, "reference", **options)
    out_cpu, alpha_cpu, grads_cpu = run(kind, inputs, edge_index, "cpu", **options)
    torch.testing.assert_close(out_cpu, out_ref, **TOL[dtype])
    torch.testing.assert_close(alpha_cpu, alpha_ref, **TOL[dtype])
    assert_close_grads(grads_ref, grads_cpu, dtype)
    return out_ref, alpha_ref, grads_ref


@pytest.mark.parametrize("kind", ["dot", "gat", "gatv2"])
@pytest.mark.parametrize("channels", [8, 16, 32, 64])
@pytest.mark.parametrize("extras", [False, True])
@pytest.mark.parametrize("some_rows", [False, True])
@pytest.mark.parametrize("heads", [8, 10])
def test_cpu_fixed_width_kernels_match_reference(kind, channels, extras, some_rows, heads):
    """The kernel's float32 variants compiled for C in {8, 16, 32, 64} (GAT: values of
    that width), with edge terms, a mask, dropout and returned attention (or, with
    ``some_rows``, a loss on half the rows only); 8 heads = the variants compiled for
    that head count too, 10 heads = one block of eight summed together (AVX2) and two
    left over."""
    edge_index = random_graph(60, 40, 400, seed=channels, hub=0, hub_degree=50, duplicates=5, isolated=3)
    num_edges = edge_index.size(1)
    inputs = make_inputs(kind, 60, 40, num_edges, torch.float32, extras=extras, heads=heads,
                         channels=channels, value_channels=channels)
    mask = torch.rand(num_edges, generator=torch.Generator().manual_seed(5)) > 0.2
    some = dict(loss_rows=torch.arange(40) % 2 == 0, alpha_loss=False) if some_rows else {}
    run_both(kind, inputs, edge_index, torch.float32, edge_mask=mask,
             dropout=0.3 if extras else 0.0, **some)


@pytest.mark.parametrize("kind", ["dot", "gat", "gatv2"])
@pytest.mark.parametrize("channels", [1, 7, 8])
@pytest.mark.parametrize("extras", [False, True])
@pytest.mark.parametrize("some_rows", [False, True])
def test_cpu_single_head_kernels_match_reference(kind, channels, extras, some_rows):
    """One head (GAT's output layer: one head over the classes): float32 widths
    outside the fixed ones take the variants compiled for a single head; 8 takes
    the fixed-width one.  With edge terms, a mask, dropout and returned attention
    (or a loss on half the rows only)."""
    edge_index = random_graph(50, 30, 300, seed=channels, hub=1, hub_degree=40, duplicates=4, isolated=3)
    num_edges = edge_index.size(1)
    inputs = make_inputs(kind, 50, 30, num_edges, torch.float32, extras=extras, heads=1,
                         channels=channels, value_channels=channels)
    mask = torch.rand(num_edges, generator=torch.Generator().manual_seed(6)) > 0.2
    some = dict(loss_rows=torch.arange(30) % 2 == 0, alpha_loss=False) if some_rows else {}
    run_both(kind, inputs, edge_index, torch.float32, edge_mask=mask,
             dropout=0.4 if extras else 0.0, **some)


def as_wider_rows(t: torch.Tensor, pad: int) -> torch.Tensor:
    """``t``'s values as a view of a wider leaf buffer: each row's block contiguous,
    the rows ``pad`` elements further apart than their size (as GATConv's joint
    product gives its features and logits)."""
    flat = t.detach().reshape(t.size(0), -1)
    buffer = torch.cat([flat.new_zeros(t.size(0), pad), flat], dim=1).requires_grad_()
    return buffer[:, pad:].view(t.shape)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["dot", "gat", "gatv2"])
@pytest.mark.parametrize("heads", [3, 8])
def test_cpu_kernel_reads_rows_of_a_wider_buffer(kind, dtype, heads):
    """Node features whose rows lie further apart than their size (views into a
    wider buffer) are read in place by the CPU kernel, with the outputs and the
    gradients of contiguous copies; so is a broadcast row (stride 0).  A view
    whose rows are not contiguous (a transposed one) is copied first."""
    from pyg_attn.ops.attention import rows_contiguous

    edge_index = random_graph(30, 20, 150, seed=4, hub=0, hub_degree=25, duplicates=3, isolated=2)
    inputs = make_inputs(kind, 30, 20, edge_index.size(1), dtype, extras=True, heads=heads,
                         channels=8, value_channels=8)
    node_features = list(inputs)[:3] if kind != "gatv2" else ["x_src", "x_dst"]
    strided = dict(inputs)
    for name in node_features:
        view = as_wider_rows(inputs[name], pad=5)
        assert not view.is_contiguous() and rows_contiguous(view.view(view.size(0), heads, -1))
        strided[name] = view
    graph = prepare(edge_index, num_nodes=(30, 20))
    expected = run(kind, inputs, graph, "cpu", dropout=0.2)
    actual = run(kind, strided, graph, "cpu", dropout=0.2)
    for e, a in zip(expected[:2], actual[:2]):
        torch.testing.assert_close(a, e, **TOL[dtype])
    assert_close_grads(expected[2], actual[2], dtype)

    value = inputs["value"] if kind != "gatv2" else inputs["x_src"]
    transposed = value.detach().transpose(1, 2).contiguous().transpose(1, 2)
    assert not rows_contiguous(transposed)
    broadcast = value.detach()[:1].expand_as(value)
    for other in (transposed, broadcast):
        changed = dict(inputs, **{"value" if kind != "gatv2" else "x_src": other})
        reference = run(kind, dict(changed, **{k: v.contiguous() for k, v in changed.items()}),
                        graph, "reference", dropout=0.2)
        torch.testing.assert_close(run(kind, changed, graph, "cpu", dropout=0.2)[0],
                                   reference[0], **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["dot", "gat", "gatv2"])
@pytest.mark.parametrize("extras", [False, True])
@pytest.mark.parametrize("alpha_loss", [False, True])
def test_loss_on_some_rows_matches_reference(graph, kind, dtype, extras, alpha_loss):
    """A loss on a third of the destinations only (as on a NeighborLoader batch's
    seed nodes): the backward skips the edges of rows whose output gradient is
    zero unless the attention carries a gradient too; both must match."""
    _, num_src, num_dst, edge_index = graph
    num_edges = edge_index.size(1)
    inputs = make_inputs(kind, num_src, num_dst, num_edges, dtype, extras=extras)
    loss_rows = torch.arange(num_dst) % 3 == 1
    mask = torch.rand(num_edges, generator=torch.Generator().manual_seed(3)) > 0.2
    out, _, grads = run_both(kind, inputs, edge_index, dtype, loss_rows=loss_rows,
                             alpha_loss=alpha_loss, edge_mask=mask,
                             dropout=0.3 if extras else 0.0)
    if not alpha_loss and kind == "dot" and num_edges:
        # Rows outside the loss get no query gradient, and sources whose edges all
        # end outside it get no key or value gradient.
        assert torch.count_nonzero(grads[0][~loss_rows]) == 0
        reached = torch.zeros(num_src, dtype=torch.bool)
        reached[edge_index[0][loss_rows[edge_index[1]]]] = True
        assert torch.count_nonzero(grads[2][~reached]) == 0
        assert torch.count_nonzero(grads[2][reached]) > 0


SOME_GRADIENTS = {
    "gat": [("alpha_src",), ("alpha_dst",), ("value",), ("edge_logit",),
            ("alpha_dst", "edge_logit"), ("alpha_src", "value")],
    "dot": [("query",), ("key",), ("value",), ("edge_bias",), ("query", "edge_bias"),
            ("key", "value")],
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind, wanted", [(kind, wanted) for kind, subsets in SOME_GRADIENTS.items()
                                          for wanted in subsets])
def test_gradients_of_some_inputs_match_reference(graph, dtype, kind, wanted):
    """Without an attention gradient, GAT's backward stores each edge's logit
    gradient once (in the edge-logit gradient when that is wanted, else in a
    scratch buffer) and sums the destination gradient from it; dot products take
    the two-pass backward: every subset of wanted gradients must come out as the
    reference's, with a mask and dropout."""
    _, num_src, num_dst, edge_index = graph
    num_edges = edge_index.size(1)
    inputs = make_inputs(kind, num_src, num_dst, num_edges, dtype, extras=True)
    inputs = {k: v for k, v in inputs.items() if k not in ("edge_key", "edge_value")}
    for name, tensor in inputs.items():
        tensor.requires_grad_(name in wanted)
    mask = torch.rand(num_edges, generator=torch.Generator().manual_seed(4)) > 0.2
    run_both(kind, inputs, edge_index, dtype, alpha_loss=False, edge_mask=mask, dropout=0.25)


@pytest.mark.parametrize("kind", ["dot", "gat", "gatv2"])
def test_mask_and_dropout_match_reference(graph, kind):
    _, num_src, num_dst, edge_index = graph
    num_edges = edge_index.size(1)
    inputs = make_inputs(kind, num_src, num_dst, num_edges, torch.float64, extras=True)
    mask = torch.rand(num_edges, generator=torch.Generator().manual_seed(3)) > 0.3
    run_both(kind, inputs, edge_index, torch.float64, edge_mask=mask, dropout=0.4)


def test_attention_rows_sum_to_one_or_zero(graph):
    _, num_src, num_dst, edge_index = graph
    inputs = make_inputs("dot", num_src, num_dst, edge_index.size(1), torch.float64, extras=False)
    out, alpha = call("dot", inputs, edge_index, return_attention=True)
    sums = torch.zeros(num_dst, HEADS, dtype=alpha.dtype).index_add_(0, edge_index[1], alpha)
    has_edge = torch.zeros(num_dst, dtype=torch.bool)
    has_edge[edge_index[1]] = True
    torch.testing.assert_close(sums[has_edge], torch.ones_like(sums[has_edge]))
    assert torch.all(sums[~has_edge] == 0)
    assert torch.all(out[~has_edge] == 0)
    assert torch.all((alpha >= 0) & (alpha <= 1))


def test_fully_masked_destination_gets_zeros_not_nan():
    edge_index = torch.tensor([[0, 1, 2, 0], [1, 1, 0, 2]])
    mask = torch.tensor([False, False, True, True])
    q, k, v = (torch.randn(3, 2, 4, requires_grad=True) for _ in range(3))
    for backend in ("reference", "cpu"):
        out, alpha = graph_attention(q, k, v, edge_index, edge_mask=mask, backend=backend,
                                     return_attention=True)
        assert torch.all(out[1] == 0) and torch.all(alpha[:2] == 0)
        out.sum().backward()
        assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_hub_of_ten_thousand_edges_float32():
    edge_index = torch.cat([torch.stack([torch.randint(0, 500, (12000,)),
                                         torch.zeros(12000, dtype=torch.long)]),
                            torch.randint(0, 500, (2, 2000))], dim=1)
    inputs = make_inputs("dot", 500, 500, edge_index.size(1), torch.float32, extras=False)
    inputs64 = {k: v.detach().double().requires_grad_() for k, v in inputs.items()}
    out32, _, grads32 = run("dot", inputs, edge_index, "cpu")
    out64, _, grads64 = run("dot", inputs64, edge_index, "reference")
    torch.testing.assert_close(out32.double(), out64, atol=1e-5, rtol=1e-4)
    for g32, g64 in zip(grads32, grads64):
        # float32 sums over thousands of edges: compare relative to the magnitude.
        err = (g32.double() - g64).abs().max() / g64.abs().max()
        assert err < 1e-5


@pytest.mark.parametrize("kind", ["dot", "gat", "gatv2"])
def test_gradcheck_cpu_float64(kind):
    edge_index = random_graph(8, 8, 20, seed=11, self_loops=2, duplicates=2, isolated=1)
    inputs = make_inputs(kind, 8, 8, edge_index.size(1), torch.float64, extras=True)

    def fn(*tensors):
        out, alpha = call(kind, dict(zip(inputs, tensors)), edge_index, backend="cpu",
                          return_attention=True)
        return out, alpha

    assert torch.autograd.gradcheck(fn, tuple(inputs.values()), atol=1e-8)


def test_gradgradcheck_reference_and_clear_error_on_cpu():
    edge_index = torch.tensor([[0, 1, 2, 2], [1, 2, 0, 1]])
    q, k, v = (torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))

    def ref(q, k, v):
        return graph_attention(q, k, v, edge_index, backend="reference")

    assert torch.autograd.gradgradcheck(ref, (q, k, v))
    out = graph_attention(q, k, v, edge_index, backend="cpu")
    (grad_q,) = torch.autograd.grad(out.sum(), q, create_graph=False)
    assert grad_q.shape == q.shape
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(out.sum(), q, create_graph=True)


def test_dropout_reproducible_and_shared_by_backends():
    edge_index = random_graph(30, 30, 150, seed=9)
    q, k, v = (torch.randn(30, 2, 4) for _ in range(3))
    outs = []
    for backend in ("cpu", "cpu", "reference"):
        torch.manual_seed(5)
        outs.append(graph_attention(q, k, v, edge_index, dropout=0.5, backend=backend))
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    torch.testing.assert_close(outs[0], outs[2])
    torch.manual_seed(6)
    other = graph_attention(q, k, v, edge_index, dropout=0.5)
    assert not torch.allclose(other, outs[0])
    no_drop = graph_attention(q, k, v, edge_index)
    evaluated = graph_attention(q, k, v, edge_index, dropout=0.5, training=False)
    torch.testing.assert_close(evaluated, no_drop, atol=0, rtol=0)


def test_dropout_does_not_change_reported_attention():
    edge_index = torch.randint(0, 20, (2, 80))
    q, k, v = (torch.randn(20, 2, 4) for _ in range(3))
    _, alpha = graph_attention(q, k, v, edge_index, return_attention=True)
    _, alpha_drop = graph_attention(q, k, v, edge_index, dropout=0.7, return_attention=True)
    torch.testing.assert_close(alpha, alpha_drop, atol=0, rtol=0)


def test_deterministic_across_runs_and_thread_counts():
    edge_index = random_graph(300, 300, 3000, seed=12, hub=3, hub_degree=2000)
    inputs = make_inputs("gatv2", 300, 300, edge_index.size(1), torch.float32, extras=True)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            results.append(run("gatv2", inputs, edge_index, "cpu", dropout=0.2))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0][:2] + tuple(results[0][2]), other[:2] + tuple(other[2])):
            assert torch.equal(a, b)


def test_single_head_two_dimensional_inputs():
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 1]])
    q, k, v = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 6)
    out, alpha = graph_attention(q, k, v, edge_index, return_attention=True)
    assert out.shape == (3, 6) and alpha.shape == (3,)
    full = graph_attention(q[:, None], k[:, None], v[:, None], edge_index)
    torch.testing.assert_close(out, full[:, 0])


def test_scale_default_and_unscaled():
    edge_index = torch.tensor([[0, 1], [2, 2]])
    q, k, v = torch.randn(3, 1, 4), torch.randn(3, 1, 4), torch.randn(3, 1, 2)
    _, alpha = graph_attention(q, k, v, edge_index, return_attention=True)
    _, alpha1 = graph_attention(q, k, v, edge_index, scale=1.0, return_attention=True)
    s = (q[2] * k[:2]).sum(-1)
    torch.testing.assert_close(alpha, torch.softmax(s / 2.0, 0))
    torch.testing.assert_close(alpha1, torch.softmax(s, 0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_accumulate_in_float32(dtype):
    edge_index = random_graph(50, 50, 400, seed=13)
    q, k, v = (torch.randn(50, 2, 8) for _ in range(3))
    expected = graph_attention(q, k, v, edge_index, backend="reference")
    qs, ks, vs = (t.to(dtype).requires_grad_() for t in (q, k, v))
    out = graph_attention(qs, ks, vs, edge_index)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=3e-2)
    out.float().sum().backward()
    assert qs.grad.dtype == dtype and torch.isfinite(qs.grad.float()).all()


def test_autocast_bfloat16():
    edge_index = torch.randint(0, 30, (2, 120))
    lin = torch.nn.Linear(8, 3 * 2 * 4)
    x = torch.randn(30, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, k, v = lin(x).view(30, 3, 2, 4).unbind(1)
        out = graph_attention(q, k, v, edge_index)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()


def test_prepared_graph_equals_edge_index_and_rebuilds_order():
    edge_index = random_graph(20, 20, 70, seed=14, duplicates=5)
    graph = prepare(edge_index, num_nodes=20)
    assert torch.equal(graph.edge_index, edge_index)
    q, k, v = (torch.randn(20, 2, 3) for _ in range(3))
    a = graph_attention(q, k, v, edge_index, return_attention=True)
    b = graph_attention(q, k, v, graph, return_attention=True)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="prepared"):
        graph_attention(torch.randn(21, 2, 3), torch.randn(21, 2, 3), torch.randn(21, 2, 3), graph)


def test_torch_compile_traces_the_op():
    edge_index = torch.randint(0, 12, (2, 40))
    graph = prepare(edge_index, 12)
    q, k, v = (torch.randn(12, 2, 4, requires_grad=True) for _ in range(3))
    from pyg_attn.ops.library import fused_attention
    from pyg_attn.ops.score_kinds import KIND_IDS

    def fn(q, k, v):
        out, _, _ = fused_attention(KIND_IDS["dot"], graph.rowptr, graph.col, graph.perm,
                                    graph.colptr, graph.csc_row, graph.csc_edge,
                                    q, k, v, None, None, None, None, None, None, 0.5, 0.0,
                                    0.0, False)
        return out.relu().sum()

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    expected = fn(q, k, v)
    got = compiled(q, k, v)
    torch.testing.assert_close(got, expected)
    got.backward()
    assert q.grad is not None

    def layer_fn(q, k, v):
        return graph_attention(q, k, v, graph).sum()

    torch.testing.assert_close(torch.compile(layer_fn, backend="aot_eager")(q, k, v),
                               layer_fn(q, k, v))


@pytest.mark.parametrize("sort_by", [None, "row", "col"])
def test_pyg_edge_index_input_reuses_its_csr(sort_by):
    from torch_geometric import EdgeIndex

    from pyg_attn.ops.graph_build import as_prepared

    edge_index = random_graph(30, 20, 120, seed=15, duplicates=4, isolated=3)
    wrapped = EdgeIndex(edge_index, sparse_size=(30, 20))
    if sort_by is not None:
        wrapped, _ = wrapped.sort_by(sort_by)
        edge_index = wrapped.as_tensor()
    inputs = make_inputs("dot", 30, 20, edge_index.size(1), torch.float64, extras=True)
    expected = run("dot", inputs, edge_index, "reference")
    for backend in ("cpu", "reference"):
        got = run("dot", inputs, wrapped, backend)
        torch.testing.assert_close(got[0], expected[0])
        torch.testing.assert_close(got[1], expected[1])
        assert_close_grads(expected[2], got[2], torch.float64)
    plain = as_prepared(edge_index, 30, 20)
    reused = as_prepared(wrapped, 30, 20)
    # Same pointers; within a row PyG may order edges differently, but consistently.
    assert torch.equal(reused.rowptr, plain.rowptr) and torch.equal(reused.colptr, plain.colptr)
    src, dst = edge_index
    for name in ("col", "perm", "csc_row", "csc_edge", "csc_slot"):
        assert getattr(reused, name).dtype == torch.int32, name  # int32 where it fits
    assert torch.equal(reused.col.long(), src[reused.perm])
    assert torch.equal(torch.sort(reused.perm).values.long(), torch.arange(edge_index.size(1)))
    assert bool((dst[reused.perm].diff() >= 0).all())
    csc_pos = torch.empty_like(reused.csc_slot)
    csc_pos[reused.csc_slot] = torch.arange(edge_index.size(1), dtype=csc_pos.dtype)
    assert torch.equal(reused.csc_row.long(), dst[reused.perm][csc_pos])
    assert torch.equal(reused.csc_edge, reused.perm[csc_pos])
    assert bool((reused.col[csc_pos].diff() >= 0).all())


@pytest.mark.parametrize("kind", ["dot", "gat", "gatv2"])
def test_eager_function_equals_the_custom_op(kind, monkeypatch):
    """The eager autograd.Function and the dispatcher's custom op are one computation:
    outputs, attention and every gradient agree exactly (dropout and a mask included)."""
    from pyg_attn.ops import attention, library

    edge_index = random_graph(15, 15, 70, seed=8, self_loops=3, duplicates=4, isolated=2)
    inputs = make_inputs(kind, 15, 15, edge_index.size(1), torch.float64, extras=True)
    mask = torch.rand(edge_index.size(1), generator=torch.Generator().manual_seed(1)) > 0.2
    eager = run(kind, inputs, edge_index, "cpu", edge_mask=mask, dropout=0.3)
    monkeypatch.setattr(attention, "fused_attention_cpu", library.fused_attention)
    op = run(kind, inputs, edge_index, "cpu", edge_mask=mask, dropout=0.3)
    assert torch.equal(eager[0], op[0]) and torch.equal(eager[1], op[1])
    for g_eager, g_op in zip(eager[2], op[2]):
        assert (g_eager is None) == (g_op is None)
        if g_eager is not None:
            assert torch.equal(g_eager, g_op)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["dot", "gat", "gatv2"])
@pytest.mark.parametrize("extras", [False, True])
@pytest.mark.parametrize("num_edges", [0, 90])
def test_backward_reads_the_saved_attention_or_recomputes_it(kind, dtype, extras, num_edges,
                                                             monkeypatch):
    """In training the CPU op's forward keeps the attention [E, H] (up to
    SAVED_ATTENTION_BYTES; not without gradients) and its backward reads it; a
    backward without it recomputes it from the row statistics.  Both give the
    reference's gradients (self-loops, duplicate edges, a hub, isolated nodes, a
    mask and dropout; an empty edge set)."""
    from pyg_attn.ops import attention

    edge_index = random_graph(20, 16, num_edges, seed=11, self_loops=3, duplicates=4,
                              isolated=2, hub=1, hub_degree=12) if num_edges \
        else torch.empty(2, 0, dtype=torch.long)
    inputs = make_inputs(kind, 20, 16, edge_index.size(1), dtype, extras=extras)
    mask = torch.rand(edge_index.size(1), generator=torch.Generator().manual_seed(2)) > 0.2
    options = dict(edge_mask=mask, dropout=0.3 if extras else 0.0)
    kept = []

    def grads(backend):
        torch.manual_seed(99)
        out = call(kind, inputs, edge_index, backend=backend, **options)
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(3),
                             dtype=dtype)
        wanted = [t for t in inputs.values() if t.requires_grad]
        return torch.autograd.grad((out * weight).sum(), wanted, allow_unused=True)

    original = attention.fused_attention_cpu
    monkeypatch.setattr(attention, "fused_attention_cpu",
                        lambda *args: kept.append(args[-1]) or original(*args))
    saved = grads("cpu")
    monkeypatch.setattr(attention, "SAVED_ATTENTION_BYTES", -1)  # kept above this size only
    recomputed = grads("cpu")
    with torch.no_grad():
        call(kind, inputs, edge_index, backend="cpu", **options)
    assert kept == [True, False, False]
    reference = grads("reference")
    assert_close_grads(reference, saved, dtype)
    assert_close_grads(reference, recomputed, dtype)


def test_positional_apply_equals_function_apply(monkeypatch):
    """The eager Functions' ``apply`` skips Function.apply's signature binding only:
    the same outputs and gradients as the full path, for the fused op and the
    segment softmax."""
    from pyg_attn.ops import edge_softmax, library

    edge_index = random_graph(15, 15, 60, seed=3, self_loops=2, duplicates=3, isolated=2)
    q, k, v = (torch.randn(15, 2, 4, requires_grad=True) for _ in range(3))
    scores = torch.randn(edge_index.size(1), 2, requires_grad=True)

    def results():
        out = graph_attention(q, k, v, edge_index, return_attention=True)
        soft = edge_softmax(scores, edge_index[1], num_nodes=15)
        loss = out[0].square().sum() + out[1].sin().sum() + soft.cos().sum()
        return (*out, soft, *torch.autograd.grad(loss, (q, k, v, scores)))

    fast = results()
    monkeypatch.setattr(library.PositionalFunction, "apply", classmethod(
        lambda cls, *args: torch.autograd.Function.apply.__func__(cls, *args)))
    full = results()
    for a, b in zip(fast, full):
        assert torch.equal(a, b)


def test_eager_path_is_taken_outside_compile_and_the_op_inside(monkeypatch):
    from pyg_attn.ops import library

    calls = []
    original = library.EagerFusedAttention.apply
    monkeypatch.setattr(library.EagerFusedAttention, "apply",
                        lambda *a: calls.append("eager") or original(*a))
    edge_index = torch.randint(0, 12, (2, 40))
    q, k, v = (torch.randn(12, 2, 4, requires_grad=True) for _ in range(3))
    eager = graph_attention(q, k, v, edge_index)
    assert calls == ["eager"]
    compiled = torch.compile(lambda q, k, v: graph_attention(q, k, v, edge_index),
                             backend="aot_eager")(q, k, v)
    assert calls == ["eager"]
    torch.testing.assert_close(compiled, eager)


@pytest.mark.parametrize("order", ["coalesced", "by_destination", "shuffled", "by_source_only"])
def test_prepare_is_consistent_for_every_input_order(order):
    """The sort-skipping paths of prepare() (edges already grouped by source or by
    destination) build the same kind of CSR/CSC as the general one."""
    edge_index = random_graph(30, 30, 150, seed=12, self_loops=4, duplicates=10, isolated=3)
    num_edges = edge_index.size(1)
    gen = torch.Generator().manual_seed(0)
    if order == "coalesced":
        edge_index = edge_index[:, torch.argsort(edge_index[0] * 30 + edge_index[1])]
    elif order == "by_destination":
        edge_index = edge_index[:, torch.argsort(edge_index[1], stable=True)]
    elif order == "by_source_only":  # grouped by source, destinations unordered inside
        edge_index = edge_index[:, torch.randperm(num_edges, generator=gen)]
        edge_index = edge_index[:, torch.argsort(edge_index[0], stable=True)]
    graph = prepare(edge_index, 30)
    src, dst = edge_index
    perm, col = graph.perm.long(), graph.col.long()
    rows = torch.repeat_interleave(torch.arange(30), graph.rowptr.diff())
    assert torch.equal(dst[perm], rows) and torch.equal(src[perm], col)
    assert sorted(perm.tolist()) == list(range(num_edges))
    sources = torch.repeat_interleave(torch.arange(30), graph.colptr.diff())
    csc_edge = graph.csc_edge.long()
    assert torch.equal(src[csc_edge], sources)
    assert torch.equal(dst[csc_edge], graph.csc_row.long())
    assert sorted(csc_edge.tolist()) == list(range(num_edges))
    assert torch.equal(graph.edge_index, edge_index)
    q, k, v = (torch.randn(30, 2, 4, generator=gen, requires_grad=True) for _ in range(3))
    out = graph_attention(q, k, v, graph)
    ref = graph_attention(q, k, v, edge_index, backend="reference")
    torch.testing.assert_close(out, ref, **TOL[torch.float32])
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, **TOL[torch.float32])
