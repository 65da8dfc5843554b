"""In-process mode: AuthGateMiddleware around a Starlette app, served by uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authgate.asgi import AuthGateMiddleware, identity, tokens
from authgate.clock import FrozenClock
from authgate.gateway.provider_tokens import ProviderTokens
from authgate.service import AuthGate

from ..support import make_settings, open_gate
from ._proxy_fixtures import served


async def whoami(request: Request) -> Response:
    who = identity(request)
    fresh = await tokens(request)
    return JSONResponse({
        "user": request.user.display_name if request.user.is_authenticated else None,
        "scopes": list(request.auth.scopes),
        "user_id": who.user_id if who else None,
        "scope_tokens": [t.access_token for t in request.scope["authgate.tokens"]],
        "tokens": [t.access_token for t in fresh],
        "x_ms": sorted([k, v] for k, v in request.headers.items() if k.startswith(("x-ms", "x_ms"))),
    })


@requires("authenticated")
async def private(request: Request) -> Response:
    return JSONResponse({"ok": True})


def host_app(*middleware: Middleware) -> Starlette:
    return Starlette(routes=[Route("/whoami", whoami), Route("/private", private),
                             Route("/health", whoami)], middleware=list(middleware))


@pytest.fixture
async def gate(tmp_path: Path) -> AsyncIterator[AuthGate]:
    settings = make_settings(tmp_path)
    settings.gateway.unauthenticated_action = "401"
    g = await open_gate(tmp_path, FrozenClock(), settings)
    yield g
    await g.close()


async def test_identity_tokens_and_headers_reach_the_app_in_process(gate: AuthGate) -> None:
    """scope identity, request.user, provider tokens and X-MS-* headers, without a network hop."""
    mw = AuthGateMiddleware(host_app(), gate=gate)
    gw = mw.gateway
    cookie, session = await gw.sessions.start(provider="local", user_id="u-1", name="Alice",
                                              claims=[])
    await gw.provider_tokens.save(session.user_key, ProviderTokens(
        "local", "u-1", access_token="local-at", expires_on=gate.clock.now() + 3600))
    async with served(mw) as url, httpx.AsyncClient(base_url=url) as c:
        r = await c.get("/whoami", headers={"Cookie": f"{gw.cookie_name}={cookie}",
                                            "X-MS-CLIENT-PRINCIPAL-ID": "spoof",
                                            "x_ms_token_local_access_token": "spoof"})
        body = r.json()
        assert (body["user"], body["user_id"], body["scopes"]) == ("Alice", "u-1", ["authenticated"])
        assert body["scope_tokens"] == ["local-at"] and body["tokens"] == ["local-at"]
        x_ms = dict(body["x_ms"])
        assert x_ms["x-ms-client-principal-id"] == "u-1"
        assert x_ms["x-ms-token-local-access-token"] == "local-at"
        assert "x_ms_token_local_access_token" not in x_ms
        assert (await c.get("/private", headers={"Cookie": f"{gw.cookie_name}={cookie}"})).json()
        await gw.sessions.end(session)
        r = await c.get("/private", headers={"Cookie": f"{gw.cookie_name}={cookie}"})
        assert r.status_code == 401, "an ended session is anonymous, and the policy refuses it"


async def test_policy_applies_in_process(gate: AuthGate) -> None:
    """unauthenticated_action and excluded paths work as in the proxy; spoofs are stripped."""
    mw = AuthGateMiddleware(host_app(), gate=gate)
    async with served(mw) as url, httpx.AsyncClient(base_url=url) as c:
        r = await c.get("/whoami", headers={"Accept": "application/json"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        r = await c.get("/health", headers={"X-MS-CLIENT-PRINCIPAL-NAME": "root"})
        assert r.status_code == 200
        assert r.json()["user"] is None and r.json()["x_ms"] == []


async def test_auth_endpoints_are_served_through_the_middleware(tmp_path: Path) -> None:
    """/.auth/* is authgate's (opened in the app's lifespan from settings), the rest the app's."""
    settings = make_settings(tmp_path)
    settings.gateway.unauthenticated_action = "allow"
    app = host_app(Middleware(AuthGateMiddleware, settings=settings))
    async with served(app) as url, httpx.AsyncClient(base_url=url) as c:
        r = await c.get("/.auth/.well-known/openid-configuration")
        assert r.status_code == 200 and r.json()["issuer"] == "http://localhost/.auth"
        assert (await c.get("/.auth/me")).status_code == 401, "/.auth/me: not signed in"
        assert (await c.get("/whoami")).json()["user"] is None
