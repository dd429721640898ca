"""``torch.library`` registration of the fused CPU kernel.

``pyg_attn::fused_attention`` is a custom op with a fake (meta) implementation,
so ``torch.compile`` traces it without graph breaks, and an autograd formula
that calls ``pyg_attn::fused_attention_backward``.  Their schemas, fakes and
formula are derived from the argument spec :data:`pyg_attn.ops.spec.CPU_OP` by
:func:`register_fused_op`, which registers the Triton op
(:mod:`pyg_attn.ops.triton.fused_attention`) the same way.  Score kinds are passed as
integers (:data:`pyg_attn.ops.score_kinds.KIND_IDS`); all tensors are contiguous
(but for ``dst``, ``src`` and ``value``, whose rows may lie any stride apart, each
row one contiguous block), of one floating dtype (float32 or float64), on the CPU.
The C++ entry points check every structural precondition themselves (shapes,
dtypes, contiguity, the kind, pointer monotonicity, index ranges) and raise
``RuntimeError`` naming the argument, so a direct call with inconsistent
arguments cannot read or write out of bounds.
"""
from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .cpu import load_extension
from .spec import CPU_OP, FEATURES, FusedOpSpec, accumulation_dtype

# The autograd formula of a custom op: ``setup_context(ctx, inputs, output)`` and
# ``backward(ctx, *grad_outputs) -> grad_inputs``.  ``ctx`` is typed ``Any``: the
# formulas keep their own attributes on it, which ``FunctionCtx`` does not declare.
SetupContext = Callable[[Any, Any, Any], None]
Backward = Callable[..., tuple[Tensor | None, ...]]


def compiled_extension() -> ModuleType:
    """The compiled CPU extension (built on first use); RuntimeError where it is not
    available."""
    ext = load_extension()
    if ext is None:
        raise RuntimeError("pyg_attn's fused CPU kernel is not available; use backend='reference'")
    return ext


def _fused_forward(*args: Any) -> tuple[Tensor, Tensor, Tensor]:
    """The CPU kernel on :data:`~pyg_attn.ops.spec.CPU_OP`'s forward arguments:
    ``(out [N_dst, H, Cv], stats [N_dst, H, 2], alpha [E or 0, H])``.

    ``stats`` holds each row's score maximum and log-sum-exp below it.
    """
    out, lse, alpha = compiled_extension().fused_forward(*args)
    return out, lse, alpha


def _fused_backward(*args: Any) -> list[Tensor]:
    """The CPU kernel's gradients of the :data:`~pyg_attn.ops.spec.FEATURES` on
    :data:`~pyg_attn.ops.spec.CPU_OP`'s backward arguments; an entry whose flag in
    ``needs`` is false comes back empty."""
    return compiled_extension().fused_backward(*args)


def fused_fakes(spec: FusedOpSpec) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The fake (meta) implementations of ``spec``'s forward and backward op:
    ``out [N_dst, H, Cv]`` like ``value``, ``stats [N_dst, H, 2]`` and ``alpha
    [E or 0, H]`` in :func:`~pyg_attn.ops.spec.accumulation_dtype`; gradients
    shaped like their features (empty where not needed)."""
    rowptr, col = spec.position("rowptr"), spec.position("col")
    first, value = spec.first_feature, spec.position("value")
    need_alpha, needs = spec.num_inputs, len(spec.backward_args) - 1

    def forward(*args: Any) -> tuple[Tensor, Tensor, Tensor]:
        v = args[value]
        n_dst, heads, acc = args[rowptr].size(0) - 1, v.size(1), accumulation_dtype(v.dtype)
        return (v.new_empty(n_dst, heads, v.size(2)), v.new_empty(n_dst, heads, 2, dtype=acc),
                v.new_empty(args[col].size(0) if args[need_alpha] else 0, heads, dtype=acc))

    def backward(*args: Any) -> list[Tensor]:
        like = args[first:first + len(FEATURES)]
        return [t.new_empty(t.shape) if (flag and t is not None) else args[value].new_empty(0)
                for t, flag in zip(like, args[needs])]

    return forward, backward


def fused_autograd_formula(spec: FusedOpSpec, backward_op: Callable[..., list[Tensor]]
                           ) -> tuple[SetupContext, Backward]:
    """``(setup_context, backward)`` of the fused attention op ``spec``.

    Shared by the CPU op and the Triton op (:mod:`pyg_attn.ops.triton`), and by
    their eager :class:`torch.autograd.Function` twins: the forward takes
    ``spec.forward_args`` and returns ``(out, stats, alpha)``; ``backward_op``
    takes ``spec.backward_args`` (the inputs, then ``out, lse, grad_out,
    grad_alpha, alpha, needs``) and returns the features' gradients.  The
    forward's ``alpha`` is saved and handed to the backward when the forward
    computed it (``need_alpha``), so that the backward need not recompute it.
    """
    first, stop = spec.first_feature, spec.first_feature + len(FEATURES)
    first_scalar, num_forward = spec.first_scalar, len(spec.forward_args)

    def setup_context(ctx: Any, inputs: tuple[Any, ...],
                      output: tuple[Tensor, Tensor, Tensor]) -> None:
        out, lse, alpha = output
        ctx.mark_non_differentiable(lse)
        # An unused alpha's gradient comes as None, not as zeros that the backward
        # would have to take for a gradient of the returned attention.
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*inputs[1:first_scalar], out, lse, alpha)
        ctx.params = (inputs[0], *inputs[first_scalar:-1])  # kind and the floats
        ctx.present = tuple(t is not None for t in inputs[first:stop])

    def backward(ctx: Any, grad_out: Tensor | None, _grad_lse: Tensor | None,
                 grad_alpha: Tensor | None) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():
            raise RuntimeError(
                "pyg_attn: the fused kernels have no double backward (create_graph=True); "
                "use backend='reference' for higher-order gradients")
        *tensors, out, lse, alpha = ctx.saved_tensors
        kind, *scalars = ctx.params
        needs = [bool(ctx.needs_input_grad[first + k]) and ctx.present[k]
                 for k in range(len(FEATURES))]
        if grad_alpha is not None and grad_alpha.numel() == 0:
            grad_alpha = None
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        grads = backward_op(
            kind, *tensors, *scalars, out, lse, grad_out.contiguous(),
            None if grad_alpha is None else grad_alpha.contiguous(),
            alpha if alpha.numel() > 0 else None, needs)
        feature_grads = [g if flag else None for g, flag in zip(grads, needs)]
        return (None,) * first + tuple(feature_grads) + (None,) * (num_forward - stop)

    return setup_context, backward


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


class FusedOp(NamedTuple):
    """A fused attention op registered by :func:`register_fused_op`; calling it
    runs ``op(*args)`` under ``torch.compile`` and ``eager.apply(*args)``
    otherwise (same results, less per-call overhead)."""

    op: Any
    """The custom op ``pyg_attn::<spec.name>`` (traceable by ``torch.compile``)."""
    backward: Any
    """The custom op ``pyg_attn::<spec.name>_backward``."""
    eager: type[torch.autograd.Function]
    """The same kernels and autograd formula without the dispatcher."""

    def __call__(self, *args: Any) -> tuple[Tensor, Tensor, Tensor]:
        return outside_compile(self.eager, self.op, *args)


def register_fused_op(spec: FusedOpSpec, forward: Callable[..., Any],
                      backward: Callable[..., list[Tensor]], eager_name: str,
                      device_types: str | None = None) -> FusedOp:
    """Defines the custom ops of ``spec`` (schemas from the spec) around the plain
    kernel calls ``forward`` and ``backward``, with :func:`fused_fakes` and
    :func:`fused_autograd_formula`, and their eager twin named ``eager_name``."""
    forward_fake, backward_fake = fused_fakes(spec)
    op = torch.library.custom_op(f"pyg_attn::{spec.name}", forward, mutates_args=(),
                                 device_types=device_types, schema=spec.schema())
    backward_op = torch.library.custom_op(
        f"pyg_attn::{spec.name}_backward", backward, mutates_args=(),
        device_types=device_types, schema=spec.schema(backward=True))
    op.register_fake(forward_fake)
    backward_op.register_fake(backward_fake)
    setup_context, formula = fused_autograd_formula(spec, backward_op)
    op.register_autograd(formula, setup_context=setup_context)
    eager = eager_function(
        eager_name,
        f"The op ``pyg_attn::{spec.name}`` without the dispatcher (same kernels, same "
        "autograd formula).",
        forward, *fused_autograd_formula(spec, backward))
    return FusedOp(op, backward_op, eager)


#: The CPU op (:data:`~pyg_attn.ops.spec.CPU_OP`).
fused_attention_cpu = register_fused_op(CPU_OP, _fused_forward, _fused_backward,
                                        "EagerFusedAttention", device_types="cpu")
fused_attention = fused_attention_cpu.op
fused_attention_backward = fused_attention_cpu.backward
EagerFusedAttention = fused_attention_cpu.eager


def _segment_forward(src: Tensor, index: Tensor, num_groups: int) -> Tensor:
    """Softmax of ``src [E, H]`` over the rows that share ``index [E]`` (int64, in
    ``[0, num_groups)``); see ``csrc/segment_softmax.h``."""
    return compiled_extension().segment_softmax_forward(src, index, num_groups)


def _segment_backward(out: Tensor, grad: Tensor, index: Tensor, num_groups: int) -> Tensor:
    """``grad_src = out * (grad - sum over the group of out * grad)``."""
    return compiled_extension().segment_softmax_backward(out, grad, index, num_groups)


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
