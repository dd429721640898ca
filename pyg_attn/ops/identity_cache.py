"""A small LRU cache keyed by an object's identity and a version stamp.

Used for everything derived from a graph input (CSR/CSC forms, self-looped
graphs, converted sparse adjacencies): an entry is served only to the very same
object (``ref() is obj``) with the same stamp (e.g. its tensors' version
counters, so an in-place edit is never served stale), holds only a weak
reference to the object (the entry dies with it), and at most ``size`` entries
are kept.  Objects that cannot be weakly referenced are simply not cached.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Hashable, Optional


class IdentityCache:
    """LRU cache of values derived from objects, keyed by identity (see module doc)."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._entries: "OrderedDict[tuple, tuple[weakref.ref, Hashable, Any]]" = OrderedDict()

    def get(self, obj: Any, extra: tuple, stamp: Hashable) -> Optional[Any]:
        """The value stored for ``(obj, extra)`` under ``stamp``, else ``None``."""
        key = (id(obj), *extra)
        hit = self._entries.get(key)
        if hit is None:
            return None
        ref, seen, value = hit
        if ref() is obj and seen == stamp:
            self._entries.move_to_end(key)
            return value
        del self._entries[key]
        return None

    def put(self, obj: Any, extra: tuple, stamp: Hashable, value: Any) -> Any:
        """Stores ``value`` for ``(obj, extra)`` under ``stamp`` and returns it."""
        key = (id(obj), *extra)
        try:
            ref = weakref.ref(obj, lambda _, k=key: self._entries.pop(k, None))
        except TypeError:
            return value
        self._entries[key] = (ref, stamp, value)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, obj_id: int) -> bool:
        """Whether anything is cached for the object whose ``id()`` is ``obj_id``."""
        return any(key[0] == obj_id for key in self._entries)
