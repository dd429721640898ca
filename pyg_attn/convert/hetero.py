"""Attention of heterogeneous models over the typed graph: :func:`hetero_attention`.

:func:`~pyg_attn.nn.capture_attention` on a model made by
:func:`torch_geometric.nn.to_hetero` (or built from
:class:`torch_geometric.nn.HeteroConv`) records one layer per relation, named
``"<layer>.<src>__<rel>__<dst>"`` (``"conv1.author__writes__paper"``; PyG's
``HeteroConv`` writes ``"conv1.convs.<author___writes___paper>"``), whose ``edge_index`` holds ids *within* the
source and destination node types.  Here those records are grouped by layer and put on
one node range: node ``k`` of type ``t`` is ``offsets[t] + k``, types in
``data.node_types`` order.

Relations of a layer meet at the destination: ``to_hetero`` and ``HeteroConv`` add the
messages of every relation that reaches node ``i`` (``aggr="sum"``, their default).  So
node ``i``'s incoming attention in the typed graph is the sum of its relations'
weights, divided by ``k_i``, the number of relations with an edge into ``i``,

.. math::

    \\tilde a_{ij} = \\frac{1}{k_i} \\sum_{r} a^{r}_{ij},

so that every row sums to 1 again and rollout and flow
(:mod:`pyg_attn.analysis`) apply unchanged: each relation's message counts once in
the sum.  ``aggr="mean"`` divides that sum by ``k_i``, which gives the same shares.
Other aggregations (``"max"``, ``"min"``, ``"mul"``) do not mix relations linearly;
for them the same relation average is computed, an approximation.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import networkx as nx
import torch
from torch import Tensor

from .checks import as_edge_attention, unpack_attention
from .networkx import DTYPE_KEY, HEADS_KEY, weight_attributes
from .records import AttentionRecord

__all__ = ["HeteroAttention", "TypedRecord", "hetero_attention", "hetero_to_networkx",
           "relation_key"]

EdgeType = Tuple[str, str, str]


@dataclass(frozen=True)
class TypedRecord(AttentionRecord):
    """One layer of a heterogeneous model on the typed graph (global node ids).

    Attributes
    ----------
    edge_index : Tensor
        ``[2, E]`` edges ``j -> i`` of every relation of the layer, global ids.
    alpha : Tensor
        ``[E, H]`` share :math:`a^r_{ij} / k_i` of each edge in its destination's
        incoming attention (rows sum to 1 per head): what rollout and flow use.
    edge_id : Tensor
        ``[E]`` position of the edge in its relation's ``edge_index`` (``-1`` for a
        self-loop added by the layer).
    relation : Tensor
        ``[E]`` index of the edge's relation in :attr:`HeteroAttention.edge_types`.
    weight : Tensor
        ``[E, H]`` the relation's own attention :math:`a^r_{ij}`, as recorded.
    """

    relation: Tensor
    weight: Tensor


class HeteroAttention(Dict[str, TypedRecord]):
    """``{layer name: TypedRecord}`` in the order the layers first ran, and the typed nodes.

    Attributes
    ----------
    node_types : list of str
        ``data.node_types``.
    edge_types : list of (str, str, str)
        The relations met in the records, in ``data.edge_types`` order.
    offsets : dict
        ``{node type: global id of its node 0}``.
    num_nodes : int
        All nodes of all types (pass as ``num_nodes=`` to the analysis functions).
    """

    def __init__(self, layers: Dict[str, TypedRecord], node_types: List[str],
                 edge_types: List[EdgeType], counts: List[int]) -> None:
        super().__init__(layers)
        self.node_types = node_types
        self.edge_types = edge_types
        starts = torch.cumsum(torch.tensor([0] + counts), 0).tolist()
        self.offsets = dict(zip(node_types, starts))
        self.num_nodes = starts[-1]
        self._starts = torch.tensor(starts[:-1])

    def node_id(self, node_type: str, index: int) -> int:
        """Global id of node ``index`` of ``node_type``."""
        return self.offsets[node_type] + int(index)

    def typed_nodes(self, nodes: Tensor) -> Tuple[Tensor, Tensor]:
        """``(type index [K], id within the type [K])`` of global ids ``nodes``."""
        kind = torch.searchsorted(self._starts, nodes, right=True) - 1
        return kind, nodes - self._starts[kind]


def relation_key(edge_type: EdgeType) -> str:
    """The module-name key of a relation, as ``to_hetero`` and ``HeteroConv`` write it
    (``"author__writes__paper"``)."""
    return "__".join(edge_type)


def _module_keys(edge_type: EdgeType) -> List[str]:
    """The names a relation's module may have: ``to_hetero``'s ``src__rel__dst`` and
    ``HeteroConv``'s ``<src___rel___dst>`` (PyG's ``ModuleDict``), dots written ``#``."""
    keys = [relation_key(edge_type), f"<{'___'.join(edge_type)}>"]
    return keys + [key.replace(".", "#") for key in keys if "." in key]


def _relation_of(name: str, keys: Dict[str, EdgeType]) -> Tuple[str, EdgeType]:
    """``(layer name, relation)`` of a record's name ``"<layer>.<src>__<rel>__<dst>"``."""
    layer, _, last = name.rpartition(".")
    if last not in keys:
        raise ValueError(f"records: {name!r} is not a relation's record; names must end "
                         "with one of data's edge types, e.g. "
                         f"'conv1.{next(iter(keys))}'")
    return layer or "layer", keys[last]


def _check_data(data: Any) -> None:
    if not (hasattr(data, "node_types") and hasattr(data, "edge_types")):
        raise TypeError(f"data must be a torch_geometric HeteroData, got {type(data).__name__}")


def hetero_attention(records: Any, data: Any) -> HeteroAttention:
    """Per-relation attention records grouped by layer, on the typed graph.

    See the module's description for the incoming share :math:`\\tilde a_{ij}`.

    Parameters
    ----------
    records : dict
        ``{name: record}`` of :func:`~pyg_attn.nn.capture_attention` (or
        ``(edge_index, alpha)`` pairs) with names ``"<layer>.<src>__<rel>__<dst>"``;
        ``edge_index`` holds ids within the relation's source and destination types,
        every head's weights into a node sum to 1 (or 0).
    data : torch_geometric.data.HeteroData
        The graph: node types and their numbers of nodes, edge types.

    Returns
    -------
    HeteroAttention
        ``{layer name: TypedRecord}``; pass it (with ``num_nodes=result.num_nodes``) to
        :func:`~pyg_attn.analysis.attention_rollout` and
        :func:`~pyg_attn.analysis.attention_flow`.

    Raises
    ------
    TypeError
        ``records`` not a dict, ``data`` not a ``HeteroData``, a record of a wrong type.
    ValueError
        A name that ends with no edge type of ``data``, node ids beyond a type's
        nodes, malformed weights, relations of one layer with different numbers of
        heads.

    Examples
    --------
    >>> from torch_geometric.data import HeteroData
    >>> data = HeteroData()
    >>> data["paper"].num_nodes, data["author"].num_nodes = 2, 1
    >>> data["author", "writes", "paper"].edge_index = torch.tensor([[0], [0]])
    >>> data["paper", "cites", "paper"].edge_index = torch.tensor([[1], [0]])
    >>> records = {"conv.author__writes__paper": (torch.tensor([[0], [0]]), torch.ones(1)),
    ...            "conv.paper__cites__paper": (torch.tensor([[1], [0]]), torch.ones(1))}
    >>> typed = hetero_attention(records, data)
    >>> typed.offsets, typed.num_nodes
    ({'paper': 0, 'author': 2}, 3)
    >>> layer = typed["conv"]  # (author, 0) and (paper, 1) share paper 0's attention
    >>> layer.edge_index.tolist(), layer.alpha.view(-1).tolist()
    ([[2, 1], [0, 0]], [0.5, 0.5])
    """
    _check_data(data)
    if not isinstance(records, Mapping):
        raise TypeError("records must be the dict of capture_attention (names "
                        f"'<layer>.<src>__<rel>__<dst>'), got {type(records).__name__}")
    if not records:
        raise ValueError("records must hold at least one layer")
    edge_types = [tuple(et) for et in data.edge_types]
    keys = {name: et for et in edge_types for name in _module_keys(et)}
    node_types = list(data.node_types)
    counts = [int(data[nt].num_nodes) for nt in node_types]
    starts = dict(zip(node_types, torch.cumsum(torch.tensor([0] + counts), 0).tolist()))
    size = dict(zip(node_types, counts))
    grouped: Dict[str, List[Tuple[EdgeType, Tensor, Tensor, Tensor]]] = {}
    for name, record in records.items():
        layer, edge_type = _relation_of(str(name), keys)
        edge_index, alpha = unpack_attention(record, f"records[{name!r}]")
        try:
            edge_index, alpha, _ = as_edge_attention(edge_index, alpha)
        except ValueError as error:
            raise ValueError(f"records[{name!r}]: {error}") from None
        src, _, dst = edge_type
        for row, node_type in ((0, src), (1, dst)):
            if edge_index.size(1) and int(edge_index[row].max()) >= size[node_type]:
                raise ValueError(f"records[{name!r}]: edge_index[{row}] refers to {node_type} "
                                 f"{int(edge_index[row].max())}, data has {size[node_type]}")
        edge_id = getattr(record, "edge_id", None)
        edge_id = torch.arange(edge_index.size(1)) if edge_id is None else edge_id.long()
        alpha = alpha.detach().cpu().double()
        alpha = alpha.unsqueeze(-1) if alpha.dim() == 1 else alpha
        global_index = edge_index.cpu() + torch.tensor([[starts[src]], [starts[dst]]])
        grouped.setdefault(layer, []).append((edge_type, global_index, alpha, edge_id.cpu()))
    used = sorted({et for parts in grouped.values() for et, *_ in parts}, key=edge_types.index)
    layers = {name: _typed_layer(name, parts, used, sum(counts))
              for name, parts in grouped.items()}
    return HeteroAttention(layers, node_types, used, counts)


def _typed_layer(name: str, parts: List[Tuple[EdgeType, Tensor, Tensor, Tensor]],
                 edge_types: List[EdgeType], num_nodes: int) -> TypedRecord:
    """The relations of one layer as one :class:`TypedRecord` (shares over ``k_i``)."""
    heads = {alpha.size(1) for _, _, alpha, _ in parts}
    if len(heads) != 1:
        raise ValueError(f"records: the relations of layer {name!r} have different numbers "
                         f"of heads {sorted(heads)}; the explorer and rollout need one")
    reached = torch.zeros(num_nodes, dtype=torch.float64)  # k_i: relations into i
    for _, edge_index, _, _ in parts:
        reached[torch.unique(edge_index[1])] += 1
    edge_index = torch.cat([p[1] for p in parts], 1)
    weight = torch.cat([p[2] for p in parts])
    relation = torch.cat([torch.full((p[1].size(1),), edge_types.index(p[0]))
                          for p in parts])
    share = weight / reached[edge_index[1]].clamp_min(1).unsqueeze(-1)
    return TypedRecord(edge_index, share, torch.cat([p[3] for p in parts]), relation, weight)


def hetero_to_networkx(data: Any, records: Any = None,
                       layer: Optional[str] = None) -> nx.MultiDiGraph:
    """A ``HeteroData`` (and one layer's attention) as a typed networkx graph.

    Nodes are ``(node type, id)`` with attribute ``type``; an edge ``j -> i`` (message
    direction) carries ``relation`` (the edge type) and ``edge_id`` (its position in
    that relation's ``edge_index``, ``-1`` for a self-loop added by the layer), and,
    with ``records``, the relation's attention ``weight`` (``weight_h{h}`` per head and
    their mean, as :func:`~pyg_attn.convert.attention_to_networkx`) and ``share``, the
    mean over heads of the incoming share of :func:`hetero_attention`.  It is a
    :class:`networkx.MultiDiGraph` keyed by ``(relation key, edge_id)``: two relations
    may join the same pair of nodes.

    Parameters
    ----------
    data : torch_geometric.data.HeteroData
        The graph.
    records : dict, optional
        Per-relation records of a heterogeneous model (see :func:`hetero_attention`);
        without them the edges are ``data``'s.
    layer : str, optional
        The layer whose attention is attached (a name of :func:`hetero_attention`'s
        result, e.g. ``"conv1"``); may be left out when the records hold one layer.

    Returns
    -------
    networkx.MultiDiGraph
        ``G.graph["attention_heads"]`` is ``H`` (``None`` without records).

    Raises
    ------
    TypeError, ValueError
        As :func:`hetero_attention`; ``layer`` missing (several layers) or unknown.

    Examples
    --------
    >>> from torch_geometric.data import HeteroData
    >>> data = HeteroData()
    >>> data["paper"].num_nodes, data["author"].num_nodes = 2, 1
    >>> data["author", "writes", "paper"].edge_index = torch.tensor([[0], [1]])
    >>> G = hetero_to_networkx(data)
    >>> G.nodes["author", 0], list(G.edges(keys=True, data="relation"))
    ({'type': 'author'}, [(('author', 0), ('paper', 1), ('author__writes__paper', 0), ('author', 'writes', 'paper'))])
    """
    _check_data(data)
    G = nx.MultiDiGraph()
    G.graph[HEADS_KEY] = None
    for node_type in data.node_types:
        G.add_nodes_from(((node_type, k) for k in range(int(data[node_type].num_nodes))),
                         type=node_type)
    if records is None:
        for edge_type in data.edge_types:
            src, _, dst = edge_type
            pairs = data[edge_type].edge_index.tolist()
            G.add_edges_from(((src, j), (dst, i), (relation_key(edge_type), e),
                              {"relation": tuple(edge_type), "edge_id": e})
                             for e, (j, i) in enumerate(zip(*pairs)))
        return G
    typed = hetero_attention(records, data)
    if layer is None and len(typed) > 1:
        raise ValueError(f"layer: the records hold layers {list(typed)}; pass layer=")
    name = next(iter(typed)) if layer is None else layer
    if name not in typed:
        raise ValueError(f"layer must be one of {list(typed)}, got {layer!r}")
    record = typed[name]
    kind, index = typed.typed_nodes(record.edge_index.reshape(-1))
    kind, index = kind.view(2, -1).tolist(), index.view(2, -1).tolist()
    G.graph.update({HEADS_KEY: record.num_heads, DTYPE_KEY: "float64"})
    shares = record.alpha.mean(1).tolist()
    for e, attrs in enumerate(weight_attributes(record.weight)):
        edge_type = typed.edge_types[int(record.relation[e])]
        edge_id = int(record.edge_id[e])
        G.add_edge((typed.node_types[kind[0][e]], index[0][e]),
                   (typed.node_types[kind[1][e]], index[1][e]),
                   (relation_key(edge_type), edge_id),
                   relation=edge_type, edge_id=edge_id, share=shares[e], **attrs)
    return G
