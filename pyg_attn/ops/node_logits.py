r"""GAT's per-node attention logits without an ``[N, H, C]`` product.

For projected node features ``h [N, H, C]`` and attention vectors
``a_src, a_dst [1, H, C]`` (PyG's ``att_src`` / ``att_dst``):

.. math::
    \alpha^{src}_{n,h} = \sum_c h_{n,h,c}\, a^{src}_{h,c}, \qquad
    \alpha^{dst}_{n,h} = \sum_c h_{n,h,c}\, a^{dst}_{h,c}

with gradients

.. math::
    \frac{\partial L}{\partial h_{n,h,c}} = g^{src}_{n,h} a^{src}_{h,c}
        + g^{dst}_{n,h} a^{dst}_{h,c}, \qquad
    \frac{\partial L}{\partial a^{src}_{h,c}} = \sum_n g^{src}_{n,h} h_{n,h,c}.

PyG computes ``(h * att).sum(-1)``: an ``[N, H, C]`` product, a reduction and
their gradients for each vector.  On the CPU the compiled extension computes
both logits in one pass over ``h`` (and the gradients in one more), as the
custom op ``pyg_attn::node_logits`` with a fake, so ``torch.compile`` traces it;
eagerly the same kernels run without the dispatcher.  Elsewhere (CUDA, the
reference backend, other dtypes) the PyG formula runs.  The attention-vector
gradients are summed in a fixed order, independent of the thread count.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .attention import rows_contiguous
from .library import compiled_extension, eager_function, outside_compile


def node_logits(h: Tensor, att_src: Tensor, att_dst: Tensor | None = None, *,
                fused: bool = True) -> tuple[Tensor, Tensor | None]:
    """``((h * att_src).sum(-1), (h * att_dst).sum(-1))`` ``[N, H]`` each (the
    second ``None`` without ``att_dst``).

    Parameters
    ----------
    h : Tensor
        ``[N, H, C]`` node features; each row's ``[H, C]`` block contiguous (rows
        may be views of a wider buffer).
    att_src, att_dst : Tensor
        Attention vectors ``[1, H, C]`` or ``[H, C]``, of ``h``'s dtype and device.
    fused : bool
        Whether the compiled kernels may run (``False``: the PyG formula, e.g. for
        the reference backend's higher-order gradients).

    Returns
    -------
    (Tensor, Tensor or None)
        The logits ``[N, H]`` of each vector.
    """
    if not (fused and _kernel_applies(h, att_src, att_dst)):
        return ((h * att_src.view(h.size(1), h.size(2))).sum(-1),
                None if att_dst is None else (h * att_dst.view(h.size(1), h.size(2))).sum(-1))
    src, dst = outside_compile(EagerNodeLogits, node_logits_op, h, att_src.contiguous(),
                               None if att_dst is None else att_dst.contiguous())
    return src, None if att_dst is None else dst


def _kernel_applies(h: Tensor, att_src: Tensor, att_dst: Tensor | None) -> bool:
    """A CPU float32/float64 ``h`` with contiguous rows, attention vectors of its
    dtype and ``H * C`` elements: what the compiled kernels take."""
    if h.device.type != "cpu" or h.dtype not in (torch.float32, torch.float64) \
            or not rows_contiguous(h):
        return False
    atts = (att_src,) if att_dst is None else (att_src, att_dst)
    return all(
        a.dtype == h.dtype and a.device == h.device and a.dim() >= 2
        and a.shape[-2:] == h.shape[1:] and a.numel() == h.size(1) * h.size(2) for a in atts)


def _forward(h: Tensor, att_src: Tensor, att_dst: Tensor | None) -> tuple[Tensor, Tensor]:
    """The kernel: ``(logits_src [N, H], logits_dst [N, H] or empty)``."""
    src, dst = compiled_extension().node_logits_forward(h, att_src, att_dst)
    return src, dst


def _backward(grad_src: Tensor, grad_dst: Tensor | None, h: Tensor, att_src: Tensor,
              att_dst: Tensor | None, needs: list[bool]) -> tuple[Tensor, Tensor, Tensor]:
    """The kernel's ``(dL/dh [N, H, C], dL/datt_src, dL/datt_dst)`` for ``needs =
    [h, att_src, att_dst]``; an unneeded one comes back empty."""
    grad_h, grad_a, grad_b = compiled_extension().node_logits_backward(
        grad_src, grad_dst, h, att_src, att_dst, needs)
    return grad_h, grad_a, grad_b


node_logits_op = torch.library.custom_op("pyg_attn::node_logits", _forward, mutates_args=(),
                                         device_types="cpu")
node_logits_backward_op = torch.library.custom_op(
    "pyg_attn::node_logits_backward", _backward, mutates_args=(), device_types="cpu")


@node_logits_op.register_fake
def _(h: Tensor, att_src: Tensor, att_dst: Tensor | None) -> tuple[Tensor, Tensor]:
    return (h.new_empty(h.size(0), h.size(1)),
            h.new_empty(0 if att_dst is None else h.size(0), h.size(1)))


@node_logits_backward_op.register_fake
def _(grad_src: Tensor, grad_dst: Tensor | None, h: Tensor, att_src: Tensor,
      att_dst: Tensor | None, needs: list[bool]) -> tuple[Tensor, Tensor, Tensor]:
    need_h, need_a, need_b = needs
    return (h.new_empty(h.shape if need_h else (0, 0, 0)),
            att_src.new_empty(att_src.shape if need_a else (0,)),
            h.new_empty(att_dst.shape if att_dst is not None and need_b else (0,)))


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    h, att_src, att_dst = inputs
    ctx.save_for_backward(h, att_src, att_dst)


def _formula(backward_op: Any) -> Any:
    """The autograd formula of the op whose kernel gradient is ``backward_op``."""

    def backward(ctx: Any, grad_src: Tensor | None, grad_dst: Tensor | None
                 ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        if torch.is_grad_enabled():
            raise RuntimeError(
                "pyg_attn: the fused kernels have no double backward (create_graph=True); "
                "use backend='reference' for higher-order gradients")
        h, att_src, att_dst = ctx.saved_tensors
        src = h.new_zeros(h.shape[:2]) if grad_src is None else grad_src.contiguous()
        dst = None if att_dst is None else (
            h.new_zeros(h.shape[:2]) if grad_dst is None else grad_dst.contiguous())
        needs = [bool(flag) for flag in ctx.needs_input_grad]
        grad_h, grad_a, grad_b = backward_op(src, dst, h, att_src, att_dst, needs)
        return (grad_h if needs[0] else None, grad_a if needs[1] else None,
                grad_b if needs[2] and att_dst is not None else None)

    return backward


node_logits_op.register_autograd(_formula(node_logits_backward_op), setup_context=_setup_context)

EagerNodeLogits = eager_function(
    "EagerNodeLogits",
    "``pyg_attn::node_logits`` without the dispatcher (same kernels, same formula).",
    _forward, _setup_context, _formula(_backward))
