"""Command-line flags generated from the training configurations.

A configuration field declared with :func:`setting` carries its help (and its
choices) in its metadata; :func:`add_config_flags` turns the fields of one or
more configuration dataclasses into ``argparse`` flags (``--field-name``), with
the type, default and choices of the field.  A flag not given leaves no value
(:data:`argparse.SUPPRESS`), and :func:`given_settings` reads back the flags
that were given, so that the dataclass alone supplies every default.  A flag
shared by several configurations (``--epochs`` of node and of graph
classification) is one flag whose help names each default.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["add_config_flags", "flag", "given_settings", "setting"]


def setting(default: Any = dataclasses.MISSING, *, help: str,
            choices: Sequence[Any] | None = None,
            default_factory: Any = dataclasses.MISSING,
            shown_default: str | None = None) -> Any:
    """A dataclass field with the help of its command-line flag.

    Parameters
    ----------
    default : object, optional
        The field's default.
    help : str
        What the field sets (the flag's help, without its default).
    choices : sequence, optional
        The values the flag accepts.
    default_factory : callable, optional
        The field's default factory (for a list default).
    shown_default : str, optional
        The default as the help shows it, where the command line computes its
        own (e.g. an output folder named after the data set).

    Returns
    -------
    dataclasses.Field
        The field, for a dataclass body.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Config:
    ...     lr: float = setting(0.005, help="Adam learning rate")
    >>> dataclasses.fields(Config)[0].metadata["help"]
    'Adam learning rate'
    """
    metadata = {"help": help, "choices": None if choices is None else tuple(choices),
                "shown_default": shown_default}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag(name: str) -> str:
    """The flag of field ``name``: ``--`` and the name with dashes (``--out-heads``)."""
    return "--" + name.replace("_", "-")


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``Optional[T]``, ``(hint, False)`` otherwise."""
    args = typing.get_args(hint)
    if type(None) in args and len(args) == 2:
        return next(a for a in args if a is not type(None)), True
    return hint, False


def _optional(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """``convert``, with ``none`` read as :obj:`None`."""
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else convert(text)
    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names it in errors
    return parse


def _flag_kwargs(hint: Any) -> dict[str, Any]:
    """The ``add_argument`` keywords of a field of type ``hint``."""
    hint, optional = _unwrap_optional(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) in (list, list):
        (item,) = typing.get_args(hint)
        return {"nargs": "+", "type": item}
    if hint not in (int, float, str):
        raise TypeError(f"no command-line form for a field of type {hint!r}")
    return {"type": _optional(hint) if optional else hint}


def _default_text(field: dataclasses.Field) -> str:
    if field.metadata.get("shown_default") is not None:
        return field.metadata["shown_default"]
    value = field.default if field.default_factory is dataclasses.MISSING \
        else field.default_factory()
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def add_config_flags(parser: argparse.ArgumentParser, configs: Mapping[str, type],
                     skip: Sequence[str] = ()) -> dict[str, list[str]]:
    """Adds one flag per documented field of the ``configs`` dataclasses.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Receives the flags; a flag not given leaves no attribute.
    configs : mapping of str to dataclass type
        ``{label: config class}``; the label names the class in a shared flag's help.
    skip : sequence of str
        Fields left to the caller (e.g. a model choice spanning the classes).

    Returns
    -------
    dict of str to list of str
        For every flag's field name, the labels of the classes that have it.

    Raises
    ------
    TypeError
        If a documented field has a type with no command-line form.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Small:
    ...     epochs: int = setting(100, help="epochs per fold")
    >>> @dataclass
    ... class Big:
    ...     epochs: int = setting(1000, help="epochs per run")
    >>> parser = argparse.ArgumentParser()
    >>> add_config_flags(parser, {"small": Small, "big": Big})
    {'epochs': ['small', 'big']}
    >>> vars(parser.parse_args(["--epochs", "5"])), vars(parser.parse_args([]))
    ({'epochs': 5}, {})
    """
    owners: dict[str, list[tuple[str, dataclasses.Field, Any]]] = {}
    for label, config in configs.items():
        hints = typing.get_type_hints(config)
        for field in dataclasses.fields(config):
            if "help" in field.metadata and field.name not in skip:
                owners.setdefault(field.name, []).append((label, field, hints[field.name]))
    for name, owned in owners.items():
        helps = {field.metadata["help"] for _, field, _ in owned}
        defaults = {_default_text(field) for _, field, _ in owned}
        if len(helps) == 1 and len(defaults) == 1:
            text = f"{owned[0][1].metadata['help']} (default: {defaults.pop()})"
        elif len(helps) == 1:
            text = f"{owned[0][1].metadata['help']} (default: " + "; ".join(
                f"{label}: {_default_text(field)}" for label, field, _ in owned) + ")"
        else:
            text = "; ".join(f"{label}: {field.metadata['help']} (default: "
                             f"{_default_text(field)})" for label, field, _ in owned)
        choices = owned[0][1].metadata.get("choices")
        parser.add_argument(flag(name), dest=name, default=argparse.SUPPRESS, help=text,
                            **({"choices": choices} if choices else {}),
                            **_flag_kwargs(owned[0][2]))
    return {name: [label for label, _, _ in owned] for name, owned in owners.items()}


def given_settings(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The values of the ``names`` whose flags were given.

    Examples
    --------
    >>> given_settings(argparse.Namespace(lr=0.1, seed=0), ["lr", "hidden"])
    {'lr': 0.1}
    """
    return {name: getattr(args, name) for name in names if hasattr(args, name)}
