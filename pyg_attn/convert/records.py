"""The attention record: one layer's weights with the edges they belong to.

Every producer of attention in the package gives its weights in this form: the
whole-model capture of :func:`pyg_attn.nn.capture_attention`, the token attention of
:func:`pyg_attn.convert.token_attention` and, with two more fields, the typed records
of :func:`pyg_attn.convert.hetero_attention`; every analysis function reads it.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["AttentionRecord"]


@dataclass(frozen=True)
class AttentionRecord:
    """The attention weights of one layer call.

    Attributes
    ----------
    edge_index : torch.Tensor
        ``[2, E']`` edges the weights belong to (row 0 = source, row 1 = destination), after
        the layer's self-loop handling, in the order the layer returned them (for sparse
        inputs: the stored order of the returned adjacency).  A plain tensor.
    alpha : torch.Tensor
        ``[E', H]`` attention weights, detached.  Weights of :mod:`pyg_attn.nn` layers and
        of PyG's ``TransformerConv`` are before dropout; PyG's ``GATConv`` / ``GATv2Conv``
        apply dropout inside, so in training mode with ``dropout > 0`` theirs are after it.
    edge_id : torch.Tensor
        ``[E']`` position of each edge in the ``edge_index`` the caller passed to the layer
        (``-1`` for a self-loop the layer added); for ``SparseTensor`` / ``torch.sparse``
        inputs the position in their stored (coalesced) order, for a
        :class:`~pyg_attn.ops.PreparedGraph` in its ``edge_index``.  Where a layer merges
        duplicate edges (:class:`~pyg_attn.nn.KQVConv`), the first input edge with that
        ``(source, destination)``.
    """

    edge_index: Tensor
    alpha: Tensor
    edge_id: Tensor

    @property
    def num_heads(self) -> int:
        """Number of attention heads ``H``."""
        return self.alpha.size(-1)
