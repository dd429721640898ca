"""attention_flow and attention_max_flow: hand-checked, networkx reference, scipy path."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

import pyg_attn.analysis.flow as flow_module
from pyg_attn.analysis import (ALL_PAIRS_MAX_NODES, attention_flow, attention_max_flow,
                               attention_rollout)
from pyg_attn.convert import dense_to_edge_index, edge_index_to_dense

from ..attention_data import random_dense_attention, random_edge_attention

needs_scipy = pytest.mark.skipif(not flow_module._scipy_available(), reason="needs scipy")


def reference_flow(layers: torch.Tensor) -> np.ndarray:
    """Direct: the whole layered network in networkx, one max-flow per pair."""
    num_layers, n, _ = layers.shape
    G = nx.DiGraph()
    for depth, A in enumerate(layers.tolist(), start=1):
        mixed = 0.5 * np.array(A) + 0.5 * np.eye(n)
        mixed /= mixed.sum(1, keepdims=True)
        for i in range(n):
            for j in range(n):
                if mixed[i, j] > 0:
                    G.add_edge((depth - 1, j), (depth, i), capacity=mixed[i, j])
    return np.array([[nx.maximum_flow_value(G, (0, j), (num_layers, i)) for j in range(n)]
                     for i in range(n)])


def test_hand_checked():
    # one layer, node 0 reads 0 and 1 equally: Â[0] = [0.75, 0.25]
    A = torch.tensor([[[0.5, 0.5], [0.0, 1.0]]])
    flow = attention_flow(A, method="networkx")
    assert flow.tolist() == [[0.75, 0.25], [0.0, 1.0]]  # one layer: flow = Â = rollout
    # two layers: from input 1 to output 0 two paths of bottleneck 0.25 each
    flow2 = attention_flow(torch.cat([A, A]), method="networkx")
    assert flow2.tolist() == [[0.75, 0.5], [0.0, 1.0]]
    rollout = attention_rollout(torch.cat([A, A]))
    assert rollout[0, 1] == pytest.approx(0.4375)  # rollout sums paths, flow cuts


def test_matches_direct_networkx():
    attn = random_dense_attention(3, 6, 6, seed=31, zero_rows=1)
    flow = attention_flow(attn, method="networkx")
    assert np.allclose(flow.numpy(), reference_flow(attn), atol=1e-12)
    assert bool((flow <= 1 + 1e-12).all())


@needs_scipy
def test_scipy_matches_networkx_within_the_stated_bound():
    attn = random_dense_attention(2, 3, 12, 12, seed=32)
    exact = attention_flow(attn, method="networkx")
    scale = 2.0 ** 12  # coarse on purpose, so rounding shows
    fast = attention_flow(attn, method="scipy", scale=scale)
    edges = 3 * 12 * 12  # at most M edges in a target's network
    assert (fast - exact).abs().max() <= 0.5 * edges / scale
    default = attention_flow(attn, method="scipy")
    assert (default - exact).abs().max() < 1e-6
    assert torch.allclose(attention_flow(attn), default)  # auto picks scipy


def test_graph_attention_with_targets_matches_dense():
    layers = [random_edge_attention(40, 100, heads=2, seed=s, isolated=5) for s in (7, 8)]
    dense = torch.stack([edge_index_to_dense(ei, a, 40) for ei, a in layers])
    targets = [3, 39, 0]
    sparse = attention_flow(layers, targets=targets, num_nodes=40, method="networkx")
    expected = attention_flow(dense, targets=targets, method="networkx")
    assert sparse.shape == (3, 40) and torch.allclose(sparse, expected)
    # only the 2-hop in-neighbourhood of a target can send flow
    rollout = attention_rollout(layers, targets=targets, num_nodes=40).to_dense()
    assert torch.equal(sparse > 0, rollout > 0)
    assert sparse[1].tolist() == [0.0] * 39 + [1.0]  # isolated node: only itself


@pytest.mark.parametrize("method", ["networkx", pytest.param("scipy", marks=needs_scipy)])
def test_without_residual_a_node_without_edges_receives_no_flow(method):
    A = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    flow = attention_flow(A, residual=0.0, method=method)
    assert flow.tolist() == [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]


def test_all_pairs_only_for_small_inputs():
    n = ALL_PAIRS_MAX_NODES + 1
    attn = torch.eye(n).expand(1, n, n)
    with pytest.raises(ValueError, match="targets"):
        attention_flow(attn)
    assert attention_flow(attn, targets=[0], method="networkx")[0, 0] == 1.0


def test_without_scipy_falls_back_to_networkx(monkeypatch):
    monkeypatch.setattr(flow_module, "_scipy_available", lambda: False)
    attn = random_dense_attention(2, 4, 4, seed=33)
    assert torch.allclose(attention_flow(attn), attention_flow(attn, method="networkx"))
    with pytest.raises(ImportError, match="scipy"):
        attention_flow(attn, method="scipy")


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "push"}, "method"),
    ({"scale": 0}, "scale"),
    ({"targets": [9]}, "targets"),
    ({"head_fusion": "median"}, "head_fusion"),
])
def test_flow_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        attention_flow(torch.eye(3).expand(2, 3, 3), **kwargs)
    with pytest.raises(ValueError, match="sum to 1 or 0"):
        attention_flow(torch.full((1, 2, 2), 0.4))


def test_max_flow_of_one_graph():
    attn = random_dense_attention(8, 8, seed=34)
    edge_index, alpha = dense_to_edge_index(attn)
    G = nx.DiGraph()
    G.add_weighted_edges_from(zip(edge_index[0].tolist(), edge_index[1].tolist(),
                                  alpha.tolist()), weight="capacity")
    expected = nx.maximum_flow_value(G, 5, 2)
    assert attention_max_flow(attn, 5, 2) == pytest.approx(expected)
    assert attention_max_flow((edge_index, alpha), 5, 2) == pytest.approx(expected)
    with pytest.raises(ValueError, match="source=8"):
        attention_max_flow(attn, 8, 2)
    with pytest.raises(ValueError, match="differ"):
        attention_max_flow(attn, 2, 2)
