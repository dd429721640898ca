"""``torch.library`` registration of the fused CPU kernel.

``pyg_attn::fused_attention`` is a custom op with a fake (meta) implementation,
so ``torch.compile`` traces it without graph breaks, and an autograd formula
that calls ``pyg_attn::fused_attention_backward``.  Score kinds are passed as
integers (``KIND_IDS``); all tensors are contiguous, of one floating dtype
(float32 or float64), on the CPU.  The C++ entry points check every structural
precondition themselves (shapes, dtypes, contiguity, the kind, pointer
monotonicity, index ranges) and raise ``RuntimeError`` naming the argument, so
a direct call with inconsistent arguments cannot read or write out of bounds.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .cpu import load_extension

KIND_IDS = {"dot": 0, "gat": 1, "gatv2": 2, "edge": 3}

_GRAPH = ("rowptr", "col", "perm", "colptr", "csc_row", "csc_edge")
_FEATURES = ("dst", "src", "value", "att", "edge_score", "edge_feat", "edge_value")


def _extension():
    ext = load_extension()
    if ext is None:
        raise RuntimeError("pyg_attn's fused CPU kernel is not available; use backend='reference'")
    return ext


@torch.library.custom_op("pyg_attn::fused_attention", mutates_args=(), device_types="cpu")
def fused_attention(
    kind: int, rowptr: Tensor, col: Tensor, perm: Tensor, colptr: Tensor, csc_row: Tensor,
    csc_edge: Tensor, dst: Tensor, src: Tensor, value: Tensor, att: Optional[Tensor],
    edge_score: Optional[Tensor], edge_feat: Optional[Tensor], edge_value: Optional[Tensor],
    edge_mask: Optional[Tensor], scale: float, negative_slope: float, dropout: float, seed: int,
    need_alpha: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns ``(out [N_dst, H, Cv], stats [N_dst, H, 2], alpha [E or 0, H])``.

    ``stats`` holds each row's score maximum and log-sum-exp below it.
    """
    out, lse, alpha = _extension().fused_forward(
        kind, rowptr, col, perm, dst, src, value, att, edge_score, edge_feat, edge_value,
        edge_mask, scale, negative_slope, dropout, seed, need_alpha)
    return out, lse, alpha


@fused_attention.register_fake
def _(kind, rowptr, col, perm, colptr, csc_row, csc_edge, dst, src, value, att, edge_score,
      edge_feat, edge_value, edge_mask, scale, negative_slope, dropout, seed, need_alpha):
    n_dst = rowptr.size(0) - 1
    heads, dim_v = value.size(1), value.size(2)
    return (value.new_empty(n_dst, heads, dim_v), value.new_empty(n_dst, heads, 2),
            value.new_empty(col.size(0) if need_alpha else 0, heads))


@torch.library.custom_op("pyg_attn::fused_attention_backward", mutates_args=(), device_types="cpu")
def fused_attention_backward(
    kind: int, rowptr: Tensor, col: Tensor, perm: Tensor, colptr: Tensor, csc_row: Tensor,
    csc_edge: Tensor, dst: Tensor, src: Tensor, value: Tensor, att: Optional[Tensor],
    edge_score: Optional[Tensor], edge_feat: Optional[Tensor], edge_value: Optional[Tensor],
    edge_mask: Optional[Tensor], out: Tensor, lse: Tensor, grad_out: Tensor,
    grad_alpha: Optional[Tensor], scale: float, negative_slope: float, dropout: float, seed: int,
    needs: list[bool],
) -> list[Tensor]:
    """Gradients of ``(dst, src, value, att, edge_score, edge_feat, edge_value)``;
    an entry whose flag in ``needs`` is false comes back empty."""
    return _extension().fused_backward(
        kind, rowptr, col, perm, colptr, csc_row, csc_edge, dst, src, value, att, edge_score,
        edge_feat, edge_value, edge_mask, out, lse, grad_out, grad_alpha, scale, negative_slope,
        dropout, seed, needs)


@fused_attention_backward.register_fake
def _(kind, rowptr, col, perm, colptr, csc_row, csc_edge, dst, src, value, att, edge_score,
      edge_feat, edge_value, edge_mask, out, lse, grad_out, grad_alpha, scale, negative_slope,
      dropout, seed, needs):
    like = (dst, src, value, att, edge_score, edge_feat, edge_value)
    return [t.new_empty(t.shape) if (flag and t is not None) else value.new_empty(0)
            for t, flag in zip(like, needs)]


def fused_autograd_formula(backward_op, num_graph: int):
    """``(setup_context, backward)`` of a fused attention op.

    Shared by the CPU op and the Triton op (:mod:`pyg_attn.ops.triton`), and by
    their eager :class:`torch.autograd.Function` twins: all take ``(kind, *graph,
    *features, edge_mask, scale, negative_slope, dropout, seed, need_alpha)`` with
    ``num_graph`` graph tensors, return ``(out, stats, alpha)``, and have a backward
    taking ``(kind, *graph, *features, edge_mask, out, stats, grad_out, grad_alpha,
    scale, negative_slope, dropout, seed, needs)``.
    """
    first_feature = 1 + num_graph

    def setup_context(ctx, inputs, output):
        (kind, *graph), rest = inputs[:first_feature], inputs[first_feature:]
        features, (edge_mask, scale, slope, dropout, seed, _need_alpha) = rest[:7], rest[7:]
        out, lse, _alpha = output
        ctx.mark_non_differentiable(lse)
        ctx.save_for_backward(*graph, *features, edge_mask, out, lse)
        ctx.params = (kind, scale, slope, dropout, seed)
        ctx.present = tuple(t is not None for t in features)

    def backward(ctx, grad_out, _grad_lse, grad_alpha):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "pyg_attn: the fused kernels have no double backward (create_graph=True); "
                "use backend='reference' for higher-order gradients")
        saved = ctx.saved_tensors
        graph = saved[:num_graph]
        features = saved[num_graph:num_graph + len(_FEATURES)]
        edge_mask, out, lse = saved[num_graph + len(_FEATURES):]
        kind, scale, slope, dropout, seed = ctx.params
        needs = [bool(ctx.needs_input_grad[first_feature + k]) and ctx.present[k]
                 for k in range(len(_FEATURES))]
        if grad_alpha is not None and grad_alpha.numel() == 0:
            grad_alpha = None
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        grads = backward_op(
            kind, *graph, *features, edge_mask, out, lse, grad_out.contiguous(),
            None if grad_alpha is None else grad_alpha.contiguous(), scale, slope, dropout,
            seed, needs)
        feature_grads = [g if flag else None for g, flag in zip(grads, needs)]
        return (None,) * first_feature + tuple(feature_grads) + (None,) * 6

    return setup_context, backward


def register_fused_autograd(op_name: str, backward_op, num_graph: int) -> None:
    """Registers :func:`fused_autograd_formula` as the autograd of the op ``op_name``."""
    setup_context, backward = fused_autograd_formula(backward_op, num_graph)
    torch.library.register_autograd(op_name, backward, setup_context=setup_context)


def _eager_forward(kind, rowptr, col, perm, colptr, csc_row, csc_edge, dst, src, value, att,
                   edge_score, edge_feat, edge_value, edge_mask, scale, negative_slope, dropout,
                   seed, need_alpha):
    return tuple(_extension().fused_forward(
        kind, rowptr, col, perm, dst, src, value, att, edge_score, edge_feat, edge_value,
        edge_mask, scale, negative_slope, dropout, seed, need_alpha))


def _eager_backward(*args):
    return _extension().fused_backward(*args)


_eager_setup_context, _eager_backward_formula = fused_autograd_formula(_eager_backward,
                                                                       len(_GRAPH))


class EagerFusedAttention(torch.autograd.Function):
    """The CPU op without the dispatcher: the same kernels and autograd formula
    as ``pyg_attn::fused_attention``, called directly.

    Eager training on small graphs (a molecule batch, a sampled subgraph) spends
    more time in ``torch.library``'s per-call argument handling than in the
    kernels; :func:`fused_attention_cpu` takes this path outside
    ``torch.compile`` and the custom op inside it.
    """

    forward = staticmethod(_eager_forward)
    setup_context = staticmethod(_eager_setup_context)
    backward = staticmethod(_eager_backward_formula)


def fused_attention_cpu(*args) -> tuple[Tensor, Tensor, Tensor]:
    """``pyg_attn::fused_attention(*args)``, through :class:`EagerFusedAttention`
    when not compiling (same results, less per-call overhead)."""
    if torch.compiler.is_compiling():
        return fused_attention(*args)
    return EagerFusedAttention.apply(*args)


register_fused_autograd("pyg_attn::fused_attention", fused_attention_backward, len(_GRAPH))
