r"""Multi-head self-attention with :class:`torch.nn.MultiheadAttention`'s interface."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from ...ops import graph_attention
from ...ops.dense import attention_weights
from .graph_view import LastAttentionGraph

__all__ = ["SelfAttention"]

_NEG_INF = float("-inf")


class _Layout:
    """Batch size and sequence lengths of one call, and the way back to the caller's layout."""

    def __init__(self, batch: int, queries: int, keys: int, batched: bool,
                 batch_first: bool) -> None:
        self.batch, self.queries, self.keys = batch, queries, keys
        self.batched, self.batch_first = batched, batch_first

    def output(self, out: Tensor) -> Tensor:
        """``[B, L, E]`` -> the caller's layout."""
        if not self.batched:
            return out[0]
        return out if self.batch_first else out.transpose(0, 1)


def _to_batch_first(name: str, t: Tensor, batched: bool, batch_first: bool) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"'{name}' must be a floating-point tensor, got dtype {t.dtype}")
    if t.dim() != (3 if batched else 2):
        raise ValueError(f"'{name}' must have {3 if batched else 2} dimensions like 'query', got "
                         f"shape {list(t.shape)}")
    if not batched:
        return t.unsqueeze(0)
    return t if batch_first else t.transpose(0, 1)


def _as_bias(name: str, mask: Tensor) -> Tensor:
    """MHA's mask convention -> additive float bias (bool ``True`` = excluded -> ``-inf``)."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, device=mask.device).masked_fill(mask, _NEG_INF)
    if not mask.is_floating_point():
        raise TypeError(f"'{name}' must be a bool (True = excluded) or float mask, got "
                        f"{mask.dtype}")
    return mask


class SelfAttention(LastAttentionGraph, torch.nn.Module):
    r"""Multi-head scaled dot-product attention, a drop-in for
    :class:`torch.nn.MultiheadAttention` that is also graph attention.

    For every head :math:`h` with :math:`d = \text{embed\_dim} / \text{num\_heads}`:

    .. math::
        Q_h = X_q W^Q_h + b^Q_h,\quad K_h = X_k W^K_h + b^K_h,\quad
        V_h = X_v W^V_h + b^V_h,\qquad
        A_h = \operatorname{softmax}\!\left(\frac{Q_h K_h^\top}{\sqrt{d}} + M\right)

    .. math::
        \text{out} = [A_1 V_1, \ldots, A_H V_H]\, W^O + b^O

    ``A_h[i, j]`` is the weight of query ``i`` on key ``j``: the edge
    ``j -> i`` of a complete directed graph.  With ``edge_index=`` the softmax
    runs over a graph's edges only (sparse attention through
    :func:`pyg_attn.ops.graph_attention`, memory O(E x H) instead of
    O(L x S x H)); the complete graph of
    :func:`~pyg_attn.ops.complete_graph_edge_index` gives the dense result.

    The constructor, parameters (``in_proj_weight``, ``in_proj_bias``, or
    ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` when ``kdim``/``vdim``
    differ, ``bias_k``/``bias_v``, ``out_proj``), ``state_dict`` keys and
    :meth:`forward` are those of :class:`torch.nn.MultiheadAttention`: each
    loads the other's ``state_dict`` and gives the same output.  Differences,
    all deliberate:

    - **Masks keep MHA's meaning** (bool ``True`` = *excluded*; float masks are
      added), an exception to the package's SDPA convention.
    - **A fully masked query row gives zeros** (output and weights), where MHA
      gives NaN.
    - ``is_causal=True`` applies the causal mask (key ``j`` visible to query
      ``i`` iff :math:`j \le i`), alone or together with ``attn_mask``; MHA
      requires ``attn_mask`` with it and treats the flag as a hint.
    - Returned weights are those *before* dropout (MHA returns them after).
    - ``num_heads`` defaults to ``1``; bad arguments raise ``ValueError``.

    The per-head weights of the last call that computed them stay available
    (``last_attention`` ``[N, H, L, S]``, detached, not in the ``state_dict``)
    for :meth:`to_networkx`; pass ``need_weights=False`` where they are not wanted.

    Shapes:
        - **input:** query :math:`(L, N, E)`, key :math:`(S, N, E_k)`, value
          :math:`(S, N, E_v)` (``batch_first``: :math:`(N, L, E)` ...; unbatched:
          :math:`(L, E)` ...); ``edge_index`` :math:`(2, |\mathcal{E}|)` with
          sources (keys) in ``[0, S)`` and destinations (queries) in ``[0, L)``,
          the same graph for every sequence of the batch
        - **output:** :math:`(L, N, E)` (as the query), and weights
          :math:`(N, L, S)`, or :math:`(N, H, L, S)` with
          ``average_attn_weights=False`` (unbatched: no :math:`N`), or ``None``

    Parameters
    ----------
    embed_dim : int
        model size :math:`E` (of queries and outputs).
    num_heads : int, optional
        number of heads; must divide ``embed_dim``. (default: ``1``)
    dropout : float, optional
        dropout on the attention weights (training). (default: ``0.0``)
    bias : bool, optional
        learn input/output projection biases. (default: ``True``)
    add_bias_kv : bool, optional
        append a learned key/value to every sequence. (default: ``False``)
    add_zero_attn : bool, optional
        append an all-zero key/value. (default: ``False``)
    kdim : int, optional
        key feature size. (default: ``embed_dim``)
    vdim : int, optional
        value feature size. (default: ``embed_dim``)
    batch_first : bool, optional
        inputs and outputs are ``[N, L, E]`` instead of ``[L, N, E]``. (default: ``False``)
    device, dtype : optional
        factory arguments of the parameters.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> attn = SelfAttention(8, num_heads=2, batch_first=True)
    >>> x = torch.randn(1, 4, 8)
    >>> out, weights = attn(x, x, x)
    >>> out.shape, weights.shape
    (torch.Size([1, 4, 8]), torch.Size([1, 4, 4]))
    >>> torch.allclose(weights.sum(-1), torch.ones(1, 4))
    True
    >>> chain = torch.tensor([[0, 1, 2], [1, 2, 3]])  # edges j -> i: i reads j
    >>> _, sparse = attn(x, x, x, edge_index=chain)
    >>> sparse[0]
    tensor([[0., 0., 0., 0.],
            [1., 0., 0., 0.],
            [0., 1., 0., 0.],
            [0., 0., 1., 0.]], grad_fn=<SelectBackward0>)
    >>> sorted(attn.to_networkx().edges())
    [(0, 1), (1, 2), (2, 3)]
    """

    def __init__(self, embed_dim: int, num_heads: int = 1, dropout: float = 0.0,
                 bias: bool = True, add_bias_kv: bool = False, add_zero_attn: bool = False,
                 kdim: int | None = None, vdim: int | None = None,
                 batch_first: bool = False, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        for name, size in (("embed_dim", embed_dim), ("num_heads", num_heads),
                           ("kdim", kdim or embed_dim), ("vdim", vdim or embed_dim)):
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValueError(f"'{name}' must be a positive int, got {size!r}")
        if embed_dim % num_heads:
            raise ValueError(f"'embed_dim' ({embed_dim}) must be divisible by 'num_heads' "
                             f"({num_heads})")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"'dropout' must be in [0, 1], got {dropout}")
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(torch.empty(3 * embed_dim, embed_dim, **factory))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(torch.empty(embed_dim, embed_dim, **factory))
            self.k_proj_weight = Parameter(torch.empty(embed_dim, self.kdim, **factory))
            self.v_proj_weight = Parameter(torch.empty(embed_dim, self.vdim, **factory))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(torch.empty(3 * embed_dim, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = torch.nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.bias_k: Parameter | None
        self.bias_v: Parameter | None
        if add_bias_kv:
            self.bias_k = Parameter(torch.empty(1, 1, embed_dim, **factory))
            self.bias_v = Parameter(torch.empty(1, 1, embed_dim, **factory))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self.last_attention: Tensor | None = None
        self._reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draws every parameter: ``out_proj`` as a fresh ``Linear``, then as MHA."""
        self.out_proj.reset_parameters()
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """MHA's initialisation (same random draws, so a seed gives MHA's weights):
        Xavier-uniform input projections, zero biases, Xavier-normal ``bias_k/v``."""
        if self._qkv_same_embed_dim:
            torch.nn.init.xavier_uniform_(self.in_proj_weight)
        else:
            for weight in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                torch.nn.init.xavier_uniform_(weight)
        if self.in_proj_bias is not None:
            torch.nn.init.zeros_(self.in_proj_bias)
            torch.nn.init.zeros_(self.out_proj.bias)
        if self.bias_k is not None and self.bias_v is not None:
            torch.nn.init.xavier_normal_(self.bias_k)
            torch.nn.init.xavier_normal_(self.bias_v)

    # --------------------------------------------------------------------- projections
    def _project(self, query: Tensor, key: Tensor, value: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor]:
        """``[B, L, E]``, ``[B, S, kdim]``, ``[B, S, vdim]`` -> ``[B, H, L|S, d]`` each."""
        if self._qkv_same_embed_dim:
            weights = self.in_proj_weight.chunk(3)
        else:
            weights = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        biases = (self.in_proj_bias.chunk(3) if self.in_proj_bias is not None
                  else (None, None, None))
        q, k, v = (F.linear(x, w, b) for x, w, b in zip((query, key, value), weights, biases))
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.expand(k.size(0), 1, -1)], dim=1)
            v = torch.cat([v, self.bias_v.expand(v.size(0), 1, -1)], dim=1)
        q, k, v = (t.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
                   for t in (q, k, v))
        if self.add_zero_attn:
            k = torch.cat([k, k.new_zeros(*k.shape[:2], 1, k.size(-1))], dim=2)
            v = torch.cat([v, v.new_zeros(*v.shape[:2], 1, v.size(-1))], dim=2)
        return q, k, v

    # --------------------------------------------------------------------- masks
    def _mask_parts(self, layout: _Layout, key_padding_mask: Tensor | None,
                    attn_mask: Tensor | None, causal: bool) -> list[Tensor]:
        """The masks as additive biases, each 4-D and broadcastable to ``[B, H, L, S]``.

        ``S`` counts the appended ``bias_k`` / zero keys, which every query sees.
        ``causal`` adds the dense causal mask (key ``j`` visible iff ``j <= i``).
        """
        n, heads, length, keys = layout.batch, self.num_heads, layout.queries, layout.keys
        parts = []
        if key_padding_mask is not None:
            bias = _as_bias("key_padding_mask", key_padding_mask)
            expected = (n, keys) if layout.batched else (keys,)
            if tuple(bias.shape) != expected:
                raise ValueError(f"'key_padding_mask' must have shape {list(expected)}, got "
                                 f"{list(bias.shape)}")
            parts.append(bias.reshape(n, 1, 1, keys))
        if attn_mask is not None:
            bias = _as_bias("attn_mask", attn_mask)
            per_head = (n * heads, length, keys) if layout.batched else (heads, length, keys)
            if tuple(bias.shape) == (length, keys):
                parts.append(bias.reshape(1, 1, length, keys))
            elif tuple(bias.shape) == per_head:
                parts.append(bias.reshape(n, heads, length, keys))
            else:
                raise ValueError(f"'attn_mask' must have shape {[length, keys]} or "
                                 f"{list(per_head)}, got {list(bias.shape)}")
        if causal:
            future = torch.ones(length, keys, dtype=torch.bool, device=self.out_proj.weight.device)
            parts.append(_as_bias("is_causal", future.triu(1)).view(1, 1, length, keys))
        extra = int(self.bias_k is not None) + int(self.add_zero_attn)
        return [F.pad(part, (0, extra)) for part in parts] if extra else parts

    # --------------------------------------------------------------------- attention
    def _dense(self, q: Tensor, k: Tensor, v: Tensor, parts: list[Tensor],
               need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """Attention over every key: ``([B, L, H, d], [B, H, L, S] or None)``."""
        bias = None
        for part in parts:
            part = part.to(q.dtype)
            bias = part if bias is None else bias + part
        p = self.dropout if self.training else 0.0
        if need_weights:
            weights = attention_weights(q, k, mask=bias)
            out = (F.dropout(weights, p) if p > 0 else weights) @ v
            return out.transpose(1, 2), weights
        if bias is None:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:
            # A row with no visible key: let SDPA see every key (no NaN anywhere, in
            # forward or backward), then zero the row.
            dead = torch.isneginf(bias).all(dim=-1, keepdim=True)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(dead, 0.0),
                                                 dropout_p=p)
            out = out.masked_fill(dead, 0.0)
        return out.transpose(1, 2), None

    def _sparse(self, q: Tensor, k: Tensor, v: Tensor, edge_index: Tensor,
                parts: list[Tensor], is_causal: bool, need_weights: bool
                ) -> tuple[Tensor, Tensor | None]:
        """Attention along ``edge_index`` only: ``([B, L, H, d], [B, H, L, S] or None)``."""
        if self.bias_k is not None or self.add_zero_attn:
            raise ValueError("'edge_index' cannot be combined with 'add_bias_kv' or "
                             "'add_zero_attn' (their extra key is not a node of the graph)")
        n, heads, length, keys = q.size(0), q.size(1), q.size(2), k.size(2)
        graph, b, i, j = _batched_graph(edge_index, n, length, keys)
        edge_bias = None
        for part in parts:  # [B|1, H|1, L|1, S|1] -> [B*E, H|1], 0 on broadcast dims
            at = [index if size > 1 else torch.zeros_like(index)
                  for index, size in ((b, part.size(0)), (i, part.size(2)), (j, part.size(3)))]
            picked = part[at[0], :, at[1], at[2]].to(q.dtype)
            edge_bias = picked if edge_bias is None else edge_bias + picked
        if edge_bias is not None:
            edge_bias = edge_bias.expand(-1, heads)
        q_nodes, k_nodes, v_nodes = (t.transpose(1, 2).reshape(-1, heads, self.head_dim)
                                     for t in (q, k, v))
        result = graph_attention(
            q_nodes, k_nodes, v_nodes, graph, edge_bias=edge_bias,
            edge_mask=(j <= i) if is_causal else None, dropout=self.dropout,
            training=self.training, return_attention=need_weights)
        if isinstance(result, Tensor):  # need_weights is false: the output alone
            return result.view(n, length, heads, self.head_dim), None
        out, alpha = result
        dense = alpha.new_zeros(n, length, keys, heads)
        weights = dense.index_put((b, i, j), alpha, accumulate=True).permute(0, 3, 1, 2)
        return out.view(n, length, heads, self.head_dim), weights

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Tensor | None = None, need_weights: bool = True,
                attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False, *, edge_index: Tensor | None = None
                ) -> tuple[Tensor, Tensor | None]:
        r"""Attends from ``query`` over ``key``/``value`` (all keys, or along ``edge_index``).

        Parameters
        ----------
        query, key, value : Tensor
            see the class' Shapes.
        key_padding_mask : Tensor, optional
            :math:`(N, S)` (unbatched :math:`(S)`); bool ``True`` = that key is padding
            (excluded), float = added to its scores.
        need_weights : bool, optional
            also return the attention weights (computed densely, or scattered from the
            edges); ``False`` uses :func:`torch.nn.functional.scaled_dot_product_attention`.
            (default: ``True``)
        attn_mask : Tensor, optional
            :math:`(L, S)` or :math:`(N \cdot H, L, S)` (unbatched :math:`(H, L, S)`); bool
            ``True`` = excluded, float = added.
        average_attn_weights : bool, optional
            average the weights over heads. (default: ``True``)
        is_causal : bool, optional
            query ``i`` sees only keys :math:`j \le i`. (default: ``False``)
        edge_index : Tensor, optional
            ``[2, E]`` edges ``j -> i`` (key ``j``, query ``i``) to attend along instead of
            all pairs; duplicate edges count separately (their weights add up in the
            returned matrix).

        Returns
        -------
        out : Tensor
            :math:`(L, N, E)`, laid out as the query.
        weights : Tensor or None
            ``None`` unless ``need_weights``.  Weights are before dropout; rows sum
            to 1, or to 0 for a query with no visible key (whose output is then the
            output projection's bias).
        """
        if not isinstance(query, Tensor) or query.dim() not in (2, 3):
            raise ValueError("'query' must be a tensor of shape (L, E), (L, N, E) or (N, L, E), "
                             f"got {getattr(query, 'shape', type(query).__name__)}")
        batched = query.dim() == 3
        query, key, value = (_to_batch_first(name, t, batched, self.batch_first)
                             for name, t in (("query", query), ("key", key), ("value", value)))
        for name, t, size in (("query", query, self.embed_dim), ("key", key, self.kdim),
                              ("value", value, self.vdim)):
            if t.size(-1) != size:
                raise ValueError(f"'{name}' must have {size} features, got {t.size(-1)}")
        if key.shape[:2] != value.shape[:2] or key.size(0) != query.size(0):
            raise ValueError("'key' and 'value' must have the same batch size and length, "
                             f"and the batch size of 'query'; got {list(query.shape)}, "
                             f"{list(key.shape)}, {list(value.shape)}")
        q, k, v = self._project(query, key, value)
        layout = _Layout(query.size(0), query.size(1), key.size(1), batched, self.batch_first)
        parts = self._mask_parts(layout, key_padding_mask, attn_mask,
                                 causal=is_causal and edge_index is None)
        if edge_index is None:
            out, weights = self._dense(q, k, v, parts, need_weights)
        else:
            out, weights = self._sparse(q, k, v, edge_index, parts, is_causal, need_weights)
        out = self.out_proj(out.flatten(2))
        if weights is not None:
            self._remember(weights)
            weights = weights.mean(dim=1) if average_attn_weights else weights
            weights = weights if batched else weights[0]
        return layout.output(out), weights

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.embed_dim}, num_heads={self.num_heads})"


def _batched_graph(edge_index: Tensor, batch: int, queries: int, keys: int
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One copy of a sequence's graph per sample: ``(edge_index [2, B*E], b, i, j)``.

    Sample ``b``'s key ``j`` is node ``b * S + j``, its query ``i`` node
    ``b * L + i``.  Built on every call (O(B * E)); nothing is cached.
    """
    if not isinstance(edge_index, Tensor) or edge_index.dtype not in (torch.int32, torch.int64):
        raise TypeError("'edge_index' must be an integer tensor [2, E], got "
                        f"{getattr(edge_index, 'dtype', type(edge_index).__name__)}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must have shape [2, E], got {list(edge_index.shape)}")
    src, dst = edge_index.long()
    if src.numel() and (int(src.min()) < 0 or int(src.max()) >= keys
                        or int(dst.min()) < 0 or int(dst.max()) >= queries):
        raise ValueError(f"'edge_index' must hold sources (keys) in [0, {keys}) and "
                         f"destinations (queries) in [0, {queries})")
    b = torch.arange(batch, device=src.device).repeat_interleave(src.numel())
    j, i = src.repeat(batch), dst.repeat(batch)
    graph = torch.stack([b * keys + j, b * queries + i])
    return graph, b, i, j

