"""attention_heatmap: one matrix, head grids, neighbourhoods, rollout output, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from pyg_attn.analysis import attention_rollout
from pyg_attn.convert import attention_to_networkx, digraph_to_dense
from pyg_attn.visualization import attention_heatmap, attention_neighbourhood

from ..attention_data import random_dense_attention, random_edge_attention
from .pictures import assert_png_not_blank


def test_single_matrix_with_labels(tmp_path):
    attn = random_dense_attention(4, 4, seed=61)
    tokens = ["the", "cat", "sat", "down"]
    fig, ax = attention_heatmap(attn, x_labels=tokens, y_labels=tokens, title="t",
                                path=tmp_path / "h.png")
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    assert np.allclose(ax.images[0].get_array(), attn.numpy())
    assert len(ax.texts) == 16  # annotated: small matrix
    assert_png_not_blank(tmp_path / "h.png")


def test_head_grid_shares_one_scale(tmp_path):
    attn = random_dense_attention(5, 6, 6, seed=62)
    fig, axes = attention_heatmap(attn, ncols=3, path=tmp_path / "g.png")
    assert axes.shape == (5,) and [a.get_title() for a in axes][:2] == ["head 0", "head 1"]
    limits = {a.images[0].get_clim() for a in axes}
    assert len(limits) == 1 and limits.pop()[1] == pytest.approx(float(attn.max()))
    assert sum(a.get_visible() for a in fig.axes) >= 5
    assert_png_not_blank(tmp_path / "g.png")


def test_sparse_rollout_rows_without_annotation(tmp_path):
    layers = [random_edge_attention(30, 90, seed=s) for s in (1, 2)]
    rows = attention_rollout(layers, targets=[0, 5, 7], num_nodes=30)
    _, ax = attention_heatmap(rows, y_labels=[0, 5, 7], path=tmp_path / "r.png")
    assert ax.images[0].get_array().shape == (3, 30)
    assert len(ax.texts) == 0  # 30 columns: not annotated by default
    assert_png_not_blank(tmp_path / "r.png")


def test_node_neighbourhood(tmp_path):
    edge_index, alpha = random_edge_attention(50, 200, heads=2, seed=63)
    node = int(edge_index[1, 0])
    G = attention_to_networkx(edge_index, alpha)
    nodes = list(attention_neighbourhood(G, node, hops=1))
    nodes = [node] + [n for n in nodes if n != node]
    fig, axes = attention_heatmap((edge_index, alpha), node=node, path=tmp_path / "n.png")
    expected = digraph_to_dense(G.subgraph(nodes), nodelist=nodes)
    assert axes.shape == (2,)  # two heads
    assert np.allclose(axes[1].images[0].get_array(), expected[1].numpy())
    assert [t.get_text() for t in axes[0].get_yticklabels()] == [str(n) for n in nodes]
    assert_png_not_blank(tmp_path / "n.png")


def test_heatmap_rejects():
    with pytest.raises(ValueError, match="x_labels"):
        attention_heatmap(torch.eye(3), x_labels=["a"])
    with pytest.raises(ValueError, match="attn must be"):
        attention_heatmap(torch.ones(2, 2, 2, 2))
    with pytest.raises(TypeError, match="attn"):
        attention_heatmap([[1.0]])
    with pytest.raises(ValueError, match="ax"):
        attention_heatmap(torch.ones(2, 3, 3), ax=Figure().add_subplot())
    with pytest.raises(ValueError, match="node=9"):
        attention_heatmap(torch.eye(3), node=9)
    with pytest.raises(ValueError, match="finite"):
        attention_heatmap(torch.tensor([[float("inf")]]))
