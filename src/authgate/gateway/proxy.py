"""The reverse proxy: every path outside ``/.auth/`` goes to ``upstream``, authenticated.

:class:`GatewayProxy` answers every HTTP and WebSocket request outside
``/.auth/``: the app (:func:`authgate.app.create_app`) hands such requests to it
before its own router and middleware, so the proxied path pays only for what
it needs. Each request is authenticated by the gateway
:mod:`~authgate.gateway.policy` and relayed.

- The request's headers are read once: the credentials (``X-ZUMO-AUTH``,
  ``Authorization``, the session cookie) are picked out in the same pass that
  builds what the app receives, and a header section over
  ``gateway.max_header_bytes`` is refused 431 (RFC 6585 §5).

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
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from ..config import Settings
from .forwarded import FORWARDING, RawHeaders, TrustedProxies, forwarding_headers, hop
from .headers import is_identity_header
from .identity import bearer_token
from .policy import Policy, answer, error_json, original_target, policy_of
from .upstream import HOP_BY_HOP, UpstreamError, UpstreamPool, UpstreamResponse, UpstreamTimeout

if TYPE_CHECKING:
    from . import Gateway

log = logging.getLogger("authgate.gateway")

_NOT_FORWARDED = frozenset({b"host", b"expect"}) | FORWARDING
_NOT_PASSED = HOP_BY_HOP | _NOT_FORWARDED
_WS_HANDSHAKE = frozenset({b"sec-websocket-key", b"sec-websocket-version",
                           b"sec-websocket-extensions", b"sec-websocket-protocol",
                           b"sec-websocket-accept"})


def end_to_end(headers: RawHeaders) -> RawHeaders:
    """``headers`` without the hop-by-hop ones (RFC 7230 §6.1)."""
    out = [(k, v) for k, v in headers
           if (n := k.lower()) not in HOP_BY_HOP and not n.startswith(b"proxy-")]
    if len(out) == len(headers):
        return out
    named = _connection_named(headers)
    return [(k, v) for k, v in out if k.lower() not in named] if named else out


def _connection_named(headers: RawHeaders) -> set[bytes]:
    """The header names every ``Connection`` header lists (hop-by-hop too, RFC 7230 §6.1)."""
    return {token.strip().lower().encode("latin-1") for k, v in headers
            if k.lower() == b"connection" for token in v.decode("latin-1").split(",")}


def _take_cookie(value: bytes, name: bytes) -> tuple[bytes, str | None]:
    """A ``Cookie`` header without the cookie ``name``, and that cookie's value (the last
    one, as Starlette's parser reads it); authgate's cookie is never handed to the app."""
    if name not in value:
        return value, None
    keep = []
    found = None
    for c in value.split(b";"):
        key, eq, val = c.partition(b"=")
        if eq and key.strip() == name:
            found = val.strip()
        else:
            keep.append(c)
    if found is None:
        return value, None
    text = found.decode("latin-1")
    if text.startswith('"'):  # a quoted value (never authgate's own): Starlette's reading
        text = cookie_parser(value.decode("latin-1")).get(name.decode("latin-1"), text)
    return b";".join(keep).strip(), text


@functools.lru_cache(maxsize=1024)
def _own_hop(peer: str | None, scheme: str, host: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """The forwarding headers for a peer that is not a trusted proxy (the usual case)."""
    scope = {"client": (peer, 0) if peer is not None else None, "scheme": scheme,
             "headers": [(b"host", host)] if host else []}
    return tuple(forwarding_headers(scope, hop(scope, TrustedProxies([]))))


@dataclass(slots=True)
class _Inbound:
    """One pass over the request's headers: what the app gets, and the credentials."""

    headers: RawHeaders
    size: int
    host: bytes
    token: str | None
    cookie: str | None
    length: bytes | None
    chunked: bool


def _inbound(scope: Scope, cookie_name: bytes) -> _Inbound:
    out: RawHeaders = []
    size = 0
    zumo = bearer = length = None
    host = b""
    cookie: str | None = None
    first_cookie = True
    chunked = False
    connection = False
    for k, v in scope["headers"]:
        size += len(k) + len(v) + 4
        name = k.lower()
        if name in _NOT_PASSED or name.startswith(b"proxy-"):
            if name == b"transfer-encoding":
                chunked = True
            elif name == b"connection":
                connection = True
            elif name == b"host" and not host:
                host = v
            continue
        if b"ms" in name and is_identity_header(name):
            continue
        if name == b"cookie":
            v, value = _take_cookie(v, cookie_name)
            if first_cookie:  # like Starlette's request.cookies: the first Cookie header
                cookie, first_cookie = value, False
            if not v:
                continue
        elif name == b"x-zumo-auth":
            if zumo is None:
                zumo = v
        elif name == b"authorization":
            if bearer is None:
                bearer = v
        elif name == b"content-length" and length is None:
            length = v
        out.append((name, v))
    if connection:
        named = _connection_named(scope["headers"])
        out = [(k, v) for k, v in out if k not in named]
    token = (zumo.decode("latin-1") if zumo else None) or (
        bearer_token(bearer.decode("latin-1")) if bearer else None)
    return _Inbound(out, size, host, token, cookie, length, chunked)


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


class GatewayProxy:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = settings.upstream.rstrip("/")
        self.gateway: Gateway | None = None
        """Set by the app's lifespan (or at once when the app gets an opened AuthGate)."""
        self.max_header_bytes = settings.gateway.max_header_bytes
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
        """A request outside ``/.auth/`` (HTTP or WebSocket)."""
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self._websocket(scope, receive, send)

    def _gateway(self, scope: Scope) -> Gateway:
        gw = self.gateway
        if gw is None:
            gw = self.gateway = scope["app"].state.gateway
        return gw

    def _forwarding(self, scope: Scope, policy: Policy,
                    host: bytes) -> RawHeaders | tuple[tuple[bytes, bytes], ...]:
        if policy.trusted:
            return forwarding_headers(scope, hop(scope, policy.trusted))
        client = scope.get("client")
        return _own_hop(str(client[0]) if client else None, scope.get("scheme", "http"), host)

    async def _admit(self, scope: Scope) -> tuple[_Inbound, RawHeaders] | Response:
        """Who is asking, and what the app receives: the headers to send on, or a refusal."""
        gw = self._gateway(scope)
        policy = policy_of(gw)
        inbound = _inbound(scope, gw.cookie_name.encode("latin-1"))
        if inbound.size > self.max_header_bytes:
            return error_json(431, "invalid_request", "request headers are too large")
        outcome = await policy.authenticate_credentials(scope, inbound.token, inbound.cookie)
        if outcome.denial is not None:
            return outcome.denial
        headers = inbound.headers
        headers.extend(self._forwarding(scope, policy, inbound.host))
        headers.extend(outcome.headers)
        return inbound, headers

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            result = await self._forward(scope, receive)
        except _ClientGone:
            return
        except Exception:
            # Nothing was sent yet: a JSON 500 like the rest of authgate's, never details.
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            result = error_json(500, "server_error", "internal error")
        if isinstance(result, Response):
            await answer(result, scope, receive, send)
            return
        try:
            await _relay(result, receive, send)
        finally:
            await result.aclose()

    async def _forward(self, scope: Scope, receive: Receive) -> UpstreamResponse | Response:
        """Authenticate and send the request on: the app's answer, or authgate's refusal."""
        admitted = await self._admit(scope)
        if isinstance(admitted, Response):
            return admitted
        inbound, headers = admitted
        limit = self.settings.gateway.max_body_bytes
        length = inbound.length
        if length is not None and length.isdigit() and int(length) > limit:
            return _too_large(limit)
        has_body = inbound.chunked or (length is not None and length not in (b"", b"0"))
        try:
            return await self.pool().send(scope["method"], original_target(scope), headers,
                                          _body(receive, limit) if has_body else None)
        except _BodyTooLarge:
            return _too_large(limit)
        except UpstreamTimeout:
            log.warning("the app did not answer %s %s in time", scope["method"], scope["path"])
            return error_json(504, "upstream_timeout", "the app did not answer in time")
        except UpstreamError as exc:
            log.warning("the app cannot be reached for %s %s: %s", scope["method"],
                        scope["path"], exc)
            return error_json(502, "bad_gateway", "the app cannot be reached")

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        admitted = await self._admit(scope)
        if isinstance(admitted, Response):
            await answer(admitted, scope, receive, send)
            return
        gs = self.settings.gateway
        headers = [(k.decode("latin-1"), v.decode("utf-8", "replace"))
                   for k, v in admitted[1] if k not in _WS_HANDSHAKE]
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
    headers = end_to_end(response.headers) if response.hop_by_hop else response.headers
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if response.complete:
        # The whole answer is already here (the usual small one): send it in one piece,
        # no need to watch for the client leaving. It is at most HIGH_WATER bytes plus
        # one read: reading pauses past that.
        await send({"type": "http.response.body", "body": response.take_buffered()})
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
