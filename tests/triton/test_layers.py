"""The drop-in layers run on the Triton kernels like on the reference path."""
from __future__ import annotations

import pytest
import torch

from pyg_attn.nn import GATConv, GATv2Conv, TransformerConv

from .graphs import mixed_graph


@pytest.mark.parametrize("layer", [
    lambda: GATConv(6, 4, heads=2, dropout=0.2),
    lambda: GATv2Conv(6, 4, heads=2, edge_dim=3),
    lambda: TransformerConv(6, 4, heads=2, edge_dim=3, dropout=0.2),
])
def test_layer_forward_and_backward_match_reference(device, layer):
    num_nodes, _, edge_index = mixed_graph()
    torch.manual_seed(0)
    conv = layer().to(device)
    x = torch.randn(num_nodes, 6, device=device)
    edge_attr = torch.randn(edge_index.size(1), 3, device=device)
    kwargs = {} if isinstance(conv, GATConv) else {"edge_attr": edge_attr}
    results = []
    for backend in ("reference", "triton"):
        conv.backend = backend
        conv.zero_grad()
        torch.manual_seed(1)  # same dropout mask
        out = conv(x, edge_index.to(device), **kwargs)
        out.square().sum().backward()
        results.append([out] + [p.grad.clone() for p in conv.parameters()])
    for expected, actual in zip(*results):
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
