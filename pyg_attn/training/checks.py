"""Argument checks shared by the training modules (``ValueError`` naming the argument)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["check_layers", "check_optimiser", "fraction", "number", "one_of", "positive_int"]


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is an ``int >= 1`` (not a bool), else ``ValueError`` naming ``name``.

    Examples
    --------
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

    Examples
    --------
    >>> from pyg_attn.training.checks import fraction
    >>> fraction("dropout", 0.6)
    0.6
    """
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not ((0.0 < value if low_open else 0.0 <= value) and value < 1.0):
        raise ValueError(f"'{name}' must be in {'(0, 1)' if low_open else '[0, 1)'}, got {value!r}")
    return float(value)


def number(name: str, value: Any, *, positive: bool = False) -> float:
    """``value`` if it is a number ``>= 0`` (``> 0`` with ``positive=True``; not a
    bool), else ``ValueError`` naming ``name``.

    Examples
    --------
    >>> from pyg_attn.training.checks import number
    >>> number("weight_decay", 0)
    0.0
    >>> number("lr", 0, positive=True)
    Traceback (most recent call last):
    ...
    ValueError: 'lr' must be a positive number, got 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or \
            (positive and value == 0):
        raise ValueError(f"'{name}' must be a {'positive' if positive else 'non-negative'} "
                         f"number, got {value!r}")
    return float(value)


def one_of(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``, else ``ValueError`` naming ``name`` and them.

    Examples
    --------
    >>> from pyg_attn.training.checks import one_of
    >>> one_of("loader", "cluster", ["full", "neighbor"])
    Traceback (most recent call last):
    ...
    ValueError: 'loader' must be one of ['full', 'neighbor'], got 'cluster'
    """
    if value not in choices:
        raise ValueError(f"'{name}' must be one of {list(choices)}, got {value!r}")
    return value


def check_layers(config: Any, models: Iterable[str], sizes: Iterable[str]) -> None:
    """Checks the attention-layer settings of a model configuration.

    Parameters
    ----------
    config : ModelConfig or PoolConfig
        Has ``model``, ``dropout``, ``attn_dropout`` and the ``sizes`` attributes.
    models : iterable of str
        The model names ``config.model`` may take.
    sizes : iterable of str
        Attributes that must be positive ints (``hidden``, ``heads``, ...).

    Raises
    ------
    ValueError
        Naming the first attribute out of range.
    """
    one_of("model", config.model, sorted(models))
    for name in sizes:
        positive_int(name, getattr(config, name))
    for name in ("dropout", "attn_dropout"):
        fraction(name, getattr(config, name))


def check_optimiser(config: Any) -> None:
    """Checks a configuration's Adam settings: ``lr > 0``, ``weight_decay >= 0``.

    Raises
    ------
    ValueError
        Naming the attribute out of range.
    """
    number("lr", config.lr, positive=True)
    number("weight_decay", config.weight_decay)
