"""ID tokens, OpenID Connect Core 1.0 §2 and §3.1.3.6.

Signed with the same keys as access tokens but typed ``JWT`` and addressed to
the client (``aud = client_id``), so an ID token is never accepted where an
access token is expected (RFC 9068 §4 ``typ`` check). ``at_hash`` binds the
access token issued alongside (§3.1.3.6).
"""

from __future__ import annotations

import hashlib
from typing import Any

from .accounts import User
from .hashing import b64url
from .signing import KeySet


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return b64url(digest[: len(digest) // 2])


def user_claims(user: User, scopes: list[str]) -> dict[str, Any]:
    """Standard claims released for the granted scopes (OIDC Core §5.4)."""
    claims: dict[str, Any] = {}
    if "profile" in scopes:
        claims["name"] = user.name or user.username
        claims["preferred_username"] = user.username
    if "email" in scopes and user.email:
        claims["email"] = user.email
        claims["email_verified"] = False
    return claims


def mint_id_token(keys: KeySet, *, issuer: str, user: User, client_id: str, scopes: list[str],
                  now: float, lifetime: float, auth_time: float, nonce: str | None,
                  sid: str | None, access_token: str | None) -> str:
    claims: dict[str, Any] = {
        "iss": issuer, "sub": user.id, "aud": client_id, "azp": client_id,
        "iat": int(now), "exp": int(now + lifetime), "auth_time": int(auth_time),
    }
    if nonce:
        claims["nonce"] = nonce
    if sid:
        claims["sid"] = sid
    if access_token:
        claims["at_hash"] = at_hash(access_token)
    claims.update(user_claims(user, scopes))
    return keys.sign(claims, typ="JWT")
