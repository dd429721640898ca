r"""GAT's per-head input dropout, as the paper's reference code applies it.

PyG's ``examples/gat.py`` drops each layer's input once, and every head sees
that one mask (the ``"shared"`` scheme).  The reference code of Velickovic et
al. 2018 (PetarV-/GAT, ``attn_head``) drops inside each head, in two places
(the ``"per_head"`` scheme):

1. every head :math:`k` draws its own mask on the layer input,
   :math:`h^k = \operatorname{drop}_k(x)\, W_k^\top`;
2. after the head's attention logits are computed from :math:`h^k`, its
   projected features are dropped again before they are aggregated:

.. math::
    \text{out}^k_i = \sum_{j \to i} \operatorname{drop}(a^k_{ij})\,
    \operatorname{drop}(h^k_j), \qquad
    a^k_{ij} = \operatorname{softmax}_j \operatorname{LeakyReLU}
    \bigl(\mathbf{a}_s^{k\top} h^k_j + \mathbf{a}_t^{k\top} h^k_i\bigr).

Nothing is dropped in evaluation mode: both schemes are the same network there.

:func:`headwise_dropout_projection` is step 1.  :class:`~pyg_attn.nn.GATConv`
runs both steps with ``dropout_scheme="per_head"``;
:class:`HeadwiseDropoutLinear` is step 1 as a drop-in for a bias-free
``Linear``, which gives PyG's own ``GATConv`` the same scheme for comparisons.

Bag-of-words inputs (the Planetoid features) are about 99 % zeros, and dropping
a zero changes nothing, so for a sparse input the projection draws masks only
for the stored non-zeros and multiplies sparsely: an ``[nnz, H]`` mask and
:math:`O(\text{nnz} \cdot H \cdot C)` work instead of ``H`` dense ``[N, F]``
masks and products.  On the CPU the compiled extension finds the non-zeros in
one pass and computes the product and its weight gradient row by row
(:class:`SparseHeadwiseProjection`), storing nothing of size
``[nnz, H, C]``; elsewhere (or without the extension) torch ops compute the same
sums in the same order through ``[nnz, H, C]`` temporaries.  Both draw the same
mask (``torch.rand(nnz, H) >= p``).  Under ``torch.compile`` the input is not
looked at (that would be a data-dependent branch, a graph break): every head
takes its dense product.
"""
from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from .sparse_features import sparse_extension, sparse_nonzeros

__all__ = ["DROPOUT_SCHEMES", "HeadwiseDropoutLinear", "headwise_dropout_projection"]

#: Where a layer's input dropout falls (see the module doc).
DROPOUT_SCHEMES = ("shared", "per_head")

#: Inputs with at most this fraction of non-zeros take the sparse product.
SPARSE_INPUT_DENSITY = 0.1

def headwise_dropout_projection(x: Tensor, weight: Tensor, heads: int, p: float) -> Tensor:
    r"""Projects ``x`` into ``heads`` heads, each through its own dropout mask.

    .. math::
        h_{n,k,:} = W_k\, \operatorname{drop}_k(x_n), \qquad
        W = [W_1; \dots; W_H] \in \mathbb{R}^{HC \times F}

    (keep probability :math:`1 - p`, kept entries scaled by :math:`1 / (1 - p)`;
    always drawn: call it in training mode only).

    Parameters
    ----------
    x : Tensor
        ``[N, F]`` node features.
    weight : Tensor
        ``[H * C, F]`` (a bias-free ``Linear``'s weight, heads stacked).
    heads : int
        :math:`H`, dividing ``H * C``.
    p : float
        Dropout probability in ``[0, 1]``.

    Returns
    -------
    Tensor
        ``[N, H, C]`` per-head projections.
    """
    out_features, in_features = weight.shape
    channels = out_features // heads
    per_head = weight.view(heads, channels, in_features)
    if p == 0.0:
        return (x @ weight.t()).view(-1, heads, channels)
    scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
    if not x.requires_grad and x.dim() == 2 and x.numel() > 0:
        extension = sparse_extension(x, weight)
        if extension is not None:
            found = sparse_nonzeros(x, SPARSE_INPUT_DENSITY, extension)
            if found is not None:
                rowptr, cols, values = found
                keep = torch.rand(values.numel(), heads, device=x.device) >= p
                return SparseHeadwiseProjection.apply(weight, rowptr, cols, values, keep, scale,
                                                      extension)
        elif (not torch.compiler.is_compiling()  # a data-dependent branch: dense when traced
              and int(torch.count_nonzero(x)) <= SPARSE_INPUT_DENSITY * x.numel()):
            rows, cols = x.nonzero().t()
            values = x[rows, cols]
            keep = torch.rand(values.numel(), heads, device=x.device) >= p
            kept = values.unsqueeze(1) * keep.to(values.dtype) * scale  # [nnz, H]
            # index_select: its backward is index_add_, whose sums run in a fixed
            # order (indexing's backward adds with CPU atomics: not reproducible).
            terms = kept.unsqueeze(-1) * per_head.permute(2, 0, 1).index_select(0, cols)
            return x.new_zeros(x.size(0), heads, channels).index_add_(0, rows, terms)
    return torch.stack([F.dropout(x, p) @ w.t() for w in per_head], dim=1)


def headwise_product(extension: ModuleType, weight: Tensor, rowptr: Tensor, cols: Tensor,
                     values: Tensor, keep: Tensor, scale: float) -> Tensor:
    r"""``[N, H, C]``: :math:`h_{n,k} = W_k \sum_{f} x_{nf} \, \text{keep}_{k} \, \text{scale}`
    over the non-zeros of ``x`` in CSR form (``rowptr [N + 1]``, ``cols``,
    ``values`` ``[nnz]``), ``keep [nnz, H]`` and ``weight [H * C, F]``, by the
    compiled extension (no autograd)."""
    heads = keep.size(1)
    wt = weight.view(heads, -1, weight.size(1)).permute(2, 0, 1).contiguous()  # [F, H, C]
    return extension.headwise_forward(rowptr, cols, values, keep, wt, scale)


def headwise_weight_grad(extension: ModuleType, rowptr: Tensor, cols: Tensor, values: Tensor,
                         keep: Tensor, grad_out: Tensor, scale: float,
                         weight_shape: torch.Size) -> Tensor:
    """The gradient ``[H * C, F]`` of :func:`headwise_product` in ``weight`` for
    ``grad_out [N, H, C]`` (or ``[N, H * C]``), over the same non-zeros."""
    grad_out = grad_out.reshape(grad_out.size(0), keep.size(1), -1).contiguous()
    gwt = extension.headwise_weight_grad(rowptr, cols, values, keep, grad_out, scale,
                                         weight_shape[1])  # [F, H, C]
    return gwt.permute(1, 2, 0).reshape(weight_shape)


class SparseHeadwiseProjection(torch.autograd.Function):
    """:func:`headwise_dropout_projection` of sparse ``x`` by the compiled
    extension: ``[N, H, C]`` from ``x``'s non-zeros in CSR form (``rowptr
    [N + 1]``, ``cols``, ``values`` ``[nnz]``), the mask ``keep [nnz, H]`` and
    the weight ``[H * C, F]``; differentiable in the weight only."""

    @staticmethod
    def forward(weight: Tensor, rowptr: Tensor, cols: Tensor, values: Tensor, keep: Tensor,
                scale: float, extension: ModuleType) -> Tensor:
        return headwise_product(extension, weight, rowptr, cols, values, keep, scale)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        weight, rowptr, cols, values, keep, scale, extension = inputs
        ctx.save_for_backward(rowptr, cols, values, keep)
        ctx.scale, ctx.extension, ctx.weight_shape = scale, extension, weight.shape

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        rowptr, cols, values, keep = ctx.saved_tensors
        grad_weight = headwise_weight_grad(ctx.extension, rowptr, cols, values, keep, grad_out,
                                           ctx.scale, ctx.weight_shape)
        return grad_weight, None, None, None, None, None, None


class HeadwiseDropoutLinear(torch.nn.Module):
    r"""A bias-free ``Linear`` ``[F] -> [H * C]`` whose heads draw their own input
    dropout masks in training mode (:func:`headwise_dropout_projection`, flattened
    to ``[N, H * C]``); in evaluation mode it is ``x W^T``.

    It takes over ``linear.weight`` (same ``state_dict`` key ``weight``), so it can
    replace the ``lin`` of a layer, e.g. PyG's ``GATConv``, in place.

    Parameters
    ----------
    linear : torch.nn.Module
        The bias-free linear map to take over (``weight [H * C, F]``).
    heads : int
        :math:`H`, dividing ``H * C``.
    p : float
        Dropout probability in ``[0, 1]``.

    Raises
    ------
    ValueError
        If ``linear`` has a bias, ``heads`` does not divide its output size or
        ``p`` is outside ``[0, 1]``.
    """

    def __init__(self, linear: torch.nn.Module, heads: int, p: float) -> None:
        super().__init__()
        if getattr(linear, "bias", None) is not None:
            raise ValueError("'linear' must have no bias")
        # torch's stubs type an undeclared Module attribute as Tensor | Module.
        weight = cast(Tensor, linear.weight)
        if weight.size(0) % heads != 0:
            raise ValueError(f"'heads' ({heads}) must divide the output size "
                             f"{weight.size(0)} of 'linear'")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"'p' must be in [0, 1], got {p}")
        self.linear_reset = cast(Callable[[], None], linear.reset_parameters)
        self.weight = weight
        self.heads = heads
        self.p = p

    def reset_parameters(self) -> None:
        """Re-initialises the weight as the replaced ``Linear`` did."""
        self.linear_reset()

    def forward(self, x: Tensor) -> Tensor:
        """Projects ``x``, each head through its own dropout mask in training mode.

        Parameters
        ----------
        x : Tensor
            ``[N, F]`` node features.

        Returns
        -------
        Tensor
            ``[N, H * C]``.
        """
        if not self.training:
            return x @ self.weight.t()
        return headwise_dropout_projection(x, self.weight, self.heads, self.p).flatten(1)
