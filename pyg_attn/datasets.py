"""Offline loading of the benchmark data sets shipped with pyg_attn.

Cora, CiteSeer (Planetoid; public or full split) and MUTAG (TU format) are shipped
as raw files inside the package (``pyg_attn/data``, sources and licences in
``pyg_attn/data/LICENSES.md``), so the examples, tests and CLI run without a
network.  :func:`load_dataset` finds the raw files, copies them into a cache
folder and lets PyG process them there: neither the package nor a user's data
root is ever written.

Where raw files are looked for, first match wins:

1. the ``root`` argument (the CLI's ``--data-root``),
2. the ``PYG_ATTN_DATA`` environment variable,
3. the copies shipped in the package (Cora, CiteSeer, MUTAG only).

A root uses the layout PyG's loaders expect below their own ``root``, one level
per loader family::

    <root>/planetoid/Cora/raw/ind.cora.x ...
    <root>/planetoid/CiteSeer/raw/ind.citeseer.x ...
    <root>/TU/MUTAG/raw/MUTAG_A.txt ...

Where the cache lives, first match wins: the ``cache_dir`` argument, the
``PYG_ATTN_CACHE`` environment variable, ``~/.cache/pyg_attn``.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import pickle
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch_geometric
from torch_geometric.data import Dataset
from torch_geometric.datasets import Planetoid, TUDataset

__all__ = ["DATA_ENV", "CACHE_ENV", "PLANETOID_SPLITS", "SHIPPED", "load_dataset",
           "package_data_dir"]

#: Node splits of the Planetoid data sets (``split`` of :func:`load_dataset`).
PLANETOID_SPLITS = ("public", "full")

#: Environment variable naming a data root (same layout as the shipped data).
DATA_ENV = "PYG_ATTN_DATA"
#: Environment variable naming the cache folder.
CACHE_ENV = "PYG_ATTN_CACHE"
#: Data sets shipped with the package: lower-case name -> (family, PyG name).
SHIPPED = {
    "cora": ("planetoid", "Cora"),
    "citeseer": ("planetoid", "CiteSeer"),
    "mutag": ("TU", "MUTAG"),
}
_PLANETOID = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
_PLANETOID_SUFFIXES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
_TU_SUFFIXES = ("A", "graph_indicator")

PathLike = Union[str, "os.PathLike[str]"]


def package_data_dir() -> Path:
    """The folder of the raw data shipped inside the package (read only)."""
    return Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class _Source:
    """Where the raw files of one data set come from."""

    raw_dir: Path   # folder holding the raw files
    label: str      # short tag for the cache key: "package" or "root"
    origin: str     # for messages: where the folder is and who named it


def _family_and_name(name: str) -> tuple:
    """Maps a user-given name to (loader family, canonical PyG name)."""
    key = name.lower()
    if key in _PLANETOID:
        return "planetoid", _PLANETOID[key]
    if key in SHIPPED:
        return SHIPPED[key]
    return "TU", name


def _required_files(family: str, name: str) -> list[str]:
    if family == "planetoid":
        return [f"ind.{name.lower()}.{suffix}" for suffix in _PLANETOID_SUFFIXES]
    return [f"{name}_{suffix}.txt" for suffix in _TU_SUFFIXES]


def _find_in_root(root: Path, family: str, name: str) -> Path:
    """``root/<family>/<name>/raw``, matching folder names case-insensitively."""
    expected = root / family / name / "raw"
    if expected.is_dir():
        return expected
    family_dir = _match_child(root, family)
    if family_dir is None:
        return expected
    name_dir = _match_child(family_dir, name)
    return expected if name_dir is None else name_dir / "raw"


def _match_child(parent: Path, child: str) -> Path | None:
    if not parent.is_dir():
        return None
    for entry in sorted(parent.iterdir()):
        if entry.is_dir() and entry.name.lower() == child.lower():
            return entry
    return None


def _check_raw(source: _Source, family: str, name: str, root: Path | None) -> None:
    """Raises a helpful FileNotFoundError unless the raw files are all there."""
    required = _required_files(family, name)
    if source.raw_dir.is_dir():
        missing = [f for f in required if not (source.raw_dir / f).is_file()]
        if not missing:
            return
        problem = f"the folder {source.raw_dir} lacks {', '.join(missing)}"
    else:
        problem = f"there is no folder {source.raw_dir}"
    layout = f"<root>/{family}/{name}/raw/{required[0]}, ..."
    lines = [
        f"Data set {name!r} not found under {source.origin}: {problem}.",
        f"Provide its raw files in PyG's layout ({layout}) and pass that root with the "
        f"--data-root flag (load_dataset(..., root=...)) or the {DATA_ENV} environment "
        "variable.",
    ]
    if root is not None:
        if (root / name / "raw").is_dir() or (root / "raw").is_dir():
            lines.append(f"Note: {root} looks like a data set or family folder; the root "
                         f"is the folder that holds '{family}/'.")
        if name.lower() in SHIPPED:
            lines.append("Or leave both unset to use the copy shipped with pyg_attn.")
    elif name.lower() in SHIPPED:
        lines.append("The copy shipped with pyg_attn is missing: reinstall the package "
                     "with its data files.")
    raise FileNotFoundError(" ".join(lines))


def _fingerprint(source: _Source) -> str:
    """Cache key for a source: its location, file stats and the PyG version."""
    digest = hashlib.sha256()
    digest.update(str(source.raw_dir.resolve()).encode())
    digest.update(torch_geometric.__version__.encode())
    for path in sorted(source.raw_dir.iterdir()):
        if path.is_file():
            stat = path.stat()
            digest.update(f"\0{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return f"{source.label}-{digest.hexdigest()[:16]}"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialises copy + processing of one cache entry between processes."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, PyG's own checks still apply
        yield
        return
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stage(source: _Source, dest_raw: Path) -> None:
    """Copies the raw files to ``dest_raw`` (atomically; once per cache key)."""
    if dest_raw.is_dir():
        return
    tmp = Path(tempfile.mkdtemp(prefix=".raw-", dir=dest_raw.parent))
    try:
        for path in sorted(source.raw_dir.iterdir()):
            if path.is_file():
                # copyfile, not copy2: the copy must be writable whatever the source's mode.
                shutil.copyfile(path, tmp / path.name)
        os.replace(tmp, dest_raw)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _resolve_cache(cache_dir: PathLike | None) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or Path("~") / ".cache" / "pyg_attn"
    return Path(cache_dir).expanduser().resolve()


def _resolve_root(root: PathLike | None) -> tuple:
    """Returns ``(root path or None, description of where it came from)``."""
    if root is not None:
        return Path(root).expanduser().resolve(), "the root argument / --data-root"
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser().resolve(), f"the {DATA_ENV} environment variable"
    return None, ""


class _CSRMatrix:
    """Stands in for ``scipy.sparse.csr_matrix`` when unpickling Planetoid files.

    The Planetoid feature files are pickled scipy CSR matrices; this rebuilds
    them from their pickled state (``data``, ``indices``, ``indptr``, ``_shape``)
    so that scipy, which is not a dependency, is not needed to read them.
    """

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def todense(self) -> np.ndarray:
        shape = tuple(self.__dict__["_shape" if "_shape" in self.__dict__ else "shape"])
        out = np.zeros(shape, dtype=self.data.dtype)
        rows = np.repeat(np.arange(shape[0]), np.diff(self.indptr))
        np.add.at(out, (rows, self.indices), self.data)  # duplicates add up, as in scipy
        return out


def _numpy_multiarray() -> Any:
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core.multiarray")


class _PlanetoidUnpickler(pickle.Unpickler):
    """Unpickles Planetoid raw files, allowing only the classes they consist of.

    Nothing but numpy arrays, scipy CSR matrices (read without scipy), lists and
    ``defaultdict`` can be built, so a raw file from a data root cannot run code.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("scipy.sparse") and name in ("csr_matrix", "csr_array"):
            return _CSRMatrix
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and \
                name in ("_reconstruct", "scalar"):
            return getattr(_numpy_multiarray(), name)
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if (module, name) in (("collections", "defaultdict"), ("__builtin__", "list"),
                              ("builtins", "list")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"unexpected object {module}.{name} in a Planetoid raw file")


def _read_planetoid_file(folder: str, prefix: str, name: str) -> Any:
    """Drop-in for ``torch_geometric.io.planetoid.read_file`` without scipy."""
    path = os.path.join(folder, f"ind.{prefix.lower()}.{name}")
    if name == "test.index":
        return torch.tensor(np.loadtxt(path, dtype=np.int64, ndmin=1))
    with open(path, "rb") as handle:
        out = _PlanetoidUnpickler(handle, encoding="latin1").load()
    if name == "graph":
        return out
    out = out.todense() if hasattr(out, "todense") else out
    return torch.from_numpy(np.asarray(out)).to(torch.float)


_reader_lock = threading.Lock()


class _OfflinePlanetoid(Planetoid):
    """:class:`~torch_geometric.datasets.Planetoid` that processes without scipy.

    PyG's own processing is kept; only its raw-file reader is swapped for
    :func:`_read_planetoid_file` while :meth:`process` runs.
    """

    def process(self) -> None:
        import torch_geometric.io.planetoid as planetoid_io

        if not hasattr(planetoid_io, "read_file"):  # a PyG without that hook
            return super().process()
        with _reader_lock:
            original = planetoid_io.read_file
            planetoid_io.read_file = _read_planetoid_file
            try:
                super().process()
            finally:
                planetoid_io.read_file = original


def _make(family: str, name: str, root: Path, transform: Callable | None,
          split: str) -> Dataset:
    if family == "planetoid":
        return _OfflinePlanetoid(str(root), name, split=split, transform=transform)
    return TUDataset(str(root), name, transform=transform)


def load_dataset(name: str, root: PathLike | None = None,
                 cache_dir: PathLike | None = None, *,
                 transform: Callable | None = None, split: str = "public") -> Dataset:
    """Loads a benchmark data set without touching the network where possible.

    ``"Cora"`` and ``"CiteSeer"`` give :class:`~torch_geometric.datasets.Planetoid`
    with the public split or the full one (``split``), ``"MUTAG"`` gives
    :class:`~torch_geometric.datasets.TUDataset`; names are case-insensitive.  The
    raw files come from ``root`` if given, else from the folder named by the
    ``PYG_ATTN_DATA`` environment variable if set, else from the copies shipped in
    the package.  A given root is used as is: if the data set is not there this
    raises rather than silently falling back.  The raw files are copied into a
    cache folder, under a key made from their location, file stats and the PyG
    version (so different sources never clash and a changed source is processed
    afresh), and PyG writes its ``processed/`` folder there, never in the package
    or the data root.

    Any other name is handed to PyG's own loader (``"PubMed"`` to ``Planetoid``,
    anything else to ``TUDataset``): taken from ``root``/``PYG_ATTN_DATA`` if one is
    set (same layout), otherwise downloaded by PyG into the cache folder, which
    needs a network connection.

    Parameters
    ----------
    name : str
        Data set name, e.g. ``"Cora"``, ``"citeseer"``, ``"MUTAG"``.
    root : str or os.PathLike, optional
        Data root with the layout ``<root>/planetoid/<Name>/raw`` and
        ``<root>/TU/<Name>/raw`` (as in PyG's loaders below their ``root``).
        Overrides ``PYG_ATTN_DATA``; the CLI passes its ``--data-root`` here.
    cache_dir : str or os.PathLike, optional
        Where raw copies and processed files go.  Defaults to ``PYG_ATTN_CACHE``,
        else ``~/.cache/pyg_attn``.
    transform : callable, optional
        Passed to the PyG data set (applied on access, e.g.
        ``torch_geometric.transforms.NormalizeFeatures()``).
    split : str
        Planetoid node split, as PyG's ``Planetoid(split=...)``: ``"public"``
        (default; Cora: 140 training, 500 validation, 1,000 test nodes) or
        ``"full"`` (the same validation and test nodes, every other node
        trains: 1,208 on Cora, 1,827 on CiteSeer).  Other data sets take
        ``"public"`` only.

    Returns
    -------
    torch_geometric.data.Dataset
        The PyG data set (``Planetoid`` or ``TUDataset``) rooted in the cache.

    Raises
    ------
    FileNotFoundError
        If a root is set (argument or ``PYG_ATTN_DATA``) but lacks the data set's
        raw files, the shipped copy is missing, or PyG's download of a data set
        that is not shipped fails (offline, unknown name); the message names the
        folder looked in and how to provide the files.
    TypeError
        If ``name`` is not a string.
    ValueError
        If ``name`` is empty, or ``split`` is not one of :data:`PLANETOID_SPLITS`
        (not ``"public"`` for a data set that is not Planetoid).

    Examples
    --------
    >>> import tempfile
    >>> from pyg_attn.datasets import load_dataset
    >>> cora = load_dataset("cora", cache_dir=tempfile.mkdtemp())
    >>> data = cora[0]
    >>> data.num_nodes, cora.num_classes, int(data.train_mask.sum())
    (2708, 7, 140)
    """
    if not isinstance(name, str):
        raise TypeError(f"'name' must be a str, got {type(name).__name__}")
    if not name.strip():
        raise ValueError("'name' must be a non-empty data set name")
    name = name.strip()
    family, canonical = _family_and_name(name)
    if split not in (PLANETOID_SPLITS if family == "planetoid" else ("public",)):
        raise ValueError(f"'split' must be one of {PLANETOID_SPLITS} for Planetoid data sets "
                         f"and 'public' for others, got {split!r} for {canonical!r}")
    cache = _resolve_cache(cache_dir)
    root_path, origin = _resolve_root(root)

    if root_path is not None:
        raw_dir = _find_in_root(root_path, family, canonical)
        if family == "TU" and raw_dir.parent.name != canonical:
            canonical = raw_dir.parent.name  # TU file names carry the exact spelling
        source = _Source(raw_dir, "root", f"{root_path} (from {origin})")
    elif name.lower() in SHIPPED:
        raw_dir = package_data_dir() / family / canonical / "raw"
        source = _Source(raw_dir, "package", f"the data shipped with pyg_attn ({raw_dir})")
    else:
        # Not shipped and no root: PyG downloads into the cache (needs a network).
        online = cache / family / "online"
        online.mkdir(parents=True, exist_ok=True)
        with _locked(online):
            try:
                return _make(family, canonical, online, transform, split)
            except OSError as error:  # no network, or no such data set on PyG's servers
                raise FileNotFoundError(
                    f"Data set {name!r} is not shipped with pyg_attn (shipped: Cora, CiteSeer, "
                    f"MUTAG) and no data root is set, so PyG tried to download it into "
                    f"{online} and failed ({type(error).__name__}: {error}). Check the name "
                    f"and the network, or provide its raw files in PyG's layout "
                    f"(<root>/{family}/{canonical}/raw/...) and pass that root with the "
                    f"--data-root flag or the {DATA_ENV} environment variable.") from error

    _check_raw(source, family, canonical, root_path)
    entry = cache / family / _fingerprint(source)
    (entry / canonical).mkdir(parents=True, exist_ok=True)
    with _locked(entry):
        _stage(source, entry / canonical / "raw")
        return _make(family, canonical, entry, transform, split)
