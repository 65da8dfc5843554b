"""Authorization codes (RFC 6749 §4.1.2): single use, short-lived, bound.

A code is a 256-bit random string; the store keeps only its HMAC, with the
client, redirect URI, PKCE challenge, scope, nonce and the grant (family) id
it will start. Lifetime is ``tokens.code_lifetime`` (60 s by default, never
more than 10 minutes, RFC 6749 §4.1.2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .hashing import CODE_PREFIX, TokenHasher, new_token
from .store.sealed import Entry, SealedStore

KIND = "code"
MAX_LIFETIME = 600.0


@dataclass(frozen=True)
class CodeGrant:
    client_id: str
    user_id: str
    redirect_uri: str
    scope: str
    family: str
    auth_time: float
    nonce: str | None = None
    code_challenge: str | None = None
    sid: str | None = None


class AuthorizationCodes:
    def __init__(self, store: SealedStore, hasher: TokenHasher, lifetime: float) -> None:
        self.store = store
        self.hasher = hasher
        self.lifetime = min(lifetime, MAX_LIFETIME)

    async def issue(self, grant: CodeGrant) -> str:
        code = new_token(CODE_PREFIX)
        await self.store.put(KIND, self.hasher.hash(code), asdict(grant),
                             expires_at=self.store.clock.now() + self.lifetime,
                             grant_id=grant.family, subject=grant.user_id)
        return code

    def key(self, code: str) -> str:
        return self.hasher.hash(code)

    async def find(self, code: str) -> tuple[CodeGrant, Entry] | None:
        if not code.startswith(CODE_PREFIX) or len(code) > 128:
            return None
        entry = await self.store.get(KIND, self.key(code))
        if entry is None:
            return None
        return CodeGrant(**entry.data), entry

    async def consume(self, code: str) -> Entry | None:
        """Mark used; ``consumed_at is None`` on the result means first use."""
        return await self.store.consume(KIND, self.key(code))
