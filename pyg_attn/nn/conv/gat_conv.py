"""GATConv: a drop-in replacement of PyG's layer running on the fused GAT op."""
from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parameter import UninitializedParameter
from torch_geometric.typing import OptPairTensor, OptTensor
from torch_geometric.utils import softmax

from ...ops import gat_attention
from ...ops.attention import select_backend
from ...ops.node_logits import node_logits
from .attention_conv import (
    GATBase,
    destination_count,
    glorot_linear,
    message_adjacency,
)
from .edges import split_input
from .head_dropout import DROPOUT_SCHEMES, headwise_dropout_projection
from .message_path import uses_message_path
from .projection import project


def fold_attention(weight: Tensor, att: Tensor) -> Tensor:
    r"""``M [H, D]`` with ``(x @ M.T)[n, h] = sum_c att[h, c] (x W^T)[n, h, c]``.

    For a bias-free projection ``W [H * C, D]`` and an attention vector
    ``att [1, H, C]``, the per-head logits ``(lin(x).view(-1, H, C) * att).sum(-1)``
    equal ``x @ M.T`` with ``M[h] = sum_c att[h, c] W[h * C + c]``: an ``[N, H]``
    result without the ``[N, H, C]`` product, in forward and in backward (the
    edge logits, whose features are never projected).
    """
    heads, channels = att.shape[-2], att.shape[-1]
    return (weight.view(heads, channels, -1) * att.view(heads, channels, 1)).sum(dim=1)


def check_input_dropout(in_channels: int | tuple[int, int], residual: bool,
                        input_dropout: float, dropout_scheme: str) -> None:
    """ValueErrors for GATConv's ``input_dropout`` / ``dropout_scheme`` arguments."""
    if not isinstance(input_dropout, (int, float)) or not 0.0 <= input_dropout <= 1.0:
        raise ValueError(f"'input_dropout' must be a probability in [0, 1], got {input_dropout!r}")
    if dropout_scheme not in DROPOUT_SCHEMES:
        raise ValueError(f"'dropout_scheme' must be one of {list(DROPOUT_SCHEMES)}, got "
                         f"{dropout_scheme!r}")
    if dropout_scheme == "per_head":
        sizes = in_channels if isinstance(in_channels, (tuple, list)) else (in_channels,)
        if residual or any(size <= 0 for size in sizes):
            raise ValueError("dropout_scheme='per_head' needs residual=False and a known "
                             f"in_channels, got residual={residual}, in_channels={in_channels}")


class GATConv(GATBase):
    r"""The graph attentional operator from the `"Graph Attention Networks"
    <https://arxiv.org/abs/1710.10903>`_ paper, a drop-in replacement of
    :class:`torch_geometric.nn.conv.GATConv` running on the fused
    :func:`pyg_attn.ops.gat_attention` kernel.

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i) \cup \{ i \}}
        \alpha_{i,j}\mathbf{\Theta}_s\mathbf{x}_{j},

    where the attention coefficients :math:`\alpha_{i,j}` are computed as

    .. math::
        \alpha_{i,j} =
        \frac{
        \exp\left(\mathrm{LeakyReLU}\left(
        \mathbf{a}^{\top}_{s} \mathbf{\Theta}_{s}\mathbf{x}_j
        + \mathbf{a}^{\top}_{t} \mathbf{\Theta}_{t}\mathbf{x}_i
        + \mathbf{a}^{\top}_{e} \mathbf{\Theta}_{e} \mathbf{e}_{i,j}
        \right)\right)}
        {\sum_{k \in \mathcal{N}(i) \cup \{ i \}}
        \exp\left(\mathrm{LeakyReLU}\left(
        \mathbf{a}^{\top}_{s} \mathbf{\Theta}_{s}\mathbf{x}_k
        + \mathbf{a}^{\top}_{t}\mathbf{\Theta}_{t}\mathbf{x}_i
        + \mathbf{a}^{\top}_{e} \mathbf{\Theta}_{e} \mathbf{e}_{i,k}
        \right)\right)},

    the edge term being present only with ``edge_dim``.  If the graph is not
    bipartite, :math:`\mathbf{\Theta}_{s} = \mathbf{\Theta}_{t}`.

    Same constructor, parameters (``state_dict`` keys), ``reset_parameters()``,
    ``repr``, ``forward`` signature and return values as PyG 2.8's layer, so
    ``layer.load_state_dict(pyg_layer.state_dict())`` works both ways and, with
    dropout off, outputs match PyG's to float32 rounding.  Differences:

    * **Memory.** The scores need only per-node scalars
      :math:`\mathbf{a}^{\top}\mathbf{\Theta}\mathbf{x}` and the edge term is
      computed as ``edge_attr @ (Theta_e^T a_e)``, so no ``[E, H, C]`` tensor
      exists in forward or backward.
    * **Dropout** (training only) is drawn inside the kernel from a
      counter-based stream seeded from torch's generator; the attention weights
      returned are always *before* dropout (PyG returns them after).
    * **Message path.** When ``explain`` is set (GNNExplainer, PGExplainer,
      CaptumExplainer) or a propagate / message / aggregate / edge-update hook
      is registered (AttentionExplainer), or with ``flow="target_to_source"``,
      the layer runs through :meth:`propagate` exactly as PyG does,
      materialising the ``[E', H, C]`` messages (only then); hooks see
      ``alpha`` after dropout, as with PyG.
    * **Every input is new**: self-loop handling and the CSR/CSC are built on
      each call in one O(E + N) pass (no implicit cache, so an in-place edit of
      ``edge_index`` is never served stale); pass a
      :class:`~pyg_attn.ops.PreparedGraph` to reuse a graph explicitly.
      Edge features of a ``SparseTensor`` or an explicit ``edge_attr`` with a
      ``torch.sparse`` input are supported with ``add_self_loops=True`` (PyG
      raises there), in the input's stored edge order.
    * **Double backward** (``create_graph=True``) is not supported by the
      fused CPU backend (a clear ``RuntimeError``); set
      ``layer.backend = "reference"`` for higher-order gradients.
    * ``edge_index`` may also be a :class:`~pyg_attn.ops.PreparedGraph`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V_s}|, F_{s}), (|\mathcal{V_t}|, F_{t}))`
          if bipartite,
          edge indices :math:`(2, |\mathcal{E}|)` (or a ``SparseTensor`` /
          ``torch.sparse`` adjacency with row = destination, or a
          ``PreparedGraph``),
          edge features :math:`(|\mathcal{E}|, D)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, H * F_{out})` or
          :math:`((|\mathcal{V}_t|, H * F_{out})` if bipartite
          (:math:`F_{out}` if ``concat=False``).
          If :obj:`return_attention_weights=True`, then
          :math:`((|\mathcal{V}|, H * F_{out}),
          ((2, |\mathcal{E}'|), (|\mathcal{E}'|, H)))` for an ``edge_index``
          (:math:`\mathcal{E}'`: the edges after self-loop handling, in the
          order of the returned ``edge_index``), a ``SparseTensor`` holding the
          weights for a ``SparseTensor`` input, and
          ``(adj with the weights as values, weights)`` for a ``torch.sparse``
          input.

    Parameters
    ----------
    in_channels : int or tuple
        Size of each input sample, or :obj:`-1` to derive the size from the first input(s)
        to the forward method. A tuple corresponds to the sizes of source and target
        dimensionalities in case of a bipartite graph.
    out_channels : int
        Size of each output sample.
    heads : int, optional
        Number of multi-head-attentions. (default: :obj:`1`)
    concat : bool, optional
        If set to :obj:`False`, the multi-head attentions are averaged instead of
        concatenated. (default: :obj:`True`)
    negative_slope : float, optional
        LeakyReLU angle of the negative slope. (default: :obj:`0.2`)
    dropout : float, optional
        Dropout probability of the normalized attention coefficients which exposes each node
        to a stochastically sampled neighborhood during training. (default: :obj:`0`)
    add_self_loops : bool, optional
        If set to :obj:`False`, will not add self-loops to the input graph; otherwise
        existing self-loops are removed and one is appended per node. (default: :obj:`True`)
    edge_dim : int, optional
        Edge feature dimensionality (in case there are any). (default: :obj:`None`)
    fill_value : float or torch.Tensor or str, optional
        The way to generate edge features of self-loops (in case :obj:`edge_dim != None`).
        If given as :obj:`float` or :class:`torch.Tensor`, edge features of self-loops will
        be directly given by :obj:`fill_value`. If given as :obj:`str`, edge features of
        self-loops are computed by aggregating all features of edges that point to the
        specific node, according to a reduce operation. (:obj:`"add"`, :obj:`"mean"`,
        :obj:`"min"`, :obj:`"max"`, :obj:`"mul"`). (default: :obj:`"mean"`)
    bias : bool, optional
        If set to :obj:`False`, the layer will not learn an additive bias.
        (default: :obj:`True`)
    residual : bool, optional
        If set to :obj:`True`, the layer will add a learnable skip-connection.
        (default: :obj:`False`)
    input_dropout : float, optional
        Dropout probability of the input node features, applied in training mode only (not a
        PyG argument; PyG's examples drop the input outside the layer). (default: :obj:`0`)
    dropout_scheme : str, optional
        Where ``input_dropout`` falls. :obj:`"shared"`: one mask on the input, seen by every
        head. :obj:`"per_head"`: the GAT paper's reference code: each head draws its own
        input mask, and each head's projected features are dropped again (probability
        ``input_dropout``) after its attention logits are computed
        (:mod:`~pyg_attn.nn.conv.head_dropout`); needs a known ``in_channels`` and
        ``residual=False``. (default: :obj:`"shared"`)
    **kwargs
        Additional arguments of :class:`torch_geometric.nn.conv.MessagePassing`.
    """

    propagate_type = {"x": OptPairTensor, "alpha": Tensor}
    edge_updater_type = {"alpha": OptPairTensor, "edge_logit": OptTensor}
    _projection_names = ("lin", "lin_src", "lin_dst")
    _attention_names = ("att_src", "att_dst", "att_edge")

    def __init__(
        self,
        in_channels: int | tuple[int, int],
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        add_self_loops: bool = True,
        edge_dim: int | None = None,
        fill_value: float | Tensor | str = "mean",
        bias: bool = True,
        residual: bool = False,
        input_dropout: float = 0.0,
        dropout_scheme: str = "shared",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("aggr", "add")
        super().__init__(in_channels, out_channels, heads, concat, negative_slope, dropout,
                         add_self_loops, edge_dim, fill_value, residual, **kwargs)
        check_input_dropout(in_channels, residual, input_dropout, dropout_scheme)
        self.input_dropout = input_dropout
        self.dropout_scheme = dropout_scheme

        # In case we are operating in bipartite graphs, we apply separate
        # transformations 'lin_src' and 'lin_dst' to source and target nodes:
        self.lin = self.lin_src = self.lin_dst = None
        if isinstance(in_channels, int):
            self.lin = glorot_linear(in_channels, heads * out_channels)
        else:
            self.lin_src = glorot_linear(in_channels[0], heads * out_channels)
            self.lin_dst = glorot_linear(in_channels[1], heads * out_channels)

        # The learnable parameters to compute attention coefficients:
        self.att_src = self._head_vector()
        self.att_dst = self._head_vector()
        self.lin_edge = self._edge_projection()
        if edge_dim is not None:
            self.att_edge = self._head_vector()
        else:
            self.register_parameter("att_edge", None)
        self._register_residual_and_bias(bias)
        self.reset_parameters()

    def forward(
        self,
        x: Tensor | OptPairTensor,
        edge_index: Any,
        edge_attr: OptTensor = None,
        size: tuple[int, int] | None = None,
        return_attention_weights: bool | None = None,
    ) -> Tensor | tuple[Tensor, Any]:
        r"""Runs the forward pass of the module.

        Parameters
        ----------
        x : torch.Tensor or (torch.Tensor, torch.Tensor)
            The input node features (``x_dst`` may be ``None``).
        edge_index : torch.Tensor or SparseTensor
            The edge indices (``[2, E]``, an ``EdgeIndex``, a ``SparseTensor``, a
            ``torch.sparse`` COO/CSR adjacency with row = destination, or a
            :class:`~pyg_attn.ops.PreparedGraph`).
        edge_attr : torch.Tensor, optional
            The edge features ``[E, D]`` (``[E]`` for ``D = 1``), in the input's edge order.
            (default: :obj:`None`)
        size : (int, int), optional
            The shape of the adjacency matrix (ignored for sparse inputs, as in PyG).
            (default: :obj:`None`)
        return_attention_weights : bool, optional
            If set to :obj:`True`, also returns the attention weights (before dropout) in
            the form PyG returns them for the input type: ``(edge_index, alpha)``, a
            ``SparseTensor``, or ``(adj, alpha)`` for ``torch.sparse``. :obj:`False` or
            :obj:`None` returns the output only. (default: :obj:`None`)

        Returns
        -------
        torch.Tensor or (torch.Tensor, attention)
            The node features ``[N_dst, H * C]`` (``[N_dst, C]`` with ``concat=False``),
            with the attention weights (``[E', H]``, in the form above) when
            ``return_attention_weights`` is set.
        """
        x_src, x_dst = split_input(x)
        p_in = self.input_dropout if self.training else 0.0
        per_head = p_in > 0 and self.dropout_scheme == "per_head"
        if p_in > 0 and not per_head:  # "shared": one mask per input, before the heads
            x_src = F.dropout(x_src, p_in)
            x_dst = None if x_dst is None else F.dropout(x_dst, p_in)
        res = self._residual_of(x, x_src, x_dst)

        # Projections as in PyG:
        lin_src = self.lin if self.lin is not None else self.lin_src
        lin_dst = self.lin if self.lin is not None else self.lin_dst
        assert lin_src is not None and lin_dst is not None
        h_src, h_dst, alpha_src, alpha_dst = self._projections(x, x_src, x_dst, lin_src, lin_dst,
                                                               per_head)
        if per_head:
            h_src = F.dropout(h_src, p_in)  # the features aggregated

        num_src = h_src.size(0)
        num_dst = destination_count(edge_index, num_src, None if h_dst is None else h_dst.size(0),
                                    size)
        looped = self._loop_graph(edge_index, num_src, num_dst, edge_attr,
                                 return_attention_weights)
        edge_attr = None if self.lin_edge is None else \
            self._looped_edge_attr(looped, edge_index, edge_attr)
        edge_logit = None if edge_attr is None else self._edge_logit(edge_attr)

        if uses_message_path(self):  # also for flow='target_to_source'
            adj = message_adjacency(looped)
            alpha = self.edge_updater(adj, alpha=(alpha_src, alpha_dst), edge_logit=edge_logit,
                                      size=(num_src, num_dst))
            weights = F.dropout(alpha, p=self.dropout, training=self.training)
            out = self.propagate(adj, x=(h_src, h_dst), alpha=weights, size=(num_src, num_dst))
        else:
            if alpha_dst is None:
                alpha_dst = alpha_src.new_zeros(num_dst, self.heads)
            need_alpha = bool(return_attention_weights)
            result = gat_attention(
                alpha_src, alpha_dst, h_src, looped.graph, negative_slope=self.negative_slope,
                edge_logit=edge_logit, edge_mask=looped.edge_mask, dropout=self.dropout,
                training=self.training, return_attention=need_alpha, backend=self.backend)
            out, alpha = result if need_alpha else (result, None)
        return self._attention_output(out, res, looped, alpha, return_attention_weights)

    def _projections(self, x: Tensor | OptPairTensor, x_src: Tensor, x_dst: Tensor | None,
                     lin_src: torch.nn.Module, lin_dst: torch.nn.Module, per_head: bool
                     ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """``(h_src [N_src, H, C], h_dst, alpha_src [N_src, H], alpha_dst)``, the logits
        from :func:`~pyg_attn.ops.node_logits.node_logits` (``h_dst``/``alpha_dst``
        ``None`` without destination features)."""
        h_src = self._project(lin_src, x_src, per_head)
        h_dst: Tensor | None
        if isinstance(x, Tensor):
            h_dst = h_src if lin_dst is lin_src else self._project(lin_dst, x_src, per_head)
        else:
            h_dst = None if x_dst is None else self._project(lin_dst, x_dst, per_head)
        fused = select_backend(self.backend, h_src.device) == "cpu"
        if h_dst is h_src:  # both logits in one pass
            alpha_src, alpha_dst = node_logits(h_src, self.att_src, self.att_dst, fused=fused)
            return h_src, h_dst, alpha_src, alpha_dst
        alpha_src = node_logits(h_src, self.att_src, fused=fused)[0]
        alpha_dst = None if h_dst is None else \
            node_logits(h_dst, self.att_dst, fused=fused)[0]
        return h_src, h_dst, alpha_src, alpha_dst

    def _project(self, lin: torch.nn.Module, x: Tensor, per_head: bool) -> Tensor:
        """``lin(x)`` as ``[N, H, C]``; with ``per_head``, each head through its own
        input dropout mask (:func:`~pyg_attn.nn.conv.head_dropout.headwise_dropout_projection`)."""
        if per_head:
            # torch's stubs type an undeclared Module attribute as Tensor | Module.
            weight = cast(Tensor, lin.weight)
            return headwise_dropout_projection(x, weight, self.heads, self.input_dropout)
        return project(lin, x).view(-1, self.heads, self.out_channels)

    def _edge_logit(self, edge_attr: Tensor) -> Tensor:
        """``a_e . Theta_e e_ij`` per edge and head as ``edge_attr @ M``, ``M [D, H]``."""
        assert self.lin_edge is not None and self.att_edge is not None
        H, C = self.heads, self.out_channels
        weight = self.lin_edge.weight
        if isinstance(weight, UninitializedParameter):
            # First call of a lazy layer: PyG's formula initialises the weight.
            edge = self.lin_edge(edge_attr).view(-1, H, C)
            return (edge * self.att_edge).sum(dim=-1)
        return edge_attr @ fold_attention(weight, self.att_edge).t()

    def edge_update(self, alpha_j: Tensor, alpha_i: OptTensor, edge_logit: OptTensor,
                    index: Tensor, ptr: OptTensor, dim_size: int | None) -> Tensor:
        # Message path only (explainers, hooks): PyG's computation, without dropout.
        alpha = alpha_j if alpha_i is None else alpha_j + alpha_i
        if index.numel() == 0:
            return alpha
        if edge_logit is not None:
            alpha = alpha + edge_logit
        alpha = F.leaky_relu(alpha, self.negative_slope)
        return softmax(alpha, index, ptr, dim_size)

    def message(self, x_j: Tensor, alpha: Tensor) -> Tensor:
        return alpha.unsqueeze(-1) * x_j
