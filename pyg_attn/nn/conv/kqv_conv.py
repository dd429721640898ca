"""The key/query/value node update as a message-passing layer."""
from __future__ import annotations

import math
from typing import Any

from torch import Tensor
from torch_geometric.nn.inits import zeros

from ...ops import PreparedGraph, graph_attention
from ...ops.graph_build import as_prepared
from .attention_conv import ResidualAttentionConv, glorot_linear
from .edges import (
    check_adjacency,
    is_sparse_adjacency,
    num_nodes_of,
    pack_attention,
    sparse_graph,
    split_input,
)


class KQVConv(ResidualAttentionConv):
    r"""The key/query/value node update: every node attends over its in-neighbours.

    Each node projects its features to a query ("what am I looking for"), a key
    ("what do I have") and a value ("what do I reveal"); node :math:`i` scores
    every source :math:`j` of an edge :math:`j \to i`, normalises the scores with
    a softmax and adds the weighted values to its features:

    .. math::
        q_i = W_q x_i,\quad k_j = W_k x_j,\quad v_j = W_v x_j,\qquad
        \alpha_{ij} = \operatorname{softmax}_{j \in \mathcal{N}(i)}
            \left(\text{scale}\cdot q_i^\top k_j\right)

    .. math::
        x_i' = x_i + \sum_{j \in \mathcal{N}(i)} \alpha_{ij} v_j  (+\, b)

    All updates are computed from the old features first (a synchronous
    update).  A node without incoming edges keeps ``x_i`` (plus the bias).
    With ``heads=1, scale=1.0, residual=True, bias=False`` this is exactly the
    original formulation.  :math:`\mathcal{N}(i)` is the *set* of in-neighbours:
    a duplicate edge counts once (the deduplicated graph is built per call, or
    kept with a :class:`~pyg_attn.ops.PreparedGraph` passed as ``edge_index``).
    Self-loops are kept as given; none are
    added.  ``layer.backend`` (a plain attribute, not in the ``state_dict``)
    picks the backend of :func:`~pyg_attn.ops.graph_attention` (``None``:
    automatic; ``"reference"`` for double backward).

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V}_s|, F_s), (|\mathcal{V}_t|, F_t))`, edge indices
          :math:`(2, |\mathcal{E}|)` (or a sparse adjacency, row = destination)
        - **output:** :math:`(|\mathcal{V}_t|, H \cdot F_{out})` (or
          :math:`F_{out}` if ``concat=False``); with attention weights
          ``(edge_index, alpha [E_unique, H])`` of the deduplicated edges.

    Parameters
    ----------
    in_channels : int or tuple
        input size, ``-1`` for lazy initialisation, or ``(in_src, in_dst)`` for bipartite
        graphs.
    out_channels : int
        size of each head's query/key/value.
    heads : int, optional
        number of attention heads. (default: ``1``)
    concat : bool, optional
        concatenate heads (``heads * out_channels`` outputs) or average them.
        (default: ``True``)
    scale : float, optional
        score scale, ``None`` for :math:`1/\sqrt{\text{out\_channels}}`. (default: ``None``)
    residual : bool, optional
        add the (projected if sizes differ) input. (default: ``True``)
    bias : bool, optional
        learn an additive output bias. (default: ``True``)
    dropout : float, optional
        attention dropout probability. (default: ``0.0``)
    **kwargs
        passed to :class:`~torch_geometric.nn.conv.MessagePassing`.
    """

    def __init__(self, in_channels: int | tuple[int, int], out_channels: int,
                 heads: int = 1, concat: bool = True, scale: float | None = None,
                 residual: bool = True, bias: bool = True, dropout: float = 0.0,
                 **kwargs: Any) -> None:
        kwargs.setdefault("aggr", "add")
        super().__init__(in_channels, out_channels, heads, concat, dropout, residual, **kwargs)
        self.scale = scale

        in_src, in_dst = (in_channels, in_channels) if isinstance(in_channels, int) \
            else in_channels
        total = heads * out_channels
        self.out_dim = self._merged_channels
        self.lin_query = glorot_linear(in_dst, total)
        self.lin_key = glorot_linear(in_src, total)
        self.lin_value = glorot_linear(in_src, total)
        if residual and in_dst != self.out_dim:
            self.lin_skip = glorot_linear(in_dst, self.out_dim)
        else:
            self.register_module("lin_skip", None)
        self._register_bias(bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin_query.reset_parameters()
        self.lin_key.reset_parameters()
        self.lin_value.reset_parameters()
        if self.lin_skip is not None:
            self.lin_skip.reset_parameters()
        zeros(self.bias)

    def forward(self, x: Tensor | tuple[Tensor, Tensor], edge_index: Any,
                return_attention_weights: bool | None = None) -> Tensor | tuple[Tensor, Any]:
        """Runs the update.

        Parameters
        ----------
        x : torch.Tensor or (torch.Tensor, torch.Tensor)
            node features ``[N, F]`` or a pair ``(x_src, x_dst)``.
        edge_index : torch.Tensor, SparseTensor or PreparedGraph
            ``[2, E]`` LongTensor, ``SparseTensor``, ``torch.sparse`` COO/CSR adjacency
            (row = destination) or a ``PreparedGraph``.
        return_attention_weights : bool, optional
            if ``True`` also return the attention weights, as ``(edge_index, alpha)`` for
            index inputs (the deduplicated edges), a ``SparseTensor`` / ``(adj, alpha)`` for
            sparse inputs. (default: ``None``)

        Returns
        -------
        torch.Tensor or (torch.Tensor, attention)
            ``out`` ``[N_dst, H * C]`` (``[N_dst, C]`` with ``concat=False``), or
            ``(out, attention)``.
        """
        x_src, x_dst = split_input(x)
        x_dst = x_src if x_dst is None else x_dst
        heads, channels = self.heads, self.out_channels
        given: Tensor | PreparedGraph
        if is_sparse_adjacency(edge_index):
            given = sparse_graph(edge_index)
        else:
            check_adjacency(edge_index)
            given = edge_index
        sizes = num_nodes_of(given)
        num_src, num_dst = sizes if sizes is not None else (x_src.size(0), x_dst.size(0))
        graph = as_prepared(given, num_src, num_dst, unique=True)
        query = self.lin_query(x_dst).view(-1, heads, channels)
        key = self.lin_key(x_src).view(-1, heads, channels)
        value = self.lin_value(x_src).view(-1, heads, channels)
        out, alpha = graph_attention(
            query, key, value, graph,
            scale=1.0 / math.sqrt(channels) if self.scale is None else self.scale,
            dropout=self.dropout, training=self.training, return_attention=True,
            backend=self.backend)
        res: Tensor | None = None
        if self.residual:
            res = x_dst if self.lin_skip is None else self.lin_skip(x_dst)
        out = self._combine(out, res)
        if not return_attention_weights:
            return out
        return out, pack_attention(edge_index, graph.edge_index, alpha)
