"""uvicorn's httptools protocol, writing each response's head and body in one go.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, and the body with the next message: two ``send``
system calls, and usually two TCP segments, for every small response. Every
authgate answer is one of those (a token, a JSON error, a proxied page), and
the syscalls are a large share of what a request costs.

:class:`HttpProtocol` gives each request/response cycle a write-through
:class:`CoalescingTransport`: writes made during one turn of the event loop
are joined and handed to the real transport once, at the end of that turn
(``call_soon``) or at once before the connection closes. Nothing waits
longer than the current loop turn, so a streamed response still goes out
chunk by chunk, and back-pressure still works (the real transport sees every
byte before the loop polls again).

Used by ``authgate serve`` (``http=HttpProtocol``); an app mounted in another
server is unaffected.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport that joins the writes of one loop turn into one (see the module doc)."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`CoalescingTransport` for each response."""

    def on_headers_complete(self) -> None:
        # uvicorn's internals (the ``cycle`` it creates here, its ``transport``) are read
        # defensively: a uvicorn that names them differently gets plain writes, not errors.
        before = getattr(self, "cycle", None)
        super().on_headers_complete()
        cycle = getattr(self, "cycle", None)
        if cycle is not None and cycle is not before and hasattr(cycle, "transport"):
            # The cycle's task has been created but has not run yet.
            cycle.transport = CoalescingTransport(self.transport, self.loop)
