"""attention_rollout: hand-checked, against numpy, dense vs sparse, captured models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pyg_attn.analysis import attention_rollout
from pyg_attn.convert import edge_index_to_dense
from pyg_attn.nn import GATConv, capture_attention

from ..attention_data import random_dense_attention, random_edge_attention
from ..graphs import random_graph


def numpy_rollout(layers: np.ndarray) -> np.ndarray:
    """Direct: Â = rownorm(0.5 A + 0.5 I), R = Â_L ... Â_1."""
    result = np.eye(layers.shape[-1])
    for A in layers:
        mixed = 0.5 * A + 0.5 * np.eye(A.shape[0])
        result = (mixed / mixed.sum(1, keepdims=True)) @ result
    return result


def test_hand_checked_two_layers():
    # layer 1: 0 reads 1 only; layer 2: 2 reads 0 only
    A1 = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    A2 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    R = attention_rollout(torch.stack([A1, A2]))
    # Â1 row 0 = [.5, .5, 0]; Â2 row 2 = [.5, 0, .5]; R[2] = .5 * [.5, .5, 0] + .5 * e2
    assert R[2].tolist() == [0.25, 0.25, 0.5]
    assert R[0].tolist() == [0.5, 0.5, 0.0]
    assert R[1].tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_dense_matches_numpy(fusion):
    attn = random_dense_attention(3, 2, 9, 9, seed=21, zero_rows=2)
    fused = {"mean": attn.mean(1), "max": attn.amax(1), "min": attn.amin(1)}[fusion]
    R = attention_rollout(attn, head_fusion=fusion)
    assert np.allclose(R.numpy(), numpy_rollout(fused.numpy()))
    assert torch.allclose(R.sum(1), torch.ones(9, dtype=R.dtype))
    # a list of per-layer matrices, and rows for some targets only
    assert torch.allclose(attention_rollout(list(attn), head_fusion=fusion), R)
    assert torch.allclose(attention_rollout(attn, fusion, targets=[4, 0]), R[[4, 0]])


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_sparse_matches_dense(fusion):
    layers = [random_edge_attention(30, 90, heads=2, seed=s, isolated=4) for s in (1, 2, 3)]
    dense = torch.stack([edge_index_to_dense(ei, a, num_nodes=30) for ei, a in layers], 0)
    expected = attention_rollout(dense, head_fusion=fusion)
    R = attention_rollout(layers, head_fusion=fusion, num_nodes=30)
    assert R.is_sparse and R.shape == (30, 30)
    assert torch.allclose(R.to_dense(), expected)
    rows = attention_rollout(layers, head_fusion=fusion, targets=[7, 29], num_nodes=30)
    assert rows.shape == (2, 30) and torch.allclose(rows.to_dense(), expected[[7, 29]])


def test_sparse_rows_stay_in_the_neighbourhood_of_a_large_graph():
    # 50k nodes: a dense [N, N] would need 10 GB; two rows need a few entries
    n = 50_000
    layers = [random_edge_attention(n, 100_000, seed=s, dtype=torch.float32)
              for s in (4, 5)]
    rows = attention_rollout(layers, targets=[0, 1], num_nodes=n)
    assert rows.shape == (2, n) and rows._nnz() < 200
    sums = torch.zeros(2).index_add_(0, rows.indices()[0], rows.values())
    assert torch.allclose(sums, torch.ones(2), atol=1e-5)


def test_captured_model_records():
    torch.manual_seed(0)
    edge_index = random_graph(15, 15, 40, seed=6)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = GATConv(4, 3, heads=2)
            self.conv2 = GATConv(6, 2, heads=1)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    model = Net().eval()
    with capture_attention(model) as records:
        model(torch.randn(15, 4), edge_index)
    R = attention_rollout(records)
    dense = [edge_index_to_dense(r.edge_index, r.alpha, 15).mean(0).double()
             for r in records.values()]
    assert np.allclose(R.to_dense().numpy(), numpy_rollout(torch.stack(dense).numpy()),
                       atol=1e-6)


@pytest.mark.parametrize("attentions, kwargs, error, match", [
    (torch.ones(2, 3, 3), {}, ValueError, "sum to 1 or 0"),
    (torch.eye(3), {}, ValueError, "3-D or 4-D"),
    (torch.ones(2, 3, 4) / 4, {}, ValueError, "square"),
    (torch.eye(3).expand(2, 3, 3), {"head_fusion": "sum"}, ValueError, "head_fusion"),
    (torch.eye(3).expand(2, 3, 3), {"targets": [3]}, ValueError, "targets"),
    (torch.eye(3).expand(2, 3, 3), {"residual": 1.5}, ValueError, "residual"),
    ([torch.eye(3), torch.eye(2)], {}, ValueError, "same shape"),
    ([], {}, ValueError, "at least one layer"),
    ("layers", {}, TypeError, "attentions"),
    ([(torch.tensor([[0, 1], [1, 1]]), torch.tensor([0.5, 0.6]))], {}, ValueError,
     "alpha.*sum to 1 or 0"),
    ([(torch.tensor([[0, 1], [1, 1]]), torch.tensor([0.5, 0.5])), "x"], {}, TypeError,
     r"attentions\[1\]"),
    ([(torch.tensor([[0, 1], [1, 1]]), torch.tensor([0.5, 0.5]))], {"targets": [-1]},
     ValueError, "targets"),
])
def test_rejects_bad_input(attentions, kwargs, error, match):
    with pytest.raises(error, match=match):
        attention_rollout(attentions, **kwargs)
