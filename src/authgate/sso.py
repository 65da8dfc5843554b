"""Single sign-on sessions of the issuer's own login (the ``agsso`` cookie).

The cookie holds a 256-bit random session id; the store keeps only its HMAC,
the user and the time of authentication, so logout and sign-out-everywhere end
a session server-side at once, and a cookie that was never issued matches
nothing. A fresh id is issued at every login (no fixation).
"""

from __future__ import annotations

from dataclasses import dataclass

from .hashing import SESSION_PREFIX, TokenHasher, new_id, new_token
from .store.sealed import SealedStore

KIND = "sso"
COOKIE = "agsso"


@dataclass(frozen=True)
class SSOSession:
    key: str
    """HMAC of the cookie value (the store id)."""
    sid: str
    """Public session id, put in ID tokens as ``sid``."""
    user_id: str
    auth_time: float
    expires_at: float


class SSOSessions:
    def __init__(self, store: SealedStore, hasher: TokenHasher, lifetime: float) -> None:
        self.store = store
        self.hasher = hasher
        self.lifetime = lifetime

    async def start(self, user_id: str) -> tuple[str, SSOSession]:
        """A new session; returns the cookie value (shown once) and the session."""
        now = self.store.clock.now()
        value = new_token(SESSION_PREFIX)
        key = self.hasher.hash(value)
        session = SSOSession(key, new_id(), user_id, now, now + self.lifetime)
        await self.store.put(KIND, key, {"sid": session.sid, "user_id": user_id, "auth_time": now},
                             expires_at=session.expires_at, subject=user_id)
        return value, session

    async def get(self, cookie: str | None) -> SSOSession | None:
        if not cookie or not cookie.startswith(SESSION_PREFIX) or len(cookie) > 128:
            return None
        key = self.hasher.hash(cookie)
        entry = await self.store.get(KIND, key)
        if entry is None or entry.expires_at is None:
            return None
        d = entry.data
        return SSOSession(key, d["sid"], d["user_id"], d["auth_time"], entry.expires_at)

    async def end(self, session: SSOSession) -> None:
        await self.store.delete(KIND, session.key)

    async def end_all(self, user_id: str) -> int:
        entries = await self.store.by_subject(KIND, user_id)
        for e in entries:
            await self.store.delete(KIND, e.id)
        return len(entries)

    async def of_user(self, user_id: str) -> list[SSOSession]:
        return [SSOSession(e.id, e.data["sid"], user_id, e.data["auth_time"], e.expires_at or 0)
                for e in await self.store.by_subject(KIND, user_id)]
