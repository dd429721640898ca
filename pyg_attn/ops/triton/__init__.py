"""Triton GPU kernels of the fused edge attention (docs/guide/kernels.md).

Importing this package does not import Triton: :func:`triton_importable` and
:func:`interpreter_enabled` let the dispatcher (``pyg_attn.ops.attention.
select_backend``) decide without paying for it, and the kernels
(:mod:`pyg_attn.ops.triton.fused_attention`) are imported on first use.

The kernels run on CUDA tensors, or on CPU tensors under Triton's interpreter
(``TRITON_INTERPRET=1`` set before the kernel module is imported), which is how
the test suite checks them without a GPU.
"""
from __future__ import annotations

import importlib.util
import os

_importable: list[bool] = []


def triton_importable() -> bool:
    """Whether the ``triton`` package can be imported (checked once)."""
    if not _importable:
        _importable.append(_try_import())
    return _importable[0]


def _try_import() -> bool:
    if importlib.util.find_spec("triton") is None:
        return False
    try:
        import triton  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install means "not available"
        return False
    return True


def interpreter_enabled() -> bool:
    """Whether Triton's CPU interpreter is requested (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def interpreter_active() -> bool:
    """Whether ``@triton.jit`` functions are interpreted in this process.

    ``@triton.jit`` reads ``TRITON_INTERPRET`` when it decorates a function, so
    the variable must be set before Triton is first imported (importing
    ``torch_geometric`` imports it): set later, Triton's own library functions
    stay compiled-only and interpreted kernels fail.
    """
    if not interpreter_enabled() or not triton_importable():
        return False
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.standard.zeros, InterpretedFunction)


__all__ = ["interpreter_active", "interpreter_enabled", "triton_importable"]
