"""The graph view of a dense attention module's last weights."""
from __future__ import annotations

from collections.abc import Hashable, Sequence

import networkx as nx
from torch import Tensor


class LastAttentionGraph:
    """Mixin: remembers the last attention a module computed; :meth:`to_networkx`.

    A module sets ``self.last_attention = None`` in its constructor and calls
    :meth:`_remember` with ``[B, H, N, N]`` weights (``A[b, h, i, j]`` = weight
    of query ``i`` on key ``j``) whenever it computes them.  The copy is
    detached and is not part of the ``state_dict``.
    """

    last_attention: Tensor | None

    def _remember(self, weights: Tensor) -> None:
        self.last_attention = weights.detach()

    def _node_labels(self) -> Sequence[Hashable] | None:
        """Default node names of :meth:`to_networkx` (``None``: ``0 .. N-1``)."""
        return None

    def to_networkx(self, index: int = 0, head: int | None = None,
                    labels: Sequence[Hashable] | None = None,
                    threshold: float = 0.0) -> nx.DiGraph:
        """The last attention weights of sample ``index`` as a weighted DiGraph.

        Edges follow message direction (docs/guide/conventions.md): ``A[i, j] > threshold``
        gives the edge ``j -> i`` with ``weight = A[i, j]``, built by
        :func:`pyg_attn.convert.dense_to_digraph`.

        Parameters
        ----------
        index : int
            which sample of the last batch. (default: ``0``)
        head : int, optional
            one head's weights; ``None`` keeps every head as ``weight_h0 ...`` with their
            mean as ``weight``. (default: ``None``)
        labels : sequence, optional
            distinct node names in order (e.g. tokens).
            (default: the module's own, else ``0 .. N-1``)
        threshold : float, optional
            keep weights strictly above it. (default: ``0.0``)

        Returns
        -------
        networkx.DiGraph
            Nodes ``0 .. N-1`` (or ``labels``), edges ``j -> i`` with ``weight``.

        Raises
        ------
        RuntimeError
            if no attention weights were computed yet.
        ValueError
            on an out-of-range ``index``/``head`` or non-square (cross-) attention.
        """
        weights = self.last_attention
        if weights is None:
            raise RuntimeError(f"{type(self).__name__} has no attention weights yet: run a "
                               "forward pass that computes them first")
        batch, heads, num_queries, num_keys = weights.shape
        if not -batch <= index < batch:
            raise ValueError(f"'index' must be in [0, {batch}), got {index}")
        if head is not None and not -heads <= head < heads:
            raise ValueError(f"'head' must be in [0, {heads}), got {head}")
        if num_queries != num_keys:
            raise ValueError("to_networkx() needs self-attention (as many queries as keys), "
                             f"got {num_queries} queries and {num_keys} keys")
        attn = weights[index]
        if head is not None:
            attn = attn[head]
        elif heads == 1:
            attn = attn[0]
        from ...convert import dense_to_digraph
        return dense_to_digraph(attn, labels=self._node_labels() if labels is None else labels,
                                threshold=threshold)
