"""GATv2Conv beyond the conformance suite it shares with GATConv
(test_pyg_conformance.py): shared weights on bipartite inputs, and the inputs only it
refuses (no destination features, edge features without ``edge_dim``).
"""
from __future__ import annotations

import pytest
import torch
import torch_geometric.nn as pyg_nn

from pyg_attn.nn.conv.gatv2_conv import GATv2Conv

from ..graphs import random_graph
from .pyg_twins import assert_same_run, make_pair, run


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bipartite_shared_weights_match_pyg(dtype):
    """Shared weights need equal feature sizes on both sides."""
    x_src, x_dst = torch.randn(20, 6, dtype=dtype), torch.randn(9, 6, dtype=dtype)
    edge_index = random_graph(20, 9, 60, seed=5, isolated=2, self_loops=3)
    ours, pyg = make_pair(GATv2Conv, pyg_nn.GATv2Conv, (6, 6), 4, heads=2, dtype=dtype,
                          share_weights=True)
    assert_same_run(run(pyg, (x_src, x_dst), edge_index), run(ours, (x_src, x_dst), edge_index),
                    dtype)


def test_inputs_only_gatv2_refuses():
    conv = GATv2Conv(4, 3, heads=2, edge_dim=2)
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match="'x'"):
        conv((x, None), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="edge_attr"):
        GATv2Conv(4, 3)(x, torch.tensor([[0, 1], [1, 2]]), edge_attr=torch.randn(2, 2))
