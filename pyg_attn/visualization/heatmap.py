"""Attention matrices as heatmaps: one head, a grid of heads, a node's neighbourhood."""
from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ..convert import as_attention_graph, as_float_tensor, digraph_to_dense
from ._figure import PathLike, figure_and_axes, save
from .draw import attention_neighbourhood

__all__ = ["attention_heatmap"]

#: Cells are annotated with their value by default up to this many rows/columns.
ANNOTATE_MAX = 12


def _matrix(attn: Any) -> Tensor:
    attn = as_float_tensor(attn, "attn").detach().cpu().double()
    if attn.dim() not in (2, 3):
        raise ValueError(f"attn must be [R, C] or [H, R, C], got shape {tuple(attn.shape)}")
    if not bool(torch.isfinite(attn).all()):
        raise ValueError("attn must be finite")
    return attn


def _neighbourhood_matrix(attention: Any, node: Hashable, hops: int
                          ) -> tuple[Tensor, list[Hashable]]:
    """Dense attention among ``node``'s ``hops``-hop in-neighbourhood (node first)."""
    G = as_attention_graph(attention)
    nodes = list(attention_neighbourhood(G, node, hops))
    nodes = [node] + [n for n in nodes if n != node]
    sub = G.subgraph(nodes)
    return digraph_to_dense(sub, nodelist=nodes), nodes


def attention_heatmap(attn: Any, x_labels: Sequence[Any] | None = None,
                      y_labels: Sequence[Any] | None = None, *,
                      node: Hashable | None = None, hops: int = 1,
                      head_titles: Sequence[str] | None = None, ncols: int = 4,
                      cmap: str = "viridis", vmin: float | None = None,
                      vmax: float | None = None, annotate: bool | None = None,
                      decimals: int = 2, colorbar: bool = True, title: str | None = None,
                      ax: Axes | None = None, figsize: tuple[float, float] | None = None,
                      path: PathLike | None = None) -> tuple[Figure, Any]:
    """Heatmap of attention: row ``i`` (query/destination), column ``j`` (key/source).

    Parameters
    ----------
    attn : Tensor, networkx.DiGraph or (edge_index, alpha)
        ``[R, C]`` (dense attention, a rollout or flow matrix, also
        ``[T, N]`` rows of targets; sparse tensors are densified) or
        ``[H, R, C]`` (one panel per head, a grid with ``ncols`` columns
        and one shared colour scale).  With ``node``: any form accepted by
        :func:`pyg_attn.convert.as_attention_graph`, of which only the
        neighbourhood is shown.
    x_labels, y_labels : sequence, optional
        Column (key/source) and row (query/destination) names.  With
        ``node`` they default to the neighbourhood's node ids.
    node, hops : optional
        Show the attention among the nodes whose messages reach ``node``
        within ``hops`` steps (``node`` first), without densifying the graph.
    head_titles : sequence of str, optional
        Panel titles for ``[H, R, C]`` (default ``head 0`` ...).
    ncols : int
        Panels per row of the grid.
    cmap, vmin, vmax : optional
        Colour map and range (default the data's range, from 0).
    annotate : bool, optional
        Write the values in the cells (default: when at most
        :data:`ANNOTATE_MAX` rows and columns), rounded to ``decimals``.
    colorbar : bool
        Add a colour bar.
    title : str, optional
        Figure title.
    ax : matplotlib.axes.Axes, optional
        Draw a single matrix into it.
    figsize : (float, float), optional
        Size of a new figure.
    path : str or Path, optional
        Save the figure there (PNG, SVG, PDF from the suffix).

    Returns
    -------
    (Figure, Axes)
        For ``[H, R, C]`` the second item is a numpy array of Axes, one per head.

    Raises
    ------
    ValueError
        Wrong rank, label counts not matching the matrix, ``ax`` with
        several heads, ``node`` not in the graph.

    Examples
    --------
    >>> A = torch.tensor([[0.9, 0.1], [0.3, 0.7]])
    >>> fig, ax = attention_heatmap(A, x_labels=["a", "b"], y_labels=["a", "b"])
    >>> ax.get_xlabel()
    'key / source j'
    >>> fig, axes = attention_heatmap(torch.stack([A, A.flip(1)]))
    >>> axes.shape
    (2,)
    """
    if node is not None:
        matrix, nodes = _neighbourhood_matrix(attn, node, hops)
        x_labels = nodes if x_labels is None else x_labels
        y_labels = nodes if y_labels is None else y_labels
    else:
        matrix = _matrix(attn)
    panels = matrix if matrix.dim() == 3 else matrix.unsqueeze(0)
    heads, rows, cols = panels.shape
    for name, labels, size in (("x_labels", x_labels, cols), ("y_labels", y_labels, rows)):
        if labels is not None and len(labels) != size:
            raise ValueError(f"{name} must have {size} entries, got {len(labels)}")
    if annotate is None:
        annotate = rows <= ANNOTATE_MAX and cols <= ANNOTATE_MAX
    low = 0.0 if vmin is None else vmin
    if vmax is not None:
        high = vmax
    else:
        high = float(panels.max()) if panels.numel() and float(panels.max()) > low else low + 1.0
    if matrix.dim() == 2:
        side = max(3.0, min(10.0, 0.45 * max(rows, cols) + 2.0))
        fig, one = figure_and_axes(ax, figsize or (side + 1.0, side))
        axes: Any = one
        axes_list = [one]
    else:
        if ax is not None:
            raise ValueError("ax can hold one matrix; several heads make their own grid")
        grid_cols = max(1, min(ncols, heads))
        grid_rows = math.ceil(heads / grid_cols)
        side = max(2.5, min(5.0, 0.3 * max(rows, cols) + 1.5))
        fig = Figure(figsize=figsize or (grid_cols * side + 1.0, grid_rows * side),
                     layout="constrained")
        grid = fig.subplots(grid_rows, grid_cols, squeeze=False).ravel()
        for extra in grid[heads:]:
            extra.set_visible(False)
        axes = grid[:heads]
        axes_list = list(axes)
    image = None
    for h, panel_ax in enumerate(axes_list):
        image = panel_ax.imshow(panels[h].numpy(), cmap=cmap, vmin=low, vmax=high,
                                aspect="auto", interpolation="nearest")
        _ticks(panel_ax, x_labels, y_labels, rows, cols)
        if annotate:
            _annotate(panel_ax, panels[h], low, high, decimals)
        if matrix.dim() == 3:
            panel_ax.set_title(head_titles[h] if head_titles else f"head {h}")
    if colorbar and image is not None:
        target = axes_list[0] if len(axes_list) == 1 else axes_list  # one: tight_layout works
        fig.colorbar(image, ax=target, label="attention", shrink=0.8)
    if title is not None:
        fig.suptitle(title)
    save(fig, path)
    return fig, axes


def _ticks(ax: Axes, x_labels: Sequence[Any] | None, y_labels: Sequence[Any] | None,
           rows: int, cols: int) -> None:
    ax.set_xlabel("key / source j")
    ax.set_ylabel("query / destination i")
    if x_labels is not None:
        ax.set_xticks(range(cols), [str(x) for x in x_labels], rotation=60, ha="right")
    if y_labels is not None:
        ax.set_yticks(range(rows), [str(y) for y in y_labels])


def _annotate(ax: Axes, panel: Tensor, low: float, high: float, decimals: int) -> None:
    middle = low + 0.5 * (high - low)
    for (i, j), value in np.ndenumerate(panel.numpy()):
        ax.text(j, i, f"{value:.{decimals}f}", ha="center", va="center", fontsize=7,
                color="black" if value > middle else "white")
