"""The compiled per-head dropout projection of sparse features against its torch
fallback: the same mask, the same sums in the same order, so equal values and
weight gradients; and the extension's argument checks."""
from __future__ import annotations

import pytest
import torch

import pyg_attn.nn.conv.head_dropout as head_dropout
from pyg_attn.nn.conv.head_dropout import SparseHeadwiseProjection, headwise_dropout_projection
from pyg_attn.ops.cpu import load_extension

EXTENSION = load_extension()
pytestmark = pytest.mark.skipif(EXTENSION is None, reason="the CPU extension did not build")
# Same products summed in the same order; an -march=native build may fuse them.
TOL = {torch.float32: dict(atol=1e-6, rtol=1e-6), torch.float64: dict(atol=1e-13, rtol=1e-13)}


def bag_of_words(rows: int, features: int, dtype, seed: int, density: float = 0.03):
    """Sparse ``[rows, features]`` with all-zero rows, a dense row and repeats."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(rows, features, generator=gen, dtype=dtype)
    x = x * (torch.rand(rows, features, generator=gen) < density)
    x[::5] = 0          # rows without any feature
    if rows > 3:
        x[3, :4] = 1.0  # a row with its first features set
    return x


def project(x, weight, heads, p, *, compiled: bool, monkeypatch):
    """``(out, dL/dweight)`` of a fixed loss, with the kernel or the fallback."""
    calls = []
    original = SparseHeadwiseProjection.apply
    monkeypatch.setattr(SparseHeadwiseProjection, "apply",
                        lambda *a: calls.append(1) or original(*a))
    if not compiled:
        monkeypatch.setattr(head_dropout, "sparse_extension", lambda x, w: None)
    torch.manual_seed(11)  # the same mask both ways
    w = weight.detach().clone().requires_grad_()
    out = headwise_dropout_projection(x, w, heads, p)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(2),
                           dtype=torch.float64).to(out.dtype)
    (grad,) = torch.autograd.grad((out * upstream).sum(), w)
    monkeypatch.undo()
    assert bool(calls) == compiled
    return out.detach(), grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(60, 40, 4, 3), (33, 300, 8, 8), (7, 60, 2, 5)])
@pytest.mark.parametrize("p", [0.6, 1.0])
def test_kernel_equals_the_fallback(dtype, shape, p, monkeypatch):
    rows, features, heads, channels = shape
    x = bag_of_words(rows, features, dtype, seed=rows)
    weight = torch.randn(heads * channels, features, dtype=dtype)
    got = project(x, weight, heads, p, compiled=True, monkeypatch=monkeypatch)
    want = project(x, weight, heads, p, compiled=False, monkeypatch=monkeypatch)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL[dtype])
    if p == 1.0:
        assert torch.count_nonzero(got[0]) == 0


def assert_lists_nonzeros_of(x):
    """The extension's CSR of ``x`` holds what ``x.nonzero()`` lists, in its order."""
    rowptr, cols, values = EXTENSION.headwise_nonzeros(x)
    rows, expected_cols = x.nonzero().t()
    assert rowptr[0] == 0 and rowptr.numel() == x.size(0) + 1
    assert torch.equal(torch.repeat_interleave(torch.arange(x.size(0)), rowptr.diff()), rows)
    assert torch.equal(cols, expected_cols)
    torch.testing.assert_close(values, x[rows, expected_cols], equal_nan=True, atol=0, rtol=0)


def test_strided_rows_and_non_finite_values(monkeypatch):
    """A view with a row stride (every other row), and inf/NaN features: the
    non-zeros are found as x.nonzero() finds them (NaN included)."""
    base = bag_of_words(80, 50, torch.float64, seed=3)
    base[4, 7] = float("nan")
    base[6, 2] = float("inf")
    x = base[::2]
    weight = torch.randn(12, 50, dtype=torch.float64)
    got = project(x, weight, 3, 0.5, compiled=True, monkeypatch=monkeypatch)
    want = project(x, weight, 3, 0.5, compiled=False, monkeypatch=monkeypatch)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL[torch.float64], equal_nan=True)
    assert_lists_nonzeros_of(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("features", [1, 15, 16, 17, 33, 300])
def test_nonzeros_of_every_width_and_many_row_blocks(dtype, features):
    """Widths around the 16-column runs the scan tests at once, rows spanning
    several blocks, signed zeros (zero), NaN and inf (non-zero), all-zero and dense
    rows, a row-strided view."""
    base = bag_of_words(300, features, dtype, seed=features, density=0.1)
    base[7] = 1.0                        # a dense row
    base[9, -1] = float("nan")
    base[11, 0] = float("-inf")
    base[13] = -0.0                      # a row of negative zeros
    base[200:260] = 0.0                  # a run of empty rows across a block's edge
    assert_lists_nonzeros_of(base)
    assert_lists_nonzeros_of(base[1::3])
    assert_lists_nonzeros_of(base[:0])


def test_in_place_change_of_x_is_never_served_stale(monkeypatch):
    x = bag_of_words(40, 60, torch.float32, seed=5)
    weight = torch.randn(8, 60)
    first = project(x, weight, 2, 0.5, compiled=True, monkeypatch=monkeypatch)[0]
    x[1, 1] = 5.0
    second = project(x, weight, 2, 0.5, compiled=True, monkeypatch=monkeypatch)[0]
    assert not torch.equal(first, second)


def test_extension_rejects_malformed_arguments():
    x = bag_of_words(10, 6, torch.float32, seed=1, density=0.5)
    assert x.count_nonzero() > 0
    rowptr, cols, values = EXTENSION.headwise_nonzeros(x)
    keep = torch.ones(values.numel(), 2, dtype=torch.bool)
    wt = torch.randn(6, 2, 3)
    EXTENSION.headwise_forward(rowptr, cols, values, keep, wt, 1.0)  # well-formed
    bad_cols = cols.clone()
    bad_cols[0] = 6
    with pytest.raises(RuntimeError, match="'col'"):
        EXTENSION.headwise_forward(rowptr, bad_cols, values, keep, wt, 1.0)
    with pytest.raises(RuntimeError, match="'keep'"):
        EXTENSION.headwise_forward(rowptr, cols, values, keep[:, :1].contiguous(), wt, 1.0)
    with pytest.raises(RuntimeError, match="'rowptr'"):
        EXTENSION.headwise_forward(rowptr.flip(0).contiguous(), cols, values, keep, wt, 1.0)
    with pytest.raises(RuntimeError, match="'wt'"):  # of the values' dtype
        EXTENSION.headwise_forward(rowptr, cols, values.double(), keep, wt, 1.0)
    with pytest.raises(RuntimeError, match="'grad'"):
        EXTENSION.headwise_weight_grad(rowptr, cols, values, keep,
                                       torch.randn(10, 2, 3).double(), 1.0, 6)
    with pytest.raises(RuntimeError, match="'col'"):
        EXTENSION.headwise_weight_grad(rowptr, cols, values, keep, torch.randn(10, 2, 3), 1.0, 5)
    with pytest.raises(RuntimeError, match="'x'"):
        EXTENSION.headwise_nonzeros(torch.zeros(3, 4, dtype=torch.long))
