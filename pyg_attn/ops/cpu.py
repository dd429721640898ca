"""Loads the fused CPU kernel (``csrc/fused_attention.cpp``).

The extension is compiled on first use with ``torch.utils.cpp_extension.load``
(about half a minute, cached in ``TORCH_EXTENSIONS_DIR`` afterwards) against the
installed torch, so no wheel has to match a torch build.  Where it cannot be
built (no compiler, no headers), :func:`load_extension` returns ``None`` after
one warning and the dispatcher falls back to the reference backend.
Set ``PYG_ATTN_DISABLE_CPP=1`` to skip the build on purpose.
"""
from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from types import ModuleType

import torch

_SOURCE = Path(__file__).with_name("csrc") / "fused_attention.cpp"
_lock = threading.Lock()
_state: dict[str, object] = {}


@torch.compiler.disable
def load_extension() -> ModuleType | None:
    """Returns the compiled module, building it once; ``None`` if unavailable."""
    if "module" in _state:
        return _state["module"]  # type: ignore[return-value]
    with _lock:
        if "module" not in _state:
            _state["module"] = _build()
    return _state["module"]  # type: ignore[return-value]


def _build() -> ModuleType | None:
    if os.environ.get("PYG_ATTN_DISABLE_CPP", "0") not in ("", "0"):
        return None
    try:
        from torch.utils.cpp_extension import load

        return load(
            name="pyg_attn_fused_cpu",
            sources=[str(_SOURCE)],
            extra_cflags=["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
                          "-march=native" if _native_ok() else "-O3"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as exc:  # noqa: BLE001 - any build failure means "fall back"
        warnings.warn(
            "pyg_attn: the fused CPU kernel could not be built "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "falling back to the slower pure-PyTorch reference backend.",
            RuntimeWarning, stacklevel=3)
        return None


def _native_ok() -> bool:
    # Portable builds (e.g. a shared extensions dir) can opt out of -march=native.
    return os.environ.get("PYG_ATTN_PORTABLE_BUILD", "0") in ("", "0")
