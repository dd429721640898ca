"""Per-layer attention for rollout and flow: parsing, head fusion, residual normalisation.

Both :func:`~pyg_attn.analysis.attention_rollout` and
:func:`~pyg_attn.analysis.attention_flow` take the attention of ``L`` layers,
first layer first, as a dense ``[L, N, N]`` / ``[L, H, N, N]`` tensor (or a list
of ``[N, N]`` / ``[H, N, N]`` tensors) or as a list of ``(edge_index, alpha)``
pairs / capture records.  Each layer becomes

.. math::

    \\hat A_l = \\operatorname{rownorm}\\big((1 - r) A_l + r I\\big),

with heads fused first (mean, max or min) and ``r`` the residual share
(0.5 in Abnar & Zuidema 2020).  Rows of every head's ``A_l`` must sum to 1 or 0
(within :data:`pyg_attn.convert.ROW_SUM_TOL`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.utils import coalesce

from ..convert import as_dense_attention, as_edge_attention

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(values: Tensor, head_fusion: str, dim: int) -> Tensor:
    """Mean, max or min over the head dimension ``dim``."""
    if head_fusion == "mean":
        return values.mean(dim)
    return values.amax(dim) if head_fusion == "max" else values.amin(dim)


def _check_options(head_fusion: str, residual: float) -> None:
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be in [0, 1], got {residual}")


def is_dense(attentions: Any) -> bool:
    """Dense (a tensor, or a list of tensors) rather than a list of edge attentions."""
    if isinstance(attentions, (Tensor, np.ndarray)):
        return True
    layers = _as_list(attentions)
    return isinstance(layers[0], (Tensor, np.ndarray))


def _as_list(attentions: Any) -> list[Any]:
    if isinstance(attentions, Mapping):  # capture_attention's records, in call order
        attentions = list(attentions.values())
    if not isinstance(attentions, Sequence) or isinstance(attentions, str):
        raise TypeError("attentions must be a dense tensor or a list of per-layer attention, "
                        f"got {type(attentions).__name__}")
    if len(attentions) == 0:
        raise ValueError("attentions must hold at least one layer")
    return list(attentions)


def dense_layers(attentions: Any, head_fusion: str = "mean", residual: float = 0.5) -> Tensor:
    """``[L, N, N]`` residual-normalised layers ``Â_l`` of dense attention."""
    _check_options(head_fusion, residual)
    if not isinstance(attentions, (Tensor, np.ndarray)):
        layers = [as_dense_attention(a, "attentions") for a in _as_list(attentions)]
        if len({a.shape for a in layers}) != 1:
            raise ValueError("attentions: every layer must have the same shape, got "
                             f"{sorted({tuple(a.shape) for a in layers})}")
        attentions = torch.stack(layers)
    attn = as_dense_attention(attentions, "attentions", ranks=(3, 4), stochastic=True)
    if attn.dim() == 4:
        attn = fuse_heads(attn, head_fusion, dim=1)
    eye = torch.eye(attn.size(-1), dtype=attn.dtype, device=attn.device)
    mixed = (1 - residual) * attn + residual * eye
    return mixed / mixed.sum(-1, keepdim=True).clamp_min(torch.finfo(attn.dtype).tiny)


def sparse_layers(attentions: Any, head_fusion: str = "mean", residual: float = 0.5,
                  num_nodes: int | None = None) -> tuple[list[tuple[Tensor, Tensor]], int]:
    """Residual-normalised layers ``Â_l`` as coalesced ``(edge_index, weight [E])``.

    Every node gets a self-loop (the residual); duplicate edges are summed.
    Returns the layers and the number of nodes ``N`` (``num_nodes`` or the
    largest id of any layer + 1).
    """
    _check_options(head_fusion, residual)
    parsed = []
    for k, layer in enumerate(_as_list(attentions)):
        if hasattr(layer, "edge_index") and hasattr(layer, "alpha"):
            edge_index, alpha = layer.edge_index, layer.alpha
        elif isinstance(layer, (tuple, list)) and len(layer) == 2:
            edge_index, alpha = layer
        else:
            raise TypeError(f"attentions[{k}] must be (edge_index, alpha) or an attention "
                            f"record, got {type(layer).__name__}")
        parsed.append(as_edge_attention(edge_index, alpha, num_nodes, stochastic=True))
    n = max(p[2] for p in parsed) if num_nodes is None else num_nodes
    layers = []
    for edge_index, alpha, _ in parsed:
        if alpha.dim() == 2:
            alpha = fuse_heads(alpha, head_fusion, dim=1)
        loops = torch.arange(n, device=edge_index.device).expand(2, n)
        ei = torch.cat([edge_index, loops], 1)
        w = torch.cat([(1 - residual) * alpha, alpha.new_full((n,), residual)])
        ei, w = coalesce(ei, w, num_nodes=n, reduce="sum")
        rows = w.new_zeros(n).index_add_(0, ei[1], w)
        layers.append((ei, w / rows[ei[1]].clamp_min(torch.finfo(w.dtype).tiny)))
    return layers, n


def check_targets(targets: Any, n: int) -> Tensor:
    """``targets`` as a long tensor of valid node ids (``ValueError`` naming it)."""
    targets = torch.as_tensor(targets, dtype=torch.long).view(-1)
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= n):
        raise ValueError(f"targets must be node ids in [0, {n}), got {targets.tolist()[:8]}")
    return targets
