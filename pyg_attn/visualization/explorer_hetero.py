"""Heterogeneous graphs on the explorer page: typed nodes, relations, typed rollout and flow.

The per-relation records of a ``to_hetero`` / ``HeteroConv`` model are grouped by layer
and put on one node range by :func:`pyg_attn.convert.hetero_attention`; the page then
shows them as a homogeneous graph whose nodes keep their type (``(type, id)``, a colour
and a shape per type) and whose edges keep their relation.  Rollout and flow run on
the typed graph with each destination's relations summed into its incoming attention
(see :mod:`pyg_attn.convert.hetero`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Tuple

from torch import Tensor

from ..convert.hetero import HeteroAttention, hetero_attention
from .explorer_graph import GraphLayer, check_int, neighbourhood_content, node_classes

__all__ = ["hetero_content", "is_hetero_data", "looks_hetero"]


def is_hetero_data(data: Any) -> bool:
    """Whether ``data`` is a ``HeteroData`` (node and edge types)."""
    return hasattr(data, "node_types") and hasattr(data, "edge_types")


def looks_hetero(records: Any) -> bool:
    """Whether every record's name ends with a relation key ``src__rel__dst``."""
    return (isinstance(records, Mapping) and bool(records)
            and all(str(name).rpartition(".")[2].count("__") == 2 for name in records))


def _centre(node: Any, typed: HeteroAttention, data: Any) -> Optional[int]:
    """The global id of ``node = (type, id)``; None stays None."""
    if node is None:
        return None
    if not (isinstance(node, tuple) and len(node) == 2 and isinstance(node[0], str)):
        raise TypeError(f"node must be a (node type, id) pair on a HeteroData, got {node!r}")
    node_type, index = node
    if node_type not in typed.offsets:
        raise ValueError(f"node: {node_type!r} is not a node type of data "
                         f"({list(typed.offsets)})")
    index = check_int("node[1]", index, 0)
    count = int(data[node_type].num_nodes)
    if index >= count:
        raise ValueError(f"node: {node_type} has {count} nodes, got id {index}")
    return typed.node_id(node_type, index)


def _typed_classes(name: str, values: Dict[str, Any], typed: HeteroAttention,
                   data: Any) -> Optional[List[int]]:
    """Per global node: the class of ``values[type]`` (``[N_t]`` ids or ``[N_t, C]``
    scores), ``-1`` for types without one; None when no type has one."""
    if not values:
        return None
    classes: List[int] = []
    for node_type in typed.node_types:
        count = int(data[node_type].num_nodes)
        given = node_classes(f"{name}[{node_type!r}]", values.get(node_type), count)
        classes += given if given is not None else [-1] * count
    return classes


def _labels(data: Any) -> Dict[str, Tensor]:
    """``{type: y}`` for the node types with integer ``[N_t]`` labels ``y``."""
    found = {}
    for node_type in data.node_types:
        y = getattr(data[node_type], "y", None)
        if (isinstance(y, Tensor) and y.dim() == 1 and not y.is_floating_point()
                and y.numel() == int(data[node_type].num_nodes)):
            found[node_type] = y
    return found


def _predictions(predictions: Any) -> Dict[str, Any]:
    if predictions is None:
        return {}
    if not isinstance(predictions, Mapping):
        raise TypeError("predictions must be a dict {node type: [N_t] classes or [N_t, C] "
                        "scores} on a HeteroData, got " + type(predictions).__name__)
    return dict(predictions)


def hetero_content(records: Any, data: Any, node: Any, hops: int, predictions: Any,
                   max_edges: int, flow_targets: int, seed: int) -> Tuple[Dict[str, Any], str]:
    """The page data of a heterogeneous model's attention, and the centre's name."""
    typed = hetero_attention(records, data)
    centre = _centre(node, typed, data)
    name = None if node is None else f"({node[0]}, {node[1]})"
    layers = [GraphLayer(layer_name, r.edge_index, r.weight, r.edge_id, r.relation)
              for layer_name, r in typed.items()]
    labels = _typed_classes("data.y", _labels(data), typed, data)
    predicted = _typed_classes("predictions", _predictions(predictions), typed, data)
    nodes, content = neighbourhood_content(layers, typed, typed.num_nodes, centre, name, hops,
                                           max_edges, flow_targets, seed)
    kind, index = typed.typed_nodes(nodes)
    shown = nodes.tolist()
    classes = [c for c in (labels, predicted) if c is not None]
    return {
        "kind": "hetero",
        "nodes": index.tolist(),
        "node_type": kind.tolist(),
        "types": typed.node_types,
        "relations": [list(edge_type) for edge_type in typed.edge_types],
        "labels": None if labels is None else [labels[v] for v in shown],
        "predictions": None if predicted is None else [predicted[v] for v in shown],
        "num_classes": max((max(c) + 1 for c in classes if c), default=0),
        **content,
    }, name or "the graph"

