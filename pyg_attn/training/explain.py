r"""``pyg-attn explain``: what a trained node classifier attends to.

From a checkpoint written by ``pyg-attn train`` (``run<r>/best.pt``) this
rebuilds the model, runs it once in evaluation mode on its data set under
:func:`~pyg_attn.nn.capture_attention`, and writes:

* ``attention.csv``: one row per layer, edge and head: ``layer, edge_id,
  source, target, head, alpha``.  ``edge_id`` is the edge's position in the
  data set's ``edge_index`` (``-1`` for a self-loop the layer added);
  ``source`` = ``j``, ``target`` = ``i`` (the message ``j -> i``) and
  ``alpha`` = :math:`a_{ij}`, which sums to 1 over each target's incoming edges.
* ``attention.json``: the same per layer (``edge_index``, ``edge_id``,
  ``alpha [E, H]``), plus the node's prediction, its incoming attention in
  every layer and its attention rollout (the inputs it draws on most).
* ``node<k>_attention.png``: the node's ``hops``-hop attention neighbourhood
  in the last layer (arrow width and colour = :math:`a_{ij}`, heads averaged).
* ``node<k>_rollout.png``: its strongest rollout contributions
  :math:`R_{kj}`, :math:`R = \hat A_L \cdots \hat A_1`,
  :math:`\hat A_l = \operatorname{rownorm}(\tfrac12 A_l + \tfrac12 I)`
  (Abnar & Zuidema 2020; :func:`pyg_attn.analysis.attention_rollout`).
* ``attention.html`` (with ``html=True``): the interactive explorer of
  :func:`pyg_attn.visualization.explorer` for the node's ``hops``-hop
  neighbourhood: every layer and head, rollout and flow, labels and predictions.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor

from ..nn import AttentionRecord, capture_attention
from .checkpoint import load_checkpoint
from .checks import positive_int
from .models import ModelConfig, NodeClassifier
from .node_classification import load_node_data

__all__ = ["ROLLOUT_TOP", "explain", "find_checkpoint"]

#: Rollout contributions drawn and listed in the JSON (the largest ones).
ROLLOUT_TOP = 15

PathLike = Union[str, "os.PathLike[str]"]


def find_checkpoint(path: PathLike) -> Path:
    """The ``best.pt`` meant by ``path``: the file, ``path/best.pt`` or ``path/run0/best.pt``.

    Raises
    ------
    FileNotFoundError
        If none exists (the message lists where it looked).
    """
    path = Path(path)
    candidates = [path] if path.is_file() else [path / "best.pt", path / "run0" / "best.pt"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no checkpoint found at {', '.join(map(str, candidates))}: pass "
                            "a best.pt written by 'pyg-attn train' or its output folder")


def _write_csv(path: Path, records: dict[str, AttentionRecord]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["layer", "edge_id", "source", "target", "head", "alpha"])
        for name, record in records.items():
            src, dst = record.edge_index.tolist()
            edge_id = record.edge_id.tolist()
            alpha = record.alpha.tolist()
            for e in range(len(edge_id)):
                for head, value in enumerate(alpha[e]):
                    writer.writerow([name, edge_id[e], src[e], dst[e], head, f"{value:.6g}"])


def _incoming(record: AttentionRecord, node: int) -> dict[str, list[Any]]:
    """The edges ``j -> node`` of one layer: sources, edge ids, per-head weights."""
    mask = record.edge_index[1] == node
    return {"source": record.edge_index[0, mask].tolist(),
            "edge_id": record.edge_id[mask].tolist(),
            "alpha": _rounded(record.alpha[mask])}


def _rounded(values: Tensor) -> list[Any]:
    return [[round(v, 6) for v in row] for row in values.tolist()]


def explain(checkpoint: PathLike, node: int, out: PathLike | None = None, hops: int = 2,
            data_root: PathLike | None = None, device: str = "cpu",
            html: bool = False) -> dict[str, Path]:
    """Exports and draws the attention of a trained node classifier (see module doc).

    Parameters
    ----------
    checkpoint : str or os.PathLike
        A ``best.pt`` of ``pyg-attn train``, its run folder or the output folder.
    node : int
        The node to explain, ``0 <= node < N``.
    out : str or os.PathLike, optional
        Output folder; default ``explain/`` beside the checkpoint.
    hops : int
        Radius of the neighbourhood picture (>= 1).
    data_root : str or os.PathLike, optional
        Where the data set's raw files are; default the root the model was
        trained with (else the shipped copy).
    device : str
        Device to run the model on.
    html : bool
        Also write ``attention.html``, the interactive explorer.

    Returns
    -------
    dict
        ``{"csv", "json", "attention_png", "rollout_png"}`` (and ``"html"``)
        -> written paths.

    Raises
    ------
    FileNotFoundError
        No checkpoint at ``checkpoint``.
    ValueError
        ``node`` outside the graph or ``hops`` < 1.
    """
    from ..analysis import attention_rollout
    from ..visualization import draw_attention_graph, explorer

    positive_int("hops", hops)
    path = find_checkpoint(checkpoint)
    payload = load_checkpoint(path, map_location=device)
    root = data_root if data_root is not None else payload.get("data_root")
    data, _, _ = load_node_data(payload["dataset"], None if root is None else str(root))
    if isinstance(node, bool) or not isinstance(node, int) or not 0 <= node < data.num_nodes:
        raise ValueError(f"'node' must be an int in [0, {data.num_nodes}), got {node!r}")
    model = NodeClassifier(payload["num_features"], payload["num_classes"],
                           ModelConfig(**payload["model_config"]))
    model.load_state_dict(payload["model_state"])
    model = model.to(device).eval()
    data = data.to(device)
    with torch.no_grad(), capture_attention(model) as captured:
        logits = model(data.x, data.edge_index)
    records = {name: AttentionRecord(r.edge_index.cpu(), r.alpha.float().cpu(),
                                     r.edge_id.cpu()) for name, r in captured.items()}

    folder = Path(out) if out is not None else path.parent / "explain"
    folder.mkdir(parents=True, exist_ok=True)
    written = {"csv": folder / "attention.csv", "json": folder / "attention.json",
               "attention_png": folder / f"node{node}_attention.png",
               "rollout_png": folder / f"node{node}_rollout.png"}
    _write_csv(written["csv"], records)

    layers = list(records.items())
    rollout = attention_rollout([(r.edge_index, r.alpha) for _, r in layers], targets=[node],
                                num_nodes=data.num_nodes).coalesce()
    sources, shares = rollout.indices()[1], rollout.values()
    order = torch.argsort(shares, descending=True)[:ROLLOUT_TOP]
    sources, shares = sources[order], shares[order]

    prediction = int(logits[node].argmax())
    summary = {
        "checkpoint": str(path), "dataset": payload["dataset"], "epoch": payload["epoch"],
        "node": {"id": node, "label": int(data.y[node]), "prediction": prediction,
                 "incoming": {name: _incoming(r, node) for name, r in layers},
                 "rollout_top": {"source": sources.tolist(),
                                 "share": [round(v, 6) for v in shares.tolist()]}},
        "layers": {name: {"heads": r.num_heads, "edge_index": r.edge_index.tolist(),
                          "edge_id": r.edge_id.tolist(), "alpha": _rounded(r.alpha)}
                   for name, r in layers},
    }
    written["json"].write_text(json.dumps(summary) + "\n", encoding="utf-8")

    last_name, last = layers[-1]
    draw_attention_graph((last.edge_index, last.alpha.mean(dim=-1)), node=node, hops=hops,
                         title=f"{payload['dataset']} node {node} (class {int(data.y[node])}, "
                               f"predicted {prediction}): attention in {last_name}, "
                               f"{hops}-hop", path=written["attention_png"])
    rollout_edges = torch.stack([sources, torch.full_like(sources, node)])
    draw_attention_graph((rollout_edges, shares), node=node, hops=1, edge_labels=True,
                         title=f"node {node}: rollout over {len(layers)} layers "
                               f"(top {sources.numel()} inputs)",
                         path=written["rollout_png"])
    if html:
        written["html"] = folder / "attention.html"
        explorer(records, data.cpu(), node=node, hops=hops, path=written["html"],
                 predictions=logits.cpu(),
                 title=f"{payload['dataset']} node {node}: attention of every layer")
    return written
