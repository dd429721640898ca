"""The one cache of everything derived from a graph or feature input.

Layers and ops take a new ``edge_index`` (or sparse adjacency, or feature matrix)
on every call, yet most models pass the same one again and again.  Whatever is
built from such an input (its CSR/CSC :class:`~pyg_attn.ops.PreparedGraph`, the
self-looped graph of the GAT layers, the CSR form of a sparse feature matrix,
...) is kept in :data:`GRAPH_CACHE`, under one policy:

* **keyed by identity**: an entry is served only to the very same object
  (``ref() is obj``), for the same *kind* of derived value and the same extra
  key (sizes, options);
* **invalidated on in-place change**: each entry carries a stamp (the version
  counters of the object's tensors, its shape, ...); a different stamp is a miss,
  so an edited tensor is never served stale;
* **weak**: only a weak reference to the object is held, and the entry is
  dropped when the object dies (objects that cannot be weakly referenced are
  not cached);
* **bounded**: at most :data:`CACHE_SIZE` entries over all kinds, least recently
  used first out; never part of a module's state (nothing in a ``state_dict``).

:func:`pyg_attn.ops.clear_cache` empties it.  A :class:`~pyg_attn.ops.PreparedGraph`
built once with :func:`~pyg_attn.ops.prepare` needs no cache at all.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Hashable, Optional

__all__ = ["CACHE_SIZE", "GRAPH_CACHE", "IdentityCache"]

#: Entries kept in :data:`GRAPH_CACHE`, over all kinds.
CACHE_SIZE = 32


class IdentityCache:
    """LRU cache of values derived from objects, keyed by identity (see the module doc).

    Parameters
    ----------
    size : int
        The most entries kept.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: "OrderedDict[tuple, tuple[weakref.ref, Hashable, Any]]" = OrderedDict()

    def get(self, kind: str, obj: Any, extra: tuple, stamp: Hashable) -> Optional[Any]:
        """The value of ``kind`` stored for ``(obj, extra)`` under ``stamp``, else ``None``."""
        key = (id(obj), kind, *extra)
        hit = self._entries.get(key)
        if hit is None:
            return None
        ref, seen, value = hit
        if ref() is obj and seen == stamp:
            self._entries.move_to_end(key)
            return value
        del self._entries[key]
        return None

    def put(self, kind: str, obj: Any, extra: tuple, stamp: Hashable, value: Any) -> Any:
        """Stores ``value`` as the ``kind`` of ``(obj, extra)`` under ``stamp``; returns it."""
        key = (id(obj), kind, *extra)
        try:
            ref = weakref.ref(obj, lambda _, k=key: self._entries.pop(k, None))
        except TypeError:
            return value
        self._entries[key] = (ref, stamp, value)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Drops every entry."""
        self._entries.clear()

    def count(self, kind: Optional[str] = None) -> int:
        """The number of entries (of ``kind``, or of every kind)."""
        return sum(1 for key in self._entries if kind is None or key[1] == kind)

    def holds(self, obj_id: int) -> bool:
        """Whether anything is cached for the object whose ``id()`` is ``obj_id``."""
        return any(key[0] == obj_id for key in self._entries)

    def __len__(self) -> int:
        return len(self._entries)


#: The cache every layer and op shares.
GRAPH_CACHE = IdentityCache(CACHE_SIZE)
