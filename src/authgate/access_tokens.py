"""Our access tokens: JWTs per RFC 9068 ("JWT Profile for OAuth 2.0 Access Tokens").

Minted with ``typ: at+jwt`` and the claims of RFC 9068 §2.2 (``iss exp aud sub
client_id iat jti``, plus ``scope``, ``auth_time`` and ``gid``, the grant /
refresh-token family id that lets a whole family be revoked at once).

Verification (RFC 9068 §4) checks ``typ``, the signature with our keys only,
exact ``iss``, ``aud``, ``exp``/``nbf``/``iat`` within a bounded leeway, and
the denylist. Tokens verified before are answered from a bounded cache keyed
by a hash of the token; the cache keeps the claims, not the verdict, so
expiry and revocation are re-checked on every hit.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .clock import Clock
from .denylist import Denylist
from .errors import InvalidToken
from .hashing import new_id
from .signing import MAX_TOKEN_BYTES, KeySet

TYP = "at+jwt"
CACHE_SIZE = 10_000
UNKNOWN_KID_RELOAD = 5.0
"""An unknown ``kid`` re-reads the key set at most this often (no amplification by garbage)."""
REQUIRED = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")


class AccessTokens:
    def __init__(self, keys: KeySet, clock: Clock, denylist: Denylist, *, issuer: str,
                 audience: str, lifetime: float, leeway: float) -> None:
        self.keys = keys
        self.clock = clock
        self.denylist = denylist
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        self.leeway = leeway
        self._cache: dict[bytes, dict[str, Any]] = {}

    def mint(self, *, sub: str, client_id: str, scope: str, grant_id: str | None = None,
             auth_time: float | None = None, lifetime: float | None = None,
             extra: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        now = int(self.clock.now())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": sub, "aud": self.audience, "client_id": client_id,
            "iat": now, "exp": now + int(lifetime or self.lifetime), "jti": new_id(), "scope": scope,
        }
        if grant_id:
            claims["gid"] = grant_id
        if auth_time is not None:
            claims["auth_time"] = int(auth_time)
        if extra:
            claims.update(extra)
        return self.keys.sign(claims, typ=TYP), claims

    def check_claims(self, claims: dict[str, Any]) -> None:
        now = self.clock.now()
        for name in REQUIRED:
            if name not in claims:
                raise InvalidToken(f"access token lacks the {name} claim")
        if claims["iss"] != self.issuer:
            raise InvalidToken("access token was issued by someone else")
        aud = claims["aud"]
        if not (aud == self.audience or (isinstance(aud, list) and self.audience in aud)):
            raise InvalidToken("access token is for another audience")
        for name in ("exp", "iat", "nbf"):
            if name in claims and not isinstance(claims[name], int | float):
                raise InvalidToken(f"access token {name} is not a number")
        if claims["exp"] + self.leeway <= now:
            raise InvalidToken("access token expired")
        if claims.get("nbf", 0) - self.leeway > now or claims["iat"] - self.leeway > now:
            raise InvalidToken("access token is not valid yet")

    async def verify(self, token: str) -> dict[str, Any]:
        """Claims of a valid, unrevoked access token; raises InvalidToken otherwise."""
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("token too large")
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        claims = self._cache.get(key)
        if claims is None:
            try:
                _header, claims = self.keys.verify(token, typ=TYP)
            except InvalidToken as exc:
                if not exc.unknown_key or self.clock.now() - self.keys.loaded_at < UNKNOWN_KID_RELOAD:
                    raise
                await self.keys.load()  # a key rotated in by another instance
                _header, claims = self.keys.verify(token, typ=TYP)
            self.check_claims(claims)
            if len(self._cache) >= CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = claims
        elif claims["exp"] + self.leeway <= self.clock.now():
            self._cache.pop(key, None)
            raise InvalidToken("access token expired")
        await self.denylist.sync()
        if self.denylist.denies(claims):
            raise InvalidToken("access token has been revoked")
        return claims
