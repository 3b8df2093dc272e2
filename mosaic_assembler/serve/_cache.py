"""A bounded in-memory tile cache: least recently used first out, bounded by bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict


class TileCache:
    """Rendered tiles by key (path + query), at most `max_bytes` of them in total.

    A tile larger than the whole cache is not kept. Thread-safe (the tile endpoints run in
    a thread pool).
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self._items: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._size

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The (body, media type) of a cached tile, or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, key: str, body: bytes, media_type: str) -> None:
        """Keep a tile, dropping the least recently used ones beyond `max_bytes`."""
        if len(body) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old[0])
            self._items[key] = (body, media_type)
            self._size += len(body)
            while self._size > self.max_bytes:
                _, (dropped, _) = self._items.popitem(last=False)
                self._size -= len(dropped)
