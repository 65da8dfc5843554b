"""In-process failure throttling (SECURITY.md 32: brute force is rate limited).

Counts *failures* per key in fixed windows, so legitimate traffic is never
slowed and an attacker guessing a client secret from one address is stopped
after ``limit`` misses per ``window`` -- without letting them lock the real
client out from elsewhere (keys include the source address). Bounded memory:
the table is cleared when it grows past ``max_keys``.
"""

from __future__ import annotations

from .clock import Clock


class FailureThrottle:
    def __init__(self, clock: Clock, *, limit: int = 20, window: float = 60.0,
                 max_keys: int = 100_000) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._counts: dict[str, tuple[float, int]] = {}

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        hit = self._counts.get(key)
        if hit is None:
            return 0.0
        start, count = hit
        remaining = start + self.window - self.clock.now()
        if remaining <= 0:
            del self._counts[key]
            return 0.0
        return remaining if count >= self.limit else 0.0

    def failed(self, key: str) -> None:
        now = self.clock.now()
        hit = self._counts.get(key)
        if hit is None or hit[0] + self.window <= now:
            if len(self._counts) >= self.max_keys:
                self._counts.clear()
            self._counts[key] = (now, 1)
        else:
            self._counts[key] = (hit[0], hit[1] + 1)
