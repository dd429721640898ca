"""Dense attention = graph attention on the complete directed graph (vs torch SDPA)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pyg_attn.functional import attention_weights, complete_graph_edge_index, graph_attention

BACKENDS = ["reference", "cpu"]


def dense_to_nodes(t: torch.Tensor) -> torch.Tensor:
    """``[H, L, C]`` (SDPA layout, one sequence) -> ``[L, H, C]`` (graph layout)."""
    return t.transpose(0, 1).contiguous()


def sdpa_inputs(length: int, heads: int = 2, channels: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(heads, length, channels, generator=gen, requires_grad=True)
            for _ in range(3)]


def graph_vs_sdpa(q, k, v, edge_index, backend, edge_mask=None, **sdpa_kwargs):
    """Outputs and gradients of both views, with the same upstream gradient."""
    out_sdpa = F.scaled_dot_product_attention(q, k, v, **sdpa_kwargs)
    out_graph = graph_attention(dense_to_nodes(q), dense_to_nodes(k), dense_to_nodes(v),
                                edge_index, edge_mask=edge_mask, backend=backend)
    out_graph = out_graph.transpose(0, 1)
    grad = torch.randn_like(out_sdpa)
    grads_sdpa = torch.autograd.grad(out_sdpa, (q, k, v), grad)
    grads_graph = torch.autograd.grad(out_graph, (q, k, v), grad)
    return (out_graph, out_sdpa), list(zip(grads_graph, grads_sdpa))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("causal", [False, True])
def test_complete_graph_attention_equals_sdpa(backend, causal):
    q, k, v = sdpa_inputs(11)
    edge_index = complete_graph_edge_index(11, causal=causal)
    (out, expected), grads = graph_vs_sdpa(q, k, v, edge_index, backend, is_causal=causal)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    for got, want in grads:
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_attention_per_edge_reshapes_to_the_dense_matrix(backend):
    q, k, v = (t.detach() for t in sdpa_inputs(6, heads=3))
    _, alpha = graph_attention(dense_to_nodes(q), dense_to_nodes(k), dense_to_nodes(v),
                               complete_graph_edge_index(6), return_attention=True,
                               backend=backend)
    dense = alpha.T.reshape(3, 6, 6)  # [E, H] -> [H, i, j]: edges grouped by destination i
    torch.testing.assert_close(dense, attention_weights(q, k), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bool_mask_becomes_an_edge_mask(backend):
    q, k, v = sdpa_inputs(9, seed=1)
    gen = torch.Generator().manual_seed(3)
    allowed = torch.rand(9, 9, generator=gen) < 0.6
    allowed[:, 0] = True  # no fully masked row here: SDPA's behaviour there is its own
    edge_index = complete_graph_edge_index(9)
    edge_mask = allowed[edge_index[1], edge_index[0]]
    (out, expected), grads = graph_vs_sdpa(q, k, v, edge_index, backend, edge_mask=edge_mask,
                                           attn_mask=allowed)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    for got, want in grads:
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fully_masked_rows_give_zeros_in_both_views(backend):
    q, k, v = sdpa_inputs(7, seed=2)
    allowed = torch.rand(7, 7, generator=torch.Generator().manual_seed(4)) < 0.5
    allowed[:, 1] = True
    allowed[3] = False
    allowed[5] = False
    edge_index = complete_graph_edge_index(7)
    out = graph_attention(dense_to_nodes(q), dense_to_nodes(k), dense_to_nodes(v), edge_index,
                          edge_mask=allowed[edge_index[1], edge_index[0]],
                          backend=backend).transpose(0, 1)
    expected = attention_weights(q, k, mask=allowed) @ v
    assert bool((out[:, [3, 5]] == 0).all()) and bool((expected[:, [3, 5]] == 0).all())
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(out)
    for got, want in zip(torch.autograd.grad(out, (q, k, v), grad),
                         torch.autograd.grad(expected, (q, k, v), grad)):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_complete_graphs_equal_sdpa_per_graph(backend):
    sizes = [4, 1, 7, 3]
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    q, k, v = sdpa_inputs(sum(sizes), heads=2, seed=5)
    edge_index = complete_graph_edge_index(sum(sizes), causal=True, batch=batch)
    out = graph_attention(dense_to_nodes(q), dense_to_nodes(k), dense_to_nodes(v), edge_index,
                          backend=backend).transpose(0, 1)
    start = 0
    for size in sizes:
        part = slice(start, start + size)
        expected = F.scaled_dot_product_attention(q[:, part], k[:, part], v[:, part],
                                                  is_causal=True)
        torch.testing.assert_close(out[:, part], expected, atol=1e-5, rtol=1e-5)
        start += size


def test_complete_graph_edges():
    edges = complete_graph_edge_index(4)
    assert edges.shape == (2, 16)
    assert set(map(tuple, edges.T.tolist())) == {(j, i) for i in range(4) for j in range(4)}
    no_loops = complete_graph_edge_index(4, self_loops=False)
    assert no_loops.size(1) == 12 and bool((no_loops[0] != no_loops[1]).all())
    causal = complete_graph_edge_index(5, causal=True)
    assert causal.size(1) == 15 and bool((causal[0] <= causal[1]).all())
    strict = complete_graph_edge_index(5, self_loops=False, causal=True)
    assert strict.size(1) == 10 and bool((strict[0] < strict[1]).all())
    assert complete_graph_edge_index(0).shape == (2, 0)


def test_complete_graph_with_unsorted_batch_never_crosses_graphs():
    batch = torch.tensor([2, 0, 2, 1, 0, 2])
    edges = complete_graph_edge_index(6, batch=batch, causal=True)
    assert bool((batch[edges[0]] == batch[edges[1]]).all())
    assert bool((edges[0] <= edges[1]).all())
    expected = sum(n * (n + 1) // 2 for n in torch.bincount(batch).tolist())
    assert edges.size(1) == expected
    # Every pair of one graph appears exactly once.
    assert len(set(map(tuple, edges.T.tolist()))) == expected


def test_complete_graph_errors():
    with pytest.raises(TypeError, match="num_nodes"):
        complete_graph_edge_index(3.0)
    with pytest.raises(ValueError, match="num_nodes"):
        complete_graph_edge_index(-1)
    with pytest.raises(ValueError, match="batch"):
        complete_graph_edge_index(3, batch=torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="batch"):
        complete_graph_edge_index(2, batch=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="batch"):
        complete_graph_edge_index(2, batch=torch.tensor([0, -1]))


def test_attention_weights_equal_softmax_and_sdpa():
    gen = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=gen) for _ in range(3))
    weights = attention_weights(q, k)
    assert weights.shape == (2, 3, 5, 5)
    torch.testing.assert_close(weights, torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1))
    torch.testing.assert_close(weights @ v, F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5))
    unscaled = attention_weights(q, k, scale=1.0)
    torch.testing.assert_close(unscaled, torch.softmax(q @ k.transpose(-1, -2), dim=-1))


def test_attention_weights_masks_and_fully_masked_rows():
    gen = torch.Generator().manual_seed(8)
    q = torch.randn(4, 3, generator=gen, requires_grad=True)
    k = torch.randn(6, 3, generator=gen, requires_grad=True)
    allowed = torch.rand(4, 6, generator=gen) < 0.5
    allowed[0] = True
    allowed[2] = False  # query 2 may attend to nothing
    weights = attention_weights(q, k, mask=allowed)
    assert bool((weights[~allowed] == 0).all())
    torch.testing.assert_close(weights.sum(-1), torch.tensor([1.0, 1.0, 0.0, 1.0]))
    bias = torch.zeros(4, 6).masked_fill(~allowed, float("-inf"))
    torch.testing.assert_close(attention_weights(q, k, mask=bias), weights)
    weights.pow(2).sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    assert bool((q.grad[2] == 0).all())
    # A broadcast [S] mask (key padding) applies to every query.
    keys = torch.tensor([True, True, False, True, False, True])
    padded = attention_weights(q.detach(), k.detach(), mask=keys)
    assert bool((padded[:, ~keys] == 0).all())


def test_attention_weights_gradcheck_float64():
    gen = torch.Generator().manual_seed(9)
    q = torch.randn(3, 4, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    k = torch.randn(3, 5, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.rand(4, 5, generator=gen) < 0.7
    mask[1] = False
    assert torch.autograd.gradcheck(lambda a, b: attention_weights(a, b, mask=mask), (q, k))


def test_attention_weights_errors():
    q = torch.randn(4, 3)
    with pytest.raises(TypeError, match="query"):
        attention_weights(torch.ones(4, 3, dtype=torch.long), q)
    with pytest.raises(ValueError, match="key"):
        attention_weights(q, torch.randn(4))
    with pytest.raises(ValueError, match="last dimension"):
        attention_weights(q, torch.randn(4, 2))
    with pytest.raises(ValueError, match="mask"):
        attention_weights(q, q, mask=torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask"):
        attention_weights(q, q, mask=torch.ones(4, 4, dtype=torch.long))
