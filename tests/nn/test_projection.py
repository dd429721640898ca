"""Sparse-input projections: the same function as the dense product, used only
where it is, and the layers that use it still equal PyG's on sparse features."""
from __future__ import annotations

import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric.nn import Linear as PygLinear

from pyg_attn.nn import GATConv, GATv2Conv, TransformerConv
from pyg_attn.nn.conv import projection
from pyg_attn.nn.conv.head_dropout import SparseHeadwiseProjection
from pyg_attn.nn.conv.projection import (
    RowSparseGradLinear,
    attended_projection,
    nonzero_rows,
    project,
    project_many,
    project_rows,
    row_sparse_linear,
    sparse_input_linear,
)
from pyg_attn.ops import graph as graph_module
from pyg_attn.ops import select_backend

from ..graphs import random_graph


def sparse_features(rows: int, cols: int, density: float, dtype=torch.float32, seed: int = 0):
    """``[rows, cols]`` with about ``density`` non-zeros, some rows all zero."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(rows, cols, generator=gen, dtype=dtype)
    x = torch.where(torch.rand(rows, cols, generator=gen) < density, x, torch.zeros((), dtype=dtype))
    x[::7] = 0
    return x


@pytest.fixture(autouse=True)
def _small_inputs_qualify(monkeypatch):
    """These tests use small matrices: let them take the sparse path."""
    monkeypatch.setattr(projection, "SPARSE_MIN_ELEMENTS", 0)


def test_small_inputs_take_the_dense_product(monkeypatch):
    monkeypatch.setattr(projection, "SPARSE_MIN_ELEMENTS", 1 << 16)
    lin = torch.nn.Linear(300, 4)
    assert not _uses_sparse(lin, sparse_features(50, 300, 0.02))  # 15,000 entries
    assert _uses_sparse(lin, sparse_features(300, 300, 0.02))  # 90,000 entries


def project_counting(lin, x) -> tuple[torch.Tensor, int]:
    """``project(lin, x)`` and how many times it ran the sparse product."""
    calls = []
    original = SparseHeadwiseProjection.apply
    SparseHeadwiseProjection.apply = lambda *a: calls.append(1) or original(*a)
    try:
        return project(lin, x), len(calls)
    finally:
        SparseHeadwiseProjection.apply = original


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


@pytest.mark.parametrize("density", [0.02, 0.5])
@pytest.mark.parametrize("biases", [(True, True, False), (False, False, False)])
def test_project_many_equals_each_projection(density, biases):
    """One product for several modules: each result (a column view of the joint
    one) and every parameter's gradient as from the modules on their own, with a
    missing bias taken as zeros; sparse and dense inputs."""
    x = sparse_features(50, 300, density, torch.float64)
    lins = [torch.nn.Linear(300, width, bias=b).double() for width, b in zip((8, 8, 5), biases)]
    got = project_many(lins, x)
    want = [lin(x) for lin in lins]
    params = [p for lin in lins for p in lin.parameters()]
    upstream = [torch.randn_like(w) for w in want]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    grads = torch.autograd.grad(sum((g * u).sum() for g, u in zip(got, upstream)), params)
    ref = torch.autograd.grad(sum((w * u).sum() for w, u in zip(want, upstream)), params)
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r)


def test_project_many_applies_customised_modules_on_their_own():
    """A hooked module keeps its hook: every module then runs by itself."""
    x = sparse_features(20, 30, 0.5)
    plain, hooked = torch.nn.Linear(30, 4), torch.nn.Linear(30, 4)
    hooked.register_forward_hook(lambda module, inputs, out: out * 2)
    got = project_many([plain, hooked], x)
    torch.testing.assert_close(got[0], plain(x))
    torch.testing.assert_close(got[1], hooked(x))
    torch.testing.assert_close(got[1], 2 * torch.nn.functional.linear(x, hooked.weight,
                                                                      hooked.bias))


# ------------------------------------------------------------ the compile path
@pytest.fixture
def sparse_kernel_calls(monkeypatch):
    """Counts the looks at an input's zeros and the calls of the sparse product
    and of its weight gradient made by the compile path's ops."""
    calls = {"look": 0, "product": 0, "weight_grad": 0}

    def counting(name, original):
        def wrapper(*args):
            calls[name] += 1
            return original(*args)
        return wrapper

    monkeypatch.setattr(projection, "headwise_product",
                        counting("product", projection.headwise_product))
    monkeypatch.setattr(projection, "headwise_weight_grad",
                        counting("weight_grad", projection.headwise_weight_grad))
    monkeypatch.setattr(projection, "sparse_nonzeros",
                        counting("look", projection.sparse_nonzeros))
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("density", [0.02, 0.5])
def test_sparse_input_linear_op_matches_the_dense_product(dtype, density, sparse_kernel_calls):
    """The compile path's op decides from ``x`` itself: the sparse product and
    weight gradient for a sparse ``x``, the dense ones otherwise; the same values
    and gradients as ``F.linear`` either way.  It returns the non-zeros' structure
    in shapes fixed by ``x``'s, so the weight gradient does not look again;
    ``opcheck`` passes."""
    x = sparse_features(60, 300, density, dtype)
    weight = torch.randn(12, 300, dtype=dtype, requires_grad=True)
    got, rowptr, cols, values = sparse_input_linear(x, weight)
    sparse = density < projection.SPARSE_DENSITY
    capacity = projection.nonzero_capacity(x)
    assert rowptr.shape == (61,) and cols.shape == values.shape == (capacity,)
    if sparse:
        nonzeros = x.to_sparse_csr()
        torch.testing.assert_close(rowptr, nonzeros.crow_indices())
        nnz = nonzeros.values().numel()
        torch.testing.assert_close(cols[:nnz].long(), nonzeros.col_indices())
        torch.testing.assert_close(values[:nnz], nonzeros.values())
        assert not cols[nnz:].any() and not values[nnz:].any()
    else:
        assert (rowptr == -1).all()
    want = torch.nn.functional.linear(x, weight)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else {}
    torch.testing.assert_close(got, want, **tol)
    upstream = torch.randn(60, 12, dtype=dtype)
    torch.testing.assert_close(torch.autograd.grad(got, weight, upstream)[0],
                               torch.autograd.grad(want, weight, upstream)[0], **tol)
    assert sparse_kernel_calls == {"look": 1, "product": int(sparse), "weight_grad": int(sparse)}
    torch.library.opcheck(sparse_input_linear, (x, weight))


@pytest.mark.skipif(select_backend(None, torch.device("cpu")) != "cpu",
                    reason="compiles the layers with the CPU extension")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("layer", ["GATConv", "GATv2Conv", "TransformerConv"])
def test_compiled_layers_keep_the_sparse_product(layer, sparse_kernel_calls):
    """Under ``torch.compile(fullgraph=True)`` bag-of-words features still take the
    sparse product (inside the ops), with eager's values and weight gradients; the
    backward does not look at the zeros again."""
    torch.manual_seed(0)
    x = sparse_features(40, 200, 0.02)
    edge_index = random_graph(40, 40, 160, seed=3, isolated=3)
    conv = {"GATConv": GATConv, "GATv2Conv": GATv2Conv,
            "TransformerConv": TransformerConv}[layer](200, 4, heads=2)
    torch._dynamo.reset()
    compiled = torch.compile(conv, fullgraph=True, backend="aot_eager")
    results = []
    for run in (compiled, conv):
        out = run(x, edge_index)
        results.append((out, torch.autograd.grad(out.square().sum(), list(conv.parameters()))))
        if run is compiled:
            assert sparse_kernel_calls["product"] > 0 and sparse_kernel_calls["weight_grad"] > 0
            assert sparse_kernel_calls["look"] == sparse_kernel_calls["product"]
    torch._dynamo.reset()
    (out_c, grads_c), (out_e, grads_e) = results
    torch.testing.assert_close(out_c, out_e, atol=1e-5, rtol=1e-5)
    for g, r in zip(grads_c, grads_e):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------ row-sparse gradients
@pytest.fixture
def small_min_rows(monkeypatch):
    """The row-sparse backward for the small inputs of these tests (100 rows up)."""
    monkeypatch.setattr(projection, "SPARSE_GRAD_MIN_ROWS", 100)


def test_small_inputs_take_the_module(monkeypatch):
    calls = []
    monkeypatch.setattr(RowSparseGradLinear, "apply", lambda *a: calls.append(1))
    lin = torch.nn.Linear(5, 3)
    project(lin, torch.randn(projection.SPARSE_GRAD_MIN_ROWS - 1, 5))
    assert not calls
    project(lin, torch.randn(projection.SPARSE_GRAD_MIN_ROWS, 5))
    assert calls


def rows_of_loss(num_rows: int, every: int) -> torch.Tensor:
    """A weight per row that is zero except on every ``every``-th row."""
    weight = torch.zeros(num_rows, 1)
    weight[::every] = 1.0
    return weight


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_grad", [True, False])
@pytest.mark.parametrize("every", [1, 3, 9])  # all rows (dense), a third, a ninth
def test_row_sparse_gradients_equal_the_dense_product(dtype, bias, x_grad, every,
                                                      small_min_rows):
    gen = torch.Generator().manual_seed(every)
    x = torch.randn(300, 24, generator=gen, dtype=dtype).requires_grad_(x_grad)
    lin = torch.nn.Linear(24, 10, bias=bias).to(dtype)
    upstream = torch.randn(300, 10, generator=gen, dtype=dtype) * rows_of_loss(300, every)
    assert (nonzero_rows(upstream) is None) == (every == 1)
    inputs = [x, *lin.parameters()] if x_grad else list(lin.parameters())
    got = torch.autograd.grad(project(lin, x), inputs, upstream)
    want = torch.autograd.grad(torch.nn.functional.linear(x, lin.weight, lin.bias), inputs,
                               upstream)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **tol)
    if x_grad:
        assert torch.count_nonzero(got[0][upstream.abs().sum(1) == 0]) == 0


@pytest.mark.parametrize("rows", [None, [], [0, 5, 6, 39], list(range(40))])
def test_project_rows_is_the_projection_on_those_rows_and_zero_elsewhere(rows):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(40, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    lin = torch.nn.Linear(6, 4).double()
    index = None if rows is None else torch.tensor(rows, dtype=torch.long)
    keep = torch.ones(40, 1, dtype=torch.float64)
    if index is not None:
        keep = torch.zeros(40, 1, dtype=torch.float64).index_fill_(0, index, 1.0)
    upstream = torch.randn(40, 4, generator=gen, dtype=torch.float64)
    got = project_rows(lin, x, index)
    want = lin(x) * keep
    torch.testing.assert_close(got, want)
    inputs = [x, *lin.parameters()]
    for g, w in zip(torch.autograd.grad(got, inputs, upstream),
                    torch.autograd.grad(want, inputs, upstream)):
        torch.testing.assert_close(g, w)


def test_attended_rows_looks_only_at_graphs_of_enough_destinations():
    """Fewer than ATTENDED_MIN_ROWS destinations: every row (None, no look); more:
    the attended ones when they are at most half, else every row."""
    def rowptr(degrees):
        return torch.cat([torch.zeros(1, dtype=torch.long), torch.tensor(degrees).cumsum(0)])

    few = graph_module.ATTENDED_MIN_ROWS - 1
    assert graph_module.attended_rows(rowptr([0] * (few - 1) + [3])) is None
    many = 2 * graph_module.ATTENDED_MIN_ROWS
    degrees = [0] * many
    degrees[5] = degrees[700] = 2
    torch.testing.assert_close(graph_module.attended_rows(rowptr(degrees)),
                               torch.tensor([5, 700]))
    assert graph_module.attended_rows(rowptr([1] * many)) is None


@pytest.mark.parametrize("look", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("degrees", [[0] * 30 + [2] * 10, [1] * 40, [0] * 40])
def test_attended_projection_op_is_the_projection_on_attended_rows(degrees, bias, look,
                                                                  monkeypatch):
    """The compile path's custom op: values and gradients as the eager
    projection of the rows with incoming edges (all rows when more than half),
    zero elsewhere, over the non-zeros of sparse features when told to look;
    its fake and autograd registrations pass ``opcheck``."""
    monkeypatch.setattr(graph_module, "ATTENDED_MIN_ROWS", 0)  # 40 rows are looked at
    gen = torch.Generator().manual_seed(3)
    x = sparse_features(40, 30, 0.03, torch.float64).requires_grad_()
    lin = torch.nn.Linear(30, 4, bias=bias).double()
    rowptr = torch.cat([torch.zeros(1, dtype=torch.long),
                        torch.tensor(degrees).cumsum(0)])
    attended = torch.tensor(degrees) > 0
    keep = attended if 2 * int(attended.sum()) <= 40 else torch.ones(40, dtype=torch.bool)
    want = lin(x) * keep.unsqueeze(1).double()
    got = attended_projection(x, lin.weight, lin.bias, rowptr, look)[0]
    torch.testing.assert_close(got, want)
    upstream = torch.randn(40, 4, generator=gen, dtype=torch.float64) * keep.unsqueeze(1)
    inputs = [x, *lin.parameters()]
    for g, w in zip(torch.autograd.grad(got, inputs, upstream),
                    torch.autograd.grad(want, inputs, upstream)):
        torch.testing.assert_close(g, w)
    torch.library.opcheck(attended_projection, (x, lin.weight, lin.bias, rowptr, look))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("needs_x", [True, False])
def test_row_sparse_linear_op_matches_the_dense_product(bias, needs_x):
    """The compile path's custom op: ``F.linear`` forward; its backward (over the
    few non-zero gradient rows here) gives the dense gradients; ``opcheck`` passes."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(300, 6, generator=gen, dtype=torch.float64, requires_grad=needs_x)
    lin = torch.nn.Linear(6, 4, bias=bias).double()
    upstream = torch.zeros(300, 4, dtype=torch.float64)
    upstream[[3, 50, 299]] = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    got = row_sparse_linear(x, lin.weight, lin.bias)
    want = torch.nn.functional.linear(x, lin.weight, lin.bias)
    torch.testing.assert_close(got, want)
    inputs = [t for t in (x, *lin.parameters()) if t.requires_grad]
    for g, w in zip(torch.autograd.grad(got, inputs, upstream),
                    torch.autograd.grad(want, inputs, upstream)):
        torch.testing.assert_close(g, w)
    torch.library.opcheck(row_sparse_linear, (x, lin.weight, lin.bias))


def test_nonzero_rows_finds_the_rows_only_when_few():
    grad = torch.zeros(1000, 8)
    grad[3, 5] = 1.0
    grad[10, 0] = float("nan")
    grad[500:700, 2] = -1e-30
    grad[900, :] = -0.0  # a signed zero is zero
    torch.testing.assert_close(nonzero_rows(grad),
                               torch.tensor([3, 10, *range(500, 700)]))
    assert nonzero_rows(torch.randn(1000, 8)) is None  # dense: ruled out by the sample
    half_and_more = torch.randn(1000, 8)
    half_and_more[::3] = 0  # two thirds non-zero: above SPARSE_GRAD_ROWS
    assert nonzero_rows(half_and_more) is None
    assert nonzero_rows(torch.zeros(100, 8)) is None  # too few rows to bother
    assert nonzero_rows(torch.zeros(1000, 0)) is None
    assert nonzero_rows(torch.zeros(1000, 8)).numel() == 0


def test_double_backward_takes_the_dense_formulas(small_min_rows):
    """A gradient penalty differentiates the backward in its zero rows too."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    lin = torch.nn.Linear(6, 4).double()
    mask = rows_of_loss(200, 5).double()

    def penalty(out):
        (g,) = torch.autograd.grad((out.tanh() * mask).sum(), x, create_graph=True)
        return g.square().sum()

    got = torch.autograd.grad(penalty(project(lin, x)), list(lin.parameters()))
    want = torch.autograd.grad(penalty(torch.nn.functional.linear(x, lin.weight, lin.bias)),
                               list(lin.parameters()))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    inputs = (x.detach()[:140].clone().requires_grad_(),
              lin.weight.detach().clone().requires_grad_(),
              lin.bias.detach().clone().requires_grad_())
    upstream = torch.randn(140, 4, generator=gen, dtype=torch.float64) * mask[:140]
    assert torch.autograd.gradgradcheck(RowSparseGradLinear.apply, inputs, (upstream,))


def test_hooked_or_customised_linear_modules_run_their_own_forward(small_min_rows):
    x = torch.randn(300, 5)
    lin = torch.nn.Linear(5, 3)
    seen = []
    lin.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    project(lin, x)
    assert seen == [torch.Size([300, 3])]

    class Scaled(torch.nn.Linear):
        def forward(self, inp):
            return 2 * super().forward(inp)

    scaled = Scaled(5, 3)
    torch.testing.assert_close(project(scaled, x), 2 * torch.nn.functional.linear(
        x, scaled.weight, scaled.bias))


@pytest.mark.parametrize("layer", ["GATConv", "GATv2Conv", "TransformerConv"])
def test_layers_with_a_loss_on_some_rows_equal_pyg(layer, small_min_rows):
    """Two layers and a loss over the first 20 of 300 rows, as on the seed nodes of
    a NeighborLoader batch: the gradients equal PyG's."""
    torch.manual_seed(0)
    x = torch.randn(300, 16)
    edge_index = random_graph(300, 300, 900, seed=4, isolated=20, hub=0, hub_degree=60)
    ours_cls = {"GATConv": GATConv, "GATv2Conv": GATv2Conv,
                "TransformerConv": TransformerConv}[layer]
    theirs = torch.nn.ModuleList([getattr(pyg_nn, layer)(16, 4, heads=2),
                                  getattr(pyg_nn, layer)(8, 4, heads=2)])
    ours = torch.nn.ModuleList([ours_cls(16, 4, heads=2), ours_cls(8, 4, heads=2)])
    ours.load_state_dict(theirs.state_dict())

    def loss(model):
        h = x
        for conv in model:
            h = torch.nn.functional.elu(conv(h, edge_index))
        return h[:20].square().sum()

    grads = torch.autograd.grad(loss(ours), list(ours.parameters()))
    ref_grads = torch.autograd.grad(loss(theirs), list(theirs.parameters()))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)
