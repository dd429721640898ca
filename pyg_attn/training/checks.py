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


def fraction(name: str, value: Any, *, low_open: bool = False) -> float:
    """``value`` if it is a number in ``[0, 1)`` (a dropout probability), or in
    ``(0, 1)`` with ``low_open=True`` (a share that must not be empty), else
    ``ValueError`` naming ``name``.

    Examples:
        >>> from pyg_attn.training.checks import fraction
        >>> fraction("dropout", 0.6)
        0.6
    """
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not ((0.0 < value if low_open else 0.0 <= value) and value < 1.0):
        raise ValueError(f"'{name}' must be in {'(0, 1)' if low_open else '[0, 1)'}, got {value!r}")
    return float(value)
