r"""SAGAN self-attention over the positions of a feature map."""
from __future__ import annotations

from collections.abc import Hashable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Conv2d, Parameter

from ...ops.dense import attention_weights
from .graph_view import LastAttentionGraph

__all__ = ["SelfAttention2d"]


class SelfAttention2d(LastAttentionGraph, torch.nn.Module):
    r"""Self-attention for images, from SAGAN (Zhang et al., "Self-Attention
    Generative Adversarial Networks", 2019).

    Every position :math:`i` of a :math:`[C, H, W]` feature map attends to every
    position :math:`j` (:math:`N = HW` nodes of a complete directed graph),
    with 1x1 convolutions as projections:

    .. math::
        q_i = W_q x_i,\quad k_j = W_k x_j \in \mathbb{R}^{C/r},\quad
        v_j = W_v x_j \in \mathbb{R}^{C},\qquad
        A_{ij} = \frac{\exp(q_i^\top k_j)}{\sum_{j'} \exp(q_i^\top k_{j'})}

    .. math::
        y_i = \gamma \sum_j A_{ij} v_j + x_i

    The score is unscaled, as in SAGAN.  :math:`\gamma` is learnable and starts
    at 0, so the module starts as the identity and learns how much non-local
    evidence to mix in.  ``A[b, i, j]`` (flattened row-major positions,
    :math:`i = r W + c`) is row-stochastic.  Without ``return_attention`` the
    attention is never materialised
    (:func:`torch.nn.functional.scaled_dot_product_attention`).

    Shapes:
        - **input:** :math:`(B, C, H, W)`
        - **output:** :math:`(B, C, H, W)`, and with ``return_attention=True``
          the attention :math:`(B, HW, HW)`

    Parameters
    ----------
    in_channels : int
        channels :math:`C` of the input.
    reduction : int, optional
        query/key channels are :math:`\max(1, C / r)`. (default: ``8``)

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> sa = SelfAttention2d(16)
    >>> x = torch.randn(2, 16, 4, 5)
    >>> y, attn = sa(x, return_attention=True)
    >>> y.shape, attn.shape
    (torch.Size([2, 16, 4, 5]), torch.Size([2, 20, 20]))
    >>> torch.equal(y, x)  # gamma = 0 at initialisation
    True
    >>> G = sa.to_networkx(threshold=0.1)
    >>> (0, 0) in G  # nodes are (row, column) positions
    True
    """

    def __init__(self, in_channels: int, reduction: int = 8) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("reduction", reduction)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"'{name}' must be a positive int, got {value!r}")
        self.in_channels = in_channels
        self.reduction = reduction
        self.key_channels = max(1, in_channels // reduction)
        self.query_conv = Conv2d(in_channels, self.key_channels, kernel_size=1)
        self.key_conv = Conv2d(in_channels, self.key_channels, kernel_size=1)
        self.value_conv = Conv2d(in_channels, in_channels, kernel_size=1)
        self.gamma = Parameter(torch.zeros(1))
        self.last_attention: Tensor | None = None
        self._last_size: tuple[int, int] | None = None

    def reset_parameters(self) -> None:
        """Fresh 1x1 convolutions and ``gamma = 0`` (the identity map again)."""
        for conv in (self.query_conv, self.key_conv, self.value_conv):
            conv.reset_parameters()
        torch.nn.init.zeros_(self.gamma)

    def forward(self, x: Tensor, return_attention: bool = False
                ) -> Tensor | tuple[Tensor, Tensor]:
        """Mixes every position with the attention-weighted values of all positions.

        Parameters
        ----------
        x : Tensor
            :math:`(B, C, H, W)` feature map.
        return_attention : bool, optional
            also return ``A`` :math:`(B, HW, HW)` (and keep it for :meth:`to_networkx`).
            (default: ``False``)

        Returns
        -------
        Tensor or (Tensor, Tensor)
            ``y`` :math:`(B, C, H, W)`, with ``A`` :math:`(B, HW, HW)` if
            ``return_attention``.
        """
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError("'x' must be a floating-point tensor, got "
                            f"{getattr(x, 'dtype', type(x).__name__)}")
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(f"'x' must have shape [B, {self.in_channels}, H, W], got "
                             f"{list(x.shape)}")
        batch, channels, height, width = x.shape
        q, k, v = (conv(x).flatten(2).transpose(1, 2)  # [B, HW, C'] / [B, HW, C]
                   for conv in (self.query_conv, self.key_conv, self.value_conv))
        attn: Tensor | None = None
        if return_attention:
            attn = attention_weights(q, k, scale=1.0)
            mixed = attn @ v
            self._remember(attn.unsqueeze(1))
            self._last_size = (height, width)
        else:
            mixed = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        out = self.gamma * mixed.transpose(1, 2).reshape(batch, channels, height, width) + x
        return out if attn is None else (out, attn)

    def _node_labels(self) -> list[Hashable] | None:
        """Nodes of :meth:`to_networkx` are ``(row, column)`` positions."""
        if self._last_size is None:  # no attention remembered yet
            return None
        height, width = self._last_size
        return [(r, c) for r in range(height) for c in range(width)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, reduction={self.reduction})"
