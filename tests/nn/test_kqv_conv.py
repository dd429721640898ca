"""KQVConv: the original key/query/value update, input forms, attention records."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor
from torch_geometric.utils import to_torch_coo_tensor, to_torch_csr_tensor

from pyg_attn.nn import KQVConv
from pyg_attn.ops import prepare

from ..graphs import random_graph


def original_update(x: np.ndarray, edges: np.ndarray, w_query: np.ndarray, w_key: np.ndarray,
                    w_value: np.ndarray) -> np.ndarray:
    """The original per-node loop: every update is computed first, then applied."""
    edge_set = {(int(j), int(i)) for j, i in edges.T}
    updates = np.zeros_like(x)
    for i in range(x.shape[0]):
        sources = sorted(j for (j, dst) in edge_set if dst == i)
        if not sources:
            continue
        query = w_query @ x[i]
        scores = np.array([query @ (w_key @ x[j]) for j in sources])
        weights = np.exp(scores - scores.max())
        weights /= weights.sum()
        updates[i] = sum(w * (w_value @ x[j]) for w, j in zip(weights, sources))
    return x + updates


def test_reproduces_the_original_loop():
    edge_index = random_graph(15, 15, 40, seed=1, self_loops=3, duplicates=10, isolated=3)
    conv = KQVConv(6, 6, heads=1, scale=1.0, residual=True, bias=False).double()
    x = torch.randn(15, 6, dtype=torch.float64)
    out = conv(x, edge_index)
    expected = original_update(x.numpy(), edge_index.numpy(), conv.lin_query.weight.detach().numpy(),
                               conv.lin_key.weight.detach().numpy(),
                               conv.lin_value.weight.detach().numpy())
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=1e-6, rtol=0)
    isolated = torch.ones(15, dtype=torch.bool)
    isolated[edge_index[1]] = False
    assert torch.equal(out[isolated], x[isolated])


def test_repr_reset_and_state_dict_keys():
    conv = KQVConv(16, 8, heads=2)
    assert repr(conv) == "KQVConv(16, 8, heads=2)"
    # 2 heads x 8 = 16 outputs: the residual is the identity, no projection.
    assert set(conv.state_dict()) == {"lin_query.weight", "lin_key.weight", "lin_value.weight",
                                      "bias"}
    projected = KQVConv(16, 8, heads=1, bias=False)
    assert set(projected.state_dict()) == {"lin_query.weight", "lin_key.weight",
                                           "lin_value.weight", "lin_skip.weight"}
    assert "lin_skip.weight" not in KQVConv(16, 8, residual=False).state_dict()
    conv.bias.data.fill_(1.0)
    conv.reset_parameters()
    assert torch.all(conv.bias == 0)


@pytest.mark.parametrize("concat", [True, False])
def test_shapes_attention_and_duplicates(concat):
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 0], [1, 0, 0, 1, 1, 1]])
    x = torch.randn(5, 8)
    conv = KQVConv(8, 4, heads=3, concat=concat)
    out, (ei, alpha) = conv(x, edge_index, return_attention_weights=True)
    assert out.shape == (5, 12 if concat else 4)
    # The duplicate 1 -> 0 and 0 -> 1 edges count once; edges come sorted by destination.
    assert ei.tolist() == [[1, 0, 2, 3], [0, 1, 1, 1]]
    assert alpha.shape == (4, 3)
    torch.testing.assert_close(alpha[1:].sum(0), torch.ones(3))
    torch.testing.assert_close(alpha[0], torch.ones(3))
    assert torch.is_tensor(conv(x, edge_index, return_attention_weights=False))
    assert torch.is_tensor(conv(x, edge_index))


def test_sparse_inputs_match_edge_index():
    edge_index = torch.tensor([[0, 1, 2, 3, 3], [1, 2, 0, 0, 1]])
    x = torch.randn(4, 8)
    conv = KQVConv(8, 4, heads=2)
    expected, (_, alpha) = conv(x, edge_index, return_attention_weights=True)
    coo = to_torch_coo_tensor(edge_index.flip(0), size=(4, 4))
    csr = to_torch_csr_tensor(edge_index.flip(0), size=(4, 4))
    for adj in (coo, csr):
        out, (adj_alpha, alpha_sparse) = conv(x, adj, return_attention_weights=True)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(alpha_sparse, alpha)
        assert adj_alpha.layout == adj.layout
    if WITH_TORCH_SPARSE:
        adj = SparseTensor.from_edge_index(edge_index.flip(0), sparse_sizes=(4, 4))
        out, adj_alpha = conv(x, adj, return_attention_weights=True)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(adj_alpha.storage.value(), alpha)
    graph = prepare(edge_index, 4)
    torch.testing.assert_close(conv(x, graph), expected)


def test_bipartite_lazy_and_empty():
    x_src, x_dst = torch.randn(6, 5), torch.randn(3, 7)
    edge_index = torch.tensor([[0, 5, 4], [0, 0, 2]])
    conv = KQVConv((-1, -1), 4, heads=2)
    out = conv((x_src, x_dst), edge_index)
    assert out.shape == (3, 8)
    empty = conv((x_src, x_dst), torch.empty(2, 0, dtype=torch.long))
    torch.testing.assert_close(empty, conv.lin_skip(x_dst) + conv.bias)
    with pytest.raises(ValueError, match="source index 6"):
        conv((x_src, x_dst), torch.tensor([[6], [0]]))


def test_gradients_flow_and_dropout_only_in_training():
    edge_index = random_graph(20, 20, 80, seed=3)
    x = torch.randn(20, 8, requires_grad=True)
    conv = KQVConv(8, 8, heads=1, dropout=0.5)
    conv.eval()
    torch.testing.assert_close(conv(x, edge_index), conv(x, edge_index), atol=0, rtol=0)
    conv.train()
    torch.manual_seed(0)
    a = conv(x, edge_index)
    torch.manual_seed(0)
    b = conv(x, edge_index)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    a.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in conv.parameters())


def test_invalid_arguments():
    with pytest.raises(ValueError, match="'heads'"):
        KQVConv(4, 4, heads=0)
    with pytest.raises(ValueError, match="'dropout'"):
        KQVConv(4, 4, dropout=2.0)
    with pytest.raises(TypeError, match="'edge_index'"):
        KQVConv(4, 4)(torch.randn(3, 4), [[0], [1]])


def test_duplicate_sparse_entries_return_attention_over_the_attended_edges():
    """A sparse adjacency holding an entry twice is attended once per edge (as an
    ``edge_index`` with duplicates is); the attention comes back over those
    de-duplicated edges, in the input's sparse format, instead of failing."""
    row, col = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([1, 1, 0, 0, 1, 1])
    x = torch.randn(3, 8)
    conv = KQVConv(8, 4, heads=2)
    expected, (edge_index, alpha) = conv(x, torch.stack([col, row]),
                                         return_attention_weights=True)
    dense = torch.zeros(3, 3, 2)
    dense[edge_index[1], edge_index[0]] = alpha
    csr = torch.sparse_csr_tensor(torch.tensor([0, 2, 3, 6]), col, torch.ones(6), (3, 3))
    out, (adj_alpha, alpha_sparse) = conv(x, csr, return_attention_weights=True)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(alpha_sparse, alpha)
    assert adj_alpha.layout == torch.sparse_csr and adj_alpha._nnz() == 4
    torch.testing.assert_close(adj_alpha.to_dense(), dense)
    if WITH_TORCH_SPARSE:
        adj = SparseTensor(row=row, col=col, sparse_sizes=(3, 3))
        assert adj.nnz() == 6
        out, adj_alpha = conv(x, adj, return_attention_weights=True)
        torch.testing.assert_close(out, expected)
        assert adj_alpha.nnz() == 4
        torch.testing.assert_close(adj_alpha.to_dense(), dense)
