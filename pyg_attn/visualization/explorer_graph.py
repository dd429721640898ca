"""Graph attention on the explorer page: checked layers, the shown neighbourhood, its layout.

Shared by the homogeneous page (:func:`graph_content`) and the heterogeneous one
(:mod:`~pyg_attn.visualization.explorer_hetero`, which maps typed nodes to one id range
first).  Everything here works on global node ids ``0 .. N-1``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

#: Decimals of the weights embedded in the page.
DECIMALS = 6

Pairs = List[Tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class GraphLayer:
    """One layer's attention: ``edge_index [2, E]``, ``alpha [E, H]``, ``edge_id [E]`` and,
    on a heterogeneous graph, ``relation [E]`` (index of each edge's relation)."""

    name: str
    edge_index: Tensor
    alpha: Tensor
    edge_id: Tensor
    relation: Optional[Tensor] = None


# ----------------------------------------------------------------------------- checks
def check_path(path: Any) -> Path:
    """``path`` as a :class:`~pathlib.Path` (``TypeError`` naming it otherwise)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def check_int(name: str, value: Any, low: int) -> int:
    """``value`` as an int ``>= low`` (``TypeError`` / ``ValueError`` naming ``name``)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def one_layer(name: str, layer: Any) -> GraphLayer:
    """A capture record or an ``(edge_index, alpha)`` pair as a checked :class:`GraphLayer`."""
    if hasattr(layer, "edge_index") and hasattr(layer, "alpha"):
        edge_index, alpha = layer.edge_index, layer.alpha
        edge_id = getattr(layer, "edge_id", None)
    elif isinstance(layer, (tuple, list)) and len(layer) == 2:
        (edge_index, alpha), edge_id = layer, None
    else:
        raise TypeError(f"records[{name!r}] must be an attention record or (edge_index, alpha), "
                        f"got {type(layer).__name__}")
    if not isinstance(edge_index, Tensor) or not isinstance(alpha, Tensor):
        raise TypeError(f"records[{name!r}]: edge_index and alpha must be tensors")
    edge_index = edge_index.detach().cpu().long()
    alpha = alpha.detach().cpu().double()
    alpha = alpha.unsqueeze(-1) if alpha.dim() == 1 else alpha
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"records[{name!r}]: edge_index must be [2, E], "
                         f"got {tuple(edge_index.shape)}")
    num_edges = edge_index.size(1)
    if alpha.dim() != 2 or alpha.size(0) != num_edges or alpha.size(1) < 1:
        raise ValueError(f"records[{name!r}]: alpha must be [E, H] with E = {num_edges}, "
                         f"got {tuple(alpha.shape)}")
    if not bool(torch.isfinite(alpha).all()) or bool((alpha < 0).any()):
        raise ValueError(f"records[{name!r}]: alpha must be finite and non-negative")
    if num_edges and int(edge_index.min()) < 0:
        raise ValueError(f"records[{name!r}]: edge_index must hold node ids >= 0")
    edge_id = torch.arange(num_edges) if edge_id is None else edge_id.detach().cpu().long()
    if edge_id.shape != (num_edges,):
        raise ValueError(f"records[{name!r}]: edge_id must be [E] with E = {num_edges}, "
                         f"got {tuple(edge_id.shape)}")
    return GraphLayer(name, edge_index, alpha, edge_id)


def record_items(records: Any) -> List[Tuple[str, Any]]:
    """``(name, layer)`` of a dict of records or a list of records / pairs."""
    if isinstance(records, Mapping):
        items = [(str(name), layer) for name, layer in records.items()]
    elif isinstance(records, Sequence) and not isinstance(records, str):
        items = [(f"layer {k}", layer) for k, layer in enumerate(records)]
    else:
        raise TypeError("records must be a dict of attention records (capture_attention) or "
                        "a list of records / (edge_index, alpha) pairs, got "
                        f"{type(records).__name__}")
    if not items:
        raise ValueError("records must hold at least one layer")
    return items


def graph_layers(records: Any) -> List[GraphLayer]:
    """``records`` (dict of records, or a list of records / pairs) as checked layers."""
    return [one_layer(name, layer) for name, layer in record_items(records)]


def node_classes(name: str, values: Any, num_nodes: int) -> Optional[List[int]]:
    """``[N]`` class ids, or ``[N, C]`` scores (their argmax), as a list; None stays None."""
    if values is None:
        return None
    if not isinstance(values, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(values).__name__}")
    values = values.detach().cpu()
    if values.dim() == 2:
        values = values.argmax(-1)
    if values.dim() != 1 or values.numel() != num_nodes or values.is_floating_point():
        raise ValueError(f"{name} must be [N] class ids or [N, C] scores with N = {num_nodes}, "
                         f"got {tuple(values.shape)} {values.dtype}")
    return values.long().tolist()


def count_nodes(layers: List[GraphLayer], data: Any) -> int:
    """``data.num_nodes`` (checked against the records), or the largest id + 1."""
    largest = max((int(layer.edge_index.max()) + 1 for layer in layers
                   if layer.edge_index.numel()), default=0)
    if data is None:
        return largest
    num_nodes = getattr(data, "num_nodes", None)
    if not isinstance(num_nodes, int):
        raise TypeError(f"data must be a torch_geometric Data with num_nodes, "
                        f"got {type(data).__name__}")
    if num_nodes < largest:
        raise ValueError(f"data has {num_nodes} nodes but the records use node {largest - 1}")
    return num_nodes


# ----------------------------------------------------------------------------- nodes
def node_order(layers: List[GraphLayer], num_nodes: int, node: Optional[int],
               hops: int) -> Tensor:
    """Candidate nodes ``[K]`` in the order they are kept: ``node``'s ``hops``-hop
    in-neighbourhood by distance (then id), or every node by id when ``node`` is None."""
    if node is None:
        return torch.arange(num_nodes)
    edges = torch.cat([layer.edge_index for layer in layers], 1)
    order, seen = [node], torch.zeros(num_nodes, dtype=torch.bool)
    seen[node] = True
    frontier = torch.tensor([node])
    for _ in range(hops):
        reached = edges[0][torch.isin(edges[1], frontier)]
        new = torch.unique(reached[~seen[reached]])
        if new.numel() == 0:
            break
        seen[new] = True
        order += new.tolist()
        frontier = new
    return torch.tensor(order)


def kept_nodes(layers: List[GraphLayer], order: Tensor, num_nodes: int,
               max_edges: int) -> Tensor:
    """The longest prefix of ``order`` with at most ``max_edges`` nodes and induced edges
    in every layer."""
    size = order.numel()
    rank = torch.full((num_nodes,), size, dtype=torch.long)
    rank[order] = torch.arange(size)
    needed = torch.zeros(size, dtype=torch.long)  # needed[k]: edges among the first k + 1
    for layer in layers:
        last = torch.maximum(rank[layer.edge_index[0]], rank[layer.edge_index[1]])
        counts = torch.bincount(last, minlength=size + 1)[:size]
        needed = torch.maximum(needed, torch.cumsum(counts, 0))
    needed = torch.maximum(needed, torch.arange(1, size + 1))  # at most max_edges nodes too
    fits = int((needed <= max_edges).sum())  # needed grows with k: a prefix fits
    return order[:max(fits, 1)]


def spring(edges: Tensor, n: int, seed: int, iterations: int = 50) -> np.ndarray:
    """Fruchterman-Reingold positions ``[n, 2]`` for undirected ``edges [2, M]`` (local ids).

    networkx's dense algorithm in blocks of rows, as matrix products (its sparse one
    loops over nodes in Python: 14 s for 1500 Cora nodes).
    """
    rng = np.random.default_rng(seed)
    pos = rng.random((n, 2)).astype(np.float32)
    adjacency = np.zeros((n, n), dtype=np.float32)
    adjacency[edges[0].numpy(), edges[1].numpy()] = 1.0
    adjacency = np.maximum(adjacency, adjacency.T)
    k = np.float32(1.0 / np.sqrt(n))
    step = 0.1 * max(1.0, float(np.ptp(pos, 0).max()))
    cool = step / (iterations + 1)
    block = max(1, 2 ** 22 // n)
    for _ in range(iterations):
        move = np.empty_like(pos)
        square = (pos ** 2).sum(1)
        for lo in range(0, n, block):  # sum_j (p_i - p_j) f_ij = p_i sum_j f_ij - (f @ p)_i
            rows = pos[lo:lo + block]
            dist2 = square[lo:lo + block, None] + square[None, :] - 2 * rows @ pos.T
            dist = np.sqrt(np.maximum(dist2, 1e-4))
            pull = k * k / dist ** 2 - adjacency[lo:lo + block] * dist / k
            move[lo:lo + block] = rows * pull.sum(1, keepdims=True) - pull @ pos
        length = np.maximum(np.sqrt((move ** 2).sum(-1)), 0.01)
        pos += move * (step / length)[:, None]
        step -= cool
    return pos


def layout(layers: List[GraphLayer], nodes: Tensor, local: Tensor, seed: int) -> List[float]:
    """Spring layout of the shown nodes, scaled into ``[0, 1]^2``; flat ``[x0, y0, x1, ...]``."""
    if nodes.numel() == 1:
        return [0.5, 0.5]
    parts = []
    for layer in layers:
        src, dst = local[layer.edge_index[0]], local[layer.edge_index[1]]
        keep = (src >= 0) & (dst >= 0) & (src != dst)
        parts.append(torch.stack([src[keep], dst[keep]]))
    xy = spring(torch.cat(parts, 1), nodes.numel(), seed).astype(np.float64)
    xy = (xy - xy.min(0)) / np.maximum(xy.max(0) - xy.min(0), 1e-9)
    return np.round(xy, 4).reshape(-1).tolist()


# ----------------------------------------------------------------------------- data
def layer_data(layer: GraphLayer, local: Tensor) -> Dict[str, Any]:
    """The layer's edges among the shown nodes: local ``src``/``dst``, ``eid``, flat
    ``alpha`` (``E * H`` values, edge-major), in the layer's edge order; ``rel`` (relation
    index per edge) on a heterogeneous graph."""
    src, dst = local[layer.edge_index[0]], local[layer.edge_index[1]]
    keep = (src >= 0) & (dst >= 0)
    alpha = np.round(layer.alpha[keep].numpy(), DECIMALS)
    content = {"name": layer.name, "heads": layer.alpha.size(1), "src": src[keep].tolist(),
               "dst": dst[keep].tolist(), "eid": layer.edge_id[keep].tolist(),
               "alpha": alpha.reshape(-1).tolist()}
    if layer.relation is not None:
        content["rel"] = layer.relation[keep].tolist()
    return content


def rows(matrix: Tensor, targets: Tensor, local: Tensor) -> Dict[str, Any]:
    """Dense rows ``[T, N]`` restricted to the shown sources: ``{target: [[src, w], ...]}``
    with local ids, largest weights first."""
    content = {}
    shown = (local >= 0).nonzero().view(-1)
    for t, target in enumerate(targets.tolist()):
        values = matrix[t, shown]
        nonzero = (values > 0).nonzero().view(-1)
        order = nonzero[torch.argsort(values[nonzero], descending=True)]
        content[str(int(local[target]))] = [[int(local[shown[k]]),
                                             round(float(values[k]), DECIMALS)]
                                            for k in order.tolist()]
    return content


def analysis_views(pairs: Any, num_nodes: int, nodes: Tensor, local: Tensor,
                   flow_targets: int) -> Dict[str, Any]:
    """Rollout rows for every shown node and flow rows for the first ``flow_targets``, of
    ``pairs`` (anything :func:`~pyg_attn.analysis.attention_rollout` takes)."""
    from ..analysis import attention_flow, attention_rollout

    try:
        rollout = attention_rollout(pairs, targets=nodes, num_nodes=num_nodes)
        flow_nodes = nodes[:flow_targets]
        flow = attention_flow(pairs, targets=flow_nodes, num_nodes=num_nodes)
    except ValueError as error:
        raise ValueError(f"records: rollout and flow need attention whose rows sum to 1 "
                         f"or 0 per head ({error})") from error
    rollout = rollout.to_dense() if rollout.is_sparse else rollout
    return {"rollout": rows(rollout, nodes, local), "flow": rows(flow, flow_nodes, local),
            "flow_targets": int(flow_nodes.numel())}


def truncation_message(kept: int, candidates: int, centre: Optional[str],
                       max_edges: int) -> Optional[str]:
    """The page's note when not every candidate node fits (``centre``: its name)."""
    if kept == candidates:
        return None
    scope = (f"the {candidates} nodes of {centre}'s neighbourhood" if centre is not None
             else f"the graph's {candidates} nodes")
    which = f"nearest {centre}" if centre is not None else "with the lowest ids"
    return (f"Truncated: {kept} of {scope} are shown (those {which}), so that no "
            f"layer has more than {max_edges} edges here. Pass node= (and a smaller hops=) "
            "to explore another part, or a larger max_edges=.")


def neighbourhood_content(layers: List[GraphLayer], pairs: Any, num_nodes: int,
                          node: Optional[int], centre: Optional[str], hops: int,
                          max_edges: int, flow_targets: int, seed: int
                          ) -> Tuple[Tensor, Dict[str, Any]]:
    """The shown nodes (global ids, centre first) and the page's graph data: ``centre``,
    ``pos``, ``layers``, ``rollout``, ``flow``, ``flow_targets``, ``message``.  Rollout
    and flow are of ``pairs``; ``centre`` names ``node`` in the message."""
    order = node_order(layers, num_nodes, node, hops)
    nodes = kept_nodes(layers, order, num_nodes, max_edges)
    local = torch.full((num_nodes,), -1, dtype=torch.long)
    local[nodes] = torch.arange(nodes.numel())
    return nodes, {
        "centre": 0,
        "pos": layout(layers, nodes, local, seed),
        "layers": [layer_data(layer, local) for layer in layers],
        **analysis_views(pairs, num_nodes, nodes, local, flow_targets),
        "message": truncation_message(nodes.numel(), order.numel(), centre, max_edges),
    }


def graph_content(records: Any, data: Any, node: Optional[int], hops: int,
                  predictions: Any, max_edges: int, flow_targets: int,
                  seed: int) -> Dict[str, Any]:
    """The page data of a homogeneous graph's attention (see :func:`explorer`)."""
    layers = graph_layers(records)
    num_nodes = count_nodes(layers, data)
    if node is not None:
        node = check_int("node", node, 0)
        if node >= num_nodes:
            raise ValueError(f"node must be in [0, {num_nodes}), got {node}")
    labels = node_classes("data.y", getattr(data, "y", None), num_nodes)
    predicted = node_classes("predictions", predictions, num_nodes)
    pairs = [(layer.edge_index, layer.alpha) for layer in layers]
    nodes, content = neighbourhood_content(
        layers, pairs, num_nodes, node, None if node is None else f"node {node}", hops,
        max_edges, flow_targets, seed)
    shown = nodes.tolist()
    classes = [c for c in (labels, predicted) if c is not None]
    return {
        "kind": "graph",
        "nodes": shown,
        "labels": None if labels is None else [labels[v] for v in shown],
        "predictions": None if predicted is None else [predicted[v] for v in shown],
        "num_classes": max((max(c) + 1 for c in classes if c), default=0),
        **content,
    }
