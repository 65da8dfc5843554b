"""A small bounded in-process cache for the per-request hot path.

The gateway reads the same few records on every request of a signed-in user
(the session, the provider's tokens) and verifies the same session token again
and again. :class:`Cache` keeps the answer for a short ``ttl`` so a burst of
requests costs one store read and one signature check, not one each.

* Bounded: at most ``size`` entries; the oldest insertion goes first.
* Short-lived: an entry older than ``ttl`` seconds is a miss. Time is
  monotonic by default (not the store's clock, which tests may freeze); a
  cache whose lifetime is part of the contract (the user re-read of the
  refresh grant) passes the store's clock instead. Changes made by *another*
  instance are therefore seen within ``ttl``; the gateway keeps it at 0.5 s,
  under the 1 s within which revocation must be seen across instances.
* Changes made by *this* process are never stale: the code that writes or
  deletes a record calls :meth:`Cache.put` or :meth:`Cache.drop` at once.
* ``ttl=0`` turns the cache off (every lookup is a miss, nothing is kept).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Cache(Generic[K, V]):
    def __init__(self, *, ttl: float, size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl < 0 or size < 1:
            raise ValueError("a cache needs ttl >= 0 and size >= 1")
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[0] <= self._clock():
            del self._entries[key]
            return None
        return hit[1]

    def put(self, key: K, value: V) -> None:
        if self.ttl == 0:
            return
        entries = self._entries
        if key not in entries and len(entries) >= self.size:
            del entries[next(iter(entries))]
        entries[key] = (self._clock() + self.ttl, value)

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
