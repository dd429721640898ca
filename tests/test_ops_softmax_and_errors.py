"""edge_softmax against PyG / torch_scatter, property tests, and input validation."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.utils import softmax as pyg_softmax

from pyg_attn.ops import edge_softmax, gat_attention, gatv2_attention, graph_attention, prepare

BACKENDS = ["reference", "cpu"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(300,), (300, 4)])
def test_edge_softmax_equals_pyg(backend, shape):
    index = torch.randint(0, 50, (shape[0],))
    src = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    ours = edge_softmax(src, index, 60, backend=backend)
    theirs = pyg_softmax(src, index, num_nodes=60)
    torch.testing.assert_close(ours, theirs)
    weights = torch.randn(shape, dtype=torch.float64)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), src)
    (g_theirs,) = torch.autograd.grad((theirs * weights).sum(), src)
    torch.testing.assert_close(g_ours, g_theirs)


def test_edge_softmax_equals_torch_scatter():
    torch_scatter = pytest.importorskip("torch_scatter")
    index = torch.randint(0, 40, (500,))
    src = torch.randn(500, 3)
    expected = torch_scatter.composite.scatter_softmax(src, index, dim=0)
    for backend in BACKENDS:
        torch.testing.assert_close(edge_softmax(src, index, backend=backend), expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_softmax_is_stable_for_huge_scores(backend):
    index = torch.tensor([0, 0, 1, 1, 2])
    src = torch.tensor([1e4, -1e4, 1e4, 1e4 - 1.0, -1e4])
    out = edge_softmax(src, index, backend=backend)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:2], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(out[2:4], torch.softmax(torch.tensor([1.0, 0.0]), 0))
    assert out[4] == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_softmax_empty_and_neg_inf(backend):
    empty = edge_softmax(torch.empty(0, 2), torch.empty(0, dtype=torch.long), backend=backend)
    assert empty.shape == (0, 2)
    out = edge_softmax(torch.tensor([float("-inf"), float("-inf"), 0.0]), torch.tensor([0, 0, 1]),
                       backend=backend)
    assert out.tolist() == [0.0, 0.0, 1.0]


@settings(max_examples=40, deadline=None)
@given(num_nodes=st.integers(1, 12), num_edges=st.integers(0, 60), heads=st.integers(1, 3),
       seed=st.integers(0, 2**16), dropout=st.sampled_from([0.0, 0.5]))
def test_property_cpu_equals_reference(num_nodes, num_edges, heads, seed, dropout):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    q, k, v = (torch.randn(num_nodes, heads, 3, generator=gen, dtype=torch.float64)
               for _ in range(3))
    results = []
    for backend in BACKENDS:
        torch.manual_seed(seed)
        results.append(graph_attention(q, k, v, edge_index, dropout=dropout, backend=backend,
                                       return_attention=True))
    (out_ref, alpha_ref), (out_cpu, alpha_cpu) = results
    torch.testing.assert_close(out_cpu, out_ref)
    torch.testing.assert_close(alpha_cpu, alpha_ref)
    sums = torch.zeros(num_nodes, heads, dtype=torch.float64).index_add_(0, edge_index[1],
                                                                         alpha_cpu)
    assert torch.all((sums - 1).abs().lt(1e-9) | sums.eq(0))


# ------------------------------------------------------------------ input validation
def _qkv(n=4, heads=2, channels=3):
    return tuple(torch.randn(n, heads, channels) for _ in range(3))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("edge_index, error, match", [
    (torch.tensor([[0, 1], [1, 4]]), ValueError, "destination index 4"),
    (torch.tensor([[0, 5], [1, 2]]), ValueError, "source index 5"),
    (torch.tensor([[0, -1], [1, 2]]), ValueError, "negative"),
    (torch.tensor([[0.0, 1.0], [1.0, 2.0]]), TypeError, "integer"),
    (torch.tensor([[True], [False]]), TypeError, "integer"),
    (torch.tensor([0, 1, 2]), ValueError, r"\[2, E\]"),
    (torch.zeros(3, 2, dtype=torch.long), ValueError, r"\[2, E\]"),
    ([[0, 1], [1, 2]], TypeError, "edge_index"),
])
def test_bad_edge_index(backend, edge_index, error, match):
    q, k, v = _qkv()
    with pytest.raises(error, match=match):
        graph_attention(q, k, v, edge_index, backend=backend)


def test_int32_edge_index_is_accepted():
    q, k, v = _qkv()
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 3]])
    torch.testing.assert_close(graph_attention(q, k, v, edge_index.int()),
                               graph_attention(q, k, v, edge_index))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(key=torch.randn(4, 3, 3)), ValueError, "'key'"),
    (dict(value=torch.randn(5, 2, 3)), ValueError, "'value'"),
    (dict(value=torch.randn(4, 2, 3).long()), TypeError, "'value'"),
    (dict(query=torch.randn(4, 2, 3, 1)), ValueError, "'query'"),
    (dict(edge_bias=torch.randn(4, 2)), ValueError, "'edge_bias'"),
    (dict(edge_mask=torch.ones(3)), TypeError, "'edge_mask'"),
    (dict(edge_mask=torch.ones(4, dtype=torch.bool)), ValueError, "'edge_mask'"),
    (dict(edge_key=torch.randn(3, 2, 4)), ValueError, "'edge_key'"),
    (dict(edge_value=torch.randn(3, 1, 3)), ValueError, "'edge_value'"),
    (dict(dropout=1.5), ValueError, "'dropout'"),
    (dict(backend="cuda"), ValueError, "'backend'"),
    (dict(num_nodes=7), ValueError, "'num_nodes'"),
])
def test_bad_features(kwargs, error, match):
    q, k, v = _qkv()
    args = dict(query=q, key=k, value=v, edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        graph_attention(args.pop("query"), args.pop("key"), args.pop("value"),
                        args.pop("edge_index"), **args)


def test_nan_check_only_on_request():
    q, k, v = _qkv()
    q[0, 0, 0] = float("nan")
    edge_index = torch.tensor([[0, 1], [1, 2]])
    graph_attention(q, k, v, edge_index)  # no check, no error
    with pytest.raises(ValueError, match="'query' holds NaN"):
        graph_attention(q, k, v, edge_index, check_inputs=True)


def test_gat_and_gatv2_shape_errors():
    edge_index = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="'alpha_src'"):
        gat_attention(torch.randn(3, 3), torch.randn(3, 2), torch.randn(3, 2, 4), edge_index)
    with pytest.raises(ValueError, match="'alpha_dst'"):
        gat_attention(torch.randn(3, 2), torch.randn(3, 1), torch.randn(3, 2, 4), edge_index)
    with pytest.raises(ValueError, match="'att'"):
        gatv2_attention(torch.randn(3, 2, 4), torch.randn(3, 2, 4), torch.randn(2, 5), edge_index)
    with pytest.raises(ValueError, match="'x_dst'"):
        gatv2_attention(torch.randn(3, 2, 4), torch.randn(3, 2, 5), torch.randn(2, 4), edge_index)
    with pytest.raises(TypeError, match="'index'"):
        edge_softmax(torch.randn(3), torch.randn(3))
    with pytest.raises(ValueError, match="'index'"):
        edge_softmax(torch.randn(3), torch.tensor([0, 1]))


def test_prepare_validates():
    with pytest.raises(ValueError, match="destination index 3"):
        prepare(torch.tensor([[0], [3]]), num_nodes=3)
    with pytest.raises(ValueError, match="'num_nodes'"):
        prepare(torch.tensor([[0], [1]]), num_nodes=-1)
    graph = prepare(torch.tensor([[0, 1], [1, 0]]), num_nodes=(2, 3))
    assert (graph.num_src, graph.num_dst) == (2, 3)


def test_edge_softmax_cache_follows_in_place_edits():
    index = torch.tensor([0, 0, 1])
    src = torch.tensor([0.0, 0.0, 1.0])
    assert edge_softmax(src, index).tolist() == [0.5, 0.5, 1.0]
    index[1] = 1  # in place: the cached grouping must not be reused
    torch.testing.assert_close(edge_softmax(src, index),
                               pyg_softmax(src, index, num_nodes=2))


def _segment_graph(num_edges: int, num_groups: int, sort: bool, seed: int) -> torch.Tensor:
    """A group index with a hub (a third of the edges in group 0), empty groups
    (the last three never occur) and, unless ``sort``, no order."""
    gen = torch.Generator().manual_seed(seed)
    index = torch.randint(0, max(num_groups - 3, 1), (num_edges,), generator=gen)
    index[torch.rand(num_edges, generator=gen) < 1 / 3] = 0
    return index.sort()[0] if sort else index


@pytest.mark.parametrize("sort", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("heads", [1, 5])
def test_cpu_segment_softmax_equals_reference(sort, dtype, heads):
    index = _segment_graph(700, 40, sort, seed=heads)
    src = torch.randn(700, heads, dtype=dtype, requires_grad=True)
    weights = torch.randn(700, heads, dtype=dtype)
    results = []
    for backend in ("cpu", "reference"):
        out = edge_softmax(src, index, 40, backend=backend)
        (grad,) = torch.autograd.grad((out * weights).sum(), src)
        results.append((out, grad))
    torch.testing.assert_close(results[0], results[1])


def test_cpu_segment_softmax_second_order_gradients():
    for sort in (True, False):
        index = _segment_graph(60, 9, sort, seed=3)
        src = torch.randn(60, 2, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradgradcheck(lambda s: edge_softmax(s, index, 9, backend="cpu"),
                                            (src,))


def test_cpu_segment_softmax_threads_split_groups_without_changing_results():
    """Sorted input above the parallel grain is cut at group boundaries only."""
    index = _segment_graph(200_000, 3_000, True, seed=5)
    src = torch.randn(200_000, 2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = edge_softmax(src, index, 3_000)
        torch.set_num_threads(2)
        two = edge_softmax(src, index, 3_000)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    torch.testing.assert_close(one, pyg_softmax(src, index, num_nodes=3_000))


def test_cpu_segment_softmax_half_precision_and_compile():
    index = _segment_graph(100, 10, False, seed=1)
    src = torch.randn(100, 3)
    half = edge_softmax(src.bfloat16(), index, 10)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), edge_softmax(src, index, 10), atol=1e-2, rtol=1e-2)
    compiled = torch.compile(lambda s: edge_softmax(s, index, 10), backend="aot_eager")
    torch.testing.assert_close(compiled(src), edge_softmax(src, index, 10))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("index, num_nodes, match", [
    (torch.tensor([0, -1, 1]), None, "non-negative"),
    (torch.tensor([0, 3, 1]), 3, r"outside \[0, num_nodes=3\)"),
    (torch.tensor([0, 1, 1]), -2, "'num_nodes'"),
    (torch.tensor([0, 1, 1]), 2.0, "'num_nodes'"),
])
def test_edge_softmax_bad_index(backend, index, num_nodes, match):
    with pytest.raises(ValueError, match=match):
        edge_softmax(torch.zeros(3), index, num_nodes, backend=backend)


def test_segment_softmax_kernel_checks_its_arguments():
    """The C++ entry point itself refuses what would read out of bounds."""
    from pyg_attn.ops.library import segment_softmax

    src = torch.zeros(3, 1)
    with pytest.raises(RuntimeError, match="'index' holds 5 at position 1"):
        segment_softmax(src, torch.tensor([0, 5, 1]), 3)
    with pytest.raises(RuntimeError, match="'index' must have 3 elements"):
        segment_softmax(src, torch.tensor([0, 1]), 3)
    with pytest.raises(RuntimeError, match="int64"):
        segment_softmax(src, torch.tensor([0, 1, 1], dtype=torch.int32), 3)
