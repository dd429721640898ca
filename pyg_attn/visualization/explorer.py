"""An interactive attention explorer: one self-contained HTML page (:func:`explorer`).

The page is plain JavaScript and SVG (``explorer.html`` beside this module)
with the data embedded as JSON, so it opens offline in any browser and
renders inline in Jupyter.  It shows the attention of every layer of a
model on a node's ``hops``-hop in-neighbourhood (or on the whole graph, up
to :data:`MAX_EDGES` edges): layer and head selectors (with the mean of the
heads), arrows ``j -> i`` sized and coloured by weight with a colour bar,
attention rollout and attention flow precomputed with
:mod:`pyg_attn.analysis`, a threshold / top-k filter, node colours by label or
prediction, a node's strongest incoming and outgoing attention on click
(with edge ids), and each edge's source, target, edge id, layer, head and
weight on hover.
"""
from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["MAX_EDGES", "MAX_FLOW_TARGETS", "AttentionExplorer", "explorer"]

#: Most edges (in the largest layer, self-loops included) a page shows; beyond
#: that the nodes farthest from the centre (or with the largest ids, for the
#: whole graph) are left out and the page says so.
MAX_EDGES = 5000
#: Attention flow (one max-flow per input node) is precomputed for at most
#: this many targets, the ones nearest the centre; rollout for every shown node.
MAX_FLOW_TARGETS = 64
#: Decimals of the weights embedded in the page.
DECIMALS = 6

TEMPLATE = Path(__file__).with_name("explorer.html")
PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class _Layer:
    """One layer's attention: ``edge_index [2, E]``, ``alpha [E, H]``, ``edge_id [E]``."""

    name: str
    edge_index: Tensor
    alpha: Tensor
    edge_id: Tensor


class AttentionExplorer:
    """The page written by :func:`explorer`: shown inline in Jupyter, saved with :meth:`save`.

    Attributes
    ----------
    html : str
        the whole self-contained page.
    data : dict
        the data embedded in it (node ids, layout, per-layer edges and weights, rollout and
        flow rows, truncation message).
    """

    def __init__(self, page: str, data: Dict[str, Any]) -> None:
        self.html = page
        self.data = data

    def save(self, path: PathLike) -> Path:
        """Writes the page to ``path`` (parent folders created); returns the path."""
        path = _check_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html, encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        """The page in an ``<iframe srcdoc>``: its script runs and its ids stay its own."""
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" '
                'style="width:100%;height:720px;border:1px solid #ddd" '
                'sandbox="allow-scripts"></iframe>')

    def __repr__(self) -> str:
        return (f"AttentionExplorer({len(self.data['nodes'])} nodes, "
                f"{len(self.data['layers'])} layers, {len(self.html)} characters)")


# ----------------------------------------------------------------------------- checks
def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _one_layer(name: str, layer: Any) -> _Layer:
    """A capture record or an ``(edge_index, alpha)`` pair as a checked :class:`_Layer`."""
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
    return _Layer(name, edge_index, alpha, edge_id)


def _layers(records: Any) -> List[_Layer]:
    """``records`` (dict of records, or a list of records / pairs) as checked layers."""
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
    return [_one_layer(name, layer) for name, layer in items]


def _node_classes(name: str, values: Any, num_nodes: int) -> Optional[List[int]]:
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


def _num_nodes(layers: List[_Layer], data: Any) -> int:
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
def _node_order(layers: List[_Layer], num_nodes: int, node: Optional[int],
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


def _kept_nodes(layers: List[_Layer], order: Tensor, num_nodes: int,
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


def _spring(edges: Tensor, n: int, seed: int, iterations: int = 50) -> np.ndarray:
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


def _layout(layers: List[_Layer], nodes: Tensor, local: Tensor, seed: int) -> List[float]:
    """Spring layout of the shown nodes, scaled into ``[0, 1]^2``; flat ``[x0, y0, x1, ...]``."""
    if nodes.numel() == 1:
        return [0.5, 0.5]
    parts = []
    for layer in layers:
        src, dst = local[layer.edge_index[0]], local[layer.edge_index[1]]
        keep = (src >= 0) & (dst >= 0) & (src != dst)
        parts.append(torch.stack([src[keep], dst[keep]]))
    xy = _spring(torch.cat(parts, 1), nodes.numel(), seed).astype(np.float64)
    xy = (xy - xy.min(0)) / np.maximum(xy.max(0) - xy.min(0), 1e-9)
    return np.round(xy, 4).reshape(-1).tolist()


# ----------------------------------------------------------------------------- data
def _layer_data(layer: _Layer, local: Tensor) -> Dict[str, Any]:
    """The layer's edges among the shown nodes: local ``src``/``dst``, ``eid``, flat
    ``alpha`` (``E * H`` values, edge-major), in the layer's edge order."""
    src, dst = local[layer.edge_index[0]], local[layer.edge_index[1]]
    keep = (src >= 0) & (dst >= 0)
    alpha = np.round(layer.alpha[keep].numpy(), DECIMALS)
    return {"name": layer.name, "heads": layer.alpha.size(1), "src": src[keep].tolist(),
            "dst": dst[keep].tolist(), "eid": layer.edge_id[keep].tolist(),
            "alpha": alpha.reshape(-1).tolist()}


def _rows(matrix: Tensor, targets: Tensor, local: Tensor) -> Dict[str, Any]:
    """Dense rows ``[T, N]`` restricted to the shown sources: ``{target: [[src, w], ...]}``
    with local ids, largest weights first."""
    rows = {}
    shown = (local >= 0).nonzero().view(-1)
    for t, target in enumerate(targets.tolist()):
        values = matrix[t, shown]
        nonzero = (values > 0).nonzero().view(-1)
        order = nonzero[torch.argsort(values[nonzero], descending=True)]
        rows[str(int(local[target]))] = [[int(local[shown[k]]), round(float(values[k]), DECIMALS)]
                                         for k in order.tolist()]
    return rows


def _analysis_views(layers: List[_Layer], num_nodes: int, nodes: Tensor, local: Tensor,
                    flow_targets: int) -> Dict[str, Any]:
    """Rollout rows for every shown node and flow rows for the first ``flow_targets``."""
    from ..analysis import attention_flow, attention_rollout

    pairs = [(layer.edge_index, layer.alpha) for layer in layers]
    try:
        rollout = attention_rollout(pairs, targets=nodes, num_nodes=num_nodes).to_dense()
        flow_nodes = nodes[:flow_targets]
        flow = attention_flow(pairs, targets=flow_nodes, num_nodes=num_nodes)
    except ValueError as error:
        raise ValueError(f"records: rollout and flow need attention whose rows sum to 1 "
                         f"or 0 per head ({error})") from error
    return {"rollout": _rows(rollout, nodes, local), "flow": _rows(flow, flow_nodes, local)}


def _message(kept: int, candidates: int, node: Optional[int], max_edges: int) -> Optional[str]:
    if kept == candidates:
        return None
    scope = (f"the {candidates} nodes of node {node}'s neighbourhood" if node is not None
             else f"the graph's {candidates} nodes")
    which = f"nearest node {node}" if node is not None else "with the lowest ids"
    return (f"Truncated: {kept} of {scope} are shown (those {which}), so that no "
            f"layer has more than {max_edges} edges here. Pass node= (and a smaller hops=) "
            "to explore another part, or a larger max_edges=.")


def _explorer_data(layers: List[_Layer], num_nodes: int, node: Optional[int], hops: int,
                  labels: Optional[List[int]], predictions: Optional[List[int]],
                  max_edges: int, flow_targets: int, seed: int, title: str) -> Dict[str, Any]:
    """The JSON embedded in the page (see :class:`AttentionExplorer` ``.data``)."""
    order = _node_order(layers, num_nodes, node, hops)
    nodes = _kept_nodes(layers, order, num_nodes, max_edges)
    local = torch.full((num_nodes,), -1, dtype=torch.long)
    local[nodes] = torch.arange(nodes.numel())
    classes = [c for c in (labels, predictions) if c is not None]
    return {
        "title": title,
        "centre": 0,
        "nodes": nodes.tolist(),
        "pos": _layout(layers, nodes, local, seed),
        "labels": None if labels is None else [labels[v] for v in nodes.tolist()],
        "predictions": None if predictions is None else [predictions[v] for v in nodes.tolist()],
        "num_classes": max((max(c) + 1 for c in classes if c), default=0),
        "layers": [_layer_data(layer, local) for layer in layers],
        **_analysis_views(layers, num_nodes, nodes, local, flow_targets),
        "flow_targets": min(flow_targets, nodes.numel()),
        "message": _message(nodes.numel(), order.numel(), node, max_edges),
    }


def _page(data: Dict[str, Any]) -> str:
    """The template with ``data`` as JSON (``</`` escaped so no tag can close early)."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    values = {"__TITLE__": html.escape(data["title"]), "__DATA__": payload}
    template = TEMPLATE.read_text(encoding="utf-8")
    return re.sub("__TITLE__|__DATA__", lambda match: values[match.group(0)], template)


# ----------------------------------------------------------------------------- entry
def explorer(records: Any, data: Any = None, node: Optional[int] = None, hops: int = 2,
             path: Optional[PathLike] = None, *, predictions: Optional[Tensor] = None,
             max_edges: int = MAX_EDGES, flow_targets: int = MAX_FLOW_TARGETS,
             title: Optional[str] = None, seed: int = 0) -> AttentionExplorer:
    """An interactive HTML page of a model's attention, all layers and heads.

    The page (one self-contained file: plain JavaScript and SVG, data as
    JSON, no network needed) shows the ``hops``-hop in-neighbourhood of
    ``node`` (the nodes whose messages reach it) or the whole graph, with

    * a layer selector and a head selector (with "mean of heads"); arrows
      ``j -> i`` (message direction) whose width and colour give
      :math:`a_{ij}`, and a colour bar;
    * a view switch: per-layer attention, attention rollout
      (:func:`~pyg_attn.analysis.attention_rollout`, heads averaged, residual
      0.5) and attention flow (:func:`~pyg_attn.analysis.attention_flow`),
      drawn as arrows ``j -> t`` into the selected node ``t``, computed on the
      whole graph and shown for the sources on the page;
    * a click on a node selects it and re-centres the view on it, listing its
      strongest incoming and outgoing attention with edge ids; hovering an
      edge shows its source, target, edge id, layer, head and weight;
    * node colours by label (``data.y``) or prediction, with a legend;
    * a threshold / top-k (per target) slider that hides weak edges.

    Parameters
    ----------
    records : dict or list
        ``{layer name: record}`` from :func:`~pyg_attn.nn.capture_attention`
        (first layer first; our layers' or PyG's), or a list of records or
        ``(edge_index [2, E], alpha [E, H] or [E])`` pairs (edge ids are then
        the positions).  Every head's weights into a node should sum to 1 (or
        0), as softmax attention does.
    data : torch_geometric.data.Data, optional
        Gives the number of nodes (isolated nodes included) and, with ``y``
        (``[N]`` class ids), node colours by label.
    node : int, optional
        Centre node; default: the whole graph.
    hops : int
        Radius of the neighbourhood (>= 1).
    path : str or os.PathLike, optional
        Also write the page there.
    predictions : Tensor, optional
        ``[N]`` predicted classes or ``[N, C]`` scores (argmax taken): node
        colours by prediction.
    max_edges : int
        Most edges of one layer on the page (self-loops included); beyond it
        the nodes farthest from ``node`` (largest ids for the whole graph) are
        left out and the page shows a message saying so.
    flow_targets : int
        Attention flow is computed for this many shown nodes, nearest
        ``node`` first (one max-flow per input node each).
    title : str, optional
        Page title (default ``"Attention around node <node>"`` or
        ``"Attention"``).
    seed : int
        Seed of the spring layout.

    Returns
    -------
    AttentionExplorer
        ``.html`` (the page), ``.data`` (the embedded data), ``.save(path)``;
        shown inline in Jupyter.

    Raises
    ------
    TypeError
        ``records``, ``data``, ``predictions``, ``path`` or an int argument of
        the wrong type.
    ValueError
        Malformed records (shapes, negative or non-finite weights, rows not
        summing to 1 or 0), ``node`` outside ``[0, N)``, ``hops``,
        ``max_edges`` or ``flow_targets`` < 1, ``data.y`` or ``predictions``
        not ``[N]``.

    Examples
    --------
    >>> edge_index = torch.tensor([[1, 2, 0, 3], [0, 0, 1, 2]])
    >>> alpha = torch.tensor([[0.25, 0.5], [0.75, 0.5], [1.0, 1.0], [1.0, 1.0]])
    >>> page = explorer([(edge_index, alpha)], node=0, hops=2)
    >>> page.data["nodes"]  # node 0, then its in-neighbours, then theirs
    [0, 1, 2, 3]
    >>> page.data["layers"][0]["alpha"][:4]  # edge 1 -> 0, heads 0 and 1; edge 2 -> 0
    [0.25, 0.5, 0.75, 0.5]
    >>> page.html.startswith("<!DOCTYPE html>")
    True
    """
    layers = _layers(records)
    num_nodes = _num_nodes(layers, data)
    if node is not None:
        node = _check_int("node", node, 0)
        if node >= num_nodes:
            raise ValueError(f"node must be in [0, {num_nodes}), got {node}")
    hops = _check_int("hops", hops, 1)
    max_edges = _check_int("max_edges", max_edges, 1)
    flow_targets = _check_int("flow_targets", flow_targets, 1)
    seed = _check_int("seed", seed, 0)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    if path is not None:
        _check_path(path)
    labels = _node_classes("data.y", getattr(data, "y", None), num_nodes)
    predicted = _node_classes("predictions", predictions, num_nodes)
    title = title or (f"Attention around node {node}" if node is not None else "Attention")
    content = _explorer_data(layers, num_nodes, node, hops, labels, predicted, max_edges,
                            flow_targets, seed, title)
    page = AttentionExplorer(_page(content), content)
    if path is not None:
        page.save(path)
    return page
