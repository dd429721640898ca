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

Three kinds of attention have a page: a homogeneous graph's records
(:mod:`~pyg_attn.visualization.explorer_graph`), the per-relation records of a
heterogeneous model with its ``HeteroData``
(:mod:`~pyg_attn.visualization.explorer_hetero`: typed nodes, a relation filter)
and a transformer's dense attention over tokens
(:mod:`~pyg_attn.visualization.explorer_tokens`: a sequence layout).
"""
from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

from torch import Tensor

from ..convert.tokens import is_token_attention
from .explorer_graph import check_int, check_path, graph_content
from .explorer_hetero import hetero_content, is_hetero_data, looks_hetero
from .explorer_tokens import token_content

__all__ = ["MAX_EDGES", "MAX_FLOW_TARGETS", "MAX_TOKEN_FLOW_TARGETS", "AttentionExplorer",
           "explorer"]

#: Most edges (in the largest layer, self-loops included) a page shows; beyond
#: that the nodes farthest from the centre (or with the largest ids, for the
#: whole graph) are left out and the page says so.
MAX_EDGES = 5000
#: Attention flow (one max-flow per input node) is precomputed for at most
#: this many targets, the ones nearest the centre; rollout for every shown node.
MAX_FLOW_TARGETS = 64
#: The same for tokens (default ``flow_targets`` of dense attention): the chosen
#: token only.  Every token reaches every other, so one target of 12 layers over
#: 128 tokens is 128 max-flows on a network of 200k edges (3.5 min measured on a
#: busy 2-core machine; 4 layers: 77 s); ``flow_targets=0`` leaves flow out.
MAX_TOKEN_FLOW_TARGETS = 1

TEMPLATE = Path(__file__).with_name("explorer.html")
PathLike = Union[str, "os.PathLike[str]"]


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
        path = check_path(path)
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


def _page(data: Dict[str, Any]) -> str:
    """The template with ``data`` as JSON (``</`` escaped so no tag can close early)."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    values = {"__TITLE__": html.escape(data["title"]), "__DATA__": payload}
    template = TEMPLATE.read_text(encoding="utf-8")
    return re.sub("__TITLE__|__DATA__", lambda match: values[match.group(0)], template)


# ----------------------------------------------------------------------------- entry
def explorer(records: Any, data: Any = None, node: Any = None, hops: int = 2,
             path: Optional[PathLike] = None, *, predictions: Any = None,
             labels: Optional[Sequence[str]] = None, batch: Optional[int] = None,
             attention_mask: Any = None, max_edges: int = MAX_EDGES,
             flow_targets: Optional[int] = None, title: Optional[str] = None,
             seed: int = 0) -> AttentionExplorer:
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

    **Heterogeneous graphs.**  With a ``HeteroData`` as ``data``, ``records``
    are the per-relation records of a :func:`~torch_geometric.nn.to_hetero` or
    ``HeteroConv`` model (``"conv1.author__writes__paper"``, ...): they are
    grouped by layer, nodes are ``(type, id)`` with a colour and a shape per
    type (and a legend with the shown count of each), a relation filter sits
    beside the layer and head selectors, and hovering an edge also shows its
    relation.  Rollout and flow run on the typed graph, each destination's
    relations summed into its incoming attention as ``aggr="sum"`` does (see
    :mod:`pyg_attn.convert.hetero`, also for other aggregations).

    **Transformers.**  With a list or tuple of dense ``[H, T, T]`` or
    ``[B, H, T, T]`` tensors as ``records`` (one per layer, as Hugging Face's
    ``output_attentions=True`` returns them; ``A[i, j]`` = weight of query
    ``i`` on key ``j``), the page shows the tokens (``labels``) in reading
    order with arcs between them (the sequence layout) or on a circle, every
    layer and head, and rollout and flow for a chosen token (``node``, a
    position); ``attention_mask`` leaves padding out.

    Parameters
    ----------
    records : dict or list
        ``{layer name: record}`` from :func:`~pyg_attn.nn.capture_attention`
        (first layer first; our layers' or PyG's), or a list of records or
        ``(edge_index [2, E], alpha [E, H] or [E])`` pairs (edge ids are then
        the positions).  Every head's weights into a node should sum to 1 (or
        0), as softmax attention does.  With a ``HeteroData``: the records of
        every relation.  Or dense attention over tokens: a list, tuple or dict
        of ``[H, T, T]`` / ``[B, H, T, T]`` tensors, one per layer.
    data : torch_geometric.data.Data or HeteroData, optional
        Gives the number of nodes (isolated nodes included) and, with ``y``
        (``[N]`` class ids; per node type on a ``HeteroData``), node colours by
        label.  None for dense attention.
    node : int or (str, int), optional
        Centre node (``(type, id)`` on a ``HeteroData``); default: the whole
        graph.  For tokens: the chosen token's position (default the first).
    hops : int
        Radius of the neighbourhood (>= 1).
    path : str or os.PathLike, optional
        Also write the page there.
    predictions : Tensor or dict, optional
        ``[N]`` predicted classes or ``[N, C]`` scores (argmax taken): node
        colours by prediction; on a ``HeteroData`` a dict ``{type: [N_t] or
        [N_t, C]}``.
    labels : sequence of str, optional
        Tokens: one label per position ``T`` (padding included); default the
        positions.
    batch : int, optional
        Tokens: which sequence of ``[B, H, T, T]`` tensors (may be left out for
        ``B = 1``).
    attention_mask : Tensor, optional
        Tokens: ``[T]`` or ``[B, T]``, 1 for tokens, 0 for padding (left out).
    max_edges : int
        Most edges of one layer on the page (self-loops included); beyond it
        the nodes farthest from ``node`` (largest ids for the whole graph) are
        left out and the page shows a message saying so.
    flow_targets : int, optional
        Attention flow is computed for this many shown nodes, nearest
        ``node`` first (one max-flow per input node each); default
        :data:`MAX_FLOW_TARGETS` for graphs, :data:`MAX_TOKEN_FLOW_TARGETS`
        for tokens; 0 leaves flow out (the page then says so).
    title : str, optional
        Page title (default ``"Attention around node <node>"``, ``"... around
        (<type>, <id>)"``, ``"Attention over <T> tokens"`` or ``"Attention"``).
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
        ``records``, ``data``, ``predictions``, ``path``, ``labels`` or an int
        argument of the wrong type; an int ``node`` on a ``HeteroData``.
    ValueError
        Malformed records (shapes, negative or non-finite weights, rows not
        summing to 1 or 0), ``node`` outside the graph (or a padding
        position), ``hops`` or ``max_edges`` < 1, ``flow_targets`` < 0, ``data.y``
        or ``predictions`` not ``[N]``, per-relation records without a
        ``HeteroData``, token arguments with graph records, ``labels`` not
        one per token, ``batch`` missing or out of range, a bad
        ``attention_mask``.

    Examples
    --------
    >>> import torch
    >>> edge_index = torch.tensor([[1, 2, 0, 3], [0, 0, 1, 2]])
    >>> alpha = torch.tensor([[0.25, 0.5], [0.75, 0.5], [1.0, 1.0], [1.0, 1.0]])
    >>> page = explorer([(edge_index, alpha)], node=0, hops=2)
    >>> page.data["nodes"]  # node 0, then its in-neighbours, then theirs
    [0, 1, 2, 3]
    >>> page.data["layers"][0]["alpha"][:4]  # edge 1 -> 0, heads 0 and 1; edge 2 -> 0
    [0.25, 0.5, 0.75, 0.5]
    >>> page.html.startswith("<!DOCTYPE html>")
    True

    Two layers of one-head attention over three tokens:

    >>> A = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]])
    >>> page = explorer((A, A), labels=["the", "cat", "sat"], node=2)
    >>> page.data["tokens"], page.data["centre"]
    (['the', 'cat', 'sat'], 2)
    >>> page.data["flow"]  # attention flow into the chosen token, largest first
    {'2': [[2, 0.75], [0, 0.35], [1, 0.3]]}
    """
    hops = check_int("hops", hops, 1)
    max_edges = check_int("max_edges", max_edges, 1)
    if flow_targets is not None:
        flow_targets = check_int("flow_targets", flow_targets, 0)
    seed = check_int("seed", seed, 0)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    if path is not None:
        check_path(path)
    if is_token_attention(records):
        for name, value in (("data", data), ("predictions", predictions)):
            if value is not None:
                raise ValueError(f"{name}: dense attention over tokens takes no {name}; "
                                 "leave it None")
        content, centre = token_content(records, labels, batch, attention_mask, node,
                                        MAX_TOKEN_FLOW_TARGETS if flow_targets is None
                                        else flow_targets)
        default_title = f"Attention over {len(content['tokens'])} tokens"
    else:
        for name, value in (("labels", labels), ("batch", batch),
                            ("attention_mask", attention_mask)):
            if value is not None:
                raise ValueError(f"{name} is for dense attention over tokens (a list of "
                                 "[H, T, T] tensors); graph records take none (class "
                                 "labels come from data.y)")
        flow_targets = MAX_FLOW_TARGETS if flow_targets is None else flow_targets
        if is_hetero_data(data):
            content, centre = hetero_content(records, data, node, hops, predictions,
                                             max_edges, flow_targets, seed)
        elif data is None and looks_hetero(records):
            raise ValueError("records: these are per-relation records of a heterogeneous "
                             f"model ({next(iter(records))!r}, ...); pass data=<HeteroData> "
                             "so that node ids keep their types")
        else:
            content = graph_content(records, data, node, hops, predictions, max_edges,
                                    flow_targets, seed)
            centre = None if node is None else f"node {node}"
        default_title = f"Attention around {centre}" if node is not None else "Attention"
    content = {"title": title or default_title, **content}
    page = AttentionExplorer(_page(content), content)
    if path is not None:
        page.save(path)
    return page
