"""Real servers for the gateway tests: an upstream echo app, a fake IdP token endpoint, authgate.

Everything runs under uvicorn on free loopback ports inside the test's own
event loop, so the tests speak real HTTP (and WebSocket) to authgate and
authgate speaks real HTTP to the app behind it. Users are signed in by
creating a gateway session directly (the login flow has its own tests).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket

from authgate.app import create_app
from authgate.clock import FrozenClock
from authgate.config import Settings
from authgate.gateway import Gateway
from authgate.gateway.provider_tokens import ProviderTokens
from authgate.http_server import HttpProtocol
from authgate.service import AuthGate

from ..live import serve
from ..support import make_settings, open_gate

CHUNK = 64 * 1024


@asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    """``app`` under uvicorn on a free loopback port, in this event loop; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", loop="asyncio",
                            proxy_headers=False, http=HttpProtocol,
                            ws="websockets-sansio")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            raise RuntimeError("test server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


# -- the app behind the gateway ------------------------------------------------------------


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({
        "method": request.method, "path": request.url.path,
        "raw_path": request.scope["raw_path"].decode("latin-1"),
        "query": request.url.query, "headers": [[k.decode("latin-1"), v.decode("latin-1")]
                                                for k, v in request.scope["headers"]],
        "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest(),
        "body": body[:200].decode("latin-1"),
    })


async def mirror(request: Request) -> Response:
    """The request body sent back."""
    return Response(await request.body(), media_type="application/octet-stream")


async def arrivals(request: Request) -> Response:
    """When each piece of the request body arrived (seconds after the first)."""
    loop = asyncio.get_running_loop()
    times: list[tuple[float, int]] = []
    async for chunk in request.stream():
        if chunk:
            times.append((loop.time(), len(chunk)))
    return JSONResponse([[t - times[0][0], n] for t, n in times])


async def drip(request: Request) -> Response:
    """One chunk now, the next after a pause: shows whether the proxy buffers responses."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first;"
        await asyncio.sleep(1.0)
        yield b"second"

    return StreamingResponse(chunks(), media_type="text/plain")


async def download(request: Request) -> Response:
    n = int(request.query_params["n"])

    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        while sent < n:
            size = min(CHUNK, n - sent)
            yield bytes([sent // CHUNK % 251]) * size
            sent += size

    return StreamingResponse(chunks(), media_type="application/octet-stream")


async def hop_headers(request: Request) -> Response:
    r = Response("ok", headers={"X-Kept": "yes", "X-Secret-Hop": "leak", "Keep-Alive": "timeout=99",
                                "Proxy-Authenticate": "Basic", "Trailer": "X-Checksum"})
    r.raw_headers.append((b"connection", b"X-Secret-Hop"))
    return r


async def set_cookie(request: Request) -> Response:
    r = JSONResponse({"cookie": request.headers.get("cookie")})
    r.set_cookie("upstream_secret", request.query_params.get("v", "x"))
    return r


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("s", "3")))
    return Response("late")


async def ws_echo(ws: WebSocket) -> None:
    protocols = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol=protocols[0] if protocols else None)
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await ws.send_bytes(message["bytes"][::-1])
            continue
        text = message.get("text") or ""
        if text == "headers":
            await ws.send_text(json.dumps([[k.decode("latin-1"), v.decode("latin-1")]
                                           for k, v in ws.scope["headers"]]))
        elif text.startswith("close:"):
            await ws.close(int(text[6:]), reason="asked to")
            return
        else:
            await ws.send_text(f"echo:{text}")


def echo_app() -> Starlette:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[
        Route("/mirror", mirror, methods=["POST", "PUT"]),
        Route("/download", download),
        Route("/arrivals", arrivals, methods=["POST"]),
        Route("/drip", drip),
        Route("/hop", hop_headers),
        Route("/set-cookie", set_cookie),
        Route("/slow", slow),
        WebSocketRoute("/ws", ws_echo),
        Route("/{rest:path}", echo, methods=methods),
    ])


# -- an upstream identity provider's token endpoint ------------------------------------------


@dataclass
class FakeIdP:
    """Just enough OAuth 2.0 token endpoint (RFC 6749 §6) to refresh provider tokens."""

    refreshes: list[str] = field(default_factory=list)
    refuse: bool = False

    async def token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        self.refreshes.append(str(form.get("refresh_token")))
        if self.refuse:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        n = len(self.refreshes)
        return JSONResponse({"access_token": f"fresh-access-{n}", "token_type": "Bearer",
                             "expires_in": 3600, "refresh_token": f"fresh-refresh-{n}"})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/token", self.token, methods=["POST"])])


# -- authgate in front ---------------------------------------------------------------------


@dataclass
class Env:
    url: str
    gate: AuthGate
    gw: Gateway
    upstream: str

    @property
    def clock(self) -> FrozenClock:
        assert isinstance(self.gate.clock, FrozenClock)
        return self.gate.clock

    async def sign_in(self, *, provider: str = "corp", user_id: str = "u-1", name: str = "Alice",
                      claims: list[tuple[str, str]] | None = None,
                      tokens: ProviderTokens | None = None) -> dict[str, str]:
        """A signed-in browser: the Cookie header of a fresh gateway session."""
        cookie, session = await self.gw.sessions.start(
            provider=provider, user_id=user_id, name=name,
            claims=claims if claims is not None else [("email", "alice@example.com")])
        if tokens is not None:
            await self.gw.provider_tokens.save(session.user_key, tokens)
        return {"Cookie": f"{self.gw.cookie_name}={cookie}"}

    async def session_token(self, *, provider: str = "corp", user_id: str = "u-1",
                            name: str = "Alice") -> str:
        """An ``X-ZUMO-AUTH`` session token of a fresh gateway session."""
        _cookie, s = await self.gw.sessions.start(provider=provider, user_id=user_id, name=name,
                                                  claims=[])
        return self.gw.session_tokens.mint(sid=s.sid, user_key=s.user_key, user_id=user_id,
                                           provider=provider, name=name, now=self.clock.now(),
                                           lifetime=3600)

    def tokens(self, provider: str = "corp", user_id: str = "u-1", *, expires_in: float = 3600,
               **values: str) -> ProviderTokens:
        base = {"access_token": "at-1", "refresh_token": "rt-1", "id_token": "idt-1"}
        return ProviderTokens(provider=provider, user_id=user_id,
                              expires_on=self.clock.now() + expires_in, **{**base, **values})


Start = Callable[..., Awaitable[Env]]


def configure(settings: Settings, upstream: str, idp: str, gateway: dict[str, Any]) -> None:
    settings.upstream = upstream
    settings.providers = {"corp": {
        "type": "oauth2", "client_id": "authgate", "client_secret": "s3cret",
        "authorization_endpoint": f"{idp}/authorize", "token_endpoint": f"{idp}/token"}}
    for key, value in gateway.items():
        setattr(settings.gateway, key, value)


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[str]:
    """The echo app, served once for the whole run (in a thread: it keeps no per-test state)."""
    with serve(echo_app()) as url:
        yield url


@pytest.fixture(scope="session")
def idp_server() -> Iterator[tuple[FakeIdP, str]]:
    fake = FakeIdP()
    with serve(fake.app()) as url:
        yield fake, url


@pytest.fixture
def idp(idp_server: tuple[FakeIdP, str]) -> FakeIdP:
    fake = idp_server[0]
    fake.refreshes.clear()
    fake.refuse = False
    return fake


@pytest.fixture
async def start(tmp_path: Path, echo_upstream: str, idp: FakeIdP,
                idp_server: tuple[FakeIdP, str]) -> AsyncIterator[Start]:
    """``await start(**gateway_settings)``: authgate (served) in front of the echo app."""
    async with AsyncExitStack() as stack:
        async def go(upstream: str | None = None, **gateway: Any) -> Env:
            up = upstream or echo_upstream
            settings = make_settings(tmp_path)
            configure(settings, up, idp_server[1], gateway)
            gate = await open_gate(tmp_path, FrozenClock(), settings)
            stack.push_async_callback(gate.close)
            app = create_app(gate=gate)
            url = await stack.enter_async_context(served(app))
            gw: Gateway = app.state.gateway
            stack.push_async_callback(gw.close)
            return Env(url, gate, gw, up)

        yield go


def header_values(echoed: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echoed["headers"] if k.lower() == name.lower()]
