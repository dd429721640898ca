"""Whole-model attention capture: :func:`capture_attention`.

Forward pre-hooks ask every attention layer of a model for its weights
(``return_attention_weights=True``); forward hooks record them and strip them
from the layer's output again, so the model sees exactly what it would have
seen without capturing.  Works for the layers of :mod:`pyg_attn.nn` and for
PyG's ``GATConv`` / ``GATv2Conv`` / ``TransformerConv`` (and their subclasses),
wherever they sit: plain modules, :class:`torch_geometric.nn.models.GAT`,
models transformed by :func:`torch_geometric.nn.to_hetero`.
"""
from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch_geometric.nn.conv as pyg_conv
from torch import Tensor
from torch_geometric.typing import SparseTensor

from ..convert.records import AttentionRecord
from .conv import GATConv, GATv2Conv, KQVConv, TransformerConv
from .conv.edges import edge_ids, plain_edges

__all__ = ["AttentionRecord", "AttentionRecords", "capture_attention"]

#: Layer classes whose attention :func:`capture_attention` records (subclasses too).
ATTENTION_LAYERS: tuple[type[torch.nn.Module], ...] = (
    GATConv, GATv2Conv, TransformerConv, KQVConv,
    pyg_conv.GATConv, pyg_conv.GATv2Conv, pyg_conv.TransformerConv,
)
# Layers that remove existing self-loops and add one per node when `add_self_loops`.
_LOOPING_LAYERS: tuple[type, ...] = (GATConv, GATv2Conv, pyg_conv.GATConv, pyg_conv.GATv2Conv)
# PyG's TransformerConv returns `(out, attention)` for `return_attention_weights=False` too.
_TUPLE_FOR_FALSE: tuple[type, ...] = (pyg_conv.TransformerConv,)

_MISSING = object()


class AttentionRecords(dict[str, AttentionRecord]):
    """``{layer name: AttentionRecord}`` filled by :func:`capture_attention`.

    A plain :class:`dict` (names as in ``model.named_modules()``) with one extra
    attribute: :attr:`calls` counts the calls of each layer inside the block.
    A layer called more than once keeps the record of its *last* call.
    """

    def __init__(self) -> None:
        super().__init__()
        #: ``{layer name: number of calls recorded}``.
        self.calls: dict[str, int] = {}


# ----------------------------------------------------------------------------- helpers
def _forward_positions(module: torch.nn.Module) -> tuple[int, int | None] | None:
    """Positional index of ``edge_index`` and ``return_attention_weights`` in the
    layer's ``forward`` (``None`` when the layer cannot return attention)."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    positional = [p.name for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = {p.name for p in params}
    if "return_attention_weights" not in names:
        return None
    edge_pos = positional.index("edge_index") if "edge_index" in positional else 1
    ret_pos = (positional.index("return_attention_weights")
               if "return_attention_weights" in positional else None)
    return edge_pos, ret_pos


def _adds_loops(module: torch.nn.Module) -> bool:
    """Whether ``module`` drops the input's self-loops and appends one per node."""
    return isinstance(module, _LOOPING_LAYERS) and bool(module.add_self_loops)


def _parse_attention(att: Any) -> tuple[Tensor, Tensor]:
    """``(edge_index [2, E'], alpha [E', H])`` of whatever form a layer returned."""
    if isinstance(att, SparseTensor):
        alpha = att.storage.value()
        assert alpha is not None
        edge_index = plain_edges(att)
    else:
        first, alpha = att
        edge_index = plain_edges(first)
    if alpha.dim() == 1:
        alpha = alpha.unsqueeze(-1)
    return edge_index.long(), alpha.detach()


# ----------------------------------------------------------------------------- capture
@contextlib.contextmanager
def capture_attention(model: torch.nn.Module) -> Iterator[AttentionRecords]:
    """Records the attention weights of every attention layer of ``model``.

    Inside the block, every call of an attention layer of ``model`` (its
    :class:`~pyg_attn.nn.GATConv`, :class:`~pyg_attn.nn.GATv2Conv`,
    :class:`~pyg_attn.nn.TransformerConv`, :class:`~pyg_attn.nn.KQVConv`, and
    PyG's ``GATConv``, ``GATv2Conv``, ``TransformerConv``, subclasses included)
    is made with ``return_attention_weights=True``; the weights are stored in
    the yielded dict under the layer's name in ``model.named_modules()`` (e.g.
    ``"convs.0"`` in :class:`torch_geometric.nn.models.GAT`,
    ``"convs.0.author__writes__paper"`` after
    :func:`torch_geometric.nn.to_hetero`; ``""`` when ``model`` is the layer)
    and removed from the layer's output, which is exactly what the caller
    asked for (also when it asked for the weights itself).  Forward and
    backward of the model are otherwise unchanged.

    Parameters
    ----------
    model : torch.nn.Module
        The model (or a single layer).  Only its own submodules are recorded.

    Yields
    ------
    AttentionRecords
        A dict ``{layer name: AttentionRecord}``, filled as layers run and kept
        after the block.  A layer called several times inside the block keeps
        its **last** call's record; ``attn.calls[name]`` counts the calls.

    Notes
    -----
    * Each :class:`AttentionRecord` holds ``edge_index`` ``[2, E']`` (after the
      layer's self-loop handling), ``alpha`` ``[E', H]`` (detached) and
      ``edge_id`` ``[E']``: the position of each edge in the ``edge_index``
      passed to that layer, ``-1`` for a self-loop the layer added; for
      ``SparseTensor`` / ``torch.sparse`` inputs the position in their stored
      (coalesced) order.
    * The weights of :mod:`pyg_attn.nn` layers and of PyG's
      ``TransformerConv`` are *before* attention dropout.  PyG's ``GATConv`` and
      ``GATv2Conv`` apply dropout inside their ``edge_update``, so their records
      in training mode with ``dropout > 0`` hold the weights *after* dropout.
    * Capturing costs the ``[E', H]`` weights per recorded layer and, for
      ``edge_id``, a pass over the input edges (a sort only when edges cannot
      be matched by position: sparse inputs, :class:`~pyg_attn.nn.KQVConv`).
    * All hooks are removed when the block exits, also on an exception.
      Layers whose ``forward`` has no ``return_attention_weights`` argument are
      not recorded.

    Examples
    --------
    >>> import torch
    >>> from pyg_attn.nn import GATConv, capture_attention
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv1 = GATConv(8, 4, heads=2)
    ...         self.conv2 = GATConv(8, 3, heads=1)
    ...     def forward(self, x, edge_index):
    ...         return self.conv2(self.conv1(x, edge_index).relu(), edge_index)
    >>> model = Net().eval()
    >>> x = torch.randn(5, 8)
    >>> edge_index = torch.tensor([[0, 1, 2, 3, 3], [1, 2, 3, 4, 3]])
    >>> with capture_attention(model) as attn:
    ...     out = model(x, edge_index)
    >>> out.shape
    torch.Size([5, 3])
    >>> sorted(attn)
    ['conv1', 'conv2']
    >>> record = attn["conv1"]
    >>> record.alpha.shape  # 4 kept edges + 5 added self-loops, 2 heads
    torch.Size([9, 2])
    >>> record.edge_id.tolist()  # the loop 3 -> 3 of the input is replaced
    [0, 1, 2, 3, -1, -1, -1, -1, -1]
    >>> bool((record.edge_index[:, :4] == edge_index[:, record.edge_id[:4]]).all())
    True
    """
    records = AttentionRecords()
    handles: list[Any] = []
    pending: dict[int, list[tuple[Any, Any]]] = {}

    def make_hooks(name: str, edge_pos: int, ret_pos: int | None
                   ) -> tuple[Callable[..., Any], Callable[..., Any]]:
        def pre_hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
                     ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            if len(args) > edge_pos:
                adj = args[edge_pos]
            else:
                adj = kwargs.get("edge_index", _MISSING)
            if ret_pos is not None and len(args) > ret_pos:
                requested = args[ret_pos]
                args = args[:ret_pos] + (True,) + args[ret_pos + 1:]
            else:
                requested = kwargs.get("return_attention_weights", None)
                kwargs = dict(kwargs)
                kwargs["return_attention_weights"] = True
            pending.setdefault(id(module), []).append((adj, requested))
            return args, kwargs

        def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                 output: Any) -> Any:
            stack = pending.get(id(module))
            if not stack:  # not started inside this block
                return None
            adj, requested = stack.pop()
            if not isinstance(output, (tuple, list)) or len(output) != 2:
                return None  # a subclass that does not return the weights: leave it
            out, att = output
            with torch.no_grad():
                edge_index, alpha = _parse_attention(att)
                edge_id = (edge_ids(adj, edge_index, _adds_loops(module))
                           if adj is not _MISSING
                           else torch.full((edge_index.size(1),), -1, dtype=torch.long,
                                           device=edge_index.device))
            records[name] = AttentionRecord(edge_index=edge_index, alpha=alpha,
                                            edge_id=edge_id)
            records.calls[name] = records.calls.get(name, 0) + 1
            if requested:
                return output  # the caller asked for the weights itself
            if requested is False and isinstance(module, _TUPLE_FOR_FALSE):
                return output  # PyG's TransformerConv returns them for False too
            return out

        return pre_hook, hook

    try:
        for name, module in model.named_modules():
            if not isinstance(module, ATTENTION_LAYERS):
                continue
            positions = _forward_positions(module)
            if positions is None:
                continue
            pre_hook, hook = make_hooks(name, *positions)
            handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
            handles.append(module.register_forward_hook(hook, with_kwargs=True))
        yield records
    finally:
        for handle in handles:
            handle.remove()
        pending.clear()
