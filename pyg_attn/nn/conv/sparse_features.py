"""The non-zeros of a feature matrix, found per call when it is sparse enough.

Bag-of-words features (Cora: 1,433 columns, 1.3 % non-zero) make a layer's first
projection mostly a product of zeros.  :func:`sparse_nonzeros` decides from the
input of *this* call whether the sparse products pay (no cache: an input is never
judged by what an earlier tensor held): an evenly spread sample of
:data:`SAMPLE_ROWS` rows rules out a dense input at almost no cost, and only then
one pass of the compiled extension lists the non-zeros in CSR form; a
denser-than-allowed result is dropped.  That pass reads ``x`` once, less than a
dense product, which reads it as well and multiplies every entry.
"""
from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from ...ops.cpu import load_extension

__all__ = ["SAMPLE_ROWS", "sparse_extension", "sparse_nonzeros"]

#: Rows looked at, evenly spread, before the whole input is scanned.
SAMPLE_ROWS = 64


def sparse_extension(x: Tensor, weight: Tensor) -> ModuleType | None:
    """The compiled extension where its sparse products apply to ``x @ weight.T``:
    2-D CPU tensors of one floating dtype with contiguous feature columns, eager
    mode; ``None`` elsewhere."""
    if (x.device.type != "cpu" or weight.device.type != "cpu" or x.dtype != weight.dtype
            or not x.dtype.is_floating_point or x.dim() != 2
            or (x.size(1) > 1 and x.stride(1) != 1) or torch.compiler.is_compiling()):
        return None
    return load_extension()


def sparse_nonzeros(x: Tensor, max_density: float, extension: ModuleType
                    ) -> tuple[Tensor, Tensor, Tensor] | None:
    """``(rowptr [N + 1], cols [nnz], values [nnz])`` of ``x [N, F]``'s non-zeros in
    row-major CSR form (``cols`` int64), or ``None`` when more than ``max_density``
    of ``x`` is non-zero (NaN counts as non-zero).

    Parameters
    ----------
    x : Tensor
        ``[N, F]`` features (see :func:`sparse_extension`).
    max_density : float
        Largest fraction of non-zeros accepted.
    extension : module
        The compiled extension (from :func:`sparse_extension`).

    Returns
    -------
    tuple of Tensor or None
        The CSR arrays, or ``None`` for a dense input.
    """
    if x.numel() == 0:
        return None
    step = max(1, x.size(0) // SAMPLE_ROWS)
    sample = x[::step]
    # A sample twice as dense as allowed rules the whole input out.
    if int(torch.count_nonzero(sample)) > 2 * max_density * sample.numel():
        return None
    rowptr, cols, values = extension.headwise_nonzeros(x)
    if values.numel() > max_density * x.numel():
        return None
    return rowptr, cols, values
