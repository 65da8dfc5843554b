"""The tokens a client holds, with their expiry as an absolute time on the local clock.

A token response says ``expires_in`` (RFC 6749 §5.1): seconds from *now*, a
duration, immune to clock skew. We turn it into ``expires_at`` with the local
clock at the moment of receipt, so the question "is it about to expire?" is
asked of one clock only -- ours.

When the access token is a JWT we also read its ``exp`` (unverified: a hint,
never a reason to trust the token). Two readings come from it: the lifetime
``exp - iat`` (a duration again, skew-free) and ``exp`` itself, which also
accounts for time the response spent in transit but is only comparable with
our clock if the clocks agree. The earliest reading wins, except that an
absolute ``exp`` leaving less than half of the token's lifetime is taken as
evidence that our clock runs ahead, and ignored: otherwise a clock far ahead
would find every new token already expired and refresh in a loop.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..hashing import b64url_decode

MAX_JWT_CHARS = 16_384


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The payload of a compact JWS, *without* checking anything; None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > MAX_JWT_CHARS:
        return None
    try:
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def _number(value: Any) -> float | None:
    if isinstance(value, str) and value.isdigit():  # some providers send expires_in as a string
        return float(value)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def expiry(token: str, expires_in: float | None, now: float) -> float | None:
    """Absolute expiry on the local clock for a token received at ``now`` (see module docstring)."""
    readings: list[float] = []
    if expires_in is not None:
        readings.append(now + expires_in)
    claims = unverified_claims(token) or {}
    exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
    lifetime = expires_in
    if exp is not None and iat is not None and exp > iat:
        readings.append(now + (exp - iat))
        lifetime = exp - iat if lifetime is None else min(lifetime, exp - iat)
    if exp is not None and exp > now and (lifetime is None or exp - now >= lifetime / 2):
        readings.append(exp)
    return min(readings) if readings else None


def _fingerprint(secret: str | None) -> str:
    if secret is None:
        return "None"
    return "<sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:8] + ">"


@dataclass(frozen=True, repr=False)
class TokenSet:
    """Access, refresh and ID token of one grant; ``expires_at`` is seconds since the epoch.

    ``repr`` shows a short fingerprint of each token, never the token, so a
    TokenSet may be logged.
    """

    access_token: str
    token_type: str = "Bearer"
    expires_at: float | None = None
    refresh_token: str | None = None
    id_token: str | None = None
    scope: str | None = None
    issued_at: float | None = None
    """Local time of receipt; bounds the refresh leeway for very short-lived tokens."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_response(cls, body: dict[str, Any], *, now: float,
                      previous: TokenSet | None = None) -> TokenSet:
        """Build from a token response (RFC 6749 §5.1) received at local time ``now``.

        A refresh response may omit the refresh token, ID token or scope, meaning
        "unchanged" (RFC 6749 §6): those are kept from ``previous``.
        """
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise ValueError("token response has no access_token")
        expires_in = _number(body.get("expires_in"))
        known = {"access_token", "token_type", "expires_in", "refresh_token", "id_token", "scope"}
        kept = previous or cls("")
        return cls(
            access_token=access,
            token_type=str(body.get("token_type") or "Bearer"),
            expires_at=expiry(access, expires_in, now),
            refresh_token=body.get("refresh_token") or kept.refresh_token,
            id_token=body.get("id_token") or kept.id_token,
            scope=body.get("scope") or kept.scope,
            issued_at=now,
            extra={k: v for k, v in body.items() if k not in known},
        )

    def expires_within(self, seconds: float, now: float) -> bool:
        """True when the access token expires within ``seconds`` of ``now`` (False if unknown)."""
        return self.expires_at is not None and now >= self.expires_at - seconds

    def due(self, leeway: float, now: float) -> bool:
        """Time to refresh: within ``leeway`` of expiry, or past half the lifetime if that is
        shorter -- a 10-second token must not look due from the moment it arrives."""
        if self.expires_at is not None and self.issued_at is not None:
            leeway = min(leeway, (self.expires_at - self.issued_at) / 2)
        return self.expires_within(leeway, now)

    def to_dict(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "token_type": self.token_type,
                "expires_at": self.expires_at, "refresh_token": self.refresh_token,
                "id_token": self.id_token, "scope": self.scope, "issued_at": self.issued_at,
                "extra": self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenSet:
        return cls(access_token=str(d["access_token"]),
                   token_type=str(d.get("token_type", "Bearer")),
                   expires_at=_number(d.get("expires_at")), refresh_token=d.get("refresh_token"),
                   id_token=d.get("id_token"), scope=d.get("scope"),
                   issued_at=_number(d.get("issued_at")), extra=dict(d.get("extra") or {}))

    def __repr__(self) -> str:
        return (f"TokenSet(access_token={_fingerprint(self.access_token)}, "
                f"token_type={self.token_type!r}, expires_at={self.expires_at!r}, "
                f"refresh_token={_fingerprint(self.refresh_token)}, "
                f"id_token={_fingerprint(self.id_token)}, scope={self.scope!r})")

    __str__ = __repr__
