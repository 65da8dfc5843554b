"""Revoked access tokens, until they expire on their own.

Access tokens are self-contained JWTs, so revoking one means remembering it
until its ``exp``. Three kinds of entry, all records of kind ``deny``:

* ``jti:<jti>``   -- one token (RFC 7009 revocation of an access token);
* ``grant:<id>``  -- every token of a refresh-token family / grant (``gid`` claim);
* ``user:<sub>``  -- every token of a user issued before a moment (sign out everywhere).

Each entry expires when the last token it can match would have expired. The
in-process mirror answers verification without I/O; it re-reads the store
when the ``_version`` marker changes, checked at most once per
``SYNC_SECONDS``, so a revocation made by another process (the CLI, another
instance) takes effect within that bound. Multi-instance backends may call
:meth:`Denylist.invalidate` from a change notification to make it immediate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .hashing import new_id
from .store.sealed import SealedStore

KIND = "deny"
VERSION_ID = "_version"
SYNC_SECONDS = 1.0


class Denylist:
    on_change: Callable[[str], Awaitable[None]] | None = None
    """Awaited after every local change; :mod:`authgate.cluster` tells the other instances."""

    def __init__(self, store: SealedStore) -> None:
        self.store = store
        self._entries: dict[str, tuple[float, float]] = {}  # key -> (expires_at, before)
        self._version: str | None = None
        self._checked_at = float("-inf")

    async def _bump(self) -> None:
        self._version = new_id(8)
        await self.store.put(KIND, VERSION_ID, {"v": self._version})
        if self.on_change is not None:
            await self.on_change("")

    async def add(self, key: str, expires_at: float, before: float = float("inf")) -> None:
        now = self.store.clock.now()
        current = self._entries.get(key)
        if current is not None:
            expires_at = max(expires_at, current[0])
        await self.store.put(KIND, key, {"before": before if before != float("inf") else None},
                             expires_at=expires_at)
        self._entries[key] = (expires_at, before)
        await self._bump()
        self._checked_at = now

    async def deny_jti(self, jti: str, exp: float) -> None:
        await self.add(f"jti:{jti}", exp)

    async def deny_grant(self, grant_id: str, until: float) -> None:
        await self.add(f"grant:{grant_id}", until)

    async def deny_user(self, sub: str, until: float) -> None:
        await self.add(f"user:{sub}", until, before=self.store.clock.now())

    def invalidate(self) -> None:
        """Force a re-read on the next check (change notifications)."""
        self._checked_at = float("-inf")

    async def sync(self, *, force: bool = False) -> None:
        now = self.store.clock.now()
        if not force and now - self._checked_at < SYNC_SECONDS:
            return
        self._checked_at = now
        marker = await self.store.get(KIND, VERSION_ID)
        version = marker.data["v"] if marker else None
        if version == self._version and not force:
            return
        entries: dict[str, tuple[float, float]] = {}
        for e in await self.store.all(KIND):
            if e.id == VERSION_ID or e.expires_at is None:
                continue
            before = e.data.get("before")
            entries[e.id] = (e.expires_at, float("inf") if before is None else float(before))
        self._entries = entries
        self._version = version

    def denies(self, claims: dict[str, Any]) -> bool:
        """True if these (already verified) access-token claims have been revoked."""
        entries = self._entries
        if not entries:
            return False
        now = self.store.clock.now()
        for key in (f"jti:{claims.get('jti')}", f"grant:{claims.get('gid')}"):
            hit = entries.get(key)
            if hit is not None and hit[0] > now:
                return True
        hit = entries.get(f"user:{claims.get('sub')}")
        return hit is not None and hit[0] > now and float(claims.get("iat", 0)) <= hit[1]
