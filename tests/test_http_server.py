"""authgate's uvicorn protocol: one write per response, nothing held past a loop turn."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send

from authgate.http_server import CoalescingTransport, HttpProtocol


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return f"extra:{name}"


def _coalescing() -> tuple[CoalescingTransport, RecordingTransport]:
    real = RecordingTransport()
    return CoalescingTransport(real, asyncio.get_running_loop()), real  # type: ignore[arg-type]


async def test_writes_of_one_loop_turn_go_out_as_one() -> None:
    t, real = _coalescing()
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    t.write(b"")
    t.write(b"body")
    assert real.writes == []
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    t.write(b"more")
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"more"]


async def test_close_sends_what_is_pending_first() -> None:
    t, real = _coalescing()
    t.write(b"last words")
    t.close()
    assert real.writes == [b"last words"] and real.closed and t.is_closing()
    await asyncio.sleep(0)  # the scheduled flush finds nothing left and writes nothing
    assert real.writes == [b"last words"]


async def test_other_attributes_are_the_real_transports() -> None:
    t, _ = _coalescing()
    assert t.get_extra_info("peername") == "extra:peername"


# -- under uvicorn, over real sockets ------------------------------------------------------


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/stream":
        gate: asyncio.Event = STREAM_GATE[0]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"first;", "more_body": True})
        await asyncio.wait_for(gate.wait(), 5)  # only once the client has read "first;"
        await send({"type": "http.response.body", "body": b"second"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    out = f"{scope['method']} {path} {len(body)}".encode()
    headers = [(b"content-length", str(len(out)).encode())]
    if path == "/close":
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})


STREAM_GATE: list[asyncio.Event] = []


@asynccontextmanager
async def running() -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="on", http=HttpProtocol,
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head, await asyncio.wait_for(reader.readexactly(length), 5)


async def test_keep_alive_pipelining_and_connection_close() -> None:
    async with running() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                     b"HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _response(reader))[1] == b"GET /a 0"
        assert (await _response(reader))[1] == b"POST /b 5"
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: 9" in head  # HEAD: no body
        writer.write(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = await _response(reader)
        assert body == b"GET /close 0" and b"connection: close" in head.lower()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # then the server closed
        writer.close()
        await writer.wait_closed()


async def test_expect_100_continue() -> None:
    async with running() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100")
        writer.write(b"abc")
        assert (await _response(reader))[1] == b"POST /up 3"
        writer.close()
        await writer.wait_closed()


async def test_a_streamed_chunk_is_not_held_back() -> None:
    """The app waits for the client to see its first chunk before it sends the second:
    a transport that held writes until the response ended would deadlock here."""
    STREAM_GATE[:] = [asyncio.Event()]
    async with running() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        seen = b""
        while b"first;" not in seen:
            seen += await asyncio.wait_for(reader.read(4096), 5)
        assert b"second" not in seen
        STREAM_GATE[0].set()
        while b"0\r\n\r\n" not in seen:
            seen += await asyncio.wait_for(reader.read(4096), 5)
        assert b"second" in seen
        writer.close()
        await writer.wait_closed()


async def test_under_uvicorn_head_and_body_leave_in_one_write(monkeypatch: Any) -> None:
    """The protocol really installs the coalescing transport: a small response's head
    and body are one write to the socket."""
    flushed: list[int] = []
    original = CoalescingTransport.flush

    def counting(self: CoalescingTransport) -> None:
        pending = self._pending
        if pending:
            flushed.append(len(pending))
        original(self)

    monkeypatch.setattr(CoalescingTransport, "flush", counting)
    async with running() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _response(reader))[1] == b"GET /a 0"
        writer.close()
        await writer.wait_closed()
    assert flushed == [2]  # head and body, joined
