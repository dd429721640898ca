"""GATConv beyond the conformance suite it shares with GATv2Conv
(test_pyg_conformance.py): narrow and wide inputs, ``size=`` and
source-only bipartite inputs, the looped graph's edge ids, non-sum aggregation and
``size`` errors.
"""
from __future__ import annotations

import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor
from torch_geometric.utils import coalesce, to_torch_coo_tensor, to_torch_csr_tensor

from pyg_attn.nn.conv import self_loops
from pyg_attn.ops import gat_attention
from pyg_attn.nn.conv.edges import edge_ids
from pyg_attn.nn.conv.gat_conv import GATConv

from ..graphs import random_graph
from .pyg_twins import GRAPHS, assert_same_run, make_pair, run


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("in_channels", [4, 64])
def test_narrow_and_wide_inputs_match_pyg(in_channels, dtype):
    """Inputs narrower and wider than the projection (the per-node logits come
    from the projected features either way) match PyG, bipartite too."""
    _, _, build = GRAPHS["random"]
    edge_index = build()
    x = torch.randn(30, in_channels, dtype=dtype)
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, in_channels, 3, heads=2, dtype=dtype)
    assert_same_run(run(pyg, x, edge_index), run(ours, x, edge_index), dtype)
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, (in_channels, in_channels), 3, heads=2,
                          dtype=dtype, add_self_loops=False)
    pair = (x, torch.randn(30, in_channels, dtype=dtype))
    assert_same_run(run(pyg, pair, edge_index), run(ours, pair, edge_index), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bipartite_size_and_source_only_inputs_match_pyg(dtype):
    x_src = torch.randn(20, 6, dtype=dtype)
    x_dst = torch.randn(9, 5, dtype=dtype)
    edge_index = random_graph(20, 9, 60, seed=5, isolated=2, self_loops=3)
    edge_attr = torch.randn(edge_index.size(1), 2, dtype=dtype)
    for kwargs in (dict(heads=2), dict(heads=2, residual=True, edge_dim=2),
                   dict(heads=3, concat=False, add_self_loops=False)):
        ours, pyg = make_pair(GATConv, pyg_nn.GATConv, (6, 5), 4, dtype=dtype, **kwargs)
        ea = edge_attr if "edge_dim" in kwargs else None
        assert_same_run(run(pyg, (x_src, x_dst), edge_index, ea, size=(20, 9)),
                        run(ours, (x_src, x_dst), edge_index, ea, size=(20, 9)), dtype)
    # Source features only (x_dst = None): destinations from `size`, no dst term.
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, 6, 4, heads=2, dtype=dtype)
    assert_same_run(run(pyg, (x_src, None), edge_index, size=(20, 9)),
                    run(ours, (x_src, None), edge_index, size=(20, 9)), dtype)
    # A layer built for bipartite inputs, called with one feature matrix.
    ours, pyg = make_pair(GATConv, pyg_nn.GATConv, (6, 6), 4, heads=2, dtype=dtype)
    square = random_graph(20, 20, 60, seed=6)
    assert_same_run(run(pyg, x_src, square), run(ours, x_src, square), dtype)


def test_looped_graph_edge_ids():
    """Every edge of the looped graph maps back to its edge in the caller's input
    (-1: added loop): edge_ids recognises gat_graph's order for every input form."""
    edge_index = random_graph(12, 12, 40, seed=21, self_loops=4, duplicates=3)
    looped = self_loops.gat_graph(edge_index, 12, 12, True)
    ids = edge_ids(edge_index, looped.edge_index, True)
    kept = ids >= 0
    assert torch.equal(looped.edge_index[:, kept], edge_index[:, ids[kept]])
    assert torch.equal(looped.edge_index[0, ~kept], torch.arange(12))
    assert torch.equal(looped.edge_index[0, ~kept], looped.edge_index[1, ~kept])
    assert int(kept.sum()) == int((edge_index[0] != edge_index[1]).sum())
    unique = coalesce(edge_index, num_nodes=12)
    forms = [to_torch_coo_tensor(unique.flip(0), size=(12, 12)),
             to_torch_csr_tensor(unique.flip(0), size=(12, 12))]
    if WITH_TORCH_SPARSE:
        forms.append(SparseTensor.from_edge_index(unique.flip(0), sparse_sizes=(12, 12)))
    for adj in forms:
        stored = self_loops.gat_graph(adj, 12, 12, False).edge_index  # stored order
        looped = self_loops.gat_graph(adj, 12, 12, True)
        ids = edge_ids(adj, looped.edge_index, True)
        kept = ids >= 0
        assert torch.equal(looped.edge_index[:, kept], stored[:, ids[kept]])
        assert bool((looped.edge_index[0, ~kept] == looped.edge_index[1, ~kept]).all())
        assert int((~kept).sum()) == 12


@pytest.mark.parametrize("num_src,num_dst", [(12, 12), (15, 9), (9, 15)])
def test_masked_loops_give_the_attention_of_removed_loops(num_src, num_dst):
    """``static_shapes`` keeps every input edge with its loops masked, then the
    loops; the attention output and its gradients equal those of the removal."""
    edge_index = random_graph(num_src, num_dst, 40, seed=3, self_loops=5, duplicates=2,
                              isolated=2)
    removed = self_loops.gat_graph(edge_index, num_src, num_dst, True)
    masked = self_loops.gat_graph(edge_index, num_src, num_dst, True, static_shapes=True)
    num_loops = min(num_src, num_dst)
    assert masked.num_edges == edge_index.size(1) + num_loops
    assert masked.edge_mask is not None and masked.edge_mask.dtype == torch.bool
    assert torch.equal(masked.edge_mask[:edge_index.size(1)], edge_index[0] != edge_index[1])
    assert bool(masked.edge_mask[edge_index.size(1):].all())
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(num_src, 2, generator=gen), torch.randn(num_dst, 2, generator=gen),
              torch.randn(num_src, 2, 3, generator=gen)]
    results = []
    for looped in (removed, masked):
        leaves = [t.clone().requires_grad_() for t in inputs]
        out = gat_attention(*leaves, looped.graph, edge_mask=looped.edge_mask)
        out.pow(2).sum().backward()
        results.append([out, *(t.grad for t in leaves)])
    for got, expected in zip(results[1], results[0]):
        torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_bad_size():
    conv = GATConv(4, 3, heads=2, edge_dim=2)
    with pytest.raises(ValueError, match="size"):
        conv(torch.randn(5, 4), torch.tensor([[0], [1]]), size=(6, 5))


@pytest.mark.parametrize("aggr", ["mean", "max"])
def test_non_sum_aggregation_takes_the_message_path(aggr):
    x, edge_index = torch.randn(10, 6), torch.randint(0, 10, (2, 40))
    ours, theirs = make_pair(GATConv, pyg_nn.GATConv, 6, 4, heads=2, aggr=aggr)
    torch.testing.assert_close(ours(x, edge_index), theirs(x, edge_index))
