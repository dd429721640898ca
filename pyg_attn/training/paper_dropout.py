r"""GAT's dropout as the paper's reference code applies it (PetarV-/GAT, ``attn_head``).

PyG's ``examples/gat.py`` drops each layer's input once, and every head sees
that one mask.  The reference code of Velickovic et al. 2018 drops inside each
head, in two places:

1. every head :math:`k` draws its own mask on the layer input,
   :math:`h^k = \operatorname{drop}_k(x)\, W_k^\top`;
2. after the head's attention logits are computed from :math:`h^k`, its
   projected features are dropped again before they are aggregated:

.. math::
    \text{out}^k_i = \sum_{j \to i} \operatorname{drop}(a^k_{ij})\,
    \operatorname{drop}(h^k_j), \qquad
    a^k_{ij} = \operatorname{softmax}_j \operatorname{LeakyReLU}
    \bigl(\mathbf{a}_s^{k\top} h^k_j + \mathbf{a}_t^{k\top} h^k_i\bigr).

Nothing is dropped in evaluation mode, so a model trained this way is an
ordinary :class:`~pyg_attn.nn.GATConv` stack at inference.

Bag-of-words inputs (the Planetoid features) are about 99 % zeros, and dropping
a zero changes nothing, so for a sparse input the first layer draws masks only
for the stored non-zeros and multiplies sparsely: an ``[nnz, H]`` mask and
:math:`O(\text{nnz} \cdot H \cdot C)` work instead of ``H`` dense ``[N, F]``
masks and products.
"""
from __future__ import annotations

from typing import Any, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..nn import GATConv
from ..nn.conv.self_loops import gat_graph
from ..ops import gat_attention
from ..ops.identity_cache import IdentityCache

__all__ = ["headwise_dropout_projection", "paper_dropout_gat"]

#: Inputs with at most this fraction of non-zeros take the sparse product.
SPARSE_INPUT_DENSITY = 0.1

_NONZEROS = IdentityCache(size=4)


def _nonzeros(x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``(rows, cols, values)`` of ``x``'s non-zeros, cached per tensor and version."""
    stamp = x._version
    hit = _NONZEROS.get(x, (), stamp)
    if hit is None:
        rows, cols = x.nonzero().t()
        hit = _NONZEROS.put(x, (), stamp, (rows, cols, x[rows, cols]))
    return hit


def headwise_dropout_projection(x: Tensor, weight: Tensor, heads: int, p: float) -> Tensor:
    r"""Projects ``x`` into ``heads`` heads, each through its own dropout mask.

    .. math::
        h_{n,k,:} = W_k\, \operatorname{drop}_k(x_n), \qquad
        W = [W_1; \dots; W_H] \in \mathbb{R}^{HC \times F}

    (training mode: keep probability :math:`1 - p`, kept entries scaled by
    :math:`1 / (1 - p)`).

    Args:
        x: node features ``[N, F]``.
        weight: ``[H * C, F]`` (a bias-free ``Linear``'s weight, heads stacked).
        heads: :math:`H`.
        p: dropout probability.

    Returns:
        ``[N, H, C]``.
    """
    out_features, in_features = weight.shape
    channels = out_features // heads
    per_head = weight.view(heads, channels, in_features)
    if p == 0.0:
        return (x @ weight.t()).view(-1, heads, channels)
    scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
    if not x.requires_grad and x.dim() == 2 and x.numel() > 0:
        rows, cols, values = _nonzeros(x)
        if values.numel() <= SPARSE_INPUT_DENSITY * x.numel():
            keep = torch.rand(values.numel(), heads, device=x.device) >= p
            kept = values.unsqueeze(1) * keep.to(values.dtype) * scale  # [nnz, H]
            # index_select: its backward is index_add_, whose sums run in a fixed
            # order (indexing's backward adds with CPU atomics: not reproducible).
            terms = kept.unsqueeze(-1) * per_head.permute(2, 0, 1).index_select(0, cols)
            return x.new_zeros(x.size(0), heads, channels).index_add_(0, rows, terms)
    return torch.stack([F.dropout(x, p) @ w.t() for w in per_head], dim=1)


def paper_dropout_gat(conv: GATConv, x: Tensor, edge_index: Any, p: float) -> Tensor:
    """A training-mode forward pass of ``conv`` with the reference code's dropout.

    The same function as ``conv(x, edge_index)`` except for where the dropout
    falls (see the module doc): per-head input masks with probability ``p``,
    dropout ``p`` on the projected features, ``conv.dropout`` on the attention.

    Args:
        conv: a :class:`~pyg_attn.nn.GATConv` with one shared projection, no edge
            features and no residual (the paper's layer).
        x: node features ``[N, F]``.
        edge_index: the graph, in any form ``conv`` takes (self-loops are handled
            as ``conv`` does).
        p: the feature dropout probability.

    Returns:
        ``[N, H * C]`` when ``conv.concat``, else ``[N, C]``.
    """
    if conv.lin is None or conv.lin_edge is not None or conv.res is not None:
        raise ValueError("the paper's dropout needs a GATConv with one shared projection, "
                         "no edge features and no residual")
    heads = conv.heads
    h = headwise_dropout_projection(x, conv.lin.weight, heads, p)
    alpha_src = (h * conv.att_src).sum(dim=-1)
    alpha_dst = (h * conv.att_dst).sum(dim=-1)
    looped = gat_graph(edge_index, h.size(0), h.size(0), conv.add_self_loops)
    out = gat_attention(alpha_src, alpha_dst, F.dropout(h, p), looped.graph,
                        negative_slope=conv.negative_slope, dropout=conv.dropout,
                        training=True, backend=conv.backend)
    out = out.reshape(out.size(0), -1) if conv.concat else out.mean(dim=1)
    return out if conv.bias is None else out + conv.bias
