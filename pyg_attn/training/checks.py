"""Argument checks shared by the training modules (``ValueError`` naming the argument)."""
from __future__ import annotations

from typing import Any

__all__ = ["fraction", "positive_int"]


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is an ``int >= 1`` (not a bool), else ``ValueError`` naming ``name``.

    Examples:
        >>> from pyg_attn.training.checks import positive_int
        >>> positive_int("runs", 3)
        3
        >>> positive_int("runs", 0)
        Traceback (most recent call last):
        ...
        ValueError: 'runs' must be a positive int, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{name}' must be a positive int, got {value!r}")
    return value


def fraction(name: str, value: Any) -> float:
    """``value`` if it is a number in ``[0, 1)`` (a dropout probability), else ``ValueError``.

    Examples:
        >>> from pyg_attn.training.checks import fraction
        >>> fraction("dropout", 0.6)
        0.6
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"'{name}' must be in [0, 1), got {value!r}")
    return float(value)
