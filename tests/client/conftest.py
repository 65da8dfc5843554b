"""A real authgate (real app, real SQLite store, frozen server time) for the client library.

Requests go through the real ASGI app (STYLE rule 10) via :class:`Wire`, a
transport wrapper that records every request that reached the server -- so
"exactly one refresh on the wire" is counted where it counts -- and can
inject a failure (an outage, a crash) in front of the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authgate.accounts import User
from authgate.app import create_app
from authgate.clock import FrozenClock
from authgate.codes import CodeGrant
from authgate.hashing import new_id
from authgate.oauth import pkce
from authgate.service import AuthGate

from ..support import make_settings, open_gate

BASE = "http://localhost"
ISSUER = f"{BASE}/.auth"
TOKEN_ENDPOINT = f"{ISSUER}/oauth2/token"
USERINFO = f"{ISSUER}/oauth2/userinfo"
DENY = f"{BASE}/api/deny"
REDIRECT = "https://cli.example/cb"
VERIFIER = "client-library-verifier-" + "v" * 40
SCOPE = "openid profile offline_access api"

Fault = Callable[[httpx.Request], httpx.Response | None]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    status: int
    grant_type: str | None
    authorization: str | None


def grant_type_of(request: httpx.Request) -> str | None:
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return parse_qs(request.content.decode()).get("grant_type", [None])[0]
    return None


class _Counting:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.fault: Fault | None = None
        """Called before the server sees a request: raise, or return a response, to stand in."""

    def _record(self, request: httpx.Request, status: int) -> None:
        self.calls.append(Call(request.method, request.url.path, status, grant_type_of(request),
                               request.headers.get("authorization")))

    def refreshes(self) -> list[Call]:
        return [c for c in self.calls if c.grant_type == "refresh_token"]

    def to(self, path: str, status: int | None = None) -> list[Call]:
        return [c for c in self.calls if c.path == path and status in (None, c.status)]

    def clear(self) -> None:
        self.calls.clear()


class Wire(_Counting, httpx.AsyncBaseTransport):
    """The real async transport, counted."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        super().__init__()
        self.inner = inner
        self._held: tuple[str, int, list[int], asyncio.Event] | None = None
        self.latency = 0.0
        """Seconds each request spends "on the network": the in-process app answers without
        yielding to the event loop, so without latency tasks would never interleave."""

    def hold(self, path: str, n: int) -> None:
        """Keep the first ``n`` requests to ``path`` waiting until all ``n`` are in flight."""
        self._held = (path, n, [0], asyncio.Event())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._held is not None and request.url.path == self._held[0]:
            _path, n, seen, all_in = self._held
            seen[0] += 1
            if seen[0] >= n:
                all_in.set()
            if seen[0] <= n:
                await all_in.wait()
        if self.fault is not None:
            injected = self.fault(request)
            if injected is not None:
                self._record(request, injected.status_code)
                return injected
        if self.latency:
            await asyncio.sleep(self.latency)
        response = await self.inner.handle_async_request(request)
        self._record(request, response.status_code)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class SyncWire(_Counting, httpx.BaseTransport):
    """The real sync transport, counted."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        super().__init__()
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self._record(request, response.status_code)
        return response

    def close(self) -> None:
        self.inner.close()


async def _deny(request: Request) -> Response:
    """A resource that refuses every token, for the no-retry-loop test."""
    return JSONResponse({"error": "invalid_token"}, 401,
                        {"WWW-Authenticate": 'Bearer error="invalid_token"'})


@dataclass
class Server:
    gate: AuthGate
    clock: FrozenClock
    app: Starlette
    wire: Wire
    client_id: str
    secret: str
    users: dict[str, User] = field(default_factory=dict)

    def http(self) -> httpx.AsyncClient:
        """A client whose every request goes through the counted wire to the real app."""
        return httpx.AsyncClient(transport=self.wire, base_url=BASE)

    async def user(self, name: str) -> User:
        if name not in self.users:
            self.users[name] = await self.gate.accounts.add(name, f"{name} has a long password")
        return self.users[name]

    async def login(self, name: str = "alice", scope: str = SCOPE) -> dict[str, Any]:
        """The token response of a code grant for ``name`` (what a browser sign-in yields)."""
        user = await self.user(name)
        grant = CodeGrant(client_id=self.client_id, user_id=user.id, redirect_uri=REDIRECT,
                          scope=scope, family=new_id(), auth_time=self.clock.now(), nonce=None,
                          code_challenge=pkce.s256(VERIFIER), sid=None)
        code = await self.gate.codes.issue(grant)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app)) as http:
            r = await http.post(TOKEN_ENDPOINT, auth=(self.client_id, self.secret), data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "code_verifier": VERIFIER})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def revoke(self, refresh_token: str) -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app)) as http:
            r = await http.post(f"{ISSUER}/oauth2/revoke", auth=(self.client_id, self.secret),
                                data={"token": refresh_token, "token_type_hint": "refresh_token"})
        assert r.status_code == 200, r.text


async def open_server(tmp_path: Path, **tokens: float) -> Server:
    clock = FrozenClock()
    gate = await open_gate(tmp_path, clock, make_settings(tmp_path, **tokens))
    _client, secret = await gate.clients.add(
        "cli", redirect_uris=[REDIRECT], grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "profile", "offline_access", "api"])
    assert secret is not None
    app = create_app(gate=gate, extra_routes=[Route("/api/deny", _deny)])
    return Server(gate, clock, app, Wire(httpx.ASGITransport(app=app)), "cli", secret)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    s = await open_server(tmp_path)
    try:
        yield s
    finally:
        await s.gate.close()
