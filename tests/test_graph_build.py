"""The compiled graph builder (counting sorts) against the torch.sort reference."""
from __future__ import annotations

import pytest
import torch

from pyg_attn.ops import graph, graph_build
from pyg_attn.ops.cpu import load_extension

from .graphs import random_graph

pytestmark = pytest.mark.skipif(load_extension() is None, reason="no compiled CPU extension")

FIELDS = ("rowptr", "col", "perm", "colptr", "csc_row", "csc_edge")


def orders(edge_index: torch.Tensor, num_src: int) -> dict:
    """The same edges in the orders the builders special-case."""
    gen = torch.Generator().manual_seed(1)
    shuffled = edge_index[:, torch.randperm(edge_index.size(1), generator=gen)]
    return {
        "shuffled": shuffled,
        "by_destination": shuffled[:, torch.argsort(shuffled[1], stable=True)],
        "by_source": shuffled[:, torch.argsort(shuffled[0], stable=True)],
        "coalesced": shuffled[:, torch.argsort(shuffled[0] * max(num_src, 1) + shuffled[1])],
    }


GRAPHS = {
    "pathologies": (random_graph(40, 40, 300, seed=3, hub=5, hub_degree=60, self_loops=12,
                                 duplicates=20, isolated=6), 40, 40),
    "bipartite": (random_graph(25, 60, 200, seed=4, duplicates=5), 25, 60),
    "empty": (torch.empty(2, 0, dtype=torch.long), 7, 5),
    "loops only": (torch.arange(6).repeat(2, 1), 6, 6),
    "no nodes": (torch.empty(2, 0, dtype=torch.long), 0, 0),
}


def assert_same_graph(ours: graph.PreparedGraph, reference: graph.PreparedGraph) -> None:
    assert (ours.num_src, ours.num_dst) == (reference.num_src, reference.num_dst)
    for name in FIELDS:
        mine, theirs = getattr(ours, name), getattr(reference, name)
        assert mine.dtype == theirs.dtype, name
        assert torch.equal(mine, theirs), name


@pytest.mark.parametrize("name", GRAPHS)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_native_graph_equals_the_sorted_one(name, dtype):
    edge_index, num_src, num_dst = GRAPHS[name]
    for order, edges in orders(edge_index, num_src).items():
        edges = edges.to(dtype)
        native, kept = graph_build.native_graph(edges, num_src, num_dst)
        assert kept.numel() == 0, order
        assert_same_graph(native, graph_build.sorted_graph(edges, num_src, num_dst))
        assert torch.equal(native.edge_index, edges.long()), order


@pytest.mark.parametrize("name", GRAPHS)
def test_native_looped_graph_equals_the_reference(name, monkeypatch):
    edge_index, num_src, num_dst = GRAPHS[name]
    num_loops = min(num_src, num_dst)
    for order, edges in orders(edge_index, num_src).items():
        native, kept = graph_build.build_looped_graph(edges, num_src, num_dst, num_loops)
        with monkeypatch.context() as patch:
            patch.setattr(graph_build, "native_graph", lambda *args: None)
            reference, reference_kept = graph_build.build_looped_graph(edges, num_src, num_dst,
                                                               num_loops)
        assert_same_graph(native, reference)
        assert kept.dtype == torch.long and torch.equal(kept, reference_kept), order
        looped = torch.cat([edges[:, kept], torch.arange(num_loops).repeat(2, 1)], dim=1)
        assert torch.equal(native.edge_index, looped), order


def test_strided_rows_are_read_in_place():
    edge_index, num_src, num_dst = GRAPHS["pathologies"]
    transposed = edge_index.t().contiguous().t()  # rows with stride 2
    native, _ = graph_build.native_graph(transposed, num_src, num_dst)
    assert_same_graph(native, graph_build.sorted_graph(edge_index, num_src, num_dst))


@pytest.mark.parametrize("bad, message", [
    ([[0, 7], [1, 2]], "source index 7"), ([[0, 1], [1, 5]], "destination index 5"),
    ([[0, -1], [1, 2]], "negative index")])
@pytest.mark.parametrize("loops", [None, 3])
def test_out_of_range_index_is_named(bad, message, loops):
    with pytest.raises(ValueError, match=message):
        graph_build.native_graph(torch.tensor(bad), 4, 4, loops)


@pytest.mark.parametrize("dtype", [torch.int16, torch.uint8])
def test_other_index_dtypes_take_the_sorted_path(dtype):
    edges = torch.tensor([[0, 1], [1, 0]], dtype=dtype)
    assert graph_build.native_graph(edges, 2, 2) is None
    graph = graph_build.build_graph(edges, 2, 2)
    assert graph.edge_index.tolist() == [[0, 1], [1, 0]] and graph.col.tolist() == [1, 0]


def test_extension_refuses_malformed_arguments():
    extension = load_extension()
    edges = torch.tensor([0, 1])
    with pytest.raises(RuntimeError, match="int32 or both int64"):
        extension.build_graph(edges, edges.int(), 2, 2, False, 0)
    with pytest.raises(RuntimeError, match="num_loops"):
        extension.build_graph(edges, edges, 2, 2, True, 3)
    with pytest.raises(RuntimeError, match="one length"):
        extension.build_graph(edges, edges[:1], 2, 2, False, 0)
