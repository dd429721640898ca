"""Input checks of the conversions: dense attention, edge attention, row sums.

Dense attention is ``[..., N, N]`` with ``A[..., i, j]`` the weight of
destination ``i`` on source ``j``; edge attention is ``(edge_index [2, E],
alpha [E] or [E, H])``.  Every check raises ``TypeError``/``ValueError`` naming
the argument.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: Absolute tolerance on attention row sums where a distribution is required:
#: every row must sum to 1 or to 0 within ``ROW_SUM_TOL`` (float32 softmax rows
#: over thousands of edges stay well within it).
ROW_SUM_TOL = 1e-3


def as_float_tensor(value: Any, name: str) -> Tensor:
    """``value`` as a dense floating tensor (numpy arrays, sparse and integer tensors
    converted); ``TypeError`` naming ``name`` for anything else.

    Parameters
    ----------
    value : Tensor or numpy.ndarray
        Values of any shape.
    name : str
        Argument named in the error.

    Returns
    -------
    Tensor
        Same shape, strided, floating point (integer and bool values in the
        default dtype).

    Raises
    ------
    TypeError
        If ``value`` is neither a tensor nor an array.

    Examples
    --------
    >>> as_float_tensor(np.eye(2, dtype=np.int64), "attn").dtype
    torch.float32
    """
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, "
                        f"got {type(value).__name__}")
    if value.is_sparse:
        value = value.to_dense()
    if not value.is_floating_point():
        value = value.to(torch.get_default_dtype())
    return value


def check_weights(values: Tensor, name: str) -> None:
    """Raises ``ValueError`` unless every attention weight is finite and non-negative.

    Parameters
    ----------
    values : Tensor
        Attention weights (any shape; empty passes).
    name : str
        Argument named in the error.

    Examples
    --------
    >>> check_weights(torch.tensor([0.0, 0.5]), "alpha")
    >>> check_weights(torch.tensor([0.5, -1.0]), "alpha")
    Traceback (most recent call last):
    ...
    ValueError: alpha must be non-negative (found -1)
    """
    if values.numel() == 0:
        return
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    if bool((values < 0).any()):
        raise ValueError(f"{name} must be non-negative (found {float(values.min()):.3g})")


def check_row_sums(sums: Tensor, name: str, tol: float = ROW_SUM_TOL) -> None:
    """Raises ``ValueError`` unless every entry of ``sums`` is 1 or 0 within ``tol``.

    Parameters
    ----------
    sums : Tensor
        Row sums of attention (any shape).
    name : str
        Argument named in the error.
    tol : float
        Absolute tolerance (default :data:`ROW_SUM_TOL`).

    Examples
    --------
    >>> check_row_sums(torch.tensor([1.0, 0.0, 0.9999]), "attn")
    >>> check_row_sums(torch.tensor([1.0, 0.5]), "attn")
    Traceback (most recent call last):
    ...
    ValueError: attn: attention rows must sum to 1 or 0 (within 0.001); found a row summing to 0.5
    """
    bad = ((sums - 1).abs() > tol) & (sums.abs() > tol)
    if bool(bad.any()):
        raise ValueError(f"{name}: attention rows must sum to 1 or 0 (within {tol:g}); "
                         f"found a row summing to {float(sums[bad][0]):.4g}")


def as_dense_attention(attn: Any, name: str = "attn", ranks: Sequence[int] = (2, 3),
                       stochastic: bool = False) -> Tensor:
    """Validated dense attention ``[..., N, N]`` as a floating tensor.

    Parameters
    ----------
    attn : Tensor or numpy.ndarray
        Dense attention, ``A[..., i, j]`` = weight of destination ``i`` on source ``j``.
    name : str
        Argument named in errors.
    ranks : sequence of int
        Accepted numbers of dimensions.
    stochastic : bool
        Also require rows summing to 1 or 0 (within :data:`ROW_SUM_TOL`).

    Returns
    -------
    Tensor
        ``[..., N, N]`` floating-point attention.

    Raises
    ------
    TypeError
        ``attn`` is not a tensor or array.
    ValueError
        Wrong rank, non-square last two dimensions, negative or non-finite
        weights, or (``stochastic``) rows summing to neither 1 nor 0.

    Examples
    --------
    >>> as_dense_attention([[1.0]])
    Traceback (most recent call last):
    ...
    TypeError: attn must be a torch.Tensor or numpy array, got list
    >>> as_dense_attention(torch.ones(2, 3))
    Traceback (most recent call last):
    ...
    ValueError: attn must be square in its last two dimensions, got shape (2, 3)
    """
    attn = as_float_tensor(attn, name)
    if attn.dim() not in ranks:
        shapes = " or ".join(f"{r}-D" for r in ranks)
        raise ValueError(f"{name} must be {shapes}, got shape {tuple(attn.shape)}")
    if attn.size(-1) != attn.size(-2):
        raise ValueError(f"{name} must be square in its last two dimensions, "
                         f"got shape {tuple(attn.shape)}")
    check_weights(attn, name)
    if stochastic:
        check_row_sums(attn.sum(-1), name)
    return attn


def _num_nodes(edge_index: Tensor, num_nodes: int | None, name: str = "num_nodes") -> int:
    inferred = int(edge_index.max()) + 1 if edge_index.numel() else 0
    if num_nodes is None:
        return inferred
    if not isinstance(num_nodes, (int, np.integer)) or num_nodes < 0:
        raise ValueError(f"{name} must be a non-negative int, got {num_nodes!r}")
    if inferred > num_nodes:
        raise ValueError(f"edge_index refers to node {inferred - 1}, "
                         f"but {name}={num_nodes}")
    return int(num_nodes)


def as_edge_attention(edge_index: Any, alpha: Any, num_nodes: int | None = None,
                      stochastic: bool = False) -> tuple[Tensor, Tensor, int]:
    """Validated ``(edge_index [2, E] long, alpha [E] or [E, H] float, N)``.

    Parameters
    ----------
    edge_index : Tensor
        ``[2, E]`` (source, destination) node ids.
    alpha : Tensor
        ``[E]`` or ``[E, H]`` non-negative weights.
    num_nodes : int, optional
        Number of nodes (default: largest id + 1).
    stochastic : bool
        Also require each destination's weights to sum to 1 or 0 per head
        (within :data:`ROW_SUM_TOL`).

    Returns
    -------
    edge_index : Tensor
        ``[2, E]`` int64.
    alpha : Tensor
        ``[E]`` or ``[E, H]`` floating point.
    num_nodes : int
        ``N``.

    Raises
    ------
    TypeError
        ``edge_index`` is not an integer tensor or array, or ``alpha`` not a
        tensor or array.
    ValueError
        Wrong shapes, negative node ids, ``num_nodes`` too small, negative or
        non-finite weights, or (``stochastic``) sums of neither 1 nor 0.

    Examples
    --------
    >>> ei, a, n = as_edge_attention(torch.tensor([[0, 1], [1, 1]]), torch.tensor([1.0, 0.5]))
    >>> n
    2
    >>> as_edge_attention(torch.tensor([[0, 1], [1, 1]]), torch.tensor([1.0]))
    Traceback (most recent call last):
    ...
    ValueError: alpha must have one row per edge (2), got shape (1,)
    """
    if isinstance(edge_index, np.ndarray):
        edge_index = torch.from_numpy(edge_index)
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"edge_index must be a torch.Tensor, got {type(edge_index).__name__}")
    if edge_index.is_floating_point() or edge_index.dtype == torch.bool:
        raise TypeError(f"edge_index must hold integer node ids, got {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
    edge_index = edge_index.long()
    if edge_index.numel() and int(edge_index.min()) < 0:
        raise ValueError("edge_index must hold non-negative node ids")
    alpha = as_float_tensor(alpha, "alpha")
    if alpha.dim() not in (1, 2) or alpha.size(0) != edge_index.size(1):
        raise ValueError(f"alpha must have one row per edge ({edge_index.size(1)}), "
                         f"got shape {tuple(alpha.shape)}")
    check_weights(alpha, "alpha")
    n = _num_nodes(edge_index, num_nodes)
    if stochastic:
        sums = alpha.new_zeros((n,) + tuple(alpha.shape[1:]))
        check_row_sums(sums.index_add_(0, edge_index[1], alpha), "alpha")
    return edge_index, alpha, n


def unpack_attention(attention: Any, name: str = "attention") -> tuple[Any, Any]:
    """``(edge_index, alpha)`` of a pair or of a capture record (duck typing).

    Parameters
    ----------
    attention : (edge_index, alpha) or record
        A pair, or anything with ``edge_index`` and ``alpha`` attributes.
    name : str
        Argument named in the error.

    Returns
    -------
    tuple
        ``(edge_index, alpha)`` as given (not validated).

    Raises
    ------
    TypeError
        If ``attention`` is neither a pair nor a record.

    Examples
    --------
    >>> unpack_attention((torch.tensor([[0], [1]]), torch.ones(1)))[1]
    tensor([1.])
    """
    if hasattr(attention, "edge_index") and hasattr(attention, "alpha"):
        return attention.edge_index, attention.alpha
    if isinstance(attention, (tuple, list)) and len(attention) == 2:
        return attention[0], attention[1]
    raise TypeError(f"{name} must be (edge_index, alpha) or an attention record, "
                    f"got {type(attention).__name__}")

