"""Pure-PyTorch reference of every op: the oracle for the fused backends.

It materialises per-edge tensors (including ``[E, H, C]`` gathers), so it is the
slow path, but it is differentiable to any order and runs on any device.

Score kinds, for an edge ``e = (j -> i)`` and head ``h``:

* ``"dot"``:   ``s = scale * <q_i, k_j + edge_feat_e> + edge_score_e``
* ``"gat"``:   ``s = leaky_relu(src_j + dst_i + edge_score_e)`` (``src``/``dst`` ``[N, H, 1]``)
* ``"gatv2"``: ``s = <att_h, leaky_relu(src_j + dst_i + edge_feat_e)>``
* ``"edge"``:  ``s = edge_score_e``

then ``a_ij = softmax_j(s_ij)`` over the incoming edges of ``i`` (masked edges and
scores of ``-inf`` take no part; an empty group gives zeros) and
``out_i = sum_j dropout(a_ij) (v_j + edge_value_e)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .dropout import dropout_scale
from .score_kinds import SCORE_KINDS


def edge_scores(kind: str, src_index: Tensor, dst_index: Tensor, dst: Tensor, src: Tensor,
                att: Tensor | None, edge_score: Tensor | None, edge_feat: Tensor | None,
                scale: float, negative_slope: float) -> Tensor:
    """Returns the raw scores ``[E, H]`` of every edge for the given kind.

    Gathers use ``index_select``: its backward is a plain ``index_add``, far
    cheaper than the accumulating ``index_put`` of advanced indexing.
    """
    if kind == "dot":
        key = src.index_select(0, src_index)
        if edge_feat is not None:
            key = key + edge_feat
        score = scale * (dst.index_select(0, dst_index) * key).sum(-1)
        return score if edge_score is None else score + edge_score
    if kind == "gat":
        z = (src.index_select(0, src_index) + dst.index_select(0, dst_index))[..., 0]
        if edge_score is not None:
            z = z + edge_score
        return F.leaky_relu(z, negative_slope)
    if kind == "gatv2":
        assert att is not None  # the GATv2 score's attention vector
        z = src.index_select(0, src_index) + dst.index_select(0, dst_index)
        if edge_feat is not None:
            z = z + edge_feat
        return (F.leaky_relu(z, negative_slope) * att).sum(-1)
    if kind == "edge":
        assert edge_score is not None
        return edge_score
    raise ValueError(f"unknown score kind {kind!r}; expected one of {SCORE_KINDS}")


def segment_softmax(score: Tensor, index: Tensor, num_groups: int,
                    valid: Tensor | None = None) -> Tensor:
    """Softmax of ``score [E, H]`` over edges grouped by ``index [E]``.

    Entries with ``valid == False`` or a score of ``-inf`` get weight 0; a group
    without any valid entry sums to 0 instead of producing NaN.
    """
    keep = score != float("-inf")
    if valid is not None:
        keep = keep & valid.view(-1, *([1] * (score.dim() - 1)))
    masked = score.masked_fill(~keep, float("-inf"))
    heads = score.shape[1:]
    group_max = torch.full((num_groups, *heads), float("-inf"), dtype=score.dtype,
                           device=score.device)
    group_max = group_max.scatter_reduce(
        0, index.view(-1, *([1] * len(heads))).expand_as(score), masked.detach(), "amax",
        include_self=True)
    edge_max = group_max[index].masked_fill(~keep, 0.0)
    shifted = torch.where(keep, masked - edge_max, torch.full_like(score, float("-inf")))
    weight = shifted.exp()
    denom = torch.zeros((num_groups, *heads), dtype=score.dtype, device=score.device)
    denom = denom.index_add(0, index, weight)
    return weight / denom[index].clamp_min(1.0)


def reference_attention(kind: str, edge_index: Tensor, num_dst: int, dst: Tensor, src: Tensor,
                        value: Tensor, *, att: Tensor | None = None,
                        edge_score: Tensor | None = None, edge_feat: Tensor | None = None,
                        edge_value: Tensor | None = None, edge_mask: Tensor | None = None,
                        scale: float = 1.0, negative_slope: float = 0.2, dropout: float = 0.0,
                        seed: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Reference attention: returns ``(out [N_dst, H, Cv], alpha [E, H])``.

    Inputs are in the canonical 3-D layout (``[N, H, C]``; GAT's per-node
    scalars as ``[N, H, 1]``), ``edge_index`` already validated.  ``alpha`` is
    before dropout; ``dropout > 0`` applies the counter-based mask of
    :mod:`pyg_attn.ops.dropout` keyed by ``seed``.

    Parameters
    ----------
    kind : str
        Score kind: ``"dot"``, ``"gat"``, ``"gatv2"`` or ``"edge"`` (module doc).
    edge_index : Tensor
        ``[2, E]`` int64, row 0 = source, row 1 = destination.
    num_dst : int
        Number of destination nodes ``N_dst``.
    dst, src : Tensor
        ``[N_dst, H, C]`` / ``[N_src, H, C]`` score operands (query / key, or
        GAT's ``[N, H, 1]`` scalars).
    value : Tensor
        ``[N_src, H, Cv]``.
    att : Tensor, optional
        ``[H, C]`` GATv2 attention vector.
    edge_score : Tensor, optional
        ``[E, H]`` additive score term.
    edge_feat : Tensor, optional
        ``[E, H, C]`` added to the key (``"dot"``) or pre-activation (``"gatv2"``).
    edge_value : Tensor, optional
        ``[E, H, Cv]`` added to the message ``v_j``.
    edge_mask : Tensor, optional
        ``[E]`` bool; ``True`` = the edge takes part.
    scale, negative_slope : float
        Score scale (``"dot"``) and LeakyReLU slope (``"gat"``, ``"gatv2"``).
    dropout : float
        Attention dropout probability (already ``0`` outside training).
    seed : Tensor, optional
        0-dim int64 seed of the dropout stream (:func:`~pyg_attn.ops.dropout.draw_seed`);
        needed when ``dropout > 0``.

    Returns
    -------
    out : Tensor
        ``[N_dst, H, Cv]``.
    alpha : Tensor
        ``[E, H]`` in ``edge_index``'s order, before dropout.
    """
    src_index, dst_index = edge_index[0], edge_index[1]
    score = edge_scores(kind, src_index, dst_index, dst, src, att, edge_score, edge_feat,
                        scale, negative_slope)
    alpha = segment_softmax(score, dst_index, num_dst, edge_mask)
    weight = alpha
    if dropout > 0.0:
        assert seed is not None, "dropout needs a seed"
        weight = alpha * dropout_scale(alpha.size(0), alpha.size(1), dropout, seed,
                                       alpha.device, alpha.dtype)
    message = value.index_select(0, src_index)
    if edge_value is not None:
        message = message + edge_value
    out = torch.zeros((num_dst, *value.shape[1:]), dtype=value.dtype, device=value.device)
    out = out.index_add(0, dst_index, weight.unsqueeze(-1) * message)
    return out, alpha
