"""Checkpoints that survive a crash: atomic writes, the run's config beside them.

A file is written to a temporary name in the same folder, flushed to disk and
renamed over the target (:func:`os.replace` is atomic on POSIX and Windows), so
a reader sees either the old or the new checkpoint, never a torn one.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Union

import torch

__all__ = ["CONFIG_NAME", "atomic_write", "load_checkpoint", "load_config", "save_checkpoint",
           "save_config"]

#: File name of the run's configuration, written beside its checkpoints.
CONFIG_NAME = "config.json"

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write(path: PathLike, write: Callable[[Any], None], binary: bool = True) -> Path:
    """Writes ``path`` through ``write(handle)`` on a temporary file, then renames it.

    Parameters
    ----------
    path : str or os.PathLike
        Target file; its folder is created if needed.
    write : callable
        Called with the open temporary file handle.
    binary : bool
        Open the temporary file in binary (default) or text mode.

    Returns
    -------
    pathlib.Path
        The target path.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from pyg_attn.training.checkpoint import atomic_write
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
    >>> _ = atomic_write(target, lambda f: f.write("hello"), binary=False)
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('hello', ['note.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb" if binary else "w") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(state: dict[str, Any], path: PathLike) -> Path:
    """Saves ``state`` with :func:`torch.save`, atomically (see :func:`atomic_write`).

    Examples
    --------
    >>> import tempfile, pathlib, torch
    >>> from pyg_attn.training.checkpoint import load_checkpoint, save_checkpoint
    >>> path = save_checkpoint({"epoch": 3, "w": torch.ones(2)},
    ...                        pathlib.Path(tempfile.mkdtemp()) / "best.pt")
    >>> load_checkpoint(path)["epoch"]
    3
    """
    return atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Loads a checkpoint written by :func:`save_checkpoint`.

    Only tensors and plain Python containers are unpickled
    (``torch.load(..., weights_only=True)``), so a checkpoint cannot run code.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def save_config(config: dict[str, Any], folder: PathLike) -> Path:
    """Writes ``config`` as ``folder/config.json`` (atomically, sorted keys)."""
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    return atomic_write(Path(folder) / CONFIG_NAME, lambda handle: handle.write(text),
                        binary=False)


def load_config(folder: PathLike) -> dict[str, Any]:
    """Reads ``folder/config.json``.

    Raises
    ------
    FileNotFoundError
        If the folder holds no ``config.json``.
    """
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {CONFIG_NAME} in {folder}: not a training output folder")
    return json.loads(path.read_text(encoding="utf-8"))
