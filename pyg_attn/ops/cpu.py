"""Loads the fused CPU kernel (``csrc/fused_attention.cpp``).

The extension is compiled with ``torch.utils.cpp_extension.load`` against the
installed torch, so no wheel has to match a torch build: on first use (about a
minute on 2 cores, announced on stderr before it starts, its time reported
after), or ahead of time by ``python -m pyg_attn build-ext``; either way it is
cached in torch's extension folder (``TORCH_EXTENSIONS_DIR``) and later
processes load it in a moment.  Where it cannot be built (no compiler, no
headers), :func:`load_extension` returns ``None`` after one warning and the
dispatcher falls back to the reference backend.
Set ``PYG_ATTN_DISABLE_CPP=1`` to skip the build on purpose.

Build flags
    The default build is portable (the compiler's baseline target, e.g. x86-64),
    so a shared extension cache works on every CPU; with GCC on x86 the kernels
    are compiled a second time for AVX2/FMA and that copy runs on CPUs that have
    them (``PYG_ATTN_NO_AVX2=1`` forces the baseline copy, at run time).
    ``PYG_ATTN_NATIVE=1`` adds ``-march=native`` (tuned to the building CPU,
    usable only there).  ``PYG_ATTN_EXTRA_CFLAGS`` appends compiler flags and
    ``PYG_ATTN_EXTRA_LDFLAGS`` linker flags (e.g. a sanitizer build).  The
    extension's cache name carries a digest of its flags, of its sources, of the
    torch version and, for native builds, of the CPU, so a build made with other
    flags, from other sources, for another torch or on another CPU is never reused
    (and a cached build is never silently rebuilt).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import shlex
import sys
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch

_SOURCE = Path(__file__).with_name("csrc") / "fused_attention.cpp"
_BASE_CFLAGS = ("-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math")
_lock = threading.Lock()
_state: dict[str, object] = {}


def load_extension() -> ModuleType | None:
    """Returns the compiled module, building it once; ``None`` if unavailable.

    Once loaded it is a dictionary lookup (a layer call asks several times)."""
    if "module" in _state:
        return _state["module"]  # type: ignore[return-value]
    return _load_once()


@torch.compiler.disable
def _load_once() -> ModuleType | None:
    """Builds or imports the extension, once per process (outside ``torch.compile``)."""
    with _lock:
        if "module" not in _state:
            _state["module"] = _build()
    return _state["module"]  # type: ignore[return-value]


@torch._dynamo.assume_constant_result
def extension_available() -> bool:
    """Whether the compiled extension loads (building it once, as
    :func:`load_extension`).  Under ``torch.compile`` it is called at trace
    time and its answer is a constant of the graph, so a caller that only asks
    whether the fused kernels exist breaks no graph."""
    return load_extension() is not None


def _flag_set(name: str) -> bool:
    """Whether the environment variable ``name`` is set to something other than 0."""
    return os.environ.get(name, "0") not in ("", "0")


def build_flags() -> tuple[list[str], list[str]]:
    """The ``(cflags, ldflags)`` of the extension under the current environment."""
    cflags = list(_BASE_CFLAGS)
    if _flag_set("PYG_ATTN_NATIVE"):
        cflags.append("-march=native")
    cflags += shlex.split(os.environ.get("PYG_ATTN_EXTRA_CFLAGS", ""))
    ldflags = ["-fopenmp", *shlex.split(os.environ.get("PYG_ATTN_EXTRA_LDFLAGS", ""))]
    return cflags, ldflags


def extension_name(cflags: list[str], ldflags: list[str]) -> str:
    """The cache name of a build with these flags: a digest of the flags, of the
    sources (:func:`_source_digest`), of the torch version and, when the flags tune
    for the building CPU, of that CPU's identity."""
    key = (" ".join(cflags) + " | " + " ".join(ldflags) + " | " + _source_digest()
           + " | " + torch.__version__)
    if any(flag.startswith(("-march=native", "-mtune=native", "-mcpu=native")) for flag in cflags):
        key += " | " + _cpu_identity()
    return "pyg_attn_fused_cpu_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _source_digest() -> str:
    """Where the sources are and what they hold (the ``.cpp`` and the headers it
    includes). torch's build cache hashes only the ``.cpp``: without this an edited
    header would load a stale build, and two checkouts sharing one cache would
    rebuild each other's extension on every load."""
    digest = hashlib.sha256(str(_SOURCE.parent.resolve()).encode())
    for path in sorted(_SOURCE.parent.glob("*.[ch]*")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _cpu_identity() -> str:
    """The CPU's model and feature flags (``/proc/cpuinfo``; else ``platform``)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    keys = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in keys}))


def build_notice(directory: str) -> str:
    """The line written before a build starts: what, why, about how long, where
    it goes and how to build ahead of time."""
    return ("pyg_attn: compiling the fused CPU attention kernel for the installed torch "
            f"(once: under two minutes on 2 cores, then cached in {directory}; "
            "`python -m pyg_attn build-ext` does this ahead of time)")


def _library_path(name: str) -> tuple[Path, Path]:
    """The build folder of extension ``name`` (created) and the library a finished
    build leaves there.  The folder sits in ``TORCH_EXTENSIONS_DIR``, else in
    torch's user cache under the Python version (a build is tied to both the
    Python ABI and, by its name, the torch version)."""
    from torch.utils.cpp_extension import get_default_build_root

    python = f"py{sys.version_info[0]}{sys.version_info[1]}{getattr(sys, 'abiflags', '')}"
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(get_default_build_root(), python)
    directory = Path(root) / name
    directory.mkdir(parents=True, exist_ok=True)
    return directory, directory / (name + (".pyd" if sys.platform == "win32" else ".so"))


def _build() -> ModuleType | None:
    """The extension: imported from its cached library, else compiled (announced);
    ``None`` after one warning when it cannot be built.

    A cached library is imported directly, not through ``load``: its name already
    stands for its sources, flags and torch, whereas ``load`` would ask ninja,
    which rebuilds (silently) whenever a source file is newer than the library,
    as after every reinstall of the package.
    """
    if _flag_set("PYG_ATTN_DISABLE_CPP"):
        return None
    try:
        cflags, ldflags = build_flags()
        name = extension_name(cflags, ldflags)
        directory, library = _library_path(name)
        if library.is_file():
            try:
                return _import_library(name, library)
            except ImportError:  # an interrupted or foreign build: compiled again
                pass
        return _compile(name, directory, cflags, ldflags)
    except Exception as exc:  # noqa: BLE001 - any build failure means "fall back"
        warnings.warn(
            "pyg_attn: the fused CPU kernel could not be built "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "falling back to the slower pure-PyTorch reference backend.",
            RuntimeWarning, stacklevel=3)
        return None


def _import_library(name: str, library: Path) -> ModuleType:
    """Imports the compiled module ``name`` from ``library``."""
    spec = importlib.util.spec_from_file_location(name, library)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {library}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compile(name: str, directory: Path, cflags: list[str], ldflags: list[str]) -> ModuleType:
    """Compiles and imports the extension, saying so on stderr before it starts
    (:func:`build_notice`) and how long it took after."""
    from torch.utils.cpp_extension import load

    print(build_notice(str(directory)), file=sys.stderr, flush=True)
    start = time.perf_counter()
    module = load(name=name, sources=[str(_SOURCE)], extra_cflags=cflags,
                  extra_ldflags=ldflags, build_directory=str(directory), verbose=False)
    print(f"pyg_attn: fused CPU kernel built in {time.perf_counter() - start:.0f} s",
          file=sys.stderr, flush=True)
    return module
