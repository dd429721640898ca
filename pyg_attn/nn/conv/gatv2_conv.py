"""GATv2Conv: a drop-in replacement of PyG's layer running on the fused GATv2 op."""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor
from torch_geometric.typing import OptTensor, PairTensor
from torch_geometric.utils import softmax

from ...ops import gatv2_attention
from .attention_conv import (
    GATBase,
    destination_count,
    glorot_linear,
    message_adjacency,
)
from .edges import split_input
from .message_path import uses_message_path
from .projection import project, project_many


class GATv2Conv(GATBase):
    r"""The GATv2 operator from the `"How Attentive are Graph Attention
    Networks?" <https://arxiv.org/abs/2105.14491>`_ paper, a drop-in
    replacement of :class:`torch_geometric.nn.conv.GATv2Conv` running on the
    fused :func:`pyg_attn.ops.gatv2_attention` kernel.  It fixes the static
    attention problem of :class:`GATConv`: every node can attend to any other
    node.

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i) \cup \{ i \}}
        \alpha_{i,j}\mathbf{\Theta}_{s}\mathbf{x}_{j},

    where the attention coefficients :math:`\alpha_{i,j}` are computed as

    .. math::
        \alpha_{i,j} =
        \frac{
        \exp\left(\mathbf{a}^{\top}\mathrm{LeakyReLU}\left(
        \mathbf{\Theta}_{t} \mathbf{x}_i + \mathbf{\Theta}_{s} \mathbf{x}_j
        + \mathbf{\Theta}_{e} \mathbf{e}_{i,j}
        \right)\right)}
        {\sum_{k \in \mathcal{N}(i) \cup \{ i \}}
        \exp\left(\mathbf{a}^{\top}\mathrm{LeakyReLU}\left(
        \mathbf{\Theta}_{t} \mathbf{x}_i + \mathbf{\Theta}_{s} \mathbf{x}_k
        + \mathbf{\Theta}_{e} \mathbf{e}_{i,k}
        \right)\right)},

    the edge term being present only with ``edge_dim``
    (:math:`\mathbf{\Theta}_{s}` is ``lin_l``, :math:`\mathbf{\Theta}_{t}`
    ``lin_r``).

    Same constructor, parameters (``state_dict`` keys), ``reset_parameters()``,
    ``repr``, ``forward`` signature and return values as PyG 2.8's layer, so
    ``layer.load_state_dict(pyg_layer.state_dict())`` works both ways and, with
    dropout off, outputs match PyG's to float32 rounding.  Differences:

    * **Memory.** The per-edge sum :math:`\Theta_t x_i + \Theta_s x_j` is
      recomputed inside the fused kernel (forward and backward) instead of
      being stored; the only ``[E', H, C]`` tensor is the projected
      ``edge_attr`` (with ``edge_dim``), which is that size by nature.
    * **Dropout** (training only) is drawn inside the kernel from a
      counter-based stream; the attention weights returned are always
      *before* dropout (PyG returns them after).
    * **Message path.** When ``explain`` is set or a propagate / message /
      aggregate / edge-update hook is registered (PyG's explainers), or with
      ``flow="target_to_source"``, the layer runs through :meth:`propagate`
      exactly as PyG does, materialising ``[E', H, C]`` tensors (only then);
      hooks see ``alpha`` after dropout.
    * **Every input is new**: self-loop handling is built on each call in one
      O(E + N) pass (no implicit cache, never stale).  Edge features with a
      ``SparseTensor`` input and
      ``add_self_loops=True`` are supported (PyG raises).  Passing
      ``edge_attr`` to a layer built without ``edge_dim`` raises a
      ``ValueError`` (PyG: an ``AssertionError``); the values of a sparse
      input are then ignored.
    * **Double backward** is not supported by the fused CPU backend (a clear
      ``RuntimeError``); set ``layer.backend = "reference"`` for it.
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
    share_weights : bool, optional
        If set to :obj:`True`, the same matrix will be applied to the source and the target
        node of every edge, *i.e.* :math:`\mathbf{\Theta}_{s} = \mathbf{\Theta}_{t}`.
        (default: :obj:`False`)
    residual : bool, optional
        If set to :obj:`True`, the layer will add a learnable skip-connection.
        (default: :obj:`False`)
    **kwargs
        Additional arguments of :class:`torch_geometric.nn.conv.MessagePassing`.
    """

    propagate_type = {"x": PairTensor, "alpha": Tensor}
    edge_updater_type = {"x": PairTensor, "edge_feat": OptTensor}
    _projection_names = ("lin_l", "lin_r")
    _attention_names = ("att",)

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
        share_weights: bool = False,
        residual: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(in_channels, out_channels, heads, concat, negative_slope, dropout,
                         add_self_loops, edge_dim, fill_value, residual, **kwargs)
        self.share_weights = share_weights

        in_src, in_dst = (in_channels, in_channels) if isinstance(in_channels, int) \
            else in_channels
        self.lin_l = glorot_linear(in_src, heads * out_channels, bias)
        self.lin_r = self.lin_l if share_weights else \
            glorot_linear(in_dst, heads * out_channels, bias)

        self.att = self._head_vector()
        self.lin_edge = self._edge_projection()
        self._register_residual_and_bias(bias)
        self.reset_parameters()

    def forward(
        self,
        x: Tensor | PairTensor,
        edge_index: Any,
        edge_attr: OptTensor = None,
        return_attention_weights: bool | None = None,
    ) -> Tensor | tuple[Tensor, Any]:
        r"""Runs the forward pass of the module.

        Parameters
        ----------
        x : torch.Tensor or (torch.Tensor, torch.Tensor)
            The input node features.
        edge_index : torch.Tensor or SparseTensor
            The edge indices (``[2, E]``, an ``EdgeIndex``, a ``SparseTensor``, a
            ``torch.sparse`` COO/CSR adjacency with row = destination, or a
            :class:`~pyg_attn.ops.PreparedGraph`).
        edge_attr : torch.Tensor, optional
            The edge features ``[E, D]`` (``[E]`` for ``D = 1``), in the input's edge order.
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
        H, C = self.heads, self.out_channels
        x_in_l, x_in_r = split_input(x)
        if x_in_r is None and not isinstance(x, Tensor):
            raise ValueError("'x' must give destination features: GATv2Conv needs "
                             "(x_src, x_dst) with x_dst not None")
        res = self._residual_of(x, x_in_l, x_in_r)
        if x_in_r is None and not self.share_weights:  # one product for both
            x_l, x_r = (h.view(-1, H, C) for h in project_many([self.lin_l, self.lin_r], x_in_l))
        else:
            x_l = project(self.lin_l, x_in_l).view(-1, H, C)
            x_r = x_l if x_in_r is None else project(self.lin_r, x_in_r).view(-1, H, C)

        num_src = x_l.size(0)
        num_dst = destination_count(edge_index, num_src, x_r.size(0))
        looped = self._loop_graph(edge_index, num_src, num_dst, edge_attr,
                                 return_attention_weights)
        if self.lin_edge is None and edge_attr is not None:
            raise ValueError("'edge_attr' was given but the layer has no edge features "
                             "(construct it with 'edge_dim')")
        edge_attr = None if self.lin_edge is None else \
            self._looped_edge_attr(looped, edge_index, edge_attr)
        edge_feat = None if edge_attr is None or self.lin_edge is None else \
            self.lin_edge(edge_attr).view(-1, H, C)

        if uses_message_path(self):  # also for flow='target_to_source'
            adj = message_adjacency(looped)
            alpha = self.edge_updater(adj, x=(x_l, x_r), edge_feat=edge_feat)
            weights = F.dropout(alpha, p=self.dropout, training=self.training)
            out = self.propagate(adj, x=(x_l, x_r), alpha=weights)
        else:
            need_alpha = bool(return_attention_weights)
            result = gatv2_attention(
                x_l, x_r, self.att, looped.graph, negative_slope=self.negative_slope,
                edge_feat=edge_feat, edge_mask=looped.edge_mask, dropout=self.dropout,
                training=self.training, return_attention=need_alpha, backend=self.backend)
            out, alpha = result if need_alpha else (result, None)
        return self._attention_output(out, res, looped, alpha, return_attention_weights)

    def edge_update(self, x_j: Tensor, x_i: Tensor, edge_feat: OptTensor, index: Tensor,
                    ptr: OptTensor, dim_size: int | None) -> Tensor:
        # Message path only (explainers, hooks): PyG's computation, without dropout.
        x = x_i + x_j
        if edge_feat is not None:
            x = x + edge_feat
        x = F.leaky_relu(x, self.negative_slope)
        alpha = (x * self.att).sum(dim=-1)
        return softmax(alpha, index, ptr, dim_size)

    def message(self, x_j: Tensor, alpha: Tensor) -> Tensor:
        return x_j * alpha.unsqueeze(-1)
