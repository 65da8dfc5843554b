"""Provider tokens in the token store, sealed per user (the App Service Token Store, done better).

One record per user and provider (kind ``provider_token``, id
``<user key>:<provider>``, subject = user key), sealed with AES-256-GCM like
everything else, so a record swapped between users fails to open. Nothing is
kept on local disk outside the store, so tokens survive restarts and are
shared by every instance.

Requests that pass provider tokens on read them every time, so records read
are kept for :data:`CACHE_SECONDS` in a bounded in-process cache; this
process's own writes replace the cached copy at once, and the refresh path
reads the store itself (``cached=False``) before deciding to refresh.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..cache import Cache
from ..store.sealed import SealedStore

KIND = "provider_token"
CACHE_SECONDS = 0.5


def format_expires_on(ts: float) -> str:
    """Easy Auth's timestamp style (``/.auth/me`` and ``X-MS-TOKEN-*-EXPIRES-ON``):
    seconds with seven fractional digits, UTC ``Z``."""
    when = datetime.fromtimestamp(ts, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{when.microsecond * 10:07d}Z"
KEEP_AFTER_EXPIRY = 180 * 86400
"""How long a grant is kept when nothing refreshes it (refresh tokens outlive access tokens)."""


@dataclass
class ProviderTokens:
    provider: str
    user_id: str
    """The provider's own id for the user (``sub``, object id, numeric id...)."""
    access_token: str | None = None
    refresh_token: str | None = None
    id_token: str | None = None
    expires_on: float | None = None
    """Absolute expiry of the access token (seconds since the epoch), when known."""
    scopes: list[str] = field(default_factory=list)
    claims: list[tuple[str, str]] = field(default_factory=list)
    access_token_secret: str | None = None
    """OAuth 1.0a token secret (Twitter's legacy API); None elsewhere."""
    updated_at: float = 0.0
    refresh_failed: str | None = None
    """Why the last refresh failed for good (provider said invalid_grant), if it did."""

    def __repr__(self) -> str:
        return (f"ProviderTokens(provider={self.provider!r}, user_id={self.user_id!r}, "
                f"expires_on={self.expires_on!r}, refresh_token={'yes' if self.refresh_token else 'no'})")

    def to_data(self) -> dict[str, Any]:
        data = asdict(self)
        data["claims"] = [list(c) for c in self.claims]
        return data

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> ProviderTokens:
        d = dict(d)
        d["claims"] = [(str(t), str(v)) for t, v in d.get("claims", [])]
        return cls(**d)

    def expires_within(self, now: float, skew: float) -> bool:
        return self.expires_on is not None and self.expires_on - skew <= now


class ProviderTokenStore:
    def __init__(self, store: SealedStore, *, enabled: bool = True) -> None:
        self.store = store
        self.enabled = enabled
        self._cache: Cache[str, tuple[ProviderTokens | None]] = Cache(ttl=CACHE_SECONDS)

    @staticmethod
    def record_id(user_key: str, provider: str) -> str:
        return f"{user_key}:{provider}"

    async def save(self, user_key: str, tokens: ProviderTokens) -> None:
        if not self.enabled:
            return
        now = self.store.clock.now()
        tokens.updated_at = now
        rid = self.record_id(user_key, tokens.provider)
        self._cache.drop(rid)
        await self.store.put(KIND, rid, tokens.to_data(),
                             expires_at=now + KEEP_AFTER_EXPIRY, subject=user_key)

    async def get(self, user_key: str, provider: str, *, cached: bool = True) -> ProviderTokens | None:
        """The stored tokens; ``cached=False`` reads the store even when a copy is cached."""
        if not self.enabled:
            return None
        rid = self.record_id(user_key, provider)
        hit = self._cache.get(rid) if cached else None
        if hit is None:
            entry = await self.store.get(KIND, rid)
            hit = (ProviderTokens.from_data(entry.data) if entry else None,)
            self._cache.put(rid, hit)  # "nothing stored" is worth remembering too
        return hit[0]

    async def of_user(self, user_key: str) -> list[ProviderTokens]:
        if not self.enabled:
            return []
        return [ProviderTokens.from_data(e.data) for e in await self.store.by_subject(KIND, user_key)]

    async def delete(self, user_key: str, provider: str) -> bool:
        rid = self.record_id(user_key, provider)
        self._cache.drop(rid)
        return await self.store.delete(KIND, rid)

    async def all_with_refresh_token(self) -> list[tuple[str, ProviderTokens]]:
        """Every stored grant that can be refreshed offline (the background refresher)."""
        out = []
        for e in await self.store.all(KIND):
            t = ProviderTokens.from_data(e.data)
            if t.refresh_token and e.subject:
                out.append((e.subject, t))
        return out
