"""Transformer attention over tokens as records: :func:`token_attention`.

Transformers give one dense tensor per layer: ``[H, T, T]``, or ``[B, H, T, T]`` for a
batch (Hugging Face models with ``output_attentions=True`` return a tuple of them,
:class:`torch.nn.MultiheadAttention` with ``average_attn_weights=False`` one).  Here
``A[h, i, j]`` is the weight of query ``i`` on key ``j`` (rows sum to 1), the package's
dense convention.  :func:`token_stack` checks such a list and picks one sequence,
without its padding; :func:`token_attention` turns it into records (edges ``j -> i``
of the complete graph over the tokens, weights ``[E, H]``) that every analysis function
takes, with the token labels beside them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from .checks import as_float_tensor, check_row_sums, check_weights
from .dense import dense_to_edge_index
from .records import AttentionRecord

__all__ = ["TokenAttention", "TokenStack", "is_token_attention",
           "token_attention", "token_labels", "token_stack"]


class TokenStack(NamedTuple):
    """One sequence's attention of every layer (:func:`token_stack`)."""

    #: ``[L, H, T', T']`` float64 weights among the kept tokens.
    weights: Tensor
    #: ``[T']`` positions of the kept tokens in the input.
    positions: Tensor
    #: The layers' names (``"layer k"``, or the dict's keys).
    names: List[str]
    #: ``T``, the input's length (padding included).
    length: int


class TokenAttention(Dict[str, AttentionRecord]):
    """``{layer name: AttentionRecord}``, first layer first, with the tokens they are over.

    Attributes
    ----------
    labels : list of str
        The kept tokens' labels, in reading order (node ``k`` of the records).
    positions : list of int
        Their positions in the input (padding removed).
    """

    def __init__(self, records: Dict[str, AttentionRecord], labels: List[str],
                 positions: List[int]) -> None:
        super().__init__(records)
        self.labels = labels
        self.positions = positions

    @property
    def num_nodes(self) -> int:
        """Number of kept tokens ``T'`` (pass as ``num_nodes=`` to analysis functions)."""
        return len(self.labels)


def is_token_attention(attentions: Any) -> bool:
    """Whether ``attentions`` is dense per-layer attention (a list, tuple or dict of
    tensors or arrays) rather than graph records or ``(edge_index, alpha)`` pairs."""
    if isinstance(attentions, Mapping):
        attentions = list(attentions.values())
    if not isinstance(attentions, Sequence) or isinstance(attentions, str) or not attentions:
        return False
    return all(isinstance(a, (Tensor, np.ndarray)) for a in attentions)


def _layers(attentions: Any) -> List[Tuple[str, Tensor]]:
    """``(name, [H, T, T] or [B, H, T, T] tensor)`` of every layer, all of one shape."""
    if isinstance(attentions, Mapping):
        items = [(str(name), value) for name, value in attentions.items()]
    elif isinstance(attentions, Sequence) and not isinstance(attentions, str):
        items = [(f"layer {k}", value) for k, value in enumerate(attentions)]
    else:
        raise TypeError("attentions must be a list or tuple (one tensor per layer, as "
                        f"Hugging Face returns them) or a dict, got {type(attentions).__name__}")
    if not items:
        raise ValueError("attentions must hold at least one layer")
    layers = []
    for k, (name, value) in enumerate(items):
        value = as_float_tensor(value, f"attentions[{k}]").detach().cpu().double()
        if value.dim() not in (3, 4) or value.size(-1) != value.size(-2):
            raise ValueError(f"attentions[{k}] must be [H, T, T] or [B, H, T, T], "
                             f"got shape {tuple(value.shape)}")
        check_weights(value, f"attentions[{k}]")
        layers.append((name, value))
    shapes = {tuple(value.shape) for _, value in layers}
    if len(shapes) != 1:
        raise ValueError(f"attentions: every layer must have the same shape, got {sorted(shapes)}")
    return layers


def _batch_index(batch: Any, shape: Tuple[int, ...]) -> Optional[int]:
    """The checked sequence index (``None`` for ``[H, T, T]`` layers)."""
    if len(shape) == 3:
        if batch is not None:
            raise ValueError(f"batch: the attentions are [H, T, T] {shape}, without a batch "
                             "dimension; leave batch=None")
        return None
    size = shape[0]
    if batch is None:
        if size != 1:
            raise ValueError(f"batch: the attentions hold {size} sequences [B, H, T, T] "
                             f"{shape}; pass batch= (an index in [0, {size}))")
        return 0
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)):
        raise TypeError(f"batch must be an int, got {type(batch).__name__}")
    if not 0 <= batch < size:
        raise ValueError(f"batch must be in [0, {size}), got {batch}")
    return int(batch)


def _kept(attention_mask: Any, batch: Optional[int], length: int) -> Tensor:
    """Positions ``[T']`` the mask keeps (all without a mask)."""
    if attention_mask is None:
        return torch.arange(length)
    if isinstance(attention_mask, (list, tuple)):
        attention_mask = torch.tensor(attention_mask)
    if isinstance(attention_mask, np.ndarray):
        attention_mask = torch.from_numpy(attention_mask)
    if not isinstance(attention_mask, Tensor):
        raise TypeError("attention_mask must be a tensor, array or list of 0/1, got "
                        f"{type(attention_mask).__name__}")
    mask = attention_mask.detach().cpu()
    if mask.dim() == 2 and batch is not None:
        if mask.size(0) <= batch:
            raise ValueError(f"attention_mask has {mask.size(0)} rows, fewer than batch={batch} + 1")
        mask = mask[batch]
    if mask.dim() != 1 or mask.numel() != length:
        raise ValueError(f"attention_mask must be [T] or [B, T] with T = {length}, "
                         f"got shape {tuple(attention_mask.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("attention_mask must hold 0 (padding) or 1 (token)")
    kept = mask.bool().nonzero().view(-1)
    if kept.numel() == 0:
        raise ValueError("attention_mask masks out every token")
    return kept


def token_stack(attentions: Any, batch: Optional[int] = None,
                attention_mask: Any = None) -> TokenStack:
    """One sequence's attention of every layer, padding removed, checked.

    Parameters
    ----------
    attentions : list, tuple or dict of Tensor
        One ``[H, T, T]`` or ``[B, H, T, T]`` tensor (or array) per layer, first layer
        first, all of one shape; ``A[.., h, i, j]`` = weight of query ``i`` on key ``j``.
    batch : int, optional
        Which sequence of ``[B, H, T, T]`` layers (default: the only one, ``B = 1``).
    attention_mask : Tensor, optional
        ``[T]`` or ``[B, T]`` with 1 for tokens and 0 for padding (Hugging Face's
        convention).  Padding rows and columns are removed; the kept rows must still
        sum to 1, i.e. the model gave padding no weight.

    Returns
    -------
    TokenStack
        ``weights [L, H, T', T']`` (float64, among the kept tokens), ``positions [T']``
        (of the kept tokens in the input), ``names`` (of the layers) and ``length``
        (``T``).

    Raises
    ------
    TypeError
        ``attentions``, ``batch`` or ``attention_mask`` of a wrong type.
    ValueError
        Shapes other than ``[H, T, T]`` / ``[B, H, T, T]``, layers of different shapes,
        negative or non-finite weights, rows not summing to 1 (or 0), ``batch`` missing
        or out of range, a mask of the wrong length or with values other than 0/1.

    Examples
    --------
    >>> A = torch.tensor([[[0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [0.0, 0.0, 0.0]]])  # [1, T, T]
    >>> stack = token_stack((A, A), attention_mask=[1, 1, 0])
    >>> tuple(stack.weights.shape), stack.positions.tolist(), stack.names, stack.length
    ((2, 1, 2, 2), [0, 1], ['layer 0', 'layer 1'], 3)
    """
    layers = _layers(attentions)
    shape = tuple(layers[0][1].shape)
    index = _batch_index(batch, shape)
    stack = torch.stack([value if index is None else value[index] for _, value in layers])
    kept = _kept(attention_mask, index, shape[-1])
    stack = stack[:, :, kept][:, :, :, kept]
    try:
        check_row_sums(stack.sum(-1), "attentions")
    except ValueError as error:
        hint = (" (with attention_mask: the kept rows must give the padding no weight)"
                if attention_mask is not None else "")
        raise ValueError(f"{error}{hint}") from None
    return TokenStack(stack, kept, [name for name, _ in layers], shape[-1])


def token_labels(labels: Any, length: int, positions: Tensor) -> List[str]:
    """The kept tokens' labels: ``labels`` (one per input position, ``T``) at
    ``positions``, or the positions themselves as text."""
    if labels is None:
        return [str(p) for p in positions.tolist()]
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise TypeError(f"labels must be a list of token strings, got {type(labels).__name__}")
    if len(labels) != length:
        raise ValueError(f"labels must name all {length} tokens (padding included), "
                         f"got {len(labels)}")
    return [str(labels[p]) for p in positions.tolist()]


def token_attention(attentions: Any, labels: Optional[Sequence[str]] = None,
                    batch: Optional[int] = None, attention_mask: Any = None) -> TokenAttention:
    """Transformer attention as records with token labels, for the analysis functions.

    Each layer becomes a :class:`AttentionRecord`: the complete graph over the kept tokens
    (edge ``j -> i`` with ``alpha[e, h] = A[h, i, j]``, pairs with weight 0 in every
    head left out), so :func:`~pyg_attn.analysis.attention_rollout`,
    :func:`~pyg_attn.analysis.attention_flow`, the centralities and
    :func:`~pyg_attn.convert.attention_to_networkx` take the result as they take
    :func:`~pyg_attn.nn.capture_attention` records.  Node ``k`` is the ``k``-th kept
    token, ``result.labels[k]``.

    Parameters
    ----------
    attentions : list, tuple or dict of Tensor
        One ``[H, T, T]`` or ``[B, H, T, T]`` tensor per layer (see :func:`token_stack`).
    labels : sequence of str, optional
        The ``T`` tokens (padding included); default: their positions.
    batch : int, optional
        Which sequence of a batch.
    attention_mask : Tensor, optional
        ``[T]`` or ``[B, T]``, 1 = token, 0 = padding (removed).

    Returns
    -------
    TokenAttention
        ``{layer name: AttentionRecord}`` with ``.labels``, ``.positions``, ``.num_nodes``.

    Raises
    ------
    TypeError, ValueError
        As :func:`token_stack`; ``labels`` not a list of ``T`` entries.

    Examples
    --------
    >>> from pyg_attn.analysis import attention_rollout
    >>> A = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])  # one head, query 1 reads both
    >>> records = token_attention((A, A), labels=["hello", "world"])
    >>> records.labels, records["layer 0"].edge_index.tolist()
    (['hello', 'world'], [[0, 0, 1], [0, 1, 1]])
    >>> attention_rollout(records, targets=[1]).to_dense().tolist()  # = dense rollout row
    [[0.4375, 0.5625]]
    """
    stack = token_stack(attentions, batch, attention_mask)
    tokens = token_labels(labels, stack.length, stack.positions)
    records = {}
    for name, layer in zip(stack.names, stack.weights):
        edge_index, alpha = dense_to_edge_index(layer)  # alpha [E, H]
        original = stack.positions[edge_index]
        records[name] = AttentionRecord(edge_index, alpha, original[1] * stack.length + original[0])
    return TokenAttention(records, tokens, stack.positions.tolist())
