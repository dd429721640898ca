"""AttentionPooling: PyG's ``AttentionalAggregation`` on the package's segment softmax."""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch_geometric.nn.aggr import Aggregation
from torch_geometric.nn.inits import reset
from torch_geometric.nn.models import MLP

from ...ops import edge_softmax

__all__ = ["AttentionPooling"]


def _check_index(name: str, value: Tensor | None) -> None:
    if value is None:
        return
    if not isinstance(value, Tensor) or value.dtype.is_floating_point or \
            value.dtype.is_complex or value.dtype == torch.bool:
        raise TypeError(f"'{name}' must be an integer tensor, got "
                        f"{getattr(value, 'dtype', type(value).__name__)}")
    if value.dim() != 1:
        raise ValueError(f"'{name}' must be 1-dimensional, got shape {list(value.shape)}")


def _index_from_ptr(ptr: Tensor, num_elements: int) -> Tensor:
    """Group of each element from CSR boundaries ``ptr`` (``[G + 1]``, sorted)."""
    counts = ptr[1:] - ptr[:-1]
    if ptr.numel() == 0 or int(ptr[0]) != 0 or int(ptr[-1]) != num_elements or \
            bool((counts < 0).any()):
        raise ValueError(f"'ptr' must rise from 0 to the number of elements ({num_elements}), "
                         f"got {ptr.tolist() if ptr.numel() <= 10 else list(ptr.shape)}")
    groups = torch.arange(counts.numel(), device=ptr.device)
    return groups.repeat_interleave(counts)


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def _plain_or_mlp(module: torch.nn.Module | None
                  ) -> tuple[torch.nn.Module | None, torch.nn.Module | None]:
    """``(module, None)``, or ``(None, module)`` for a PyG ``MLP`` (called with the batch)."""
    if isinstance(module, MLP):
        return None, module
    return module, None


def _segment_softmax(gate: Tensor, index: Tensor, dim_size: int, dim: int) -> Tensor:
    """Softmax of ``gate`` along ``dim`` within the groups given by ``index``.

    Every other dimension is treated as an independent "head": ``gate`` is moved to
    ``[N, *]``, flattened to ``[N, K]`` for :func:`pyg_attn.ops.edge_softmax` and
    shaped back.
    """
    moved = gate.movedim(dim, 0)
    flat = moved.reshape(moved.size(0), math.prod(moved.shape[1:]))
    weights = edge_softmax(flat, index, dim_size) if flat.numel() else flat
    return weights.reshape(moved.shape).movedim(0, dim)


class AttentionPooling(Aggregation):
    r"""Soft attention pooling from the `"Graph Matching Networks for Learning
    the Similarity of Graph Structured Objects" <https://arxiv.org/abs/1904.12787>`_
    paper, a drop-in replacement of
    :class:`torch_geometric.nn.aggr.AttentionalAggregation` whose softmax runs on
    :func:`pyg_attn.ops.edge_softmax`.

    .. math::
        \mathbf{r}_g = \sum_{n \,:\, \text{index}_n = g} a_n \cdot
        h_{\mathbf{\Theta}}(\mathbf{x}_n), \qquad
        a_n = \frac{\exp h_{\mathrm{gate}}(\mathbf{x}_n)}
        {\sum_{m \,:\, \text{index}_m = g} \exp h_{\mathrm{gate}}(\mathbf{x}_m)},

    where :math:`h_{\mathrm{gate}}` scores each node (one score, or one per output
    feature) and :math:`h_{\mathbf{\Theta}}` (identity if ``nn`` is ``None``)
    transforms it.  The weights :math:`a_n` of each group (graph) sum to 1; a group
    without elements gets a zero output.  The softmax subtracts each group's
    maximum, so large scores do not overflow; a score of ``-inf`` gets weight 0.
    The same weights give the same output as PyG's layer (to float rounding), and
    the parameters have the same names, so a PyG ``state_dict`` loads unchanged.
    Like any :class:`~torch_geometric.nn.aggr.Aggregation` it can be passed as
    ``aggr=`` to a :class:`~torch_geometric.nn.conv.MessagePassing` layer, where
    the groups are destination nodes and the elements their incoming messages.

    Shapes:
        - **input:** node features :math:`(*, |\mathcal{V}|, F_{in})`, index
          (graph of each node) :math:`(|\mathcal{V}|)` or ``ptr``
          :math:`(|\mathcal{G}| + 1)`
        - **output:** graph features :math:`(*, |\mathcal{G}|, F_{out})`; with
          ``return_attention_weights=True`` also the weights, shaped like the
          gate: :math:`(*, |\mathcal{V}|, 1)` or :math:`(*, |\mathcal{V}|, F_{out})`

    Parameters
    ----------
    gate_nn : torch.nn.Module
        A neural network :math:`h_{\mathrm{gate}}` mapping features ``[-1, in_channels]`` to
        ``[-1, 1]`` (node-level gating) or ``[-1, out_channels]`` (feature-level gating, one
        softmax per feature). A :class:`torch_geometric.nn.models.MLP` is called with the
        batch vector, as in PyG.
    nn : torch.nn.Module, optional
        A neural network :math:`h_{\mathbf{\Theta}}` mapping ``[-1, in_channels]`` to
        ``[-1, out_channels]`` before the weighted sum. (default: :obj:`None`)

    Examples
    --------
    >>> import torch
    >>> pool = AttentionPooling(gate_nn=torch.nn.Linear(2, 1))
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    >>> batch = torch.tensor([0, 0, 1])
    >>> out, weights = pool(x, batch, return_attention_weights=True)
    >>> out.shape, weights.shape
    (torch.Size([2, 2]), torch.Size([3, 1]))
    >>> round(float(weights[:2].sum()), 4)  # graph 0's two nodes
    1.0
    >>> out[1].tolist()
    [2.0, 2.0]
    """

    def __init__(self, gate_nn: torch.nn.Module, nn: torch.nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(gate_nn, torch.nn.Module):
            raise TypeError(f"'gate_nn' must be a torch.nn.Module, got {type(gate_nn).__name__}")
        if nn is not None and not isinstance(nn, torch.nn.Module):
            raise TypeError(f"'nn' must be a torch.nn.Module or None, got {type(nn).__name__}")
        # Attribute names as in PyG, so that state_dicts are interchangeable.
        self.gate_nn, self.gate_mlp = _plain_or_mlp(gate_nn)
        self.nn, self.mlp = _plain_or_mlp(nn)

    def reset_parameters(self) -> None:
        reset(self.gate_nn)
        reset(self.gate_mlp)
        reset(self.nn)
        reset(self.mlp)

    def forward(self, x: Tensor, index: Tensor | None = None, ptr: Tensor | None = None,
                dim_size: int | None = None, dim: int = -2,
                return_attention_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        r"""Pools the elements of ``x`` along ``dim`` into ``dim_size`` groups.

        Parameters
        ----------
        x : torch.Tensor
            The features to pool.
        index : torch.Tensor, optional
            Group of each element along ``dim`` (any order). One of ``index`` or ``ptr`` is
            needed; called without both (through ``__call__``) everything is one group.
        ptr : torch.Tensor, optional
            CSR boundaries of sorted groups, used when ``index`` is not given.
            (default: :obj:`None`)
        dim_size : int, optional
            Number of groups; groups without elements (empty graphs) get zeros.
            (default: ``index.max() + 1``)
        dim : int, optional
            The dimension to pool. (default: :obj:`-2`)
        return_attention_weights : bool, optional
            Also return the weights :math:`a_n`, shaped like the gate's output.
            (default: :obj:`False`)

        Returns
        -------
        torch.Tensor or (torch.Tensor, torch.Tensor)
            The pooled features (``dim`` of size ``dim_size``), with the weights if
            ``return_attention_weights``.
        """
        _check_index("index", index)
        _check_index("ptr", ptr)
        if index is None and ptr is None:
            raise ValueError("one of 'index' or 'ptr' must be given")
        num_elements = x.size(dim)
        if index is None:
            assert ptr is not None
            index = _index_from_ptr(ptr, num_elements)
        elif index.numel() != num_elements:
            raise ValueError(f"'index' has {index.numel()} entries but 'x' has "
                             f"{num_elements} elements along dim {dim}")
        if dim_size is None:
            dim_size = int(index.max()) + 1 if index.numel() else 0
        elif index.numel() and dim_size <= int(index.max()):
            raise ValueError(f"'dim_size' is {dim_size} but 'index' holds group "
                             f"{int(index.max())}")

        if self.gate_mlp is not None:
            gate = self.gate_mlp(x, batch=index, batch_size=dim_size)
        else:
            assert self.gate_nn is not None
            gate = self.gate_nn(x)
        if self.mlp is not None:
            x = self.mlp(x, batch=index, batch_size=dim_size)
        elif self.nn is not None:
            x = self.nn(x)
        if gate.dim() != x.dim() or gate.size(dim) != num_elements or \
                not _broadcasts_to(gate.shape, x.shape):
            raise ValueError(f"'gate_nn' must map the input to [..., {num_elements}, 1] or "
                             f"[..., {num_elements}, {x.size(-1)}], got {list(gate.shape)}")

        weights = _segment_softmax(gate, index, dim_size, dim)
        out = self.reduce(weights * x, index, None, dim_size, dim)
        if return_attention_weights:
            return out, weights
        return out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(gate_nn={self.gate_mlp or self.gate_nn}, "
                f"nn={self.mlp or self.nn})")
