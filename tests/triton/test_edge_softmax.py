"""Triton edge softmax (the fused kernels' score-only kind) vs the reference."""
from __future__ import annotations

import pytest
import torch

from pyg_attn.ops import edge_softmax

from ..graphs import random_graph


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("heads", [None, 3])
def test_values_and_gradient_match_reference(device, dtype, heads):
    index = random_graph(20, 12, 70, seed=41, hub=2, hub_degree=40, isolated=3)[1].to(device)
    shape = (index.numel(),) if heads is None else (index.numel(), heads)
    gen = torch.Generator().manual_seed(0)
    scores = (4 * torch.randn(shape, generator=gen)).to(device, dtype)
    scores[::7] = float("-inf")
    weight = torch.randn(shape, generator=gen).to(device, dtype)
    results = []
    for backend in ("reference", "triton"):
        src = scores.clone().requires_grad_()
        out = edge_softmax(src, index, 12, backend=backend)
        (grad,) = torch.autograd.grad((out * weight).sum(), src)
        results.append((out, grad))
    tol = dict(atol=2e-3, rtol=2e-3) if dtype == torch.float16 else dict(atol=1e-6, rtol=1e-5)
    for expected, actual in zip(*results):
        assert actual.dtype == dtype
        torch.testing.assert_close(actual, expected, **tol)
    sums = torch.zeros(12, *shape[1:], device=device).index_add_(0, index, results[1][0].float())
    sum_tol = 1e-2 if dtype == torch.float16 else 1e-5
    assert torch.all(((sums - 1).abs() < sum_tol) | (sums == 0))  # rows sum to 1 or 0
    assert torch.all(sums[9:] == 0)  # isolated groups


def test_no_edges(device):
    out = edge_softmax(torch.empty(0, 2, device=device), torch.empty(0, dtype=torch.long,
                                                                     device=device), 4,
                       backend="triton")
    assert out.shape == (0, 2)
