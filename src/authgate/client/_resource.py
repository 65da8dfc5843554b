"""The resource server's side: verify an access token per RFC 9068 §4, and a Starlette dependency.

Checks, in order, before any claim is believed:

1. a compact JWS of bounded size whose header ``alg`` is on the allow-list
   (ES256, EdDSA, RS256 -- never ``none`` nor an HMAC, RFC 8725 §3.1), with no
   ``jku``/``x5u``/``jwk``/``x5c`` (keys come from the issuer's JWKS only),
   no ``crit`` and no ``enc``;
2. ``typ`` is ``at+jwt`` (RFC 9068 §2.1), so an ID token is not an access token;
3. ``kid`` names a key of the issuer (:class:`JWKSCache`), of the right type,
   whose own ``alg`` (if any) is the header's, and the signature verifies;
4. ``iss`` equals ``issuer`` exactly; ``aud`` is or contains ``audience``;
   ``exp`` has not passed, ``nbf``/``iat`` are not in the future, each with
   ``leeway`` seconds of tolerance, bounded to :data:`MAX_LEEWAY`; the
   other claims RFC 9068 §2.2 requires are present.

Failures answer 401 with ``WWW-Authenticate: Bearer error="invalid_token"``
(RFC 6750 §3.1); a missing scope answers 403 ``insufficient_scope``.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..errors import InvalidToken
from ..signing import parse_header
from ._drivers import Clock
from ._errors import InvalidAccessToken
from ._jwks import JWKSCache

ALGORITHMS = ("ES256", "EdDSA", "RS256")
KEY_TYPES = {"ES256": "EC", "EdDSA": "OKP", "RS256": "RSA"}
MAX_LEEWAY = 300.0
REQUIRED = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
_caches: dict[str, JWKSCache] = {}


@dataclass(frozen=True)
class AccessToken:
    """A verified access token's claims."""

    sub: str
    client_id: str
    scopes: frozenset[str]
    claims: Mapping[str, Any]

    def __repr__(self) -> str:
        return (f"AccessToken(sub={self.sub!r}, client_id={self.client_id!r}, "
                f"scopes={sorted(self.scopes)})")


def _header(token: str, algorithms: Collection[str]) -> dict[str, Any]:
    try:
        header = parse_header(token)  # size, compact form, no none/jku/x5u/jwk/x5c/crit/enc
    except InvalidToken as exc:
        raise InvalidAccessToken(exc.description) from None
    if header.get("alg") not in algorithms:
        raise InvalidAccessToken("token algorithm not accepted")
    if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
        raise InvalidAccessToken("not an access token (typ must be at+jwt)")
    if not isinstance(header.get("kid"), str):
        raise InvalidAccessToken("token names no key")
    return header


def _check_claims(claims: dict[str, Any], issuer: str, audience: str, now: float,
                  leeway: float) -> None:
    for name in REQUIRED:
        if name not in claims:
            raise InvalidAccessToken(f"token lacks the {name} claim")
    if claims["iss"] != issuer:
        raise InvalidAccessToken("token was issued by someone else")
    aud = claims["aud"]
    if not (aud == audience or (isinstance(aud, list) and audience in aud)):
        raise InvalidAccessToken("token is for another audience")
    for name in ("exp", "iat", "nbf"):
        if name in claims and (not isinstance(claims[name], int | float)
                               or isinstance(claims[name], bool)):
            raise InvalidAccessToken(f"token {name} is not a number")
    if claims["exp"] + leeway <= now:
        raise InvalidAccessToken("token expired")
    if claims.get("nbf", claims["iat"]) - leeway > now or claims["iat"] - leeway > now:
        raise InvalidAccessToken("token is not valid yet")


async def verify_access_token(token: str, *, issuer: str, audience: str,
                              jwks: JWKSCache | None = None, leeway: float = 60.0,
                              algorithms: Collection[str] = ALGORITHMS,
                              clock: Clock | None = None) -> AccessToken:
    """Verify an access token of ``issuer`` for ``audience``; raise :class:`InvalidAccessToken`.

    ``jwks`` defaults to a cache shared per issuer, found through discovery.
    May raise ``httpx.HTTPError`` when the issuer's keys cannot be fetched at all.
    """
    if not 0 <= leeway <= MAX_LEEWAY:
        raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY:.0f} seconds")
    if not algorithms or not set(algorithms) <= set(ALGORITHMS):
        raise ValueError(f"algorithms must be chosen from {', '.join(ALGORITHMS)}")
    header = _header(token, algorithms)
    if jwks is None:
        jwks = _caches.setdefault(issuer, JWKSCache(issuer=issuer))
    found = await jwks.get(header["kid"])
    if found is None:
        raise InvalidAccessToken("token signed with an unknown key")
    key, jwk = found
    alg = header["alg"]
    if KEY_TYPES[alg] != jwk.get("kty") or jwk.get("alg", alg) != alg:
        raise InvalidAccessToken("token algorithm does not match its key")
    try:
        claims = dict(jwt.decode(token, key, algorithms=[alg]).claims)
    except (JoseError, ValueError, TypeError):
        raise InvalidAccessToken("token signature is invalid") from None
    _check_claims(claims, issuer, audience, (clock or time.time)(), leeway)
    scope = claims.get("scope", "")
    return AccessToken(sub=str(claims["sub"]), client_id=str(claims["client_id"]),
                       scopes=frozenset(str(scope).split()), claims=claims)


def _challenge(realm: str, **params: str) -> dict[str, str]:
    fields = [f'realm="{realm}"', *(f'{k}="{v}"' for k, v in params.items())]
    return {"WWW-Authenticate": "Bearer " + ", ".join(fields)}


class RequireAccessToken:
    """A dependency for Starlette and FastAPI: the request's verified :class:`AccessToken`.

    FastAPI: ``token: AccessToken = Depends(require)``. Starlette:
    ``token = await require(request)`` inside an endpoint; the ``HTTPException``
    it raises becomes the 401/403 answer with its ``WWW-Authenticate`` header.
    """

    def __init__(self, *, issuer: str, audience: str, scopes: Collection[str] = (),
                 jwks: JWKSCache | None = None, leeway: float = 60.0,
                 clock: Clock | None = None, realm: str = "api") -> None:
        self.issuer = issuer
        self.audience = audience
        self.scopes = frozenset(scopes)
        self.jwks = jwks if jwks is not None else JWKSCache(issuer=issuer, clock=clock)
        self.leeway = leeway
        self.clock = clock
        self.realm = realm

    async def __call__(self, request: Request) -> AccessToken:
        values = request.headers.getlist("authorization")
        scheme, _, token = (values[0] if len(values) == 1 else "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            # RFC 6750 §3.1: no credentials -> a bare challenge without an error code.
            raise HTTPException(401, "a Bearer access token is required", _challenge(self.realm))
        try:
            verified = await verify_access_token(token.strip(), issuer=self.issuer,
                                                 audience=self.audience, jwks=self.jwks,
                                                 leeway=self.leeway, clock=self.clock)
        except InvalidAccessToken as exc:
            raise HTTPException(401, str(exc), _challenge(
                self.realm, error="invalid_token", error_description=str(exc))) from None
        except (httpx.HTTPError, ValueError):
            raise HTTPException(503, "the token issuer's keys are unavailable") from None
        missing = self.scopes - verified.scopes
        if missing:
            raise HTTPException(403, "insufficient scope", _challenge(
                self.realm, error="insufficient_scope", scope=" ".join(sorted(self.scopes))))
        request.state.access_token = verified
        return verified
