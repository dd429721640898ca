"""draw_attention_graph: every input form, neighbourhoods, files, bad input."""
from __future__ import annotations

import networkx as nx
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pyg_attn.convert import attention_to_networkx
from pyg_attn.visualization import attention_neighbourhood, draw_attention_graph

from ..attention_data import random_dense_attention, random_edge_attention
from ..graphs import random_graph
from .pictures import assert_png_not_blank


def test_dense_with_labels_and_edge_labels(tmp_path):
    attn = random_dense_attention(5, 5, seed=51)
    fig, ax = draw_attention_graph(attn, labels=list("abcde"), edge_labels=True,
                                   title="tokens", path=tmp_path / "g.png")
    assert isinstance(fig, Figure) and isinstance(ax, Axes)
    assert len(ax.patches) == int((attn > 0).sum())  # one arrow per edge
    texts = {t.get_text() for t in ax.texts}
    assert {"a", "e"} <= texts  # node labels
    assert f"{float(attn[0, 0]):.2f}" in texts  # a rounded edge label
    assert len(fig.axes) == 2  # the colour bar
    assert_png_not_blank(tmp_path / "g.png")


def test_edge_attention_neighbourhood_and_svg(tmp_path):
    edge_index, alpha = random_edge_attention(40, 120, heads=2, seed=52)
    node = int(edge_index[1, 0])
    G = attention_to_networkx(edge_index, alpha)
    expected = attention_neighbourhood(G, node, hops=2)
    assert node in expected and all(
        nx.has_path(expected, n, node) for n in expected)  # all reach the centre
    fig, ax = draw_attention_graph((edge_index, alpha), node=node, hops=2, weight="weight_h1",
                                   layout="kamada_kawai", colorbar=False,
                                   path=tmp_path / "n.svg")
    assert len(ax.patches) == expected.number_of_edges()
    assert len(fig.axes) == 1
    assert (tmp_path / "n.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("layout", ["spring", "circular", "shell", "spectral", nx.random_layout])
def test_layouts_and_given_axes(layout, tmp_path):
    fig = Figure()
    ax = fig.add_subplot()
    out_fig, out_ax = draw_attention_graph(torch.eye(4) * 0.5 + 0.125, ax=ax, layout=layout)
    assert out_fig is fig and out_ax is ax
    fig.savefig(tmp_path / "l.png")
    assert_png_not_blank(tmp_path / "l.png")


def test_multigraph_and_empty_graph(tmp_path):
    edge_index = random_graph(8, 8, 20, seed=53, duplicates=4)
    G = attention_to_networkx(edge_index, torch.rand(edge_index.size(1)), multigraph=True)
    _, ax = draw_attention_graph(G, path=tmp_path / "m.png")
    assert len(ax.patches) == len(set(map(tuple, edge_index.t().tolist())))
    assert_png_not_blank(tmp_path / "m.png")
    empty = nx.DiGraph()
    empty.add_nodes_from(range(3))
    draw_attention_graph(empty, path=tmp_path / "e.png")
    assert_png_not_blank(tmp_path / "e.png")


def test_per_node_values_follow_the_neighbourhood_and_loops_can_be_hidden(tmp_path):
    edge_index, alpha = random_edge_attention(20, 60, seed=54)
    G = attention_to_networkx(edge_index, alpha)
    node = int(edge_index[1, 0])
    sizes = [100.0 + 10 * v for v in G]  # one per node of the whole graph
    colors = [float(v) for v in G]
    _, ax = draw_attention_graph(G, node=node, node_size=sizes, node_color=colors,
                                 self_loops=False, path=tmp_path / "p.png")
    shown = list(attention_neighbourhood(G, node))
    nodes = ax.collections[0]
    assert list(nodes.get_sizes()) == [100.0 + 10 * v for v in shown]
    assert list(nodes.get_array()) == [float(v) for v in shown]
    loops = sum(1 for j, i in attention_neighbourhood(G, node).edges if j == i)
    assert len(ax.patches) == attention_neighbourhood(G, node).number_of_edges() - loops
    with pytest.raises(ValueError, match="node_size"):
        draw_attention_graph(G, node_size=[1.0, 2.0])


def test_draw_rejects():
    attn = torch.eye(3)
    with pytest.raises(ValueError, match="node=7"):
        draw_attention_graph(attn, node=7)
    with pytest.raises(ValueError, match="hops"):
        draw_attention_graph(attn, node=0, hops=-1)
    with pytest.raises(ValueError, match="layout"):
        draw_attention_graph(attn, layout="grid")
    with pytest.raises(ValueError, match="position"):
        draw_attention_graph(attn, layout={0: (0, 0)})
    with pytest.raises(TypeError, match="ax"):
        draw_attention_graph(attn, ax="axes")
    with pytest.raises(ValueError, match="non-negative"):
        draw_attention_graph(-attn)
