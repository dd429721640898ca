"""``torch.library`` registration of the fused CPU kernel.

``pyg_attn::fused_attention`` is a custom op with a fake (meta) implementation,
so ``torch.compile`` traces it without graph breaks, and an autograd formula
that calls ``pyg_attn::fused_attention_backward``.  Score kinds are passed as
integers (:data:`pyg_attn.ops.score_kinds.KIND_IDS`); all tensors are contiguous,
of one floating dtype (float32 or float64), on the CPU.  The C++ entry points check every structural
precondition themselves (shapes, dtypes, contiguity, the kind, pointer
monotonicity, index ranges) and raise ``RuntimeError`` naming the argument, so
a direct call with inconsistent arguments cannot read or write out of bounds.
"""
from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from .cpu import load_extension

_GRAPH = ("rowptr", "col", "perm", "colptr", "csc_row", "csc_edge")
_FEATURES = ("dst", "src", "value", "att", "edge_score", "edge_feat", "edge_value")

# The autograd formula of a custom op: ``setup_context(ctx, inputs, output)`` and
# ``backward(ctx, *grad_outputs) -> grad_inputs``.  ``ctx`` is typed ``Any``: the
# formulas keep their own attributes on it, which ``FunctionCtx`` does not declare.
SetupContext = Callable[[Any, Any, Any], None]
Backward = Callable[..., tuple[Tensor | None, ...]]


def _extension() -> ModuleType:
    ext = load_extension()
    if ext is None:
        raise RuntimeError("pyg_attn's fused CPU kernel is not available; use backend='reference'")
    return ext


def _fused_forward(
    kind: int, rowptr: Tensor, col: Tensor, perm: Tensor, colptr: Tensor, csc_row: Tensor,
    csc_edge: Tensor, dst: Tensor, src: Tensor, value: Tensor, att: Tensor | None,
    edge_score: Tensor | None, edge_feat: Tensor | None, edge_value: Tensor | None,
    edge_mask: Tensor | None, scale: float, negative_slope: float, dropout: float, seed: int,
    need_alpha: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns ``(out [N_dst, H, Cv], stats [N_dst, H, 2], alpha [E or 0, H])``.

    ``stats`` holds each row's score maximum and log-sum-exp below it.
    """
    out, lse, alpha = _extension().fused_forward(
        kind, rowptr, col, perm, dst, src, value, att, edge_score, edge_feat, edge_value,
        edge_mask, scale, negative_slope, dropout, seed, need_alpha)
    return out, lse, alpha


# The custom op (traceable by torch.compile) around the plain kernel call, which the
# eager autograd.Function below calls directly.
fused_attention = torch.library.custom_op("pyg_attn::fused_attention", _fused_forward,
                                          mutates_args=(), device_types="cpu")


@fused_attention.register_fake
def _(kind: int, rowptr: Tensor, col: Tensor, perm: Tensor, colptr: Tensor, csc_row: Tensor,
      csc_edge: Tensor, dst: Tensor, src: Tensor, value: Tensor, att: Tensor | None,
      edge_score: Tensor | None, edge_feat: Tensor | None, edge_value: Tensor | None,
      edge_mask: Tensor | None, scale: float, negative_slope: float, dropout: float, seed: int,
      need_alpha: bool) -> tuple[Tensor, Tensor, Tensor]:
    n_dst = rowptr.size(0) - 1
    heads, dim_v = value.size(1), value.size(2)
    return (value.new_empty(n_dst, heads, dim_v), value.new_empty(n_dst, heads, 2),
            value.new_empty(col.size(0) if need_alpha else 0, heads))


def _fused_backward(
    kind: int, rowptr: Tensor, col: Tensor, perm: Tensor, colptr: Tensor, csc_row: Tensor,
    csc_edge: Tensor, dst: Tensor, src: Tensor, value: Tensor, att: Tensor | None,
    edge_score: Tensor | None, edge_feat: Tensor | None, edge_value: Tensor | None,
    edge_mask: Tensor | None, out: Tensor, lse: Tensor, grad_out: Tensor,
    grad_alpha: Tensor | None, scale: float, negative_slope: float, dropout: float, seed: int,
    needs: list[bool],
) -> list[Tensor]:
    """Gradients of ``(dst, src, value, att, edge_score, edge_feat, edge_value)``;
    an entry whose flag in ``needs`` is false comes back empty."""
    return _extension().fused_backward(
        kind, rowptr, col, perm, colptr, csc_row, csc_edge, dst, src, value, att, edge_score,
        edge_feat, edge_value, edge_mask, out, lse, grad_out, grad_alpha, scale, negative_slope,
        dropout, seed, needs)


fused_attention_backward = torch.library.custom_op(
    "pyg_attn::fused_attention_backward", _fused_backward, mutates_args=(), device_types="cpu")


@fused_attention_backward.register_fake
def _(kind: int, rowptr: Tensor, col: Tensor, perm: Tensor, colptr: Tensor, csc_row: Tensor,
      csc_edge: Tensor, dst: Tensor, src: Tensor, value: Tensor, att: Tensor | None,
      edge_score: Tensor | None, edge_feat: Tensor | None, edge_value: Tensor | None,
      edge_mask: Tensor | None, out: Tensor, lse: Tensor, grad_out: Tensor,
      grad_alpha: Tensor | None, scale: float, negative_slope: float, dropout: float, seed: int,
      needs: list[bool]) -> list[Tensor]:
    like = (dst, src, value, att, edge_score, edge_feat, edge_value)
    return [t.new_empty(t.shape) if (flag and t is not None) else value.new_empty(0)
            for t, flag in zip(like, needs)]


def fused_autograd_formula(backward_op: Callable[..., list[Tensor]], num_graph: int
                           ) -> tuple[SetupContext, Backward]:
    """``(setup_context, backward)`` of a fused attention op.

    Shared by the CPU op and the Triton op (:mod:`pyg_attn.ops.triton`), and by
    their eager :class:`torch.autograd.Function` twins: all take ``(kind, *graph,
    *features, edge_mask, scale, negative_slope, dropout, seed, need_alpha)`` with
    ``num_graph`` graph tensors, return ``(out, stats, alpha)``, and have a backward
    taking ``(kind, *graph, *features, edge_mask, out, stats, grad_out, grad_alpha,
    scale, negative_slope, dropout, seed, needs)``.
    """
    first_feature = 1 + num_graph

    def setup_context(ctx: Any, inputs: tuple[Any, ...],
                      output: tuple[Tensor, Tensor, Tensor]) -> None:
        (kind, *graph), rest = inputs[:first_feature], inputs[first_feature:]
        features, (edge_mask, scale, slope, dropout, seed, _need_alpha) = rest[:7], rest[7:]
        out, lse, _alpha = output
        ctx.mark_non_differentiable(lse)
        ctx.save_for_backward(*graph, *features, edge_mask, out, lse)
        ctx.params = (kind, scale, slope, dropout, seed)
        ctx.present = tuple(t is not None for t in features)

    def backward(ctx: Any, grad_out: Tensor | None, _grad_lse: Tensor | None,
                 grad_alpha: Tensor | None) -> tuple[Tensor | None, ...]:
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


def register_fused_autograd(op_name: str, backward_op: Callable[..., list[Tensor]],
                            num_graph: int) -> None:
    """Registers :func:`fused_autograd_formula` as the autograd of the op ``op_name``."""
    setup_context, backward = fused_autograd_formula(backward_op, num_graph)
    torch.library.register_autograd(op_name, backward, setup_context=setup_context)


class PositionalFunction(torch.autograd.Function):
    """A :class:`torch.autograd.Function` whose ``apply`` takes every argument
    positionally and skips :meth:`torch.autograd.Function.apply`'s per-call
    ``inspect.signature(forward).bind(...)``: with the fused op's ~25 arguments
    that binding took about 80 us of a 230 us forward+backward on a tiny graph
    (one thread).  Under functorch transforms (``torch.func``) it takes the full
    path."""

    @classmethod
    def apply(cls, *args: Any) -> Any:
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        # What Function.apply does once the defaults are bound (there are none).
        args = torch._functorch.utils.unwrap_dead_wrappers(args)
        # The C base's apply (torch._C._FunctionBase) is missing from torch's stubs.
        return super(torch.autograd.Function, cls).apply(*args)  # type: ignore[misc]


def eager_function(name: str, doc: str, forward: Callable[..., Any], setup_context: SetupContext,
                   backward: Backward) -> type[torch.autograd.Function]:
    """A :class:`PositionalFunction` that runs ``forward(*inputs)`` with the
    autograd formula ``(setup_context, backward)`` of a custom op, but without the
    dispatcher's per-call argument handling (a molecule batch or a sampled
    subgraph spends more time there than in the kernels).

    It uses the separate ``setup_context`` style.  The older ``forward(ctx,
    *inputs)`` style was dropped for a flaky output check in ``bench_layers.py``
    that came from neither style: PyG's reference output was occasionally wrong,
    through an MKL VML first-call race in torch (see ``resolve_vml_dispatch`` in
    ``benchmarks/bench_ops.py``); it was not re-measured since.
    """
    return type(name, (PositionalFunction,), {
        "__doc__": doc, "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context), "backward": staticmethod(backward)})


def outside_compile(function: type[torch.autograd.Function], op: Callable[..., Any],
                    *args: Any) -> Any:
    """``op(*args)`` under ``torch.compile`` (traceable), ``function.apply(*args)``
    otherwise (the same kernels and formula, less per-call overhead)."""
    if torch.compiler.is_compiling():
        return op(*args)
    return function.apply(*args)


EagerFusedAttention = eager_function(
    "EagerFusedAttention",
    "The CPU op ``pyg_attn::fused_attention`` without the dispatcher (same kernels, "
    "same autograd formula).",
    _fused_forward,
    *fused_autograd_formula(_fused_backward, len(_GRAPH)))


def fused_attention_cpu(*args: Any) -> tuple[Tensor, Tensor, Tensor]:
    """``pyg_attn::fused_attention(*args)``, through :class:`EagerFusedAttention`
    when not compiling (same results, less per-call overhead)."""
    return outside_compile(EagerFusedAttention, fused_attention, *args)


register_fused_autograd("pyg_attn::fused_attention", fused_attention_backward, len(_GRAPH))


def _segment_forward(src: Tensor, index: Tensor, num_groups: int) -> Tensor:
    """Softmax of ``src [E, H]`` over the rows that share ``index [E]`` (int64, in
    ``[0, num_groups)``); see ``csrc/segment_softmax.h``."""
    return _extension().segment_softmax_forward(src, index, num_groups)


def _segment_backward(out: Tensor, grad: Tensor, index: Tensor, num_groups: int) -> Tensor:
    """``grad_src = out * (grad - sum over the group of out * grad)``."""
    return _extension().segment_softmax_backward(out, grad, index, num_groups)


segment_softmax = torch.library.custom_op("pyg_attn::segment_softmax", _segment_forward,
                                          mutates_args=(), device_types="cpu")
segment_softmax_backward = torch.library.custom_op(
    "pyg_attn::segment_softmax_backward", _segment_backward, mutates_args=(),
    device_types="cpu")


@segment_softmax.register_fake
def _(src: Tensor, index: Tensor, num_groups: int) -> Tensor:
    return torch.empty_like(src)


@segment_softmax_backward.register_fake
def _(out: Tensor, grad: Tensor, index: Tensor, num_groups: int) -> Tensor:
    return torch.empty_like(out)


def _segment_setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, int], output: Tensor) -> None:
    _src, index, num_groups = inputs
    ctx.save_for_backward(output, index)
    ctx.num_groups = num_groups


def segment_softmax_formula(backward_op: Callable[[Tensor, Tensor, Tensor, int], Tensor]
                            ) -> Backward:
    """The ``backward`` of a segment softmax whose kernel gradient is ``backward_op``.

    Under ``create_graph=True`` the same formula runs as differentiable torch ops
    on the saved (graph-connected) output, so higher-order gradients are exact.
    """
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        out, index = ctx.saved_tensors
        if torch.is_grad_enabled():
            weighted = out * grad
            dot = weighted.new_zeros(ctx.num_groups, out.size(1)).index_add(0, index, weighted)
            return out * (grad - dot.index_select(0, index)), None, None
        return backward_op(out, grad.contiguous(), index, ctx.num_groups), None, None

    return backward


torch.library.register_autograd("pyg_attn::segment_softmax",
                                segment_softmax_formula(segment_softmax_backward),
                                setup_context=_segment_setup_context)


EagerSegmentSoftmax = eager_function(
    "EagerSegmentSoftmax",
    "``pyg_attn::segment_softmax`` without the dispatcher (same kernels, same formula).",
    _segment_forward,
    _segment_setup_context,
    segment_softmax_formula(_segment_backward))


def segment_softmax_cpu(src: Tensor, index: Tensor, num_groups: int) -> Tensor:
    """:func:`segment_softmax`, through :class:`EagerSegmentSoftmax` when not compiling."""
    return outside_compile(EagerSegmentSoftmax, segment_softmax, src, index, num_groups)
