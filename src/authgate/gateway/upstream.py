"""The keep-alive HTTP/1.1 client the reverse proxy talks to the app with.

One :class:`UpstreamPool` per proxy holds idle keep-alive connections to the
one configured upstream (``http://`` or ``https://``). Requests are written by
hand (the proxy has already chosen every header) and responses are parsed by
``httptools`` -- the parser uvicorn itself uses (llhttp) -- straight from an
``asyncio.Protocol``, with no intermediate stream layer.

Why not httpx here: on this path httpx/httpcore spend most of their time on
the pool, not the wire. With 32 concurrent requests its pool checked every
pooled connection for readability on each request and detected the async
library per call; the gateway reached 280 proxied GETs/s where the same app
answered 19k/s directly (``make bench``, gateway cases). httpx stays the client
for everything else authgate calls (identity providers, the client library).

Behaviour:

- Bodies stream both ways. A request body of known length is sent as is,
  otherwise chunked; a response body is read as it arrives, and reading from
  the app pauses while more than :data:`HIGH_WATER` bytes wait for the client.
- ``timeout`` bounds connecting, each wait to write, the wait for the response
  head and each wait for more of the body (:class:`UpstreamTimeout`).
- An idle connection the app has closed meanwhile is dropped when it is
  picked (idle connections keep reading, so the close is seen when it
  happens); a request whose reused connection fails before any of its body
  was sent and before any answer is retried once on a new connection.
- A connection goes back to the pool only after a complete response that lets
  it live (``should_keep_alive``); anything cut short is closed.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

from ..errors import ConfigError

HIGH_WATER = 256 * 1024
"""Response bytes buffered for a slow client before reading from the app pauses."""
LOW_WATER = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024
"""A response head (status line and headers) larger than this is refused as malformed."""

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate",
                        b"proxy-authorization", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade"})
"""Hop-by-hop header names (RFC 7230 §6.1), besides any ``proxy-*`` and those ``Connection`` names."""
_HOP_OR_LENGTH = HOP_BY_HOP | {b"content-length"}


class UpstreamError(Exception):
    """The app could not be reached or answered with something that is not HTTP/1.1."""


class UpstreamTimeout(UpstreamError):
    """The app did not answer (or accept the request) in time."""


class _Retry(Exception):
    """A reused connection turned out to be closed before it carried the request."""


class UpstreamResponse:
    """The head of the app's answer, and its body as it arrives (:meth:`aiter_raw`).

    Also the ``httptools`` callback target while the response is parsed.
    """

    def __init__(self, conn: _Connection, *, head_only: bool, timeout: float) -> None:
        self.status = 0
        self.headers: Headers = []
        self.hop_by_hop = False
        """A hop-by-hop header (RFC 7230 §6.1) is among :attr:`headers`."""
        self._conn = conn
        self._head_only = head_only
        self._timeout = timeout
        self._parser = httptools.HttpResponseParser(self)
        self._head_bytes = 0
        self._head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._wake: asyncio.Event | None = None
        """Created by the first reader that has to wait for more (most never do)."""
        self._delimited = False
        self.complete = False
        self.keep_alive = False
        self.error: UpstreamError | None = None
        self.got_bytes = False

    # -- httptools callbacks -----------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES:
            raise UpstreamError("the app's response head is too large")
        lname = name.lower()
        if lname in _HOP_OR_LENGTH:
            if lname in (b"content-length", b"transfer-encoding"):
                self._delimited = True
            if lname != b"content-length":
                self.hop_by_hop = True
        elif lname.startswith(b"proxy-"):
            self.hop_by_hop = True
        self.headers.append((lname, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # 1xx interim answer: the real one follows
            self.headers = []
            self.hop_by_hop = False
            return
        self.status = status
        if status in (204, 304):
            self._delimited = True
        if not self._head.done():
            self._head.set_result(None)
        if self._head_only:
            self._finish(keep_alive=self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self.complete or self.status == 0:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER:
            self._conn.pause_reading()
        self._notify()

    def on_message_complete(self) -> None:
        if self.status == 0:  # the end of a 1xx interim answer
            return
        if not self.complete:
            self._finish(keep_alive=self._parser.should_keep_alive())

    # -- fed by the connection -----------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.got_bytes = True
        if self.complete:
            return
        try:
            self._parser.feed_data(data)
        except UpstreamError as exc:
            self.fail(exc)
        except httptools.HttpParserUpgrade:
            self.fail(UpstreamError("the app switched protocols on a plain request"))
        except httptools.HttpParserError:
            self.fail(UpstreamError("the app's response is not valid HTTP/1.1"))

    def eof(self) -> None:
        """The app closed the connection."""
        if self.complete:
            return
        if self._head.done() and not self._delimited:
            self._finish(keep_alive=False)  # a body delimited by the end of the connection
        else:
            self.fail(UpstreamError("the app closed the connection mid-response"))

    def fail(self, error: UpstreamError) -> None:
        if self.complete or self.error is not None:
            return
        self.error = error
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # seen: nobody may be waiting for the head any more
        self._notify()
        self._conn.close()

    def _finish(self, *, keep_alive: bool) -> None:
        self.complete = True
        self.keep_alive = keep_alive
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- the proxy's side ----------------------------------------------------------

    async def _wait_head(self) -> None:
        timer = asyncio.get_running_loop().call_later(
            self._timeout, self.fail, UpstreamTimeout("the app did not answer in time"))
        try:
            await self._head
        finally:
            timer.cancel()

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (transfer coding removed)."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered <= LOW_WATER:
                    self._conn.resume_reading()
                yield chunk
                continue
            if self.error is not None:
                raise self.error
            if self.complete:
                return
            if self._wake is None:
                self._wake = asyncio.Event()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._timeout)
            except TimeoutError:
                self.fail(UpstreamTimeout("the app stopped sending its response"))

    def take_buffered(self) -> bytes:
        """Everything of the body received so far, at once (all of it once :attr:`complete`)."""
        chunks, self._chunks = self._chunks, collections.deque()
        self._buffered = 0
        self._conn.resume_reading()
        return b"".join(chunks)

    @property
    def reusable(self) -> bool:
        """Read whole, and the app lets the connection live on."""
        return self.complete and self.keep_alive and not self._chunks

    async def aclose(self) -> None:
        """Give the connection back when the response was read whole, else close it."""
        self._conn.finished(self)


class _Connection(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.response: UpstreamResponse | None = None
        self.closed = False
        self.idle_since = 0.0
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.response is None:
            self.close()  # nothing was asked: the app is not speaking HTTP/1.1 to us
            return
        self.response.feed(data)

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._writable.set()
        if self.response is not None:
            self.response.eof()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    async def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise UpstreamError("the connection to the app is closed")
        self.transport.write(data)
        if not self._writable.is_set():
            try:
                await asyncio.wait_for(self._writable.wait(), self.pool.timeout)
            except TimeoutError:
                raise UpstreamTimeout("the app did not accept the request in time") from None
            if self.closed:
                raise UpstreamError("the app closed the connection")

    def finished(self, response: UpstreamResponse) -> None:
        if self.response is not response:
            return
        self.response = None
        if response.reusable and not self.closed:
            self.pool._release(self)
        else:
            self.close()


class UpstreamPool:
    def __init__(self, base_url: str, *, timeout: float, max_idle: int = 100,
                 idle_expiry: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"the upstream must be an http:// or https:// URL, not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        default_port = parts.port is None or parts.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host.encode("idna").decode("ascii")
        self.host_header = (host if default_port else f"{host}:{self.port}").encode("ascii")
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.timeout = timeout
        self.max_idle = max_idle
        self.idle_expiry = idle_expiry
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _transport, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self), self.host, self.port, ssl=self.ssl),
                self.timeout)
        except TimeoutError:
            raise UpstreamTimeout("connecting to the app timed out") from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to the app: {type(exc).__name__}") from None
        return conn

    def _checkout(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < self.idle_expiry:
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection) -> None:
        if len(self._idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def send(self, method: str, target: str, headers: Headers,
                   body: AsyncIterator[bytes] | None = None) -> UpstreamResponse:
        """Send a request and wait for the head of the answer.

        ``target`` is the path and query (the upstream's path prefix is put before
        it); ``headers`` are sent as given, plus ``Host`` and, for a body of
        unknown length, ``Transfer-Encoding: chunked``. Exceptions raised by
        ``body`` propagate (the connection is closed).
        """
        conn = self._checkout()
        if conn is not None:
            try:
                return await self._exchange(conn, method, target, headers, body, reused=True)
            except _Retry:
                pass
        conn = await self._connect()
        try:
            return await self._exchange(conn, method, target, headers, body, reused=False)
        except _Retry:
            raise UpstreamError("the app closed the connection without answering") from None

    async def _exchange(self, conn: _Connection, method: str, target: str, headers: Headers,
                        body: AsyncIterator[bytes] | None, *, reused: bool) -> UpstreamResponse:
        response = UpstreamResponse(conn, head_only=method == "HEAD", timeout=self.timeout)
        conn.response = response
        sized = any(k == b"content-length" for k, _ in headers)
        head = [f"{method} {self.prefix}{target} HTTP/1.1\r\n".encode("latin-1"),
                b"host: ", self.host_header, b"\r\n"]
        for k, v in headers:
            head += (k, b": ", v, b"\r\n")
        if body is not None and not sized:
            head.append(b"transfer-encoding: chunked\r\n")
        head.append(b"\r\n")
        body_started = False
        try:
            await conn.write(b"".join(head))
            if body is not None:
                body_started = True
                async for chunk in body:
                    if chunk:
                        await conn.write(chunk if sized else b"%x\r\n%b\r\n" % (len(chunk), chunk))
                if not sized:
                    await conn.write(b"0\r\n\r\n")
            await response._wait_head()
        except UpstreamTimeout:
            conn.response = None
            conn.close()
            raise
        except UpstreamError:
            conn.response = None
            conn.close()
            if reused and not response.got_bytes and not body_started:
                raise _Retry from None  # the app never saw this request: send it again
            raise
        except BaseException:
            conn.response = None
            conn.close()
            raise
        return response

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
