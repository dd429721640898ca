"""No hidden state: every call is answered from the inputs of that call.

An edit of ``edge_index`` or ``x`` in place, by any route (``.data``, a NumPy
view, DLPack, which torch's version counter does not always see), must give
exactly what a fresh copy of the edited tensor gives; the same ``edge_index``
with another node count is another graph; threads sharing a layer get the
answers they get alone; and nothing derived from an input survives in a layer's
state, copies or pickles.
"""
from __future__ import annotations

import copy
import io
import threading

import pytest
import torch
from torch.utils import dlpack

from pyg_attn.nn import GATConv, GATv2Conv, KQVConv, TransformerConv
from pyg_attn.nn.conv.projection import project
from pyg_attn.ops import graph_attention, prepare

from .graphs import random_graph

N, F_IN = 30, 12

LAYERS = {
    "GATConv": lambda: GATConv(F_IN, 4, heads=2),
    "GATv2Conv": lambda: GATv2Conv(F_IN, 4, heads=2),
    "TransformerConv": lambda: TransformerConv(F_IN, 4, heads=2),
    "GATConv-no-loops": lambda: GATConv(F_IN, 4, heads=2, add_self_loops=False),
    "KQVConv": lambda: KQVConv(F_IN, 4, heads=2),
}


def _edit_data(t: torch.Tensor, new: torch.Tensor) -> None:
    t.data.copy_(new)


def _edit_numpy(t: torch.Tensor, new: torch.Tensor) -> None:
    t.numpy()[:] = new.numpy()


def _edit_dlpack(t: torch.Tensor, new: torch.Tensor) -> None:
    dlpack.from_dlpack(dlpack.to_dlpack(t)).copy_(new)


EDITS = {"data": _edit_data, "numpy": _edit_numpy, "dlpack": _edit_dlpack}


def _graphs() -> tuple[torch.Tensor, torch.Tensor]:
    """Two graphs of one shape that differ in most edges, with self-loops and
    duplicates, and isolated nodes in the first."""
    old = random_graph(N, N, 80, seed=1, self_loops=4, duplicates=3, isolated=5)
    new = random_graph(N, N, 80, seed=2, self_loops=4, duplicates=3)
    return old, new


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("name", LAYERS)
def test_layer_sees_every_in_place_edit_of_edge_index(name, edit):
    torch.manual_seed(0)
    layer = LAYERS[name]().eval()
    x = torch.randn(N, F_IN)
    edge_index, new = _graphs()
    before = layer(x, edge_index)
    version = edge_index._version
    EDITS[edit](edge_index, new)
    if edit != "dlpack":  # the case the version counter misses: .data and NumPy
        assert edge_index._version == version
    after = layer(x, edge_index)
    expected = layer(x, new.clone())
    torch.testing.assert_close(after, expected, atol=0, rtol=0)
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("edit", EDITS)
def test_op_sees_every_in_place_edit_of_edge_index(edit):
    q, k, v = (torch.randn(N, 2, 4) for _ in range(3))
    edge_index, new = _graphs()
    graph_attention(q, k, v, edge_index)
    EDITS[edit](edge_index, new)
    out, alpha = graph_attention(q, k, v, edge_index, return_attention=True)
    expected, expected_alpha = graph_attention(q, k, v, new.clone(), return_attention=True)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    torch.testing.assert_close(alpha, expected_alpha, atol=0, rtol=0)


@pytest.mark.parametrize("edit", EDITS)
def test_sparse_feature_projection_sees_every_in_place_edit_of_x(edit):
    gen = torch.Generator().manual_seed(3)
    lin = torch.nn.Linear(200, 8)
    shape = (400, 200)  # large enough for the sparse path (projection.SPARSE_MIN_ELEMENTS)
    x = torch.rand(shape, generator=gen) * (torch.rand(shape, generator=gen) < 0.02)
    new = torch.rand(shape, generator=gen) * (torch.rand(shape, generator=gen) < 0.02)
    project(lin, x)
    EDITS[edit](x, new)
    torch.testing.assert_close(project(lin, x), lin(new), atol=1e-5, rtol=1e-5)
    # A sparse input turned dense in place takes the dense product, with the same result.
    dense = torch.randn(shape, generator=gen)
    EDITS[edit](x, dense)
    torch.testing.assert_close(project(lin, x), lin(dense), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["GATConv", "GATv2Conv", "TransformerConv", "KQVConv"])
def test_same_edge_index_with_another_number_of_nodes(name):
    torch.manual_seed(0)
    layer = LAYERS[name]().eval()
    edge_index = random_graph(20, 20, 60, seed=4)
    small = layer(torch.randn(20, F_IN), edge_index)
    x = torch.randn(35, F_IN)
    out = layer(x, edge_index)  # 15 more nodes, none with an incoming edge
    assert out.shape[0] == 35 and small.shape[0] == 20
    torch.testing.assert_close(out, layer(x, edge_index.clone()), atol=0, rtol=0)
    if name.startswith("GAT"):  # their self-loops reach every node: 35 rows of loops
        _, (returned, alpha) = layer(x, edge_index, return_attention_weights=True)
        assert int(returned.max()) == 34 and alpha.size(0) == returned.size(1)


@pytest.mark.parametrize("name", ["GATConv", "GATv2Conv", "TransformerConv"])
def test_four_threads_sharing_one_layer_get_their_own_answers(name):
    torch.manual_seed(0)
    layer = LAYERS[name]().eval()
    cases = []
    for seed in range(4):
        gen = torch.Generator().manual_seed(seed)
        num_nodes = 20 + 5 * seed
        x = torch.randn(num_nodes, F_IN, generator=gen)
        edge_index = random_graph(num_nodes, num_nodes, 70 + seed, seed=seed, isolated=seed)
        cases.append((x, edge_index, layer(x, edge_index)))
    results: dict[int, list[torch.Tensor]] = {i: [] for i in range(4)}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        x, edge_index, _ = cases[i]
        try:
            barrier.wait()
            with torch.no_grad():
                for _ in range(20):
                    results[i].append(layer(x, edge_index))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for i, (_, _, expected) in enumerate(cases):
        assert len(results[i]) == 20
        for out in results[i]:
            torch.testing.assert_close(out, expected, atol=0, rtol=0)


@pytest.mark.parametrize("name", ["GATConv", "TransformerConv"])
def test_nothing_derived_from_an_input_is_kept_by_a_layer(name):
    torch.manual_seed(0)
    layer = LAYERS[name]().eval()
    x = torch.randn(N, F_IN)
    edge_index, _ = _graphs()
    expected = layer(x, edge_index)
    assert all(not key.startswith("_") for key in layer.state_dict())
    assert set(layer.state_dict()) == set(LAYERS[name]().state_dict())
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for other in (copy.deepcopy(layer), loaded):
        torch.testing.assert_close(other(x, edge_index), expected, atol=0, rtol=0)


def test_prepared_graph_is_the_explicit_reuse():
    q, k, v = (torch.randn(N, 2, 4) for _ in range(3))
    edge_index, _ = _graphs()
    graph = prepare(edge_index, num_nodes=N)
    torch.testing.assert_close(graph_attention(q, k, v, graph),
                               graph_attention(q, k, v, edge_index), atol=0, rtol=0)
    layer = TransformerConv(F_IN, 4, heads=2).eval()
    x = torch.randn(N, F_IN)
    torch.testing.assert_close(layer(x, graph), layer(x, edge_index), atol=0, rtol=0)
