"""Session tokens (``X-ZUMO-AUTH``): Easy Auth's JWTs for mobile apps and SPAs.

Signed HS256/384/512 with a hex key compatible with App Service's
``WEBSITE_AUTH_SIGNING_KEY`` (the algorithm follows the key length: 32 bytes
HS256, 48 HS384, 64+ HS512), or ES256 with authgate's signing keys when no key
is configured. Claims as Easy Auth issues them: ``sub`` (``sid:<session>``),
``stable_sid``, ``idp``, ``ver``, ``iss``, ``aud`` (the public URL with a
trailing slash), ``nbf``, ``exp``, ``iat``.

Tokens authgate issues also carry ``sid`` and are honoured only while that
server-side session lives (logout ends them). Tokens an app mints itself for
custom authentication (:func:`mint_session_token`) carry no ``sid`` and are
accepted on signature and lifetime alone -- the app holds the key.

A mobile app sends the same token with every call, so a verified token's
claims are kept in a bounded cache keyed by a hash of the token; its lifetime
is re-checked on every hit, and its session (when it has one) is looked up
by the caller every time.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from ..cache import Cache
from ..errors import ConfigError, InvalidToken
from ..signing import MAX_TOKEN_BYTES, KeySet, parse_header

VERSION = "3"
ES_TYP = "session+jwt"
CACHE_SECONDS = 300.0
"""How long a verified token's claims are kept (its ``exp`` is checked on every use)."""


def hmac_alg(key: bytes) -> str:
    if len(key) >= 64:
        return "HS512"
    if len(key) >= 48:
        return "HS384"
    if len(key) >= 32:
        return "HS256"
    raise ConfigError("the session signing key must be at least 32 bytes (64 hex characters)")


def parse_hex_key(hex_key: str) -> bytes:
    try:
        return bytes.fromhex(hex_key.strip())
    except ValueError:
        raise ConfigError("the session signing key must be hex (like WEBSITE_AUTH_SIGNING_KEY)") from None


def _audience(public_url: str) -> str:
    return public_url.rstrip("/") + "/"


def stable_sid(user_key: str, key: bytes) -> str:
    return "sid:" + hmac.new(key, user_key.encode(), hashlib.sha256).hexdigest()[:32]


def mint_session_token(*, user_id: str, provider: str, signing_key: str, public_url: str,
                       now: float, lifetime: float = 8 * 3600, name: str | None = None,
                       extra: dict[str, Any] | None = None) -> str:
    """Mint a session token for custom authentication (the app holds the hex key).

    The gateway accepts it like one of its own: identity ``user_id`` at ``provider``.
    """
    key = parse_hex_key(signing_key)
    alg = hmac_alg(key)
    aud = _audience(public_url)
    claims: dict[str, Any] = {
        "sub": "sid:" + hashlib.sha256(f"{provider}|{user_id}".encode()).hexdigest()[:32],
        "stable_sid": stable_sid(f"{provider}|{user_id}", key), "idp": provider, "ver": VERSION,
        "uid": user_id, "iss": aud, "aud": aud, "nbf": int(now), "iat": int(now),
        "exp": int(now + lifetime),
    }
    if name:
        claims["name"] = name
    claims.update(extra or {})
    return jwt.encode({"alg": alg, "typ": "JWT"}, claims, OctKey.import_key(key))


def _cache_key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class SessionClaims:
    sid: str | None
    """Our server-side session id; None for app-minted tokens."""
    user_id: str
    provider: str
    name: str | None
    exp: float
    claims: dict[str, Any]


class SessionTokens:
    def __init__(self, keys: KeySet, public_url: str, signing_key_hex: str = "") -> None:
        self.keys = keys
        self.audience = _audience(public_url)
        self.hmac_key = parse_hex_key(signing_key_hex) if signing_key_hex else None
        self._stable_key = self.hmac_key or hashlib.sha256(b"authgate-stable-sid" + public_url.encode()).digest()
        self._verified: Cache[bytes, SessionClaims] = Cache(ttl=CACHE_SECONDS)

    def mint(self, *, sid: str, user_key: str, user_id: str, provider: str, name: str,
             now: float, lifetime: float) -> str:
        claims: dict[str, Any] = {
            "sub": f"sid:{sid}", "sid": sid, "stable_sid": stable_sid(user_key, self._stable_key),
            "idp": provider, "ver": VERSION, "uid": user_id, "name": name,
            "iss": self.audience, "aud": self.audience,
            "nbf": int(now), "iat": int(now), "exp": int(now + lifetime),
        }
        if self.hmac_key is not None:
            return jwt.encode({"alg": hmac_alg(self.hmac_key), "typ": "JWT"}, claims,
                              OctKey.import_key(self.hmac_key))
        return self.keys.sign(claims, typ=ES_TYP)

    def seen(self, token: str) -> bool:
        """True if ``token`` passed :meth:`verify` lately (it is still checked again)."""
        return self._verified.get(_cache_key(token)) is not None

    def verify(self, token: str, *, now: float, leeway: float = 60,
               expired_grace: float = 0) -> SessionClaims:
        """Check signature and claims; ``expired_grace`` accepts recently expired tokens (/.auth/refresh)."""
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("session token too large")
        key = _cache_key(token)
        sc = self._verified.get(key)
        if sc is None:
            sc = self._verify(token, now=now, leeway=leeway, expired_grace=expired_grace)
            self._verified.put(key, sc)
        elif sc.exp + leeway + expired_grace <= now:
            raise InvalidToken("session token expired")
        return sc

    def _verify(self, token: str, *, now: float, leeway: float, expired_grace: float) -> SessionClaims:
        header = parse_header(token)
        alg = header.get("alg")
        if self.hmac_key is not None and alg in ("HS256", "HS384", "HS512"):
            if alg != hmac_alg(self.hmac_key):
                raise InvalidToken("session token algorithm does not match the signing key")
            try:
                claims = dict(jwt.decode(token, OctKey.import_key(self.hmac_key), algorithms=[alg]).claims)
            except (JoseError, ValueError, TypeError):
                raise InvalidToken("session token signature is invalid") from None
        elif alg == "ES256" or alg in ("EdDSA", "RS256"):
            _h, claims = self.keys.verify(token, typ=ES_TYP)
        else:
            raise InvalidToken("session token algorithm not accepted")
        for name in ("sub", "idp", "ver", "iss", "aud", "exp", "iat"):
            if name not in claims:
                raise InvalidToken(f"session token lacks {name}")
        if claims["iss"] != self.audience or claims["aud"] != self.audience:
            raise InvalidToken("session token is for another site")
        exp = claims["exp"]
        if not isinstance(exp, int | float) or exp + leeway + expired_grace <= now:
            raise InvalidToken("session token expired")
        if float(claims.get("nbf", claims["iat"])) - leeway > now:
            raise InvalidToken("session token is not valid yet")
        uid = claims.get("uid") or claims["sub"]
        return SessionClaims(claims.get("sid"), str(uid), str(claims["idp"]), claims.get("name"),
                             float(exp), claims)
