"""Checks of the constructor arguments the attention layers share."""
from __future__ import annotations

from typing import Any


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_layer_arguments(out_channels: Any, heads: Any, dropout: Any,
                          edge_dim: Any | None = None) -> None:
    """Raises ``ValueError`` naming the argument unless ``out_channels`` and
    ``heads`` are positive ints, ``dropout`` is in ``[0, 1]`` and ``edge_dim`` is
    ``None``, a positive int or ``-1`` (inferred lazily, as PyG's ``Linear``)."""
    for name, value in (("out_channels", out_channels), ("heads", heads)):
        if not _positive_int(value):
            raise ValueError(f"'{name}' must be a positive int, got {value!r}")
    if edge_dim is not None and edge_dim != -1 and not _positive_int(edge_dim):
        raise ValueError(f"'edge_dim' must be None, a positive int or -1, got {edge_dim!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0.0 <= dropout <= 1.0:
        raise ValueError(f"'dropout' must be in [0, 1], got {dropout!r}")
