"""Attention graphs drawn as nodes and arrows."""
from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import matplotlib as mpl
import networkx as nx
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..convert import as_attention_graph
from ._figure import PathLike, figure_and_axes, save

__all__ = ["LAYOUTS", "attention_neighbourhood", "draw_attention_graph"]

#: Named networkx layouts for ``layout=``.
LAYOUTS: dict[str, Callable[..., dict[Hashable, Any]]] = {
    "spring": nx.spring_layout,
    "kamada_kawai": nx.kamada_kawai_layout,
    "circular": nx.circular_layout,
    "shell": nx.shell_layout,
    "spectral": nx.spectral_layout,
}


def attention_neighbourhood(G: nx.DiGraph, node: Hashable, hops: int = 1) -> nx.DiGraph:
    """The nodes whose messages reach ``node`` within ``hops`` steps, with their edges.

    In message direction that is ``node``'s ``hops``-hop in-neighbourhood (its
    receptive field): ``nx.ego_graph(G.reverse(), node, radius=hops)``'s nodes,
    as a subgraph (view) of ``G``.

    Examples
    --------
    >>> G = nx.DiGraph([(2, 1), (1, 0), (3, 2)])
    >>> sorted(attention_neighbourhood(G, 0, hops=2))
    [0, 1, 2]
    """
    if node not in G:
        raise ValueError(f"node={node!r} is not a node of the attention graph")
    if not isinstance(hops, (int, np.integer)) or hops < 0:
        raise ValueError(f"hops must be a non-negative int, got {hops!r}")
    nodes = nx.ego_graph(G.reverse(copy=False), node, radius=hops)
    return G.subgraph(nodes)


def _simple(G: nx.DiGraph, weight: str) -> nx.DiGraph:
    """A multigraph's parallel edges summed into one (drawing shows one arrow per pair)."""
    if not G.is_multigraph():
        return G
    simple = nx.DiGraph()
    simple.add_nodes_from(G.nodes(data=True))
    for j, i, w in G.edges(data=weight, default=0.0):
        previous = simple.edges[j, i][weight] if simple.has_edge(j, i) else 0.0
        simple.add_edge(j, i, **{weight: previous + w})
    return simple


def draw_attention_graph(attention: Any, *, weight: str = "weight",
                         node: Hashable | None = None, hops: int = 1,
                         labels: Sequence[Hashable] | None = None,
                         layout: str | Callable[..., dict] | dict[Hashable, Any] = "spring",
                         edge_labels: bool = False, decimals: int = 2,
                         cmap: str = "viridis", colorbar: bool = True,
                         min_width: float = 0.5, max_width: float = 4.0,
                         node_size: Any = 400.0, node_color: Any = "#dde6f2",
                         node_cmap: str = "Oranges", self_loops: bool = True,
                         seed: int = 0, title: str | None = None,
                         ax: Axes | None = None, figsize: tuple[float, float] = (6.0, 5.0),
                         path: PathLike | None = None) -> tuple[Figure, Axes]:
    """Draws attention as a directed graph: arrows ``j -> i`` sized and coloured by ``a_ij``.

    Parameters
    ----------
    attention : networkx.DiGraph, Tensor, (edge_index, alpha) or record
        Any form accepted by :func:`pyg_attn.convert.as_attention_graph`
        (message direction: the arrow points from the attended node to the
        one reading it).
    weight : str
        Edge attribute drawn (e.g. ``"weight_h2"`` for one head).
    node, hops : optional
        Draw only the nodes whose messages reach ``node`` within ``hops``
        steps (see :func:`attention_neighbourhood`); ``node`` is outlined.
    labels : sequence, optional
        Node names for dense attention (e.g. tokens).
    layout : str, callable or dict
        A name in :data:`LAYOUTS`, a networkx layout function, or positions
        ``{node: (x, y)}``.
    edge_labels : bool
        Write each edge's weight, rounded to ``decimals``.
    cmap, colorbar : str, bool
        Edge colour map and whether to add a colour bar.
    min_width, max_width : float
        Arrow widths for the smallest and largest weight.
    node_size, node_color : optional
        One value for all nodes, or one per node of the whole graph in
        ``list(G)`` order (node ids for tensor input); numeric colours use
        ``node_cmap``.
    node_cmap : str
        Colour map of numeric ``node_color`` (e.g. a centrality).
    self_loops : bool
        Draw self-loops (the weight a node pays to itself); ``False`` hides them.
    seed : int
        Seed of the spring layout (same picture every run).
    title : str, optional
        Axes title.
    ax : matplotlib.axes.Axes, optional
        Draw into it; default a new headless figure.
    figsize : (float, float)
        Size of a new figure.
    path : str or Path, optional
        Save the figure there (PNG, SVG, PDF from the suffix).

    Returns
    -------
    (Figure, Axes)

    Raises
    ------
    ValueError
        ``node`` not in the graph, unknown ``layout``, bad ``hops``.

    Examples
    --------
    >>> import torch
    >>> A = torch.tensor([[0.7, 0.3], [0.4, 0.6]])
    >>> fig, ax = draw_attention_graph(A, labels=["a", "b"], edge_labels=True)
    >>> len(ax.patches)  # one arrow per edge
    4
    """
    G = _simple(as_attention_graph(attention, labels=labels), weight)
    sizes = _per_node(node_size, G, "node_size")
    colors = _per_node(node_color, G, "node_color")
    if node is not None:
        G = attention_neighbourhood(G, node, hops)
    node_size = sizes if np.isscalar(sizes) else [sizes[v] for v in G]
    node_color = colors if isinstance(colors, str) or np.isscalar(colors) else \
        [colors[v] for v in G]
    pos = _positions(G, layout, seed)
    fig, ax = figure_and_axes(ax, figsize)
    edges = [(j, i, w) for j, i, w in G.edges(data=weight, default=0.0)
             if self_loops or j != i]
    weights = np.array([w for _, _, w in edges], dtype=float)
    high = float(weights.max()) if weights.size else 1.0
    norm = mpl.colors.Normalize(vmin=0.0, vmax=high if high > 0 else 1.0)
    widths = min_width + (max_width - min_width) * norm(weights) if weights.size else []
    numeric = not isinstance(node_color, str) and np.issubdtype(
        np.asarray(node_color).dtype, np.number)
    nx.draw_networkx_nodes(G, pos, ax=ax, node_size=node_size, node_color=node_color,
                           cmap=node_cmap if numeric else None, edgecolors="#35507a")
    if node is not None:
        nx.draw_networkx_nodes(G, pos, nodelist=[node], ax=ax, node_size=_pick(node_size, G, node),
                               node_color="none", edgecolors="#c0392b", linewidths=2.5)
    nx.draw_networkx_labels(G, pos, ax=ax, font_size=9)
    style = "arc3,rad=0.15"
    nx.draw_networkx_edges(G, pos, ax=ax, edgelist=[(j, i) for j, i, _ in edges],
                           nodelist=list(G),
                           width=widths, edge_color=weights, edge_cmap=mpl.colormaps[cmap],
                           edge_vmin=norm.vmin, edge_vmax=norm.vmax, arrows=True,
                           arrowsize=14, node_size=node_size, connectionstyle=style)
    if edge_labels and edges:
        text = {(j, i): f"{w:.{decimals}f}" for j, i, w in edges}
        nx.draw_networkx_edge_labels(G, pos, edge_labels=text, ax=ax, font_size=7,
                                     connectionstyle=style, label_pos=0.4)
    if colorbar:
        mappable = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(mappable, ax=ax, label=f"attention ({weight})", shrink=0.8)
    if title is not None:
        ax.set_title(title)
    ax.set_axis_off()
    save(fig, path)
    return fig, ax


def _per_node(values: Any, G: nx.DiGraph, name: str) -> Any:
    """A per-node sequence (``list(G)`` order) as ``{node: value}``; one value as is."""
    if isinstance(values, str) or np.isscalar(values) or isinstance(values, tuple):
        return values
    values = list(values)
    if len(values) != G.number_of_nodes():
        raise ValueError(f"{name} must have one value per node ({G.number_of_nodes()}), "
                         f"got {len(values)}")
    return dict(zip(G, values))


def _pick(values: Any, G: nx.DiGraph, node: Hashable) -> Any:
    """``node``'s entry of a per-node list (in ``list(G)`` order), or the common value."""
    return values if np.isscalar(values) else values[list(G).index(node)]


def _positions(G: nx.DiGraph, layout: Any, seed: int) -> dict[Hashable, Any]:
    if isinstance(layout, dict):
        missing = [n for n in G if n not in layout]
        if missing:
            raise ValueError(f"layout has no position for nodes {missing[:5]}")
        return layout
    if isinstance(layout, str):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, a function or "
                             f"positions, got {layout!r}")
        if layout == "spring":
            return nx.spring_layout(G, seed=seed)
        if G.number_of_nodes() < 3 and layout == "spectral":
            return nx.circular_layout(G)
        return LAYOUTS[layout](G)
    if callable(layout):
        return layout(G)
    raise TypeError(f"layout must be a name, a function or a dict, got {type(layout).__name__}")
