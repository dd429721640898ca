"""Attention as networkx graphs in message direction (edge ``j -> i``, ``weight = a_ij``), and back.

With a head dimension, every head ``h`` is a scalar edge attribute
``weight_h{h}`` and ``weight`` is their mean; the graph attributes
``attention_heads`` and ``attention_dtype`` make the way back lossless.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import networkx as nx
import numpy as np
import torch
from torch import Tensor

from .checks import as_dense_attention, as_edge_attention, check_weights, unpack_attention

#: Graph attribute holding the number of heads (``None`` without a head dimension).
HEADS_KEY = "attention_heads"
#: Graph attribute holding the attention's dtype name (for a lossless way back).
DTYPE_KEY = "attention_dtype"


class _Missing:
    """Marker for an edge that has no value of an attribute (left out in networkx)."""


_MISSING = _Missing()


def _check_labels(labels: Sequence[Hashable] | None, n: int) -> list[Hashable]:
    if labels is None:
        return list(range(n))
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"labels must name all {n} nodes, got {len(labels)}")
    if len(set(labels)) != n:
        raise ValueError("labels must be distinct (they become node names); "
                         "make repeated tokens unique, e.g. 'the_0', 'the_1'")
    return labels


def weight_attributes(alpha: Tensor) -> list[dict[str, float]]:
    """Per edge: ``{"weight": ...}`` or per-head ``weight_h{h}`` and their mean."""
    if alpha.dim() == 1:
        return [{"weight": w} for w in alpha.tolist()]
    mean = alpha.mean(1).tolist()
    rows = alpha.tolist()
    return [dict({f"weight_h{h}": w for h, w in enumerate(row)}, weight=m)
            for row, m in zip(rows, mean)]


def dense_to_digraph(attn: Any, labels: Sequence[Hashable] | None = None,
                     threshold: float = 0.0) -> nx.DiGraph:
    """Dense attention as a weighted :class:`networkx.DiGraph` in message direction.

    ``A[i, j] > threshold`` gives the edge ``j -> i`` with ``weight = A[i, j]``
    (the flow of information: ``i`` reads from ``j``).  For ``[H, N, N]`` the
    edge carries ``weight_h0 ... weight_h{H-1}`` and their mean as ``weight``,
    and ``threshold`` applies to the mean.  All ``N`` nodes are added, in
    matrix order, also those without edges.

    Parameters
    ----------
    attn : Tensor or numpy.ndarray
        ``[N, N]`` or ``[H, N, N]`` non-negative attention.
    labels : sequence of hashable, optional
        Distinct node names in matrix order (e.g. tokens); default ``0 .. N-1``.
    threshold : float
        Keep edges whose weight is strictly greater (default: drop zeros).

    Returns
    -------
    networkx.DiGraph
        ``G.graph["attention_heads"]`` is ``H`` (``None`` for ``[N, N]``),
        ``G.graph["attention_dtype"]`` the dtype name of ``attn``.

    Raises
    ------
    TypeError
        ``attn`` is not a tensor or array.
    ValueError
        Non-square or wrong-rank ``attn``, negative weights, wrong number of
        or repeated ``labels``.

    Examples
    --------
    >>> A = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.2, 0.8], [0.0, 0.0, 1.0]])
    >>> G = dense_to_digraph(A, labels=["the", "cat", "sat"])
    >>> sorted((j, i, round(w, 2))
    ...        for j, i, w in G.edges(data="weight"))  # doctest: +NORMALIZE_WHITESPACE
    [('cat', 'cat', 0.2), ('cat', 'the', 0.5), ('sat', 'cat', 0.8),
     ('sat', 'sat', 1.0), ('the', 'the', 0.5)]
    >>> G2 = dense_to_digraph(torch.stack([A, A.t()]), threshold=0.2)
    >>> G2.edges[1, 0]
    {'weight_h0': 0.5, 'weight_h1': 0.0, 'weight': 0.25}
    """
    attn = as_dense_attention(attn)
    heads = attn.size(0) if attn.dim() == 3 else None
    names = _check_labels(labels, attn.size(-1))
    mean = attn.mean(0) if heads else attn
    dst, src = (mean > threshold).nonzero(as_tuple=True)
    alpha = attn[:, dst, src].t() if heads else attn[dst, src]
    G = nx.DiGraph(**{HEADS_KEY: heads, DTYPE_KEY: _dtype_name(attn)})
    G.add_nodes_from(names)
    G.add_edges_from((names[j], names[i], attrs) for j, i, attrs in
                     zip(src.tolist(), dst.tolist(), weight_attributes(alpha)))
    return G


def _dtype_name(values: Tensor) -> str:
    return str(values.dtype).removeprefix("torch.")


def _weight_keys(G: nx.Graph, weight: str) -> list[str]:
    heads = G.graph.get(HEADS_KEY)
    if heads and weight == "weight":
        return [f"weight_h{h}" for h in range(heads)]
    return [weight]


def digraph_to_dense(G: nx.DiGraph, nodelist: Sequence[Hashable] | None = None,
                     weight: str = "weight", heads: bool = True) -> Tensor:
    """An attention graph back to dense attention ``A[i, j]`` (destination, source).

    The inverse of :func:`dense_to_digraph`: an edge ``j -> i`` puts its
    ``weight`` into ``A[i, j]`` (parallel edges of a multigraph are summed).

    Parameters
    ----------
    G : networkx.DiGraph
        Graph in message direction.
    nodelist : sequence, optional
        Node order of the rows/columns (default ``list(G)``).
    weight : str
        Edge attribute to read; a missing attribute counts as 1.
    heads : bool
        For a graph with ``G.graph["attention_heads"] = H`` and
        ``weight="weight"``, return ``[H, N, N]`` from ``weight_h*``.

    Returns
    -------
    Tensor
        ``[N, N]`` (or ``[H, N, N]``) float64 attention ``A[i, j]``.

    Raises
    ------
    TypeError
        If ``G`` is not a :class:`networkx.DiGraph`.
    ValueError
        If ``nodelist`` does not list every node of ``G`` exactly once.

    Examples
    --------
    >>> A = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    >>> digraph_to_dense(dense_to_digraph(A)).tolist()
    [[0.5, 0.5], [0.0, 1.0]]
    """
    _check_graph(G)
    nodes = list(G) if nodelist is None else list(nodelist)
    index = {node: k for k, node in enumerate(nodes)}
    missing = [node for node in G if node not in index]
    if len(index) != len(nodes) or missing:
        raise ValueError("nodelist must list every node of G exactly once")
    keys = _weight_keys(G, weight) if heads else [weight]
    dense = torch.zeros(len(keys), len(nodes), len(nodes), dtype=torch.float64)
    for j, i, data in G.edges(data=True):
        for h, key in enumerate(keys):
            dense[h, index[i], index[j]] += data.get(key, 1.0)
    multi = heads and G.graph.get(HEADS_KEY) and weight == "weight"
    return dense if multi else dense[0]


def _check_graph(G: Any, name: str = "G") -> None:
    if not isinstance(G, nx.DiGraph):
        raise TypeError(f"{name} must be a networkx.DiGraph or MultiDiGraph "
                        f"(message direction j -> i), got {type(G).__name__}")


def _rows(value: Any, n: int, what: str) -> list[Any]:
    """The ``n`` rows of an attribute as Python values (``what`` names it in errors)."""
    if isinstance(value, Tensor):
        if value.dim() == 0 or value.size(0) != n:
            raise ValueError(f"{what} must have {n} rows, got shape {tuple(value.shape)}")
        return value.tolist()
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{what} must have {n} entries, got {len(values)}")
    return values


def attention_to_networkx(edge_index: Any, alpha: Any = None, num_nodes: int | None = None,
                          node_attrs: dict[str, Any] | None = None,
                          edge_attrs: dict[str, Any] | None = None,
                          multigraph: bool = False) -> nx.DiGraph:
    """``(edge_index, alpha)`` as a networkx graph in message direction.

    Edge ``e`` = ``edge_index[:, e]`` becomes ``j -> i`` with ``edge_id = e``,
    ``weight = alpha[e]`` (for ``[E, H]``: ``weight_h{h}`` per head and their
    mean as ``weight``; PyG's ``to_networkx`` would store a list instead), and
    the ``e``-th entry of each ``edge_attrs`` value.  Nodes ``0 .. N-1`` are all
    added, isolated ones too, with the ``node_attrs`` values.  :func:`from_networkx`
    inverts this exactly.

    Parameters
    ----------
    edge_index : Tensor or attention record
        ``[2, E]`` (source, destination); or anything with ``edge_index`` and
        ``alpha`` attributes (e.g. a :func:`pyg_attn.nn.capture_attention`
        record, whose ``edge_id`` is stored as ``input_edge_id``), then
        ``alpha`` is left out.
    alpha : Tensor, optional
        ``[E]`` or ``[E, H]`` attention; ``None`` for a graph without weights.
    num_nodes : int, optional
        Number of nodes (default: largest id + 1).
    node_attrs, edge_attrs : dict, optional
        ``{name: values}`` with ``N`` (``E``) rows; tensor rows become scalars
        or lists.
    multigraph : bool
        Build a :class:`networkx.MultiDiGraph` keyed by edge id, which keeps
        duplicate edges.

    Returns
    -------
    networkx.DiGraph or networkx.MultiDiGraph
        Nodes ``0 .. N-1``; ``G.graph["attention_heads"]`` is ``H`` (``None``
        for ``[E]`` or no weights), ``G.graph["attention_dtype"]`` the dtype
        name of ``alpha``.

    Raises
    ------
    ValueError
        Duplicate ``(source, destination)`` pairs without ``multigraph=True``;
        shape mismatches; negative weights.

    Examples
    --------
    >>> edge_index = torch.tensor([[0, 1, 2], [1, 1, 1]])
    >>> alpha = torch.tensor([[0.5, 0.25], [0.5, 0.75], [0.0, 0.0]])
    >>> G = attention_to_networkx(edge_index, alpha, num_nodes=4)
    >>> G.number_of_nodes(), G.edges[0, 1]
    (4, {'edge_id': 0, 'weight_h0': 0.5, 'weight_h1': 0.25, 'weight': 0.375})
    >>> attention_to_networkx(torch.tensor([[0, 0], [1, 1]]), torch.ones(2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: edge_index has a duplicate edge 0 -> 1 (edges 0 and 1); pass multigraph=True ...
    """
    edge_extra: dict[str, Any] = dict(edge_attrs or {})
    if alpha is None and hasattr(edge_index, "alpha"):
        record = edge_index
        edge_index, alpha = record.edge_index, record.alpha
        if getattr(record, "edge_id", None) is not None:
            edge_extra.setdefault("input_edge_id", record.edge_id)
    if alpha is None:
        if not isinstance(edge_index, Tensor):
            raise TypeError(f"edge_index must be a torch.Tensor, "
                            f"got {type(edge_index).__name__}")
        edge_index, _, n = as_edge_attention(edge_index, torch.zeros(edge_index.size(-1)),
                                             num_nodes)
        attrs: list[dict[str, Any]] = [{} for _ in range(edge_index.size(1))]
        heads, dtype = None, None
    else:
        edge_index, alpha, n = as_edge_attention(edge_index, alpha, num_nodes)
        attrs = weight_attributes(alpha)
        heads = alpha.size(1) if alpha.dim() == 2 else None
        dtype = _dtype_name(alpha)
    num_edges = edge_index.size(1)
    for name, values in edge_extra.items():
        values = _rows(values, num_edges, f"edge attribute {name!r}")
        for row, value in zip(attrs, values):
            if value is not _MISSING:
                row[name] = value
    G = nx.MultiDiGraph() if multigraph else nx.DiGraph()
    G.graph.update({HEADS_KEY: heads, DTYPE_KEY: dtype})
    G.add_nodes_from(range(n))
    for name, values in (node_attrs or {}).items():
        for node, value in zip(range(n), _rows(values, n, f"node attribute {name!r}")):
            G.nodes[node][name] = value
    src, dst = edge_index.tolist()
    if multigraph:
        G.add_edges_from((j, i, e, dict(edge_id=e, **a))
                         for e, (j, i, a) in enumerate(zip(src, dst, attrs)))
        return G
    for e, (j, i, a) in enumerate(zip(src, dst, attrs)):
        if G.has_edge(j, i):
            first = G.edges[j, i]["edge_id"]
            raise ValueError(f"edge_index has a duplicate edge {j} -> {i} (edges {first} "
                             f"and {e}); pass multigraph=True to keep both")
        G.add_edge(j, i, edge_id=e, **a)
    return G


def to_networkx(data: Any, attention: Any = None, node_attrs: Iterable[str] | None = None,
                edge_attrs: Iterable[str] | None = None,
                multigraph: bool = False) -> nx.DiGraph:
    """A PyG ``Data`` with (optionally) captured attention as a networkx graph.

    Without ``attention`` the graph has ``data.edge_index``'s edges.  With a
    :func:`pyg_attn.nn.capture_attention` record, its edges (after the layer's
    self-loop handling) carry the attention and ``input_edge_id`` (position
    in ``data.edge_index``, ``-1`` for a layer-added self-loop); with a pair
    ``(edge_index, alpha)``, its edges.  See :func:`attention_to_networkx` for
    the attributes.

    Parameters
    ----------
    data : torch_geometric.data.Data
        Graph with ``edge_index`` and ``num_nodes``.
    attention : record or (edge_index, alpha), optional
        The attention to attach.
    node_attrs : iterable of str, optional
        Names of ``data`` node attributes to copy (``[N, ...]``).
    edge_attrs : iterable of str, optional
        Names of ``data`` edge attributes (``[E, ...]``, rows of
        ``data.edge_index``) to copy.  With a record they are mapped through
        its ``edge_id``; edges added by the layer (``-1``) do not get them.
        With a pair, its edges must be ``data.edge_index``.
    multigraph : bool
        Build a :class:`networkx.MultiDiGraph` (keeps duplicate edges).

    Returns
    -------
    networkx.DiGraph or networkx.MultiDiGraph
        As :func:`attention_to_networkx` builds it, with ``data.num_nodes``
        nodes.

    Raises
    ------
    TypeError
        If ``data`` has no ``edge_index``.
    ValueError
        If ``edge_attrs`` are asked for with a pair whose edges are not
        ``data.edge_index``, or as :func:`attention_to_networkx` raises.

    Examples
    --------
    >>> from torch_geometric.data import Data
    >>> data = Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=3,
    ...             y=torch.tensor([0, 1, 1]))
    >>> G = to_networkx(data, (data.edge_index, torch.tensor([1.0, 1.0])), node_attrs=["y"])
    >>> G.nodes[2], G.edges[0, 1]
    ({'y': 1}, {'edge_id': 0, 'weight': 1.0})
    """
    if not hasattr(data, "edge_index"):
        raise TypeError(f"data must be a torch_geometric Data, got {type(data).__name__}")
    nodes = {name: data[name] for name in (node_attrs or [])}
    edge_values = {name: data[name] for name in (edge_attrs or [])}
    num_nodes = data.num_nodes
    if attention is None:
        return attention_to_networkx(data.edge_index, None, num_nodes, nodes, edge_values,
                                     multigraph)
    edge_index, alpha = unpack_attention(attention)
    edge_id = getattr(attention, "edge_id", None)
    extra: dict[str, Any] = {}
    if edge_id is not None:
        extra["input_edge_id"] = edge_id
        for name, values in edge_values.items():
            extra[name] = _mapped_edge_values(values, edge_id, name)
    elif edge_values:
        if not torch.equal(torch.as_tensor(edge_index), data.edge_index):
            raise ValueError("edge_attrs need attention on data.edge_index's edges "
                             "(or a capture record with edge_id)")
        extra.update(edge_values)
    return attention_to_networkx(edge_index, alpha, num_nodes, nodes, extra, multigraph)


def _mapped_edge_values(values: Tensor, edge_id: Tensor, name: str) -> list[Any]:
    rows = values.tolist()
    ids = edge_id.tolist()
    if any(k >= len(rows) for k in ids):
        raise ValueError(f"edge attribute {name!r} has {len(rows)} rows, "
                         f"the record refers to edge {max(ids)}")
    return [rows[k] if k >= 0 else _MISSING for k in ids]


def from_networkx(G: nx.DiGraph) -> Any:
    """An attention graph back to a PyG ``Data``: the inverse of :func:`attention_to_networkx`.

    Node ``k`` is the ``k``-th node of ``G`` (``list(G)`` gives the names).
    Edges are ordered by their ``edge_id`` attribute when every edge has one
    (so the round trip keeps the order), otherwise in ``G.edges`` order.
    ``weight_h*`` attributes become ``alpha`` ``[E, H]``, otherwise ``weight``
    becomes ``alpha`` ``[E]`` (in the dtype the graph was made from, else
    float32); every other attribute present on all edges
    (all nodes) becomes an edge (node) tensor of the same name.

    Parameters
    ----------
    G : networkx.DiGraph
        Graph in message direction, e.g. from :func:`attention_to_networkx`.

    Returns
    -------
    torch_geometric.data.Data
        ``edge_index`` ``[2, E]``, ``num_nodes``, ``alpha`` when ``G`` has
        weights, plus the other attributes.

    Examples
    --------
    >>> edge_index = torch.tensor([[2, 0], [1, 1]])
    >>> G = attention_to_networkx(edge_index, torch.tensor([0.75, 0.25]), num_nodes=3)
    >>> data = from_networkx(G)
    >>> data.edge_index.tolist(), data.alpha.tolist(), data.num_nodes
    ([[2, 0], [1, 1]], [0.75, 0.25], 3)
    """
    from torch_geometric.data import Data

    _check_graph(G)
    index = {node: k for k, node in enumerate(G)}
    edges = list(G.edges(data=True))
    if edges and all("edge_id" in d for _, _, d in edges):
        edges.sort(key=lambda edge: edge[2]["edge_id"])
    data = Data(num_nodes=len(index))
    data.edge_index = torch.tensor([[index[j] for j, _, _ in edges],
                                    [index[i] for _, i, _ in edges]],
                                   dtype=torch.long).view(2, -1)
    heads = G.graph.get(HEADS_KEY)
    records = [d for _, _, d in edges]
    weight_keys = [f"weight_h{h}" for h in range(heads)] if heads else ["weight"]
    if heads or (records and all("weight" in d for d in records)):
        dtype = getattr(torch, G.graph.get(DTYPE_KEY) or "float32")
        alpha = torch.tensor([[d[k] for k in weight_keys] for d in records],
                             dtype=dtype).view(-1, len(weight_keys))
        data.alpha = alpha if heads else alpha.view(-1)
    skip = set(weight_keys) | {"weight", "edge_id"}
    for name in _common_keys(records) - skip:
        data[name] = torch.tensor([d[name] for d in records])
    node_records = [d for _, d in G.nodes(data=True)]
    for name in _common_keys(node_records):
        data[name] = torch.tensor([d[name] for d in node_records])
    return data


def _common_keys(records: list[dict[str, Any]]) -> set:
    if not records:
        return set()
    keys = set(records[0])
    for record in records[1:]:
        keys &= set(record)
    return keys



def as_attention_graph(attention: Any, labels: Sequence[Hashable] | None = None,
                       num_nodes: int | None = None) -> nx.DiGraph:
    """Any form of attention as a graph in message direction.

    Parameters
    ----------
    attention : networkx.DiGraph, Tensor, (edge_index, alpha) or record
        A graph is returned as it is (its weights checked non-negative); a
        dense ``[N, N]`` / ``[H, N, N]`` tensor goes through
        :func:`dense_to_digraph` (with ``labels``); a pair or a capture record
        through :func:`attention_to_networkx` (with ``num_nodes``).
    labels : sequence of hashable, optional
        Node names of a dense input (see :func:`dense_to_digraph`).
    num_nodes : int, optional
        Number of nodes of a pair or record input (default: largest id + 1).

    Returns
    -------
    networkx.DiGraph
        A graph in message direction (``attention`` itself when it is one).

    Raises
    ------
    TypeError, ValueError
        As the conversion raises; negative or non-finite weights.

    Examples
    --------
    >>> as_attention_graph(torch.tensor([[0.0, 1.0], [0.0, 1.0]])).edges(data="weight")
    OutEdgeDataView([(1, 0, 1.0), (1, 1, 1.0)])
    """
    if isinstance(attention, nx.Graph):
        _check_graph(attention, "attention")
        weights = [w for _, _, w in attention.edges(data="weight", default=0.0)]
        check_weights(torch.tensor(weights, dtype=torch.float64), "attention weights")
        return attention
    if isinstance(attention, (Tensor, np.ndarray)):
        return dense_to_digraph(attention, labels=labels)
    edge_index, alpha = unpack_attention(attention)
    return attention_to_networkx(edge_index, alpha, num_nodes)
