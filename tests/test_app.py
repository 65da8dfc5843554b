"""The ASGI app's lifespan as ``authgate serve`` runs it."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from authgate.app import AuthGateApp, create_app
from authgate.clock import FrozenClock
from authgate.service import AuthGate

from .live import serve
from .support import make_settings, open_gate


def test_startup_moves_what_it_built_out_of_the_collectors_full_passes(tmp_path: Path) -> None:
    """A full collection walks every tracked object: with the process' long-lived ones frozen
    after startup, it stops costing tens of milliseconds in the middle of requests."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        with serve(create_app(make_settings(tmp_path))) as base:
            assert gc.get_freeze_count() > 10_000
            assert httpx.get(base + "/.auth/keys", timeout=10).status_code == 200
    finally:
        gc.unfreeze()


# -- the short path to fixed routes ----------------------------------------------------------

@pytest.fixture
async def gate(tmp_path: Path) -> AsyncIterator[AuthGate]:
    g = await open_gate(tmp_path, FrozenClock())
    yield g
    await g.close()


def client(app: AuthGateApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://localhost")


async def test_fixed_routes_keep_the_request_limits(gate: AuthGate) -> None:
    async with client(create_app(gate=gate)) as http:
        r = await http.post("/.auth/oauth2/token", headers={"X-Big": "a" * 17_000},
                            data={"grant_type": "client_credentials"})
        assert r.status_code == 431 and r.json()["error"] == "invalid_request"
        r = await http.get("/.auth/me", params={"access_token": "x"})
        assert r.status_code == 400 and "URL" in r.json()["error_description"]


async def test_fixed_routes_answer_errors_like_the_full_stack(gate: AuthGate) -> None:
    """Same OAuth error bodies, 405 from the router for a method the route does not take."""
    direct = create_app(gate=gate)
    full = create_app(gate=gate)
    full.add_middleware(GZipMiddleware)  # any added middleware: the full stack again
    answers = []
    for app in (direct, full):
        async with client(app) as http:
            r = await http.post("/.auth/oauth2/token", data={"grant_type": "client_credentials"},
                                auth=("nobody", "wrong"))
            assert r.status_code == 401 and r.json()["error"] == "invalid_client"
            assert r.headers["cache-control"] == "no-store"
            answers.append((r.status_code, r.json(), r.headers.get("www-authenticate")))
            r = await http.post("/.auth/oauth2/token", data={"grant_type": "password"})
            answers.append((r.status_code, r.json(), None))
            r = await http.get("/.auth/oauth2/introspect")
            assert r.status_code == 405
    assert answers[:2] == answers[2:]
    assert direct._direct and full._direct == {}


async def test_an_unexpected_failure_on_a_fixed_route_is_a_json_500(
        gate: AuthGate, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from authgate.oauth import http as oauth_http

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(oauth_http, "parse_form", broken)
    async with client(create_app(gate=gate)) as http:
        r = await http.post("/.auth/oauth2/token", data={"grant_type": "client_credentials"})
    assert r.status_code == 500
    assert r.json() == {"error": "server_error", "error_description": "internal error"}
    assert any("unhandled error on POST /.auth/oauth2/token" in rec.getMessage()
               for rec in caplog.records)


async def test_added_middleware_sees_fixed_routes(gate: AuthGate) -> None:
    seen: list[str] = []

    class Spy:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            seen.append(scope["path"])
            await self.app(scope, receive, send)

    app = create_app(gate=gate)
    app.add_middleware(Spy)
    async with client(app) as http:
        assert (await http.get("/.auth/keys")).status_code == 200
    assert seen == ["/.auth/keys"]
