"""The reverse proxy: every path outside ``/.auth/`` goes to ``upstream``, authenticated.

:class:`GatewayProxy` is ASGI middleware around authgate's own app: ``/.auth/*``
and lifespan events pass through to it, everything else (HTTP and WebSocket)
is authenticated by the gateway :mod:`~authgate.gateway.policy` and relayed.

- Bodies stream both ways, never buffered whole; a body longer than
  ``gateway.max_body_bytes`` is refused 413 (RFC 9110 §15.5.14), from its
  ``Content-Length`` before anything is sent upstream, or as soon as the stream
  exceeds it.
- Hop-by-hop headers (RFC 7230 §6.1: ``Connection`` and every header it names,
  ``Keep-Alive``, ``Proxy-*``, ``TE``, ``Trailer``, ``Transfer-Encoding``,
  ``Upgrade``) are dropped in both directions; forwarding headers are
  rebuilt (:mod:`~authgate.gateway.forwarded`, RFC 7239); client-sent
  identity headers never pass and authgate's session cookie is not handed on.
- One :class:`~authgate.gateway.upstream.UpstreamPool` per proxy keeps
  keep-alive connections to the app. It is created on first use and closed
  when the app's lifespan shuts down (or by :meth:`aclose`). It keeps no
  cookies (one user's ``Set-Cookie`` must never reach another's request),
  ignores proxy environment variables and follows no redirects.
- Upstream unreachable: 502; no answer within ``gateway.upstream_timeout``: 504.
- WebSockets (RFC 6455): the handshake is authenticated like any request, then
  frames are relayed both ways to a connection opened with ``websockets``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from ..config import Settings
from .forwarded import FORWARDING, RawHeaders, forwarding_headers, hop
from .headers import is_identity_header
from .policy import Outcome, answer, error_json, original_target, policy_of
from .upstream import UpstreamError, UpstreamPool, UpstreamResponse, UpstreamTimeout

if TYPE_CHECKING:
    from . import Gateway

log = logging.getLogger("authgate.gateway")

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate",
                        b"proxy-authorization", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade"})
_NOT_FORWARDED = frozenset({b"host", b"expect"}) | FORWARDING
_WS_HANDSHAKE = frozenset({b"sec-websocket-key", b"sec-websocket-version",
                           b"sec-websocket-extensions", b"sec-websocket-protocol",
                           b"sec-websocket-accept"})


def end_to_end(headers: RawHeaders) -> RawHeaders:
    """``headers`` without the hop-by-hop ones (RFC 7230 §6.1)."""
    named = {token.strip().lower().encode("latin-1") for k, v in headers
             if k.lower() == b"connection" for token in v.decode("latin-1").split(",")}
    return [(k, v) for k, v in headers
            if (n := k.lower()) not in HOP_BY_HOP and n not in named and not n.startswith(b"proxy-")]


def _drop_cookie(value: bytes, name: str) -> bytes:
    keep = [c for c in value.split(b";") if c.strip().split(b"=", 1)[0] != name.encode("latin-1")]
    return b";".join(keep).strip()


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


class GatewayProxy:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.base = settings.upstream.rstrip("/")
        self._pool: UpstreamPool | None = None

    def pool(self) -> UpstreamPool:
        if self._pool is None:
            self._pool = UpstreamPool(self.base, timeout=self.settings.gateway.upstream_timeout)
        return self._pool

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_on_shutdown(send))
        elif scope["type"] not in ("http", "websocket") or scope["path"].startswith("/.auth/"):
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self._websocket(scope, receive, send)

    def _closing_on_shutdown(self, send: Send) -> Callable[[Message], Awaitable[None]]:
        async def relay(message: Message) -> None:
            if message["type"].startswith("lifespan.shutdown."):
                await self.aclose()
            await send(message)

        return relay

    async def _authenticate(self, scope: Scope) -> tuple[Gateway, Outcome]:
        gw: Gateway = scope["app"].state.gateway
        return gw, await policy_of(gw).authenticate(HTTPConnection(scope))

    def _headers(self, scope: Scope, gw: Gateway, outcome: Outcome) -> RawHeaders:
        """What the app receives: end-to-end headers, rebuilt forwarding and identity headers."""
        out: RawHeaders = []
        for k, v in end_to_end(scope["headers"]):
            name = k.lower()
            if name in _NOT_FORWARDED or is_identity_header(name):
                continue
            if name == b"cookie" and not (v := _drop_cookie(v, gw.cookie_name)):
                continue
            out.append((name, v))
        out.extend(forwarding_headers(scope, hop(scope, policy_of(gw).trusted)))
        out.extend(outcome.headers)
        return out

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw, outcome = await self._authenticate(scope)
        if outcome.denial is not None:
            await answer(outcome.denial, scope, receive, send)
            return
        limit = self.settings.gateway.max_body_bytes
        incoming = Headers(scope=scope)
        length = incoming.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await answer(_too_large(limit), scope, receive, send)
            return
        has_body = length not in ("", "0") or "transfer-encoding" in incoming
        try:
            response = await self.pool().send(scope["method"], original_target(scope),
                                              self._headers(scope, gw, outcome),
                                              _body(receive, limit) if has_body else None)
        except _ClientGone:
            return
        except _BodyTooLarge:
            await answer(_too_large(limit), scope, receive, send)
            return
        except UpstreamTimeout:
            log.warning("the app did not answer %s %s in time", scope["method"], scope["path"])
            await answer(error_json(504, "upstream_timeout", "the app did not answer in time"),
                         scope, receive, send)
            return
        except UpstreamError as exc:
            log.warning("the app cannot be reached for %s %s: %s", scope["method"],
                        scope["path"], exc)
            await answer(error_json(502, "bad_gateway", "the app cannot be reached"),
                         scope, receive, send)
            return
        try:
            await _relay(response, receive, send)
        finally:
            await response.aclose()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        gw, outcome = await self._authenticate(scope)
        if outcome.denial is not None:
            await answer(outcome.denial, scope, receive, send)
            return
        gs = self.settings.gateway
        headers = [(k.decode("latin-1"), v.decode("utf-8", "replace"))
                   for k, v in self._headers(scope, gw, outcome) if k not in _WS_HANDSHAKE]
        protocols = [Subprotocol(p) for p in scope.get("subprotocols", [])]
        url = "ws" + self.base.removeprefix("http") + original_target(scope)
        try:
            upstream = await connect(url, additional_headers=headers, proxy=None,
                                     subprotocols=protocols or None,
                                     open_timeout=gs.upstream_timeout, max_size=gs.max_body_bytes,
                                     user_agent_header=None)
        except InvalidStatus as exc:
            status = exc.response.status_code
            await answer(error_json(status if 400 <= status < 500 else 502, "upstream_refused",
                                    f"the app refused the WebSocket ({status})"),
                         scope, receive, send)
            return
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            log.warning("upstream WebSocket %s failed: %s", scope["path"], type(exc).__name__)
            await answer(error_json(502, "bad_gateway", "the app cannot be reached"),
                         scope, receive, send)
            return
        try:
            await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
            await _pump(upstream, receive, send)
        finally:
            await upstream.close()


def _too_large(limit: int) -> JSONResponse:
    return error_json(413, "request_too_large", f"the request body exceeds {limit} bytes")


async def _body(receive: Receive, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives, refused once it passes ``limit``."""
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise _BodyTooLarge
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _relay(response: UpstreamResponse, receive: Receive, send: Send) -> None:
    """Stream the upstream response; stop reading it when the client goes away."""
    await send({"type": "http.response.start", "status": response.status,
                "headers": end_to_end(response.headers)})
    if response.complete:
        # The whole answer is already here (the usual small one): send it in one piece,
        # no need to watch for the client leaving. It is at most HIGH_WATER bytes plus
        # one read: reading pauses past that.
        body = b"".join([chunk async for chunk in response.aiter_raw()])
        await send({"type": "http.response.body", "body": body})
        return
    async with anyio.create_task_group() as tg:
        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        try:
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError as exc:  # the connection is closed: the client sees a cut body
            log.warning("upstream broke off a response: %s", exc)
            tg.cancel_scope.cancel()
            return
        await send({"type": "http.response.body", "body": b""})
        tg.cancel_scope.cancel()


def _sendable(code: int | None, default: int) -> int:
    """A close code that may go on the wire (RFC 6455 §7.4.1: not 1005, 1006, 1015)."""
    return code if code is not None and 1000 <= code < 5000 and code not in (
        1004, 1005, 1006, 1015) else default


async def _pump(upstream: ClientConnection, receive: Receive, send: Send) -> None:
    """Relay frames both ways until either side closes; the close code travels along."""

    async def from_client() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(_sendable(message.get("code"), 1000),
                                     message.get("reason") or "")
                return
            if message["type"] == "websocket.receive":
                data = message.get("bytes")
                await upstream.send(data if data is not None else message.get("text") or "")

    async def from_upstream() -> None:
        try:
            async for data in upstream:
                key = "text" if isinstance(data, str) else "bytes"
                await send({"type": "websocket.send", key: data})
        except ConnectionClosed:
            pass
        code = upstream.close_code
        await send({"type": "websocket.close", "reason": upstream.close_reason or "",
                    "code": 1000 if code == 1005 else _sendable(code, 1011)})

    async with anyio.create_task_group() as tg:
        async def run(side: Callable[[], Awaitable[None]]) -> None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await side()
            tg.cancel_scope.cancel()

        tg.start_soon(run, from_client)
        tg.start_soon(run, from_upstream)
