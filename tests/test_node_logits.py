"""GAT's per-node logits op (pyg_attn.ops.node_logits) against PyG's formula
``(h * att).sum(-1)``: values and gradients, float32 and float64, the channel
counts with and without the AVX2 tree, rows of a wider buffer, empty inputs,
one or two attention vectors, the fallback, opcheck and thread-count independence."""
from __future__ import annotations

import pytest
import torch

from pyg_attn.ops.attention import select_backend
from pyg_attn.ops.node_logits import node_logits, node_logits_op

pytestmark = pytest.mark.skipif(select_backend(None, torch.device("cpu")) != "cpu",
                                reason="the op runs the CPU extension")

SHAPES = [(8, 8), (3, 5), (1, 16), (2, 64), (9, 32), (4, 1)]


def _formula(h, att):
    return (h * att.view(h.size(1), h.size(2))).sum(-1)


def _assert_like_formula(h, atts, dtype):
    """Values and the gradients of h and every attention vector equal the formula's."""
    got = [t for t in node_logits(h, *atts) if t is not None]
    want = [_formula(h, att) for att in atts]
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else {}
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **tol)
    upstream = [torch.randn_like(w) for w in want]
    inputs = (h, *atts)
    grads = torch.autograd.grad(sum((g * u).sum() for g, u in zip(got, upstream)), inputs)
    expected = torch.autograd.grad(sum((w * u).sum() for w, u in zip(want, upstream)), inputs)
    for g, w in zip(grads, expected):
        torch.testing.assert_close(g, w, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("heads,channels", SHAPES)
@pytest.mark.parametrize("two", [True, False])
def test_values_and_gradients_equal_the_formula(dtype, heads, channels, two):
    gen = torch.Generator().manual_seed(heads * 100 + channels)
    h = torch.randn(300, heads, channels, dtype=dtype, generator=gen).requires_grad_()
    atts = [torch.randn(1, heads, channels, dtype=dtype, generator=gen).requires_grad_()
            for _ in range(2 if two else 1)]
    _assert_like_formula(h, atts, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_of_a_wider_buffer(dtype):
    """h as a column view of a wider product (rows 70 apart), as a joint
    projection hands it over."""
    wide = torch.randn(50, 70, dtype=dtype, requires_grad=True)
    h = wide[:, 3:67].view(50, 8, 8)
    assert not h.is_contiguous()
    atts = [torch.randn(8, 8, dtype=dtype, requires_grad=True) for _ in range(2)]
    _assert_like_formula(h, atts, dtype)


def test_empty_and_single_node_inputs():
    for n in (0, 1):
        h = torch.randn(n, 4, 8, requires_grad=True)
        atts = [torch.randn(1, 4, 8, requires_grad=True) for _ in range(2)]
        src, dst = node_logits(h, *atts)
        assert src.shape == (n, 4) and dst is not None and dst.shape == (n, 4)
        grads = torch.autograd.grad((src.sum() + dst.sum()), (h, *atts))
        torch.testing.assert_close(grads[1], h.sum(0, keepdim=True).detach())
        torch.testing.assert_close(grads[2], h.sum(0, keepdim=True).detach())


def test_an_unused_logit_gets_no_gradient_and_the_other_is_exact():
    h = torch.randn(40, 2, 8, dtype=torch.float64, requires_grad=True)
    a, b = (torch.randn(1, 2, 8, dtype=torch.float64, requires_grad=True) for _ in range(2))
    src, _ = node_logits(h, a, b)
    grad_h, grad_a, grad_b = torch.autograd.grad(src.sum(), (h, a, b), allow_unused=True)
    torch.testing.assert_close(grad_h, a.detach().expand(40, 2, 8))
    torch.testing.assert_close(grad_a, h.detach().sum(0, keepdim=True))
    assert grad_b is None or bool((grad_b == 0).all())


def test_att_gradient_does_not_depend_on_the_thread_count():
    h = torch.randn(5000, 8, 8)
    att = torch.randn(1, 8, 8, requires_grad=True)
    upstream = torch.randn(5000, 8)
    before = torch.get_num_threads()
    grads = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            (src, _) = node_logits(h, att)
            grads.append(torch.autograd.grad((src * upstream).sum(), att)[0])
    finally:
        torch.set_num_threads(before)
    assert torch.equal(grads[0], grads[1])


def test_inputs_the_kernel_does_not_take_use_the_formula():
    """Half precision, a column-strided h and fused=False (the reference
    backend's higher-order gradients) take PyG's formula."""
    att = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    h = torch.randn(10, 4, 2, dtype=torch.float64).transpose(1, 2).requires_grad_()
    torch.testing.assert_close(node_logits(h, att)[0], _formula(h, att))
    h = torch.randn(10, 2, 4, dtype=torch.float64, requires_grad=True)
    (src, _) = node_logits(h, att, fused=False)
    (grad,) = torch.autograd.grad(src.sum(), h, create_graph=True)
    assert grad.requires_grad  # a differentiable graph: double backward works
    half = torch.randn(10, 2, 4, dtype=torch.bfloat16)
    torch.testing.assert_close(node_logits(half, att.to(torch.bfloat16))[0],
                               _formula(half, att.to(torch.bfloat16)))


def test_the_fused_op_refuses_double_backward():
    h = torch.randn(10, 2, 4, dtype=torch.float64, requires_grad=True)
    att = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    (src, _) = node_logits(h, att)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(src.sum(), h, create_graph=True)


def test_bad_shapes_are_refused_by_the_kernel():
    ext_op = node_logits_op
    with pytest.raises(RuntimeError, match="att_src"):
        ext_op(torch.randn(5, 2, 4), torch.randn(2, 3), None)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        ext_op(torch.randn(5, 2, 4).half(), torch.randn(2, 4).half(), None)


@pytest.mark.parametrize("two", [True, False])
def test_opcheck(two):
    h = torch.randn(20, 3, 8, dtype=torch.float64, requires_grad=True)
    a = torch.randn(1, 3, 8, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 8, dtype=torch.float64, requires_grad=True) if two else None
    torch.library.opcheck(node_logits_op, (h, a, b))


def test_compiles_without_graph_breaks():
    h = torch.randn(30, 2, 8, requires_grad=True)
    a, b = (torch.randn(1, 2, 8, requires_grad=True) for _ in range(2))

    def f(h, a, b):
        src, dst = node_logits(h, a, b)
        return src * 2 + dst

    explain = torch._dynamo.explain(f)(h, a, b)
    assert explain.graph_break_count == 0
    compiled = torch.compile(f, fullgraph=True)
    torch.testing.assert_close(compiled(h, a, b), f(h, a, b))
