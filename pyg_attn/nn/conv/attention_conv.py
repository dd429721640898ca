"""What the attention layers share, in PyG's order of construction and initialisation.

:class:`AttentionConv` checks and stores the arguments every layer has and gives
PyG's ``repr``; :class:`ResidualAttentionConv` adds the output of
:class:`~pyg_attn.nn.GATConv`, :class:`~pyg_attn.nn.GATv2Conv` and
:class:`~pyg_attn.nn.KQVConv`: merged heads, a residual and a bias;
:class:`GATBase` adds what the two GAT layers share: their arguments, self-loop
handling, edge features, ``reset_parameters`` and the attention weights returned.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, zeros

from ...ops import PreparedGraph
from .arguments import check_layer_arguments
from .edges import num_nodes_of, pack_attention, sparse_edge_values
from .message_path import uses_message_path
from .self_loops import FillValue, LoopedGraph, gat_graph, loop_edge_attr

# No ``__all__``: PyG's generated ``propagate`` star-imports the modules of a layer's
# base classes for the type names of ``propagate_type``.


def glorot_linear(in_channels: int, out_channels: int, bias: bool = False) -> Linear:
    """A PyG :class:`~torch_geometric.nn.dense.linear.Linear` with a glorot-initialised
    weight (lazy for ``in_channels=-1``), bias-free by default."""
    return Linear(in_channels, out_channels, bias=bias, weight_initializer="glorot")


def check_sizes(given: tuple[int, int] | None, num_src: int, num_dst: int | None,
                name: str) -> None:
    """Checks node counts against the sizes fixed by the graph (or ``size``)."""
    if given is None:
        return
    if given[0] != num_src or (num_dst is not None and given[1] != num_dst):
        raise ValueError(f"'{name}' has (N_src, N_dst) = {tuple(given)} but the node features "
                         f"give ({num_src}, {num_dst if num_dst is not None else '?'})")


def destination_count(edge_index: Any, num_src: int, num_dst: int | None,
                      size: tuple[int, int] | None = None) -> int:
    """The number of destination nodes, checked against the node features.

    Sparse inputs and prepared graphs bring their sizes; otherwise ``size``, an
    ``EdgeIndex``'s sparse size or the features give it.  ``num_dst`` is ``None``
    without destination features (then ``num_src``, as in PyG).
    """
    fixed = num_nodes_of(edge_index)
    if fixed is not None:
        check_sizes(fixed, num_src, num_dst, "edge_index")
        return fixed[1]
    if size is not None:
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise TypeError(f"'size' must be a pair (N_src, N_dst) or None, got {size!r}")
        size = (int(size[0]), int(size[1]))
        check_sizes(size, num_src, num_dst, "size")
        return size[1]
    num_rows = getattr(edge_index, "num_rows", None)  # an EdgeIndex's sparse size
    num_cols = getattr(edge_index, "num_cols", None)
    if num_rows is not None and num_rows != num_src:
        raise ValueError(f"'edge_index' has {num_rows} source nodes but 'x' has {num_src}")
    if num_cols is None:
        return num_src if num_dst is None else num_dst
    if num_dst is not None and num_cols != num_dst:
        raise ValueError(f"'edge_index' has {num_cols} destination nodes but 'x' has {num_dst}")
    return num_cols


def message_adjacency(looped: LoopedGraph) -> Any:
    """What PyG's ``propagate`` runs over: the looped graph in the caller's format
    (the ``[2, E']`` edge list for a :class:`~pyg_attn.ops.PreparedGraph`)."""
    if isinstance(looped.adjacency, PreparedGraph):
        return looped.edge_index
    return looped.adjacency


class AttentionConv(MessagePassing):
    """Base of the attention layers: ``heads`` heads of ``out_channels`` channels.

    Checks the arguments all layers share (``ValueError`` naming the argument),
    builds the :class:`~torch_geometric.nn.conv.MessagePassing` part with
    ``node_dim=0``, stores the arguments as attributes and adds :attr:`backend`.
    """

    def __init__(self, in_channels: int | tuple[int, int], out_channels: int,
                 heads: int, concat: bool, dropout: float, edge_dim: int | None = None,
                 **kwargs: Any) -> None:
        check_layer_arguments(out_channels, heads, dropout, edge_dim)
        super().__init__(node_dim=0, **kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.dropout = dropout
        #: Backend of the attention op (``None``: automatic; ``"reference"``
        #: for double backward).  A plain attribute: not in the ``state_dict``.
        self.backend: str | None = None

    @property
    def _merged_channels(self) -> int:
        """Output size of the merged heads: ``heads * out_channels`` with ``concat``,
        else ``out_channels``."""
        return self.out_channels * (self.heads if self.concat else 1)

    def _merge_heads(self, out: Tensor) -> Tensor:
        """``[N, H, C]`` -> ``[N, H * C]`` (``concat``) or the heads' mean ``[N, C]``."""
        if self.concat:
            return out.reshape(-1, self.heads * self.out_channels)
        return out.mean(dim=1)

    def _head_vector(self) -> Parameter:
        """An uninitialised ``[1, H, C]`` parameter: one attention vector per head."""
        return Parameter(torch.empty(1, self.heads, self.out_channels))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, "
                f"{self.out_channels}, heads={self.heads})")


class ResidualAttentionConv(AttentionConv):
    """An attention layer whose output is its merged heads, plus an optional
    residual (``residual``) and an optional learnable ``bias``."""

    def __init__(self, in_channels: int | tuple[int, int], out_channels: int,
                 heads: int, concat: bool, dropout: float, residual: bool,
                 edge_dim: int | None = None, **kwargs: Any) -> None:
        super().__init__(in_channels, out_channels, heads, concat, dropout, edge_dim, **kwargs)
        self.residual = residual

    def _register_bias(self, bias: bool) -> None:
        """The output bias (uninitialised; one per merged channel), or ``bias = None``."""
        if bias:
            self.bias = Parameter(torch.empty(self._merged_channels))
        else:
            self.register_parameter("bias", None)

    def _combine(self, out: Tensor, res: Tensor | None) -> Tensor:
        """The layer's output from the attention output ``[N, H, C]``: merged heads
        plus the residual ``res`` and the bias (each where present)."""
        out = self._merge_heads(out)
        if res is not None:
            out = out + res
        if self.bias is not None:
            out = out + self.bias
        return out


class GATBase(ResidualAttentionConv):
    """What :class:`~pyg_attn.nn.GATConv` and :class:`~pyg_attn.nn.GATv2Conv` share.

    Their common arguments, the edge projection ``lin_edge``, the residual
    projection ``res`` and ``bias`` (created after the layer's own projections
    and attention vectors, PyG's order), :meth:`reset_parameters`, and the
    steps of ``forward`` around the attention: residual, node counts, edge
    features of the looped graph, output and attention weights.
    """

    #: Attribute names of the node projections, in PyG's reset order.
    _projection_names: tuple[str, ...] = ()
    #: Attribute names of the attention vectors, in PyG's reset order.
    _attention_names: tuple[str, ...] = ()

    def __init__(self, in_channels: int | tuple[int, int], out_channels: int,
                 heads: int, concat: bool, negative_slope: float, dropout: float,
                 add_self_loops: bool, edge_dim: int | None, fill_value: FillValue,
                 residual: bool, **kwargs: Any) -> None:
        super().__init__(in_channels, out_channels, heads, concat, dropout, residual, edge_dim,
                         **kwargs)
        self.negative_slope = negative_slope
        self.add_self_loops = add_self_loops
        self.edge_dim = edge_dim
        self.fill_value = fill_value

    def _edge_projection(self) -> Linear | None:
        """``lin_edge``: ``edge_dim -> heads * out_channels``, ``None`` without ``edge_dim``."""
        if self.edge_dim is None:
            return None
        return glorot_linear(self.edge_dim, self.heads * self.out_channels)

    def _register_residual_and_bias(self, bias: bool) -> None:
        """``res`` (destination features -> merged heads; ``None`` unless
        ``residual``) and ``bias``, the last parameters PyG creates."""
        if self.residual:
            in_dst = self.in_channels if isinstance(self.in_channels, int) \
                else self.in_channels[1]
            self.res = glorot_linear(in_dst, self._merged_channels)
        else:
            self.register_parameter("res", None)
        self._register_bias(bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for name in (*self._projection_names, "lin_edge", "res"):
            module = getattr(self, name)
            if module is not None:
                module.reset_parameters()
        for name in self._attention_names:
            glorot(getattr(self, name))
        zeros(self.bias)

    def _residual_of(self, x: Any, x_src: Tensor, x_dst: Tensor | None) -> Tensor | None:
        """PyG's skip connection: ``res(x)`` for one tensor, ``res(x_dst)`` for a pair
        (none without ``x_dst``)."""
        if self.res is None:
            return None
        if isinstance(x, Tensor):
            return self.res(x_src)
        return None if x_dst is None else self.res(x_dst)

    def _loop_graph(self, edge_index: Any, num_src: int, num_dst: int,
                    edge_attr: Tensor | None,
                    return_attention_weights: bool | None) -> LoopedGraph:
        """:func:`~pyg_attn.nn.conv.self_loops.gat_graph` of ``edge_index``; under
        ``torch.compile``, with the input's loops masked instead of removed
        (``static_shapes``) where only the attention output is needed (no returned
        weights, edge features or message path), so the trace needs no
        data-dependent size."""
        static = (torch.compiler.is_compiling() and not return_attention_weights
                  and edge_attr is None and self.lin_edge is None
                  and not uses_message_path(self))
        return gat_graph(edge_index, num_src, num_dst, self.add_self_loops, static)

    def _looped_edge_attr(self, looped: LoopedGraph, edge_index: Any,
                          edge_attr: Tensor | None) -> Tensor | None:
        """``[E', D]`` edge features of the looped graph (loops filled with
        ``fill_value``), from ``edge_attr`` or the values of a sparse input;
        ``None`` when there are none."""
        if edge_attr is None:
            edge_attr = sparse_edge_values(edge_index)
        if edge_attr is None:
            return None
        edge_attr = loop_edge_attr(looped, edge_attr, self.fill_value)
        return edge_attr.view(-1, 1) if edge_attr.dim() == 1 else edge_attr

    def _attention_output(self, out: Tensor, res: Tensor | None, looped: LoopedGraph,
                          alpha: Tensor | None, return_attention_weights: bool | None
                          ) -> Tensor | tuple[Tensor, Any]:
        """:meth:`_combine`, with the attention weights ``alpha`` in the form PyG
        returns them for the input type if ``return_attention_weights``."""
        out = self._combine(out, res)
        if return_attention_weights:
            assert alpha is not None, "the layers compute alpha when it is returned"
            return out, pack_attention(looped.adjacency, looped.returned_edge_index, alpha)
        return out
