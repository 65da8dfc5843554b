"""verify_access_token, JWKSCache and RequireAccessToken against authgate's real JWKS and tokens."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authgate.client import (
    InvalidAccessToken,
    JWKSCache,
    OAuth2Auth,
    RequireAccessToken,
    TokenSet,
    verify_access_token,
)
from authgate.clock import FrozenClock

from .conftest import BASE, ISSUER, TOKEN_ENDPOINT, Server

API = "http://api.example"


@pytest.fixture
async def jwks(server: Server) -> AsyncIterator[JWKSCache]:
    async with httpx.AsyncClient(transport=server.wire) as http:
        yield JWKSCache(issuer=ISSUER, http=http, refetch_interval=60, clock=server.clock.now)


def claims(server: Server, **override: Any) -> dict[str, Any]:
    now = int(server.clock.now())
    base = {"iss": ISSUER, "aud": BASE, "sub": "u1", "client_id": "cli", "iat": now,
            "exp": now + 300, "jti": f"j{now}", "scope": "api"}
    return {k: v for k, v in {**base, **override}.items() if v is not None}


def b64(d: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")


async def verify(server: Server, jwks: JWKSCache, token: str, **kw: Any) -> Any:
    return await verify_access_token(token, issuer=ISSUER, audience=BASE, jwks=jwks,
                                     clock=server.clock.now, **kw)


async def test_a_real_access_token_verifies(server: Server, jwks: JWKSCache) -> None:
    """A token from authgate's token endpoint verifies through discovery + JWKS."""
    body = await server.login()
    token = await verify(server, jwks, body["access_token"])
    assert token.sub == server.users["alice"].id and token.client_id == "cli"
    assert "api" in token.scopes and token.claims["iss"] == ISSUER
    assert jwks.fetches == 1


async def test_attacks_are_refused(server: Server, jwks: JWKSCache) -> None:
    """SECURITY.md JWT attacks: each one -> InvalidAccessToken."""
    keys = server.gate.keys
    kid = keys.active.kid if keys.active else ""
    good = keys.sign(claims(server), typ="at+jwt")
    await verify(server, jwks, good)
    public = json.dumps(keys.jwks()["keys"][0]).encode()
    forged_key = ECKey.generate_key("P-256", private=True)
    body = await server.login()
    attacks: dict[str, str] = {
        "alg none": f"{b64({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{b64(claims(server))}.",
        "alg None": f"{b64({'alg': 'None', 'typ': 'at+jwt', 'kid': kid})}.{b64(claims(server))}.",
        "HS256 with our public key": jwt.encode({"alg": "HS256", "typ": "at+jwt", "kid": kid},
                                                claims(server), OctKey.import_key(public)),
        "RS256 header on an EC key": (f"{b64({'alg': 'RS256', 'typ': 'at+jwt', 'kid': kid})}."
                                      + good.split(".", 1)[1]),
        "signed by someone else": jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": kid},
                                             claims(server), forged_key),
        "payload edited": good.split(".")[0] + "." + b64(claims(server, sub="admin")) + "."
                          + good.split(".")[2],
        "jku header": jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": kid,
                                  "jku": "https://evil.example/keys"}, claims(server), forged_key),
        "iss with trailing slash": keys.sign(claims(server, iss=ISSUER + "/"), typ="at+jwt"),
        "iss in other case": keys.sign(claims(server, iss=ISSUER.upper()), typ="at+jwt"),
        "wrong aud": keys.sign(claims(server, aud="http://other.example"), typ="at+jwt"),
        "no aud": keys.sign(claims(server, aud=None), typ="at+jwt"),
        "no exp": keys.sign(claims(server, exp=None), typ="at+jwt"),
        "expired past leeway": keys.sign(claims(server, exp=int(server.clock.now()) - 61),
                                         typ="at+jwt"),
        "iat far in the future": keys.sign(claims(server, iat=int(server.clock.now()) + 3600),
                                           typ="at+jwt"),
        "typ JWT": keys.sign(claims(server), typ="JWT"),
        "an ID token": body["id_token"],
        "JWE-shaped": "a.b.c.d.e",
        "huge": "a" * 100_000,
    }
    reasons = {
        "alg none": "unsigned tokens are not accepted",
        "alg None": "unsigned tokens are not accepted",
        "HS256 with our public key": "algorithm not accepted",
        "RS256 header on an EC key": "does not match its key",
        "signed by someone else": "signature is invalid",
        "payload edited": "signature is invalid",
        "jku header": "refers to external keys",
        "iss with trailing slash": "issued by someone else",
        "iss in other case": "issued by someone else",
        "wrong aud": "another audience",
        "no aud": "lacks the aud",
        "no exp": "lacks the exp",
        "expired past leeway": "expired",
        "iat far in the future": "not valid yet",
        "typ JWT": r"typ must be at\+jwt",
        "an ID token": r"typ must be at\+jwt",
        "JWE-shaped": "not a compact JWS",
        "huge": "too large",
    }
    assert set(reasons) == set(attacks)
    refused: dict[str, str] = {}
    for name, token in attacks.items():
        try:
            await verify(server, jwks, token)
        except InvalidAccessToken as exc:
            refused[name] = str(exc)
    assert set(attacks) - set(refused) == set()  # names any attack that was accepted
    for name, why in refused.items():
        assert re.search(reasons[name], why), (name, why)
    # Within the bounded leeway an expired token is still accepted; the bound itself is enforced.
    await verify(server, jwks, keys.sign(claims(server, exp=int(server.clock.now()) - 30),
                                         typ="at+jwt"))
    with pytest.raises(ValueError, match="leeway"):
        await verify(server, jwks, good, leeway=3600)
    with pytest.raises(ValueError, match="algorithms"):
        await verify(server, jwks, good, algorithms=["HS256"])
    assert jwks.fetches == 1  # none of the attacks made us refetch keys


async def test_unknown_kid_refetches_at_most_once_per_interval(server: Server,
                                                               jwks: JWKSCache) -> None:
    """Unknown kids: one refetch per interval however many arrive; a rotated key is picked up."""
    await verify(server, jwks, (await server.login())["access_token"])
    forged = ECKey.generate_key("P-256", private=True)

    def unknown(i: int) -> str:
        return jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": f"nope-{i}"}, claims(server),
                          forged)

    async def refused(tokens: list[str]) -> None:
        results = await asyncio.gather(*(verify(server, jwks, t) for t in tokens),
                                       return_exceptions=True)
        assert all(isinstance(r, InvalidAccessToken) for r in results), results

    await refused([unknown(i) for i in range(10)])
    assert jwks.fetches == 1  # fetched just now: no refetch yet
    server.clock.advance(61)
    await refused([unknown(i) for i in range(10, 20)])
    assert jwks.fetches == 2  # ten unknown kids, one refetch
    assert len(server.wire.to("/.auth/keys")) == 2

    await server.gate.keys.rotate()  # the issuer rotates: tokens now carry a new kid
    rotated = (await server.login())["access_token"]
    server.clock.advance(30)
    with pytest.raises(InvalidAccessToken, match="unknown key"):
        await verify(server, jwks, rotated)  # still inside the interval
    server.clock.advance(31)
    assert (await verify(server, jwks, rotated)).client_id == "cli"
    assert jwks.fetches == 3


def resource_app(require: RequireAccessToken) -> Starlette:
    async def whoami(request: Request) -> Response:
        token = await require(request)
        return JSONResponse({"sub": token.sub, "scopes": sorted(token.scopes)})
    return Starlette(routes=[Route("/whoami", whoami)])


async def test_starlette_dependency_answers_rfc_6750(server: Server, jwks: JWKSCache) -> None:
    """No token -> bare challenge; bad token -> invalid_token; missing scope -> 403; good -> 200."""
    require = RequireAccessToken(issuer=ISSUER, audience=BASE, scopes=["api"], jwks=jwks,
                                 clock=server.clock.now)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=resource_app(require)),
                                 base_url=API) as api:
        r = await api.get("/whoami")
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="api"'
        r = await api.get("/whoami", headers={"Authorization": "Bearer not.a.token"})
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
        narrow = await server.login(scope="openid offline_access")
        r = await api.get("/whoami", headers={"Authorization": f"Bearer {narrow['access_token']}"})
        assert r.status_code == 403
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
        good = await server.login()
        r = await api.get("/whoami", headers={"Authorization": f"Bearer {good['access_token']}"})
        assert r.status_code == 200 and r.json()["sub"] == server.users["alice"].id


async def test_client_and_resource_server_together(server: Server, jwks: JWKSCache) -> None:
    """OAuth2Auth calling a resource server that verifies with RequireAccessToken, across expiry."""
    api_clock = FrozenClock(server.clock.now())
    require = RequireAccessToken(issuer=ISSUER, audience=BASE, jwks=jwks, clock=api_clock.now)
    client_clock = FrozenClock(server.clock.now())
    auth = OAuth2Auth(TOKEN_ENDPOINT, server.client_id, server.secret, clock=client_clock.now,
                      tokens=TokenSet.from_response(await server.login(), now=client_clock.now()))
    mounts = {"http://localhost": server.wire,
              API: httpx.ASGITransport(app=resource_app(require))}
    async with httpx.AsyncClient(mounts=mounts, auth=auth) as http:
        assert (await http.get(f"{API}/whoami")).status_code == 200
        for clock in (server.clock, api_clock):  # only the API knows the token expired
            clock.advance(3600 + 61)
        r = await http.get(f"{API}/whoami")
    assert r.status_code == 200
    assert [(c.path, c.grant_type) for c in server.wire.calls if c.path.endswith("token")] == [
        ("/.auth/oauth2/token", "refresh_token")]
