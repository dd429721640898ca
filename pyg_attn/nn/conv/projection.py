r"""Linear projections of node features that skip zeros: those of sparse inputs,
and the all-zero rows of their output gradient.

Bag-of-words features (Cora: 1,433 columns, 1.3 % non-zero) make the layers'
first projection ``x W^T`` ``[N, F] x [F, H C]`` the most expensive step of a
training step, spent multiplying zeros. :func:`project` computes ``lin(x)``
over the non-zeros of ``x`` instead when ``x`` is a plain dense CPU tensor that
needs no gradient, has at least :data:`SPARSE_MIN_ELEMENTS` entries and is at most
:data:`SPARSE_DENSITY` non-zero:

.. math::
    \text{lin}(x)_{n} = \sum_{f : x_{nf} \neq 0} x_{nf} W_{:, f} + b

with the gradient of ``W`` (``(X^T \, \partial L / \partial \text{out})^T``) taken
over the same non-zeros, row by row in the compiled extension (the kernels of
:class:`~pyg_attn.nn.conv.head_dropout.SparseHeadwiseProjection` with one head and
nothing dropped).  Whether ``x`` qualifies is decided for each call from ``x``
itself (:func:`~pyg_attn.nn.conv.sparse_features.sparse_nonzeros`: a sample of
rows, then one pass): nothing is cached, so a new ``x`` every step (input
dropout) costs the same as a reused one, and an edited ``x`` is never judged by
its old contents.  The result equals ``lin(x)`` up to the order of floating-point
sums.  Under ``torch.compile`` the same look is taken inside the custom op
``pyg_attn::sparse_input_linear``, so a compiled model keeps the sparse product.
Their number depends on the data, so the op returns the non-zeros in sizes that
do not: row pointers ``[N + 1]`` and the columns (int32) and values padded to
:func:`nonzero_capacity` (a twentieth of ``x``'s entries: a tenth of ``x``'s
bytes), which its backward reads instead of looking at ``x`` again.

Every other CPU projection of at least :data:`SPARSE_GRAD_MIN_ROWS` rows that takes
part in a gradient runs through :class:`RowSparseGradLinear` (smaller products cost
less than the bookkeeping): the forward is ``lin``'s, and the backward finds the
rows ``R`` of :math:`G = \partial L / \partial \text{out}` that are not all zero and,
when they are at most :data:`SPARSE_GRAD_ROWS` of them, computes

.. math::
    \partial L / \partial W = G_R^T X_R, \quad
    \partial L / \partial b = \textstyle\sum_{r \in R} G_r, \quad
    (\partial L / \partial X)_R = G_R W, \ 0 \text{ elsewhere}.

In a ``NeighborLoader`` step the loss covers only the seed nodes, so most rows of
the last layers' gradients are zero (on a 34k-node batch of 1,024 seeds, 3-20 % of
the rows are non-zero): the dense products would multiply those zeros. A dropped
row contributes exactly zero to the dense sums too, except where ``x`` or the
weight holds an infinity or NaN (``0 * inf``); the double backward
(``create_graph=True``) always takes the dense formulas.
"""
from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import torch
from torch import Tensor
from torch.nn.parameter import UninitializedParameter
from torch_geometric.nn.dense.linear import Linear as PygLinear

from ...ops.graph import attended_rows
from .head_dropout import SparseHeadwiseProjection, headwise_product, headwise_weight_grad
from .sparse_features import sparse_extension, sparse_nonzeros

SPARSE_DENSITY_DIVISOR = 20
SPARSE_DENSITY = 1 / SPARSE_DENSITY_DIVISOR
"""Largest fraction of non-zeros for which the sparse product is used."""
SPARSE_MIN_ELEMENTS = 1 << 16
"""Fewest entries of ``x`` for which its zeros are looked for (below, the dense
product costs less than the look)."""
SPARSE_GRAD_ROWS = 0.5
"""Largest fraction of non-zero gradient rows for which only those rows are used."""
SPARSE_GRAD_MIN_ROWS = 8192
"""Fewest input rows for which the gradient rows are looked at (below, a batch of
molecules, the look costs about as much as the products it could save)."""
_GRAD_SAMPLE_ROWS = 64
"""Gradient rows looked at first, spread evenly; more than :data:`_SAMPLE_NONZERO`
of them non-zero rules the rest out (sampled from at most half non-zero rows, 64
rows show more than three quarters non-zero with a probability below 1e-4)."""
_SAMPLE_NONZERO = 0.75


def project(lin: torch.nn.Module, x: Tensor) -> Tensor:
    """``lin(x)`` for a linear module ``lin`` (``weight [out, in]``, optional
    ``bias``), computed over the non-zeros of ``x`` when it is sparse enough.

    Parameters
    ----------
    lin : torch.nn.Module
        ``torch.nn.Linear`` or ``torch_geometric.nn.Linear``.
    x : Tensor
        ``[N, in]`` features.

    Returns
    -------
    Tensor
        ``[N, out]``, equal to ``lin(x)`` up to rounding.
    """
    weight = plain_weight(lin, x)
    if weight is None:
        return lin(x)
    return _project_plain(x, weight, getattr(lin, "bias", None))


def project_many(lins: Sequence[torch.nn.Module], x: Tensor) -> list[Tensor]:
    r"""``[lin(x) for lin in lins]`` from one product when every module is a plain
    linear one (see :func:`plain_weight`):

    .. math::
        [\text{lin}_1(x), \dots, \text{lin}_k(x)] = x\,[W_1; \dots; W_k]^\top
        + [b_1; \dots; b_k]

    (a missing bias counts as zeros): one look at the zeros of ``x`` and one
    product where :func:`project` would take ``k`` of each.  Otherwise each module
    is applied on its own.

    Parameters
    ----------
    lins : sequence of torch.nn.Module
        Linear modules of the same input width (``weight [out_k, in]``).
    x : Tensor
        ``[N, in]`` features.

    Returns
    -------
    list of Tensor
        ``[N, out_k]`` each: column views of one ``[N, sum_k out_k]`` result when
        joined (rows ``sum_k out_k`` apart).
    """
    weights = [plain_weight(lin, x) for lin in lins]
    if any(w is None for w in weights):
        return [project(lin, x) for lin in lins]
    plain = [w for w in weights if w is not None]  # all of them (narrows the type)
    biases = [getattr(lin, "bias", None) for lin in lins]
    bias = None if all(b is None for b in biases) else torch.cat(
        [w.new_zeros(w.size(0)) if b is None else b for w, b in zip(plain, biases)])
    out = _project_plain(x, torch.cat(plain), bias)
    return list(out.split([w.size(0) for w in plain], dim=1))


def _project_plain(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """:func:`project` of a plain linear module's ``weight`` and ``bias``."""
    if x.requires_grad or x.numel() < SPARSE_MIN_ELEMENTS:
        return linear_product(x, weight, bias)
    if torch.compiler.is_compiling():  # x's zeros are looked at inside the op
        out = sparse_input_linear(x, weight)[0]
    else:
        found = sparse_input_nonzeros(x, weight)
        if found is None:
            return linear_product(x, weight, bias)
        extension, rowptr, cols, values = found
        out = SparseHeadwiseProjection.apply(weight, rowptr, cols, values,
                                             _keep_all(values), 1.0,
                                             extension).view(x.size(0), -1)
    return out if bias is None else out + bias


def sparse_input_nonzeros(x: Tensor, weight: Tensor
                          ) -> tuple[ModuleType, Tensor, Tensor, Tensor] | None:
    """``(extension, rowptr, cols, values)``: the non-zeros of ``x [N, in]`` in CSR
    form and the compiled extension that multiplies them by ``weight [out, in]``,
    when the extension applies, ``x`` has at least :data:`SPARSE_MIN_ELEMENTS`
    entries and is at most :data:`SPARSE_DENSITY` non-zero; else ``None``.
    Looked at anew on every call."""
    extension = None if x.numel() < SPARSE_MIN_ELEMENTS else sparse_extension(x, weight)
    if extension is None:
        return None
    found = sparse_nonzeros(x, SPARSE_DENSITY, extension)
    return None if found is None else (extension, *found)


def _keep_all(values: Tensor) -> Tensor:
    """The ``[nnz, 1]`` mask of the headwise kernels that drops nothing."""
    return torch.ones(values.numel(), 1, dtype=torch.bool)


def linear_product(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x W^T + b`` (``x [N, in]``, ``W [out, in]``, ``b [out]`` or ``None``), through
    :class:`RowSparseGradLinear` where its backward may skip zero gradient rows
    (at least :data:`SPARSE_GRAD_MIN_ROWS` rows, a gradient to take); under
    ``torch.compile`` through the custom op ``pyg_attn::row_sparse_linear``, whose
    static-shape backward keeps the data-dependent row count inside it."""
    if x.size(0) >= SPARSE_GRAD_MIN_ROWS and torch.is_grad_enabled() and (
            x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)):
        if torch.compiler.is_compiling():  # the same formula, row count kept inside the op
            return row_sparse_linear(x, weight, bias)
        return RowSparseGradLinear.apply(x, weight, bias)
    return torch.nn.functional.linear(x, weight, bias)


def plain_weight(lin: torch.nn.Module, x: Tensor) -> Tensor | None:
    """``lin.weight`` when ``lin(x)`` is ``F.linear(x, lin.weight, lin.bias)`` on a
    dense CPU ``x`` (see :func:`_plain_linear`; an initialised weight), else ``None``."""
    weight = getattr(lin, "weight", None)
    if (not isinstance(weight, Tensor) or isinstance(weight, UninitializedParameter)
            or not _plain_linear(lin, x, weight)):
        return None
    return weight


def project_rows(lin: torch.nn.Module, x: Tensor, rows: Tensor | None) -> Tensor:
    """``lin(x)`` computed on the rows ``rows`` of ``x`` only, zero elsewhere
    (all rows when ``rows`` is ``None``).

    For the queries of destinations that have incoming edges: the others' queries
    are never read (a node without incoming edges gets a zero update), and in a
    ``NeighborLoader`` mini-batch most sampled nodes have none.

    Parameters
    ----------
    lin : torch.nn.Module
        A linear module (``weight [out, in]``, optional ``bias``).
    x : torch.Tensor
        ``[N, in]`` features.
    rows : torch.Tensor, optional
        ``[R]`` int64 row indices, or ``None`` for all rows.

    Returns
    -------
    torch.Tensor
        ``[N, out]``: ``lin(x)[rows]`` on those rows, 0 on the others.
    """
    if rows is None:
        return project(lin, x)
    return _scatter_rows(project(lin, x.index_select(0, rows)), rows, x.size(0))


def _scatter_rows(some: Tensor, rows: Tensor, num_rows: int) -> Tensor:
    """``[num_rows, M]``: the rows ``some [R, M]`` at ``rows [R]``, zero elsewhere
    (in place into fresh zeros: the out-of-place ``index_copy`` would clone them)."""
    return some.new_zeros(num_rows, some.size(1)).index_copy_(0, rows, some)


def project_attended_rows(lin: torch.nn.Module, x: Tensor, rowptr: Tensor) -> Tensor:
    """:func:`project_rows` on the destinations with incoming edges of the CSR
    ``rowptr [N + 1]`` (:func:`~pyg_attn.ops.graph.attended_rows`), with shapes that
    do not depend on the data: under ``torch.compile`` the custom op
    ``pyg_attn::attended_projection`` (the row count stays inside it), else the
    eager :func:`project_rows`.  A module that is not a plain linear one (hooks, an
    adapter's ``forward``) is applied to every row."""
    if not torch.compiler.is_compiling():
        return project_rows(lin, x, attended_rows(rowptr))
    if not _linear_module(lin):
        return lin(x)
    # Whether x's zeros are worth a look is known here: an input that needs a
    # gradient (a hidden layer's) is dense, as project() has it.
    return attended_projection(x, lin.weight, lin.bias, rowptr, not x.requires_grad)[0]


def _attended_projection(x: Tensor, weight: Tensor, bias: Tensor | None, rowptr: Tensor,
                         look: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``([N, out], *nonzeros)``: ``x W^T + b`` on the attended rows (all when more
    than half); with ``look``, over their non-zeros when they are sparse
    (:func:`_sparse_input_linear`), which come back for the weight gradient
    (:func:`_saved_nonzeros`)."""
    rows = attended_rows(rowptr)
    some = x if rows is None else x.index_select(0, rows)
    found = None
    if look:
        some, found = _sparse_input_linear(some, weight, bias)
    else:
        some = torch.nn.functional.linear(some, weight, bias)
    out = some if rows is None else _scatter_rows(some, rows, x.size(0))
    return (out, *_saved_nonzeros(found, x, look))


def _attended_projection_backward(grad: Tensor, x: Tensor, weight: Tensor, rowptr: Tensor,
                                  nonzero_rowptr: Tensor, nonzero_cols: Tensor,
                                  nonzero_values: Tensor, needs: list[bool], look: bool
                                  ) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of :func:`_attended_projection` in ``(x, weight, bias)`` with
    ``needs = [x, bias]`` (an unneeded one comes back empty), the weight's over the
    non-zeros the forward found; rows outside the attended ones get none, as their
    output was never computed."""
    need_x, need_b = needs
    rows = attended_rows(rowptr)
    # The attended rows of grad and x, selected once for every gradient.
    grad_rows = grad if rows is None else grad.index_select(0, rows)
    x_rows = x if rows is None else x.index_select(0, rows)
    grad_x, grad_w, grad_b = grads_on_rows(grad_rows, x_rows, weight, None, need_x, not look,
                                           need_b)
    if look:
        grad_w = _saved_weight_grad(grad_rows, x_rows, weight, nonzero_rowptr, nonzero_cols,
                                    nonzero_values)
    assert grad_w is not None, "it was asked for"
    if grad_x is not None and rows is not None:
        grad_x = _scatter_rows(grad_x, rows, x.size(0))
    return (weight.new_empty(0) if grad_x is None else grad_x, grad_w,
            weight.new_empty(0) if grad_b is None else grad_b)


attended_projection = torch.library.custom_op(
    "pyg_attn::attended_projection", _attended_projection, mutates_args=())
attended_projection_backward = torch.library.custom_op(
    "pyg_attn::attended_projection_backward", _attended_projection_backward, mutates_args=())


@attended_projection.register_fake
def _(x: Tensor, weight: Tensor, bias: Tensor | None, rowptr: Tensor, look: bool
      ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return (x.new_empty(x.size(0), weight.size(0)), *_saved_nonzeros_fake(x, look))


@attended_projection_backward.register_fake
def _(grad: Tensor, x: Tensor, weight: Tensor, rowptr: Tensor, nonzero_rowptr: Tensor,
      nonzero_cols: Tensor, nonzero_values: Tensor, needs: list[bool], look: bool
      ) -> tuple[Tensor, Tensor, Tensor]:
    need_x, need_b = needs
    return (x.new_empty(x.shape if need_x else (0,)), weight.new_empty(weight.shape),
            weight.new_empty(weight.size(0) if need_b else 0))


def _attended_setup_context(ctx: Any, inputs: tuple[Any, ...],
                            output: tuple[Tensor, ...]) -> None:
    x, weight, bias, rowptr, look = inputs
    ctx.save_for_backward(x, weight, rowptr, *output[1:])
    ctx.mark_non_differentiable(*output[1:])
    ctx.has_bias, ctx.look = bias is not None, look


def _attended_backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
    x, weight, rowptr, *nonzeros = ctx.saved_tensors
    needs = [bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[2]) and ctx.has_bias]
    grad_x, grad_w, grad_b = attended_projection_backward(
        grad.contiguous(), x, weight, rowptr, *nonzeros, needs, ctx.look)
    return (grad_x if needs[0] else None, grad_w, grad_b if needs[1] else None, None, None)


torch.library.register_autograd("pyg_attn::attended_projection", _attended_backward,
                                setup_context=_attended_setup_context)


class RowSparseGradLinear(torch.autograd.Function):
    """``out = x W^T + b`` whose backward uses only the non-zero rows of the output
    gradient when they are few (see the module doc); ``x [N, in]``, ``W [out, in]``,
    ``b [out]`` or ``None``."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return torch.nn.functional.linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor
                 ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        return linear_grads(grad_out, x, weight, need_x, need_w, need_b and ctx.has_bias)


def linear_grads(grad_out: Tensor, x: Tensor, weight: Tensor, need_x: bool, need_w: bool,
                 need_b: bool) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(dL/dx [N, in], dL/dW [out, in], dL/db [out])`` of ``x W^T + b`` for
    ``grad_out [N, out]``, over its non-zero rows only when they are few
    (:func:`nonzero_rows`); ``None`` where not needed."""
    # A double backward differentiates these formulas in grad_out, zero rows too.
    rows = None if torch.is_grad_enabled() else nonzero_rows(grad_out)
    return grads_on_rows(grad_out, x, weight, rows, need_x, need_w, need_b)


def grads_on_rows(grad_out: Tensor, x: Tensor, weight: Tensor, rows: Tensor | None,
                  need_x: bool, need_w: bool, need_b: bool
                  ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """The gradients of :func:`linear_grads` from the rows ``rows [R]`` of
    ``grad_out`` alone (the others taken as zero; ``dL/dx`` is zero there), or from
    every row when ``rows`` is ``None``; ``None`` where not needed."""
    grad_rows = grad_out if rows is None else grad_out.index_select(0, rows)
    grad_x = grad_w = None
    if need_x:
        grad_x = grad_rows @ weight
        if rows is not None:
            grad_x = _scatter_rows(grad_x, rows, x.size(0))
    if need_w:
        grad_w = grad_rows.t() @ (x if rows is None else x.index_select(0, rows))
    return grad_x, grad_w, grad_rows.sum(0) if need_b else None


def _row_sparse_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return torch.nn.functional.linear(x, weight, bias)


def _row_sparse_linear_backward(grad: Tensor, x: Tensor, weight: Tensor, needs: list[bool]
                                ) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`linear_grads` with ``needs = [x, weight, bias]``; an unneeded
    gradient comes back empty."""
    grad_x, grad_w, grad_b = linear_grads(grad, x, weight, *needs)
    # A fresh empty tensor for each: outputs of a custom op may not alias.
    return (weight.new_empty(0) if grad_x is None else grad_x,
            weight.new_empty(0) if grad_w is None else grad_w,
            weight.new_empty(0) if grad_b is None else grad_b)


row_sparse_linear = torch.library.custom_op(
    "pyg_attn::row_sparse_linear", _row_sparse_linear, mutates_args=())
row_sparse_linear_backward = torch.library.custom_op(
    "pyg_attn::row_sparse_linear_backward", _row_sparse_linear_backward, mutates_args=())


@row_sparse_linear.register_fake
def _(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return x.new_empty(x.size(0), weight.size(0))


@row_sparse_linear_backward.register_fake
def _(grad: Tensor, x: Tensor, weight: Tensor, needs: list[bool]
      ) -> tuple[Tensor, Tensor, Tensor]:
    need_x, need_w, need_b = needs
    return (x.new_empty(x.shape if need_x else (0,)),
            weight.new_empty(weight.shape if need_w else (0,)),
            weight.new_empty(weight.size(0) if need_b else 0))


def _row_sparse_setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


def _row_sparse_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    x, weight = ctx.saved_tensors
    needs = [bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]),
             bool(ctx.needs_input_grad[2]) and ctx.has_bias]
    grads = row_sparse_linear_backward(grad.contiguous(), x, weight, needs)
    return tuple(g if need else None for g, need in zip(grads, needs))


torch.library.register_autograd("pyg_attn::row_sparse_linear", _row_sparse_backward,
                                setup_context=_row_sparse_setup_context)


def _sparse_input_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None
                         ) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor] | None]:
    """``(x W^T + b [N, out], nonzeros)``: over the non-zeros of ``x`` when
    :func:`sparse_input_nonzeros` finds it sparse (``nonzeros`` its CSR arrays),
    else the dense product (``nonzeros`` ``None``)."""
    found = sparse_input_nonzeros(x, weight)
    if found is None:
        return torch.nn.functional.linear(x, weight, bias), None
    extension, rowptr, cols, values = found
    out = headwise_product(extension, weight, rowptr, cols, values, _keep_all(values),
                           1.0).view(x.size(0), -1)
    return (out if bias is None else out + bias), (rowptr, cols, values)


def nonzero_capacity(x: Tensor) -> int:
    """Most non-zeros of (the rows of) ``x`` that the sparse product takes:
    ``numel / SPARSE_DENSITY_DIVISOR``, rounded down, plus one."""
    return x.numel() // SPARSE_DENSITY_DIVISOR + 1


def _saved_sizes(x: Tensor, look: bool) -> tuple[int, int]:
    """``(row pointers, capacity)``: the lengths of what :func:`_saved_nonzeros`
    returns for ``x``, which its fake gives too."""
    return (x.size(0) + 1, nonzero_capacity(x)) if look else (1, 0)


def _saved_nonzeros(found: tuple[Tensor, Tensor, Tensor] | None, x: Tensor, look: bool = True
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """What the compile path's sparse products return for their backward, in shapes
    fixed by ``x [N, F]``'s: ``(rowptr [N + 1] int64, cols [K] int32, values [K])``
    with ``K =`` :func:`nonzero_capacity` ``(x)``, the non-zeros ``found`` of (some
    of) the rows of ``x`` in CSR form, zero-padded (``rowptr`` by its last value),
    or ``rowptr`` all -1 when nothing was found (the dense product); ``[1]``,
    ``[0]`` and ``[0]`` when not told to ``look``."""
    pointers, capacity = _saved_sizes(x, look)
    rowptr = torch.full((pointers,), -1, dtype=torch.long, device=x.device)
    cols = torch.zeros(capacity, dtype=torch.int32, device=x.device)
    values = x.new_zeros(capacity)
    if found is not None:
        ptr, found_cols, found_values = found
        rowptr[:ptr.numel()] = ptr
        rowptr[ptr.numel():] = ptr[-1]
        cols[:found_cols.numel()] = found_cols
        values[:found_values.numel()] = found_values
    return rowptr, cols, values


def _saved_weight_grad(grad: Tensor, x: Tensor, weight: Tensor, rowptr: Tensor, cols: Tensor,
                       values: Tensor) -> Tensor:
    """``dL/dW [out, in]`` of ``x W^T`` for ``grad [R, out]`` (``x [R, in]``) over the
    non-zeros saved by :func:`_saved_nonzeros`, or, for the dense product, over the
    non-zero rows of ``grad`` when few (:func:`linear_grads`)."""
    extension = sparse_extension(x, weight)
    if extension is None or int(rowptr[0]) < 0:
        grad_w = linear_grads(grad, x, weight, False, True, False)[1]
        assert grad_w is not None, "it was asked for"
        return grad_w
    ptr = rowptr[:x.size(0) + 1]
    nnz = int(ptr[-1])
    # Contiguous, as the fake promises (the kernel's [in, 1, out] is transposed).
    return headwise_weight_grad(extension, ptr, cols[:nnz].long(), values[:nnz],
                                _keep_all(values[:nnz]), grad, 1.0, weight.shape).contiguous()


def _sparse_input_product(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The op's body: ``(x W^T [N, out], *`` :func:`_saved_nonzeros` ``)``."""
    out, found = _sparse_input_linear(x, weight)
    return (out, *_saved_nonzeros(found, x))


sparse_input_linear = torch.library.custom_op(
    "pyg_attn::sparse_input_linear", _sparse_input_product, mutates_args=())
""":func:`project`'s product under ``torch.compile``: whether ``x`` is sparse
enough is data-dependent, so it is decided inside the op, per call; the non-zeros
found come back (in shapes fixed by ``x``'s) for the weight gradient."""
sparse_input_linear_weight_grad = torch.library.custom_op(
    "pyg_attn::sparse_input_linear_weight_grad", _saved_weight_grad, mutates_args=())


def _saved_nonzeros_fake(x: Tensor, look: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """The shapes of :func:`_saved_nonzeros` for ``x``."""
    pointers, capacity = _saved_sizes(x, look)
    return (x.new_empty(pointers, dtype=torch.long), x.new_empty(capacity, dtype=torch.int32),
            x.new_empty(capacity))


@sparse_input_linear.register_fake
def _(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return (x.new_empty(x.size(0), weight.size(0)), *_saved_nonzeros_fake(x))


@sparse_input_linear_weight_grad.register_fake
def _(grad: Tensor, x: Tensor, weight: Tensor, rowptr: Tensor, cols: Tensor, values: Tensor
      ) -> Tensor:
    return weight.new_empty(weight.shape)


def _sparse_input_setup_context(ctx: Any, inputs: tuple[Any, ...],
                                output: tuple[Tensor, ...]) -> None:
    x, weight = inputs
    ctx.save_for_backward(x, weight, *output[1:])
    ctx.mark_non_differentiable(*output[1:])


def _sparse_input_backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
    x, weight, *nonzeros = ctx.saved_tensors
    need_x, need_w = ctx.needs_input_grad
    grad_x = grad @ weight if need_x else None
    grad_w = (sparse_input_linear_weight_grad(grad.contiguous(), x, weight, *nonzeros)
              if need_w else None)
    return grad_x, grad_w


torch.library.register_autograd("pyg_attn::sparse_input_linear", _sparse_input_backward,
                                setup_context=_sparse_input_setup_context)


def nonzero_rows(grad: Tensor) -> Tensor | None:
    """The indices ``[R]`` of the rows of ``grad [N, M]`` that are not all zero, if
    they are at most :data:`SPARSE_GRAD_ROWS` of the rows; else ``None``.

    An evenly spread sample of :data:`_GRAD_SAMPLE_ROWS` rows is looked at first,
    so a dense gradient costs almost nothing (a gradient close to the limit may go
    either way); a NaN counts as non-zero.
    """
    num_rows = grad.size(0)
    if num_rows < 2 * _GRAD_SAMPLE_ROWS or grad.size(1) == 0:
        return None
    sample = _nonzero_mask(grad[::num_rows // _GRAD_SAMPLE_ROWS])
    if int(sample.sum()) > _SAMPLE_NONZERO * sample.numel():
        return None
    rows = _nonzero_mask(grad).nonzero().squeeze(1)
    return rows if rows.numel() <= SPARSE_GRAD_ROWS * num_rows else None


def _nonzero_mask(grad: Tensor) -> Tensor:
    """``[N]`` bool: whether each row of ``grad`` has a non-zero (or NaN): by its
    largest and smallest values, two reductions that allocate nothing per element."""
    return (grad.amax(1) != 0).logical_or_(grad.amin(1) != 0)


_LINEAR_FORWARDS = (torch.nn.Linear.forward, PygLinear.forward)
"""``forward`` methods known to be ``F.linear(x, weight, bias)``: a subclass that
changes it (adapters, quantised weights) keeps its own."""


def _linear_module(lin: torch.nn.Module) -> bool:
    """Whether ``lin(x)`` is ``F.linear(x, lin.weight, lin.bias)``: a known linear
    ``forward`` and no hooks."""
    return (type(lin).forward in _LINEAR_FORWARDS
            and not (lin._forward_hooks or lin._forward_pre_hooks
                     or lin._backward_hooks or lin._backward_pre_hooks))


def _plain_linear(lin: torch.nn.Module, x: Tensor, weight: Tensor) -> bool:
    """Dense 2-D non-empty CPU input of the weight's floating dtype, a module
    without hooks, no autocast: where the products of this module are the same
    function as ``lin(x)``."""
    return (x.layout == torch.strided and x.dim() == 2 and x.device.type == "cpu"
            and x.dtype == weight.dtype and x.dtype.is_floating_point
            and x.numel() > 0 and x.size(1) == weight.size(1)
            and not torch.is_autocast_enabled("cpu") and _linear_module(lin))
