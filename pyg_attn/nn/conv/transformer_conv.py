"""TransformerConv: a drop-in for PyG's graph transformer layer on the fused ops."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.typing import OptTensor, SparseTensor
from torch_geometric.utils import softmax

from ...ops import PreparedGraph, graph_attention, select_backend
from ...ops.graph_build import as_prepared
from .attention_conv import AttentionConv
from .edges import (
    check_adjacency,
    is_sparse_adjacency,
    sparse_edge_values,
    sparse_graph,
    split_input,
)
from .message_path import uses_message_path
from .projection import project, project_attended_rows, project_many

# No ``__all__``: PyG's generated ``propagate`` star-imports this module for the type
# names (``Tensor``, ``OptTensor``) of ``propagate_type``.

class TransformerConv(AttentionConv):
    r"""The graph transformer operator from the `"Masked Label Prediction:
    Unified Message Passing Model for Semi-Supervised Classification"
    <https://arxiv.org/abs/2009.03509>`_ paper, a drop-in replacement of
    :class:`torch_geometric.nn.conv.TransformerConv` running on the fused
    edge-attention op :func:`pyg_attn.ops.graph_attention`.

    .. math::
        \mathbf{x}^{\prime}_i = \mathbf{W}_1 \mathbf{x}_i +
        \sum_{j \in \mathcal{N}(i)} \alpha_{i,j} \mathbf{W}_2 \mathbf{x}_{j},

    where the attention coefficients :math:`\alpha_{i,j}` are computed via
    multi-head dot product attention:

    .. math::
        \alpha_{i,j} = \textrm{softmax} \left(
        \frac{(\mathbf{W}_3\mathbf{x}_i)^{\top} (\mathbf{W}_4\mathbf{x}_j)}
        {\sqrt{d}} \right)

    with :math:`d` = :obj:`out_channels`.  :math:`\mathcal{N}(i)` are the
    sources of the edges :math:`j \to i` (``edge_index[0]`` = source,
    ``edge_index[1]`` = destination) exactly as given: duplicate edges count
    separately, existing self-loops are kept and none are added.  A node
    without incoming edges receives :math:`\mathbf{0}` from the sum (and zero
    attention), i.e. the root term only.

    Same constructor, ``forward`` signature, parameters (``state_dict`` keys
    ``lin_key``, ``lin_query``, ``lin_value``, ``lin_edge``, ``lin_skip``,
    ``lin_beta``), initialisation and ``repr`` as PyG's layer, so
    ``load_state_dict`` works both ways.  Differences from PyG:

    * ``return_attention_weights=False`` returns just the output (PyG returns
      a tuple for any bool); only ``True`` adds the attention weights.
    * The reported attention weights are those *before* dropout (as PyG's
      TransformerConv reports them).  Attention dropout uses the
      counter-based stream of :mod:`pyg_attn.ops.dropout` (seeded from torch's
      default generator), so its masks differ from PyG's
      :func:`torch.nn.functional.dropout` masks.
    * No :math:`[|\mathcal{E}|, H, C]` tensor is built, except the projected
      edge features :math:`\mathbf{W}_6 \mathbf{e}_{ij}` when ``edge_dim`` is
      set (passed to the op once, as both edge key and edge value).  When
      hooks of :class:`~torch_geometric.nn.conv.MessagePassing` are registered
      (e.g. by :class:`~torch_geometric.explain.algorithm.AttentionExplainer`),
      when ``explain`` is set (GNNExplainer and friends apply their edge mask
      to the messages), or with a non-default ``aggr`` / ``flow``, the layer
      instead runs PyG's message path (``propagate`` with the same
      :meth:`message` as PyG, attention dropout by
      :func:`torch.nn.functional.dropout` included), which materialises
      :math:`[|\mathcal{E}|, H, C]` messages and stores the attention in
      ``_alpha`` for the hooks.
    * The fused CPU backend has no double backward: ``create_graph=True``
      raises a :class:`RuntimeError`; set ``conv.backend = "reference"`` (a
      plain attribute, not saved in the ``state_dict``) for higher-order
      gradients.
    * Uncoalesced ``torch.sparse_coo`` adjacencies are rejected (PyG fails on
      them too).  Every input is new: its CSR form is built on each call (no
      implicit cache, never stale); a :class:`~pyg_attn.ops.PreparedGraph`
      passed as ``edge_index`` is the explicit way to reuse one.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V_s}|, F_{s}), (|\mathcal{V_t}|, F_{t}))`
          if bipartite,
          edge indices :math:`(2, |\mathcal{E}|)` (LongTensor or
          :class:`~torch_geometric.EdgeIndex`), or a sparse adjacency
          :math:`(|\mathcal{V_t}|, |\mathcal{V_s}|)` (``SparseTensor`` or
          ``torch.sparse`` COO/CSR, row = destination), or a
          :class:`~pyg_attn.ops.PreparedGraph`,
          edge features :math:`(|\mathcal{E}|, D)` *(optional)*, in the edge
          order of ``edge_index`` (for sparse inputs: their stored order)
        - **output:** node features :math:`(|\mathcal{V}_t|, H * F_{out})` or
          :math:`(|\mathcal{V}_t|, F_{out})` if :obj:`concat=False`; with
          ``return_attention_weights=True`` also
          :math:`(\textrm{edge\_index}, (|\mathcal{E}|, H))` for a LongTensor,
          :class:`~torch_geometric.EdgeIndex` or ``torch.sparse`` input (the
          input returned as given, weights in its edge order), or a
          ``SparseTensor`` holding the weights :math:`(|\mathcal{E}|, H)` as
          values for a ``SparseTensor`` input.

    Parameters
    ----------
    in_channels : int or tuple
        Size of each input sample, or :obj:`-1` to derive the size from the first input(s)
        to the forward method. A tuple corresponds to the sizes of source and target
        dimensionalities.
    out_channels : int
        Size of each output sample.
    heads : int, optional
        Number of multi-head-attentions. (default: :obj:`1`)
    concat : bool, optional
        If set to :obj:`False`, the multi-head attentions are averaged instead of
        concatenated. (default: :obj:`True`)
    beta : bool, optional
        If set, will combine aggregation and skip information via

        .. math::
            \mathbf{x}^{\prime}_i = \beta_i \mathbf{W}_1 \mathbf{x}_i +
            (1 - \beta_i) \underbrace{\left(\sum_{j \in \mathcal{N}(i)}
            \alpha_{i,j} \mathbf{W}_2 \vec{x}_j \right)}_{=\mathbf{m}_i}

        with :math:`\beta_i = \textrm{sigmoid}(\mathbf{w}_5^{\top} [ \mathbf{m}_i,
        \mathbf{W}_1 \mathbf{x}_i, \mathbf{m}_i - \mathbf{W}_1 \mathbf{x}_i ])` (the order
        PyG's code uses). (default: :obj:`False`)
    dropout : float, optional
        Dropout probability of the normalized attention coefficients which exposes each node
        to a stochastically sampled neighborhood during training. (default: :obj:`0`)
    edge_dim : int, optional
        Edge feature dimensionality (in case there are any). Edge features are added to the
        keys after linear transformation, that is, prior to computing the attention dot
        product. They are also added to final values after the same linear transformation.
        The model is:

        .. math::
            \mathbf{x}^{\prime}_i = \mathbf{W}_1 \mathbf{x}_i +
            \sum_{j \in \mathcal{N}(i)} \alpha_{i,j} \left(
            \mathbf{W}_2 \mathbf{x}_{j} + \mathbf{W}_6 \mathbf{e}_{ij}
            \right),

        where the attention coefficients :math:`\alpha_{i,j}` are now computed via:

        .. math::
            \alpha_{i,j} = \textrm{softmax} \left(
            \frac{(\mathbf{W}_3\mathbf{x}_i)^{\top}
            (\mathbf{W}_4\mathbf{x}_j + \mathbf{W}_6 \mathbf{e}_{ij})}
            {\sqrt{d}} \right)

        (default :obj:`None`)
    bias : bool, optional
        If set to :obj:`False`, the layer will not learn an additive bias.
        (default: :obj:`True`)
    root_weight : bool, optional
        If set to :obj:`False`, the layer will not add the transformed root node features to
        the output and the option  :attr:`beta` is set to :obj:`False`.
        (default: :obj:`True`)
    **kwargs
        Additional arguments of :class:`torch_geometric.nn.conv.MessagePassing`.

    Attributes
    ----------
    backend : str, optional
        backend of :func:`pyg_attn.ops.graph_attention` (``None`` = automatic,
        ``"reference"``, ``"cpu"``). Not saved.
    """
    # Explicit, so PyG's generated ``propagate`` never depends on parsing this
    # file's source (PyG's Inspector caches sources by class *name*).
    propagate_type = {"query": Tensor, "key": Tensor, "value": Tensor, "edge_attr": OptTensor}
    _alpha: OptTensor

    def __init__(
        self,
        in_channels: int | tuple[int, int],
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        beta: bool = False,
        dropout: float = 0.,
        edge_dim: int | None = None,
        bias: bool = True,
        root_weight: bool = True,
        **kwargs: Any,
    ) -> None:
        _check_channels("in_channels", in_channels)
        kwargs.setdefault('aggr', 'add')
        super().__init__(in_channels, out_channels, heads, concat, dropout, edge_dim, **kwargs)
        self.beta = beta and root_weight
        self.root_weight = root_weight
        self.edge_dim = edge_dim
        self._alpha = None

        if isinstance(in_channels, int):
            in_channels = (in_channels, in_channels)

        self.lin_key = Linear(in_channels[0], heads * out_channels, bias=bias)
        self.lin_query = Linear(in_channels[1], heads * out_channels, bias=bias)
        self.lin_value = Linear(in_channels[0], heads * out_channels, bias=bias)
        if edge_dim is not None:
            self.lin_edge = Linear(edge_dim, heads * out_channels, bias=False)
        else:
            self.lin_edge = self.register_parameter('lin_edge', None)

        self.lin_skip = Linear(in_channels[1], self._merged_channels, bias=bias)
        if self.beta:
            self.lin_beta = Linear(3 * self._merged_channels, 1, bias=False)
        else:
            self.lin_beta = self.register_parameter('lin_beta', None)

        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin_key.reset_parameters()
        self.lin_query.reset_parameters()
        self.lin_value.reset_parameters()
        if self.edge_dim:
            self.lin_edge.reset_parameters()
        self.lin_skip.reset_parameters()
        if self.beta:
            self.lin_beta.reset_parameters()

    def forward(
        self,
        x: Tensor | tuple[Tensor, Tensor],
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
            The edge indices (``[2, E]`` LongTensor or :class:`~torch_geometric.EdgeIndex`),
            a sparse adjacency (``SparseTensor``, ``torch.sparse`` COO/CSR; row =
            destination) or a :class:`~pyg_attn.ops.PreparedGraph`.
        edge_attr : torch.Tensor, optional
            The edge features, in the edge order of :obj:`edge_index`. For a sparse
            adjacency without it, multi-dimensional stored values are used, as in PyG. Given
            without ``edge_dim``, it is added to the values unprojected (broadcast to
            ``[E, heads, out_channels]``), as in PyG. (default: :obj:`None`)
        return_attention_weights : bool, optional
            If :obj:`True`, also return the attention weights (before dropout) as
            :obj:`(edge_index, alpha)` (``edge_index`` as passed, also for ``torch.sparse``
            inputs; the rebuilt ``[2, E]`` edge list for a ``PreparedGraph``) or as a
            ``SparseTensor`` with ``alpha`` as values.  :obj:`False` or :obj:`None` return
            just the output (unlike PyG, which returns a tuple for :obj:`False`).
            (default: :obj:`None`)

        Returns
        -------
        torch.Tensor or (torch.Tensor, attention)
            The node features ``[N_dst, H * C]`` (``[N_dst, C]`` with ``concat=False``),
            with the attention weights ``[E, H]`` (in the form above) when
            ``return_attention_weights`` is set.
        """
        H, C = self.heads, self.out_channels
        x_src, x_dst = _split_x(x)
        need_alpha = bool(return_attention_weights)

        # One product for the keys, values and (same input) the skip term.
        joint = self.root_weight and x_dst is x_src
        key, value, *skip = project_many(
            [self.lin_key, self.lin_value, *([self.lin_skip] if joint else [])], x_src)
        key, value = key.view(-1, H, C), value.view(-1, H, C)

        if uses_message_path(self):
            query = project(self.lin_query, x_dst).view(-1, H, C)
            index = edge_index.edge_index if isinstance(edge_index, PreparedGraph) else edge_index
            check_adjacency(index)
            out = self.propagate(index, query=query, key=key, value=value, edge_attr=edge_attr)
            alpha = self._alpha
            self._alpha = None
        else:
            out, alpha = self._attend(x_dst, key, value, edge_index, edge_attr, need_alpha)

        out = self._merge_heads(out)
        if self.root_weight:
            x_r = skip[0] if joint else project(self.lin_skip, x_dst)
            if self.lin_beta is not None:
                beta = self.lin_beta(torch.cat([out, x_r, out - x_r], dim=-1))
                beta = beta.sigmoid()
                out = beta * x_r + (1 - beta) * out
            else:
                out = out + x_r

        if not need_alpha:
            return out
        assert alpha is not None
        if isinstance(edge_index, SparseTensor):
            return out, edge_index.set_value(alpha, layout='coo')
        if isinstance(edge_index, PreparedGraph):
            return out, (edge_index.edge_index, alpha)
        return out, (edge_index, alpha)

    # ------------------------------------------------------------------ fused path
    def _attend(self, x_dst: Tensor, key: Tensor, value: Tensor, edge_index: Any,
                edge_attr: OptTensor, need_alpha: bool) -> tuple[Tensor, OptTensor]:
        num_src, num_dst = key.size(0), x_dst.size(0)
        if is_sparse_adjacency(edge_index):
            if (edge_index.size(0), edge_index.size(1)) != (num_dst, num_src):
                raise ValueError(
                    f"'edge_index' is a sparse adjacency of size "
                    f"{[edge_index.size(0), edge_index.size(1)]} (destinations x sources), but "
                    f"the inputs have {num_dst} destination and {num_src} source nodes")
            graph: Tensor | PreparedGraph = sparse_graph(edge_index)
            if edge_attr is None:
                stored = sparse_edge_values(edge_index)
                edge_attr = stored if stored is not None and stored.dim() > 1 else None
        else:
            check_adjacency(edge_index)
            graph = edge_index  # an EdgeIndex's CSR is reused
        if isinstance(graph, PreparedGraph):
            num_edges = graph.num_edges
        else:
            if graph.dim() != 2 or graph.size(0) != 2:
                raise ValueError(f"'edge_index' must have shape [2, E], got {list(graph.shape)}")
            num_edges = graph.size(1)

        edge_key = edge_value = None
        if self.lin_edge is not None:
            if edge_attr is None:
                raise ValueError(f"'edge_attr' is required: the layer was built with "
                                 f"edge_dim={self.edge_dim}")
            _check_edge_attr(edge_attr, num_edges)
            if edge_attr.size(-1) != self.edge_dim:
                raise ValueError(f"'edge_attr' must have edge_dim={self.edge_dim} features, "
                                 f"got shape {list(edge_attr.shape)}")
            # [E, H, C], by nature; used as both edge key and edge value, never copied.
            edge_key = edge_value = self.lin_edge(edge_attr).view(-1, self.heads,
                                                                  self.out_channels)
        elif edge_attr is not None:
            # PyG adds an edge_attr given without edge_dim to the values, unprojected.
            _check_edge_attr(edge_attr, num_edges, min_dim=1)
            try:
                edge_value = torch.broadcast_to(
                    edge_attr, (num_edges, self.heads, self.out_channels))
            except RuntimeError:
                raise ValueError(
                    f"'edge_attr' of shape {list(edge_attr.shape)} is added to the values "
                    f"[E, heads, out_channels] = {[num_edges, self.heads, self.out_channels]} "
                    "when edge_dim is None, but does not broadcast to it; set 'edge_dim' to "
                    "project it") from None

        if select_backend(self.backend, x_dst.device) == "reference":  # takes the edge list
            query = project(self.lin_query, x_dst)
        else:  # only the queries of destinations with incoming edges are read
            graph = as_prepared(graph, num_src, num_dst)
            query = project_attended_rows(self.lin_query, x_dst, graph.rowptr)
        query = query.view(-1, self.heads, self.out_channels)
        result = graph_attention(
            query, key, value, graph, edge_key=edge_key, edge_value=edge_value,
            dropout=self.dropout, training=self.training, return_attention=need_alpha,
            backend=self.backend)
        if isinstance(result, Tensor):  # need_alpha is false: the output alone
            return result, None
        return result

    # ------------------------------------------------------------------ message path
    def message(self, query_i: Tensor, key_j: Tensor, value_j: Tensor,
                edge_attr: OptTensor, index: Tensor, ptr: OptTensor,
                size_i: int | None) -> Tensor:
        """PyG's message (used only on the message path, see the class doc)."""
        if self.lin_edge is not None:
            if edge_attr is None:
                raise ValueError(f"'edge_attr' is required: the layer was built with "
                                 f"edge_dim={self.edge_dim}")
            edge_attr = self.lin_edge(edge_attr).view(-1, self.heads,
                                                      self.out_channels)
            key_j = key_j + edge_attr

        alpha = (query_i * key_j).sum(dim=-1) / (self.out_channels ** 0.5)
        alpha = softmax(alpha, index, ptr, size_i)
        self._alpha = alpha
        alpha = F.dropout(alpha, p=self.dropout, training=self.training)

        out = value_j
        if edge_attr is not None:
            out = out + edge_attr

        out = out * alpha.view(-1, self.heads, 1)
        return out


# --------------------------------------------------------------------------- checks
def _check_channels(name: str, value: Any) -> None:
    def ok(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and (v == -1 or v > 0)

    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(ok(v) for v in value):
            raise ValueError(f"'{name}' must be a positive int, -1, or a pair of them, "
                             f"got {value!r}")
    elif not ok(value):
        raise ValueError(f"'{name}' must be a positive int, -1, or a pair of them, got {value!r}")


def _split_x(x: Any) -> tuple[Tensor, Tensor]:
    """``x`` or ``(x_src, x_dst)`` -> ``(x_src, x_dst)``, ``x_dst = x_src`` for one
    tensor: :func:`split_input`'s checks, and floating-point features."""
    x_src, x_dst = split_input(x)
    pair = (x_src, x_src if x_dst is None else x_dst)
    for part in pair:
        if not part.is_floating_point():
            raise TypeError(f"'x' must be floating-point, got dtype {part.dtype}")
    return pair


def _check_edge_attr(edge_attr: Any, num_edges: int, min_dim: int = 2) -> None:
    if not isinstance(edge_attr, Tensor):
        raise TypeError(f"'edge_attr' must be a tensor, got {type(edge_attr).__name__}")
    if not edge_attr.is_floating_point():
        raise TypeError(f"'edge_attr' must be floating-point, got dtype {edge_attr.dtype}")
    if edge_attr.dim() < min_dim or edge_attr.size(0) != num_edges:
        raise ValueError(f"'edge_attr' must have one row per edge ({num_edges}), got shape "
                         f"{list(edge_attr.shape)}")
