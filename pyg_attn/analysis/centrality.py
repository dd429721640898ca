"""Centrality of attention graphs: attention received and paid, PageRank, betweenness.

Graphs follow message direction (edge ``j -> i`` with ``weight = a_ij``, see
:mod:`pyg_attn.convert`); every function also takes dense attention or
``(edge_index, alpha)`` and converts it with
:func:`pyg_attn.convert.as_attention_graph`.  Node results are float64 tensors
``[N]`` in the order of ``list(G)`` (node ids ``0 .. N-1`` for tensor input),
or ``{node: value}`` dicts with ``as_dict=True``.  Every result equals the
networkx call named in its docstring.
"""
from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import networkx as nx
import torch
from torch import Tensor

from ..convert import as_attention_graph

__all__ = [
    "DISTANCES",
    "attention_betweenness",
    "attention_distance_graph",
    "attention_paid",
    "attention_pagerank",
    "attention_received",
    "attention_shortest_path",
]

#: Conversions of attention weight ``a`` to a distance (``a = 0``: no edge).
DISTANCES = {
    "inverse": lambda a: 1.0 / a,
    "neg_log": lambda a: -math.log(a),
}

NodeValues = Tensor | dict[Hashable, float]


def _result(G: nx.DiGraph, values: dict[Hashable, float], as_dict: bool) -> NodeValues:
    if as_dict:
        return dict(values)
    return torch.tensor([float(values[node]) for node in G], dtype=torch.float64)


def attention_received(attention: Any, weight: str = "weight",
                       as_dict: bool = False) -> NodeValues:
    """Attention each node receives: the sum of ``a_ij`` over the nodes ``i`` reading it.

    .. math:: r_j = \\sum_i a_{ij}

    the weighted out-degree of ``j`` in the message-direction graph,
    ``G.out_degree(weight=weight)``.  High for the nodes everybody attends to.

    Examples
    --------
    >>> A = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    >>> attention_received(A).tolist()
    [0.5, 1.5, 1.0]
    """
    G = as_attention_graph(attention)
    return _result(G, dict(G.out_degree(weight=weight)), as_dict)


def attention_paid(attention: Any, weight: str = "weight", as_dict: bool = False) -> NodeValues:
    """Attention each node pays: ``sum_j a_ij``, 1 (or 0 without incoming edges).

    The weighted in-degree ``G.in_degree(weight=weight)``.

    Examples
    --------
    >>> A = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    >>> attention_paid(A).tolist()
    [1.0, 1.0, 0.0]
    """
    G = as_attention_graph(attention)
    return _result(G, dict(G.in_degree(weight=weight)), as_dict)


def attention_pagerank(attention: Any, alpha: float = 0.85, weight: str = "weight",
                       as_dict: bool = False, **kwargs: Any) -> NodeValues:
    """PageRank of a walker that follows attention: from ``i`` to ``j`` with probability ``a_ij``.

    Nodes that are attended to (directly or through attended nodes) rank high.
    The walk runs against message direction, so this is
    ``nx.pagerank(G.reverse(), alpha=alpha, weight=weight, **kwargs)`` (networkx
    renormalises each node's outgoing weights and restarts at nodes without
    any, so rows need not sum exactly to 1).

    Parameters
    ----------
    attention : networkx.DiGraph, Tensor or (edge_index, alpha)
        The attention graph.
    alpha : float
        Damping factor (networkx's name; not the attention ``alpha``).
    weight : str
        Edge attribute (e.g. ``"weight_h1"`` for one head).
    as_dict : bool
        Return ``{node: rank}`` instead of a tensor.
    **kwargs
        Passed on to :func:`networkx.pagerank` (``personalization``, ``tol`` ...).

    Examples
    --------
    >>> A = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    >>> [round(r, 2) for r in attention_pagerank(A).tolist()]  # nobody attends to 0
    [0.05, 0.49, 0.46]
    """
    G = as_attention_graph(attention)
    return _result(G, nx.pagerank(G.reverse(copy=False), alpha=alpha, weight=weight, **kwargs),
                   as_dict)


def attention_distance_graph(attention: Any, distance: str = "inverse", weight: str = "weight",
                             attr: str = "distance") -> nx.DiGraph:
    """The attention graph with a distance on each edge, for shortest paths and betweenness.

    networkx treats an edge weight as a *length*, while attention is a
    strength; this makes the conversion explicit:

    * ``"inverse"``: :math:`d_{ij} = 1 / a_{ij}`;
    * ``"neg_log"``: :math:`d_{ij} = -\\log a_{ij}`, so a path's length is
      minus the log of the product of its weights (the likeliest path is the
      shortest; a weight of 1 costs nothing).

    Edges with ``a_ij = 0`` are left out (infinite distance).  Returns a new
    :class:`networkx.DiGraph` (parallel edges of a multigraph: the largest
    weight) with all nodes and the distance in ``attr``.

    Examples
    --------
    >>> G = attention_distance_graph(torch.tensor([[0.0, 0.5], [0.0, 1.0]]), "neg_log")
    >>> round(G.edges[1, 0]["distance"], 4), G.has_edge(0, 1)
    (0.6931, False)
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {sorted(DISTANCES)}, got {distance!r}")
    G = as_attention_graph(attention)
    convert = DISTANCES[distance]
    out = nx.DiGraph()
    out.add_nodes_from(G)
    for j, i, a in G.edges(data=weight, default=0.0):
        if a > 0 and (not out.has_edge(j, i) or out.edges[j, i][weight] < a):
            out.add_edge(j, i, **{weight: a, attr: convert(a)})
    return out


def attention_betweenness(attention: Any, distance: str = "inverse", weight: str = "weight",
                          normalized: bool = True, as_dict: bool = False) -> NodeValues:
    """Betweenness centrality with attention turned into distance.

    ``nx.betweenness_centrality(D, weight="distance", normalized=normalized)``
    on ``D = attention_distance_graph(attention, distance, weight)``: the
    share of shortest (most attended) message paths through each node.

    Examples
    --------
    >>> A = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    >>> attention_betweenness(A).tolist()  # 2 -> 1 -> 0 passes through 1
    [0.0, 0.5, 0.0]
    """
    D = attention_distance_graph(attention, distance, weight)
    return _result(D, nx.betweenness_centrality(D, weight="distance", normalized=normalized),
                   as_dict)


def attention_shortest_path(attention: Any, source: Hashable, target: Hashable,
                            distance: str = "neg_log", weight: str = "weight") -> list[Hashable]:
    """The shortest message path ``source -> ... -> target`` under an attention distance.

    With ``"neg_log"`` (default) this is the path whose product of attention
    weights is largest.  ``nx.shortest_path(D, source, target, weight="distance")``.

    Raises
    ------
    ValueError
        ``source`` or ``target`` not in the graph, or no path between them.

    Examples
    --------
    >>> A = torch.tensor([[0.0, 0.1, 0.9], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    >>> attention_shortest_path(A, source=1, target=0)
    [1, 2, 0]
    """
    D = attention_distance_graph(attention, distance, weight)
    for name, node in (("source", source), ("target", target)):
        if node not in D:
            raise ValueError(f"{name}={node!r} is not a node of the attention graph")
    try:
        return nx.shortest_path(D, source, target, weight="distance")
    except nx.NetworkXNoPath as error:
        raise ValueError(f"no attention path from source={source!r} "
                         f"to target={target!r}") from error
