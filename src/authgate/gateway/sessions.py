"""Gateway sessions: what the browser cookie and the ``X-ZUMO-AUTH`` session token refer to.

A session is a server-side record (kind ``gw_session``) keyed by a public
128-bit session id (``sid``). The browser cookie is ``<sid>.<secret>`` with a
256-bit secret whose HMAC is stored, so the cookie is a credential that a
database dump does not reveal; session tokens carry the ``sid`` in their
signed claims. Either way, ending the record ends the session at once
(logout, sign-out-everywhere), and an id that was never issued matches nothing.
A fresh session (and cookie) is created at every login: no fixation.

Every request of a signed-in user looks its session up, so records read are
kept for :data:`CACHE_SECONDS` in a bounded in-process :class:`~authgate.cache.Cache`.
This process's own writes and deletions update the cache at once; a session
another instance ends is refused here within that time (well inside the 1 s
the design allows for revocation to reach every instance).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..cache import Cache
from ..hashing import TokenHasher, b64url, equal, new_id
from ..store.sealed import SealedStore

KIND = "gw_session"
_SECRET_BYTES = 32
CACHE_SECONDS = 0.5


@dataclass
class GatewaySession:
    sid: str
    user_key: str
    """Stable key of the signed-in identity: ``<provider>|<provider user id>``."""
    user_id: str
    """The provider's id for the user (X-MS-CLIENT-PRINCIPAL-ID, /.auth/me user_id)."""
    provider: str
    name: str
    claims: list[tuple[str, str]] = field(default_factory=list)
    auth_time: float = 0.0
    expires_at: float = 0.0
    secret_hash: str = ""
    verified_secret: str | None = field(default=None, repr=False, compare=False)
    """The cookie secret last checked against ``secret_hash`` (in memory only, never
    stored): the next request with the same cookie skips the keyed hash."""

    def to_data(self) -> dict[str, Any]:
        return {"user_key": self.user_key, "user_id": self.user_id, "provider": self.provider,
                "name": self.name, "claims": [list(c) for c in self.claims],
                "auth_time": self.auth_time, "secret_hash": self.secret_hash}

    @classmethod
    def from_data(cls, sid: str, d: dict[str, Any], expires_at: float) -> GatewaySession:
        return cls(sid, d["user_key"], d["user_id"], d["provider"], d.get("name", ""),
                   [(str(t), str(v)) for t, v in d.get("claims", [])], d.get("auth_time", 0.0),
                   expires_at, d.get("secret_hash", ""))


def user_key(provider: str, user_id: str) -> str:
    return f"{provider}|{user_id}"


class GatewaySessions:
    def __init__(self, store: SealedStore, hasher: TokenHasher, lifetime: float,
                 *, sliding: bool = False, max_lifetime: float | None = None) -> None:
        self.store = store
        self.hasher = hasher
        self.lifetime = lifetime
        self.sliding = sliding
        self.max_lifetime = max_lifetime or lifetime * 3
        self._cache: Cache[str, GatewaySession] = Cache(ttl=CACHE_SECONDS)

    async def start(self, *, provider: str, user_id: str, name: str,
                    claims: list[tuple[str, str]], lifetime: float | None = None) -> tuple[str, GatewaySession]:
        """A new session; returns (cookie value, session)."""
        import secrets

        now = self.store.clock.now()
        secret = b64url(secrets.token_bytes(_SECRET_BYTES))
        session = GatewaySession(new_id(), user_key(provider, user_id), user_id, provider, name,
                                 claims, now, now + (lifetime or self.lifetime),
                                 self.hasher.hash(secret))
        await self._save(session)
        return f"{session.sid}.{secret}", session

    async def _save(self, s: GatewaySession) -> None:
        self._cache.drop(s.sid)
        await self.store.put(KIND, s.sid, s.to_data(), expires_at=s.expires_at, subject=s.user_key)

    async def by_sid(self, sid: str) -> GatewaySession | None:
        if not sid or len(sid) > 64:
            return None
        session = self._cache.get(sid)
        if session is None:
            entry = await self.store.get(KIND, sid)
            if entry is None or entry.expires_at is None:
                return None
            session = GatewaySession.from_data(entry.id, entry.data, entry.expires_at)
            self._cache.put(sid, session)
        elif session.expires_at <= self.store.clock.now():
            self._cache.drop(sid)
            return None
        return session

    async def by_cookie(self, cookie: str | None) -> GatewaySession | None:
        """The live session a cookie value refers to; None for anything forged or ended."""
        if not cookie or len(cookie) > 200 or cookie.count(".") != 1:
            return None
        sid, secret = cookie.split(".")
        session = await self.by_sid(sid)
        if session is None:
            return None
        if session.verified_secret is None or not equal(secret, session.verified_secret):
            if not equal(self.hasher.hash(secret), session.secret_hash):
                return None
            session.verified_secret = secret
        if self.sliding:
            await self.touch(session)
        return session

    async def touch(self, session: GatewaySession) -> None:
        """Sliding expiration: extend, but never past ``max_lifetime`` after login."""
        now = self.store.clock.now()
        target = min(now + self.lifetime, session.auth_time + self.max_lifetime)
        if target - session.expires_at > self.lifetime / 10:
            session.expires_at = target
            await self._save(session)

    async def update(self, session: GatewaySession) -> None:
        await self._save(session)

    async def end(self, session: GatewaySession) -> None:
        self._cache.drop(session.sid)
        await self.store.delete(KIND, session.sid)

    async def end_all(self, key: str) -> int:
        entries = await self.store.by_subject(KIND, key, limit=10_000)
        for e in entries:
            self._cache.drop(e.id)
            await self.store.delete(KIND, e.id)
        return len(entries)
