"""pyg_attn.nn.conv.edges directly: plain edges of every input form, edge ids, input splits."""
from __future__ import annotations

import pytest
import torch
from torch_geometric import EdgeIndex
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor
from torch_geometric.utils import (
    coalesce,
    to_torch_coo_tensor,
    to_torch_csc_tensor,
    to_torch_csr_tensor,
)

from pyg_attn.nn.conv.edges import (
    edge_ids,
    match_edges,
    num_nodes_of,
    plain_edges,
    sparse_graph,
    split_input,
)
from pyg_attn.ops import prepare

from ..graphs import random_graph

N_SRC, N_DST = 7, 5


@pytest.fixture
def unique_edges():
    """``[2, E]`` distinct edges sorted by (destination, source): every sparse form's
    stored order."""
    edge_index = random_graph(N_SRC, N_DST, 20, seed=3)
    flipped = coalesce(edge_index.flip(0), num_nodes=max(N_SRC, N_DST))  # by dst, then src
    return flipped.flip(0)


def input_forms(edge_index):
    """``{name: the same graph in that form}``."""
    adj = edge_index.flip(0)  # row = destination
    size = (N_DST, N_SRC)
    forms = {
        "tensor": edge_index,
        "EdgeIndex": EdgeIndex(edge_index, sparse_size=(N_SRC, N_DST)),
        "coo": to_torch_coo_tensor(adj, size=size),
        "csr": to_torch_csr_tensor(adj, size=size),
        "csc": to_torch_csc_tensor(adj, size=size),
        "prepared": prepare(edge_index, (N_SRC, N_DST)),
    }
    if WITH_TORCH_SPARSE:
        forms["SparseTensor"] = SparseTensor.from_edge_index(adj, sparse_sizes=size)
    return forms


def test_every_input_form_gives_the_same_plain_edges(unique_edges):
    for name, adj in input_forms(unique_edges).items():
        plain = plain_edges(adj)
        assert type(plain) is torch.Tensor, name
        if name == "csc":  # stored by source, then destination
            order = torch.argsort(unique_edges[0] * N_DST + unique_edges[1])
            assert torch.equal(plain, unique_edges[:, order]), name
        else:
            assert torch.equal(plain, unique_edges), name
        if name in ("tensor", "EdgeIndex"):
            assert num_nodes_of(adj) is None
        else:
            assert num_nodes_of(adj) == (N_SRC, N_DST), name


def test_uncoalesced_coo_is_read_as_stored_and_refused_by_sparse_graph():
    edge_index = torch.tensor([[2, 0, 2], [1, 1, 1]])
    adj = torch.sparse_coo_tensor(edge_index.flip(0), torch.ones(3), (N_DST, N_SRC))
    assert torch.equal(plain_edges(adj), edge_index)
    assert not adj.is_coalesced()  # reading it has no side effect
    with pytest.raises(ValueError, match="'edge_index'.*coalesce"):
        sparse_graph(adj)
    graph = sparse_graph(adj.coalesce())
    assert (graph.num_src, graph.num_dst) == (N_SRC, N_DST) and graph.num_edges == 2


def test_plain_edges_names_the_argument():
    with pytest.raises(TypeError, match="'edge_index'.*list"):
        plain_edges([[0], [1]])


def test_match_edges_finds_the_first_duplicate():
    given = torch.tensor([[0, 1, 0, 2, 1], [1, 2, 1, 2, 2]])
    found = torch.tensor([[1, 0, 2, 3, 2], [2, 1, 2, 0, 1]])
    assert match_edges(given, found).tolist() == [1, 0, 3, -1, -1]
    assert match_edges(given, found[:, :0]).tolist() == []
    assert match_edges(given[:, :0], found).tolist() == [-1] * 5


def test_edge_ids_with_duplicates_and_self_loops():
    edge_index = torch.tensor([[0, 1, 1, 2, 0, 3], [1, 1, 2, 0, 1, 3]])
    # no loop handling, the input itself: every edge (duplicates too) maps to itself
    assert edge_ids(edge_index, edge_index, False).tolist() == [0, 1, 2, 3, 4, 5]
    # PyG's loop handling: kept edges in order, then one loop per node
    looped = torch.tensor([[0, 1, 2, 0, 0, 1, 2, 3], [1, 2, 0, 1, 0, 1, 2, 3]])
    assert edge_ids(edge_index, looped, True).tolist() == [0, 2, 3, 4, -1, -1, -1, -1]
    # another order is matched by endpoints: a duplicate maps to its first edge
    shuffled = looped[:, [4, 3, 5, 0, 1, 6, 2, 7]]
    assert edge_ids(edge_index, shuffled, True).tolist() == [-1, 0, -1, 0, 2, -1, 3, -1]
    # without loop handling an input self-loop is an edge like any other
    assert edge_ids(edge_index, edge_index[:, [5, 1, 4]], False).tolist() == [5, 1, 0]


def test_edge_ids_of_sparse_inputs_are_stored_positions(unique_edges):
    forms = input_forms(unique_edges)
    reversed_edges = unique_edges.flip(1)
    for name in ("coo", "csr", "prepared"):
        ids = edge_ids(forms[name], reversed_edges, False)
        assert ids.tolist() == list(range(unique_edges.size(1)))[::-1], name


@pytest.mark.parametrize("x, error, message", [
    ([torch.randn(3, 2)], TypeError, "'h' must be a tensor or a pair"),
    ((torch.randn(3, 2), torch.randn(3, 2), None), TypeError, "'h' must be a tensor or a pair"),
    ("features", TypeError, "'h' must be a tensor or a pair"),
    ((None, torch.randn(3, 2)), TypeError, r"'h' \(source features\) must be a torch.Tensor"),
    ((torch.randn(3, 2), [1.0]), TypeError, r"'h' \(destination features\)"),
    (torch.randn(3), ValueError, r"'h' \(source features\) must be 2-dimensional"),
    ((torch.randn(3, 2), torch.randn(2, 2, 2)), ValueError,
     r"'h' \(destination features\) must be 2-dimensional"),
])
def test_split_errors_name_the_argument(x, error, message):
    with pytest.raises(error, match=message):
        split_input(x, "h")


def test_split_input_forms():
    x_src, x_dst = torch.randn(4, 3), torch.randn(2, 5)
    assert split_input(x_src) == (x_src, None)
    for pair in ((x_src, x_dst), [x_src, x_dst]):
        a, b = split_input(pair)
        assert a is x_src and b is x_dst
    a, b = split_input((x_src, None))
    assert a is x_src and b is None
