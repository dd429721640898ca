"""Attention flow (Abnar & Zuidema, 2020) and max-flow on one attention graph."""
from __future__ import annotations

import importlib.util
from collections.abc import Hashable
from typing import Any

import networkx as nx
import torch
from torch import Tensor

from ..convert import as_attention_graph
from ._layers import check_targets, dense_layers, is_dense, sparse_layers

__all__ = ["ALL_PAIRS_MAX_NODES", "attention_flow", "attention_max_flow"]

#: ``attention_flow(..., targets=None)`` (all ``N * N`` pairs) is refused above
#: this many nodes; pass ``targets=`` (e.g. ``range(N)`` to insist).
ALL_PAIRS_MAX_NODES = 32

METHODS = ("auto", "networkx", "scipy")


def _scipy_available() -> bool:
    return importlib.util.find_spec("scipy") is not None


def _layered_network(layers: list[tuple[Tensor, Tensor]], n: int,
                     target: int) -> tuple[Tensor, Tensor, Tensor]:
    """The part of the layered network that can reach output node ``target``.

    Node ``(l, v)`` of the network is ``l * N + v`` (``l = 0`` inputs, ``L``
    outputs); layer ``l`` contributes edges ``(l-1, j) -> (l, i)`` with capacity
    ``Â_l[i, j]``.  Only edges from which ``(L, target)`` is reachable are kept.
    Returns ``(edges [2, M], capacities [M], input nodes that reach target)``.
    """
    frontier = torch.zeros(n, dtype=torch.bool)
    frontier[target] = True
    parts = []
    for depth in range(len(layers), 0, -1):
        edge_index, weight = layers[depth - 1]
        keep = frontier[edge_index[1]] & (weight > 0)
        src, dst = edge_index[0][keep], edge_index[1][keep]
        parts.append((torch.stack([(depth - 1) * n + src, depth * n + dst]), weight[keep]))
        frontier = torch.zeros(n, dtype=torch.bool)
        frontier[src] = True
    edges = torch.cat([p[0] for p in parts], 1)
    capacities = torch.cat([p[1] for p in parts])
    return edges, capacities, frontier.nonzero().view(-1)


def _flows_networkx(edges: Tensor, capacities: Tensor, sources: Tensor, sink: int) -> list[float]:
    network = nx.DiGraph()
    network.add_edges_from((u, v, {"capacity": c}) for u, v, c in
                           zip(edges[0].tolist(), edges[1].tolist(), capacities.tolist()))
    return [nx.maximum_flow_value(network, s, sink) for s in sources.tolist()]


def _flows_scipy(edges: Tensor, capacities: Tensor, sources: Tensor, sink: int,
                 scale: float) -> list[float]:
    import numpy as np
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    nodes, local = torch.unique(edges, return_inverse=True)
    ints = torch.round(capacities.double() * scale).to(torch.int64)
    keep = ints > 0
    size = nodes.numel()
    graph = csr_matrix((ints[keep].numpy().astype(np.int32),
                        (local[0][keep].numpy(), local[1][keep].numpy())), shape=(size, size))
    position = {int(v): k for k, v in enumerate(nodes.tolist())}
    sink_local = position[sink]
    return [maximum_flow(graph, position[int(s)], sink_local, method="dinic").flow_value / scale
            for s in sources]


def attention_flow(attentions: Any, targets: Any = None, head_fusion: str = "mean",
                   residual: float = 0.5, num_nodes: int | None = None,
                   method: str = "auto", scale: float = 2.0 ** 26) -> Tensor:
    """Attention flow: max-flow from each input node to each output node through the layers.

    The layers form a network with nodes ``(l, v)`` for ``l = 0 .. L`` and
    edges ``(l-1, j) -> (l, i)`` of capacity ``Â_l[i, j]``, where

    .. math::

        \\hat A_l = \\operatorname{rownorm}\\big((1 - r) A_l + r I\\big)

    (heads fused first, ``r = 0.5``: the residual, as in rollout).  Then

    .. math::

        \\mathrm{flow}[i, j] = \\operatorname{maxflow}\\big((0, j) \\to (L, i)\\big),

    at most 1 (the capacity into ``(L, i)``).  Unlike rollout, which sums the
    products over all paths, flow is limited by the narrowest cut between
    ``j`` and ``i``.

    Cost: one max-flow per pair, each over the part of the network that
    reaches ``(L, i)`` (the ``L``-hop in-neighbourhood of ``i``; up to
    ``L * (E + N)`` edges).  Measured on dense 4-layer attention over 100
    nodes (2 CPU threads): networkx 0.54 s per pair, scipy's Dinic 7 ms; all
    pairs of 64 nodes took 33 s with scipy.  So all ``N * N`` pairs are only
    computed for up to :data:`ALL_PAIRS_MAX_NODES` nodes;
    larger inputs need ``targets``, and only sources in each target's
    neighbourhood are solved (the others are 0).

    Parameters
    ----------
    attentions : Tensor or list
        As for :func:`~pyg_attn.analysis.attention_rollout`: dense
        ``[L, N, N]`` / ``[L, H, N, N]`` or a list of ``(edge_index, alpha)``
        pairs / capture records, first layer first, rows summing to 1 or 0.
    targets : sequence of int, optional
        Output nodes ``i`` (rows of the result); default all ``N``.
    head_fusion : {"mean", "max", "min"}
        How heads are fused per layer.
    residual : float
        Share ``r`` of the identity in each layer.
    num_nodes : int, optional
        Number of nodes of graph attention (default: largest id + 1).
    method : {"auto", "networkx", "scipy"}
        ``"networkx"``: :func:`networkx.maximum_flow_value` on float
        capacities (the reference).  ``"scipy"``:
        :func:`scipy.sparse.csgraph.maximum_flow` (Dinic) on integer
        capacities ``round(c * scale)``.  ``"auto"``: scipy when importable.
    scale : float
        Capacity scale of the scipy path.  Each capacity is off by at most
        ``0.5 / scale`` and a max-flow equals a min cut, so a result differs
        from the exact flow by at most ``0.5 * M / scale`` with ``M`` the
        number of edges of that target's network (``M * 7.5e-9`` at the
        default ``2**26``; capacities stay far below the int32 limit).

    Returns
    -------
    Tensor
        Dense float64 ``[T, N]`` (``T = len(targets)``, or ``N``):
        ``flow[t, j]`` for output node ``targets[t]`` and input node ``j``.

    Raises
    ------
    ValueError
        Bad attention (see rollout), ``targets`` outside ``[0, N)``, all pairs
        requested for more than :data:`ALL_PAIRS_MAX_NODES` nodes, unknown
        ``method``, ``scale`` not positive.
    ImportError
        ``method="scipy"`` without scipy.

    Examples
    --------
    Token 0 reads tokens 0 and 1 equally in both layers, so
    ``Â = [[0.75, 0.25], [0, 1]]``.  From input 1 to output 0 there are two
    paths of bottleneck 0.25 each (rollout would give 0.4375):

    >>> A = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    >>> flow = attention_flow(torch.stack([A, A]), method="networkx")
    >>> [[round(f, 4) for f in row] for row in flow.tolist()]
    [[0.75, 0.5], [0.0, 1.0]]
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    use_scipy = method == "scipy" or (method == "auto" and _scipy_available())
    if method == "scipy" and not _scipy_available():
        raise ImportError("method='scipy' needs scipy; use method='networkx'")
    if is_dense(attentions):
        dense = dense_layers(attentions, head_fusion, residual).detach().cpu().double()
        n = dense.size(-1)
        layers = []
        for layer in dense:
            dst, src = layer.nonzero(as_tuple=True)
            layers.append((torch.stack([src, dst]), layer[dst, src]))
    else:
        layers, n = sparse_layers(attentions, head_fusion, residual, num_nodes)
        layers = [(ei.cpu(), w.detach().cpu().double()) for ei, w in layers]
    if targets is None:
        if n > ALL_PAIRS_MAX_NODES:
            raise ValueError(f"targets: all {n * n} pairs of {n} nodes is too many max-flows "
                             f"(limit {ALL_PAIRS_MAX_NODES} nodes); pass the output nodes "
                             "you need as targets=")
        targets = range(n)
    targets = check_targets(targets, n)
    flow = torch.zeros(targets.numel(), n, dtype=torch.float64)
    depth = len(layers)
    for row, target in enumerate(targets.tolist()):
        edges, capacities, sources = _layered_network(layers, n, target)
        if sources.numel() == 0:  # no path at all (residual 0 and no incoming edge)
            continue
        sink = depth * n + target
        if use_scipy:
            values = _flows_scipy(edges, capacities, sources, sink, scale)
        else:
            values = _flows_networkx(edges, capacities, sources, sink)
        flow[row, sources] = torch.tensor(values, dtype=torch.float64)
    return flow


def attention_max_flow(attention: Any, source: Hashable, target: Hashable,
                       weight: str = "weight") -> float:
    """Max-flow from ``source`` to ``target`` in one attention graph.

    The graph is in message direction (edge ``j -> i`` with capacity
    ``a_ij``), so this is how much of ``source``'s information can reach
    ``target`` when each edge carries at most its attention weight.  Equals
    ``networkx.maximum_flow_value(G, source, target, capacity=weight)``; an
    edge without the ``weight`` attribute counts as unbounded (networkx's rule).

    Parameters
    ----------
    attention : networkx.DiGraph, Tensor or (edge_index, alpha)
        Any form accepted by :func:`pyg_attn.convert.as_attention_graph`.
    source, target : node
        Distinct nodes of the graph.
    weight : str
        Edge attribute used as capacity (e.g. ``"weight_h0"`` for one head).

    Raises
    ------
    ValueError
        ``source`` or ``target`` not in the graph, or equal.

    Examples
    --------
    >>> A = torch.tensor([[0.0, 0.6, 0.4], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    >>> round(attention_max_flow(A, source=2, target=0), 4)  # 2 -> 0 and 2 -> 1 -> 0
    1.0
    """
    G = as_attention_graph(attention)
    for name, node in (("source", source), ("target", target)):
        if node not in G:
            raise ValueError(f"{name}={node!r} is not a node of the attention graph")
    if source == target:
        raise ValueError(f"source and target must differ, both are {source!r}")
    return nx.maximum_flow_value(G, source, target, capacity=weight)
