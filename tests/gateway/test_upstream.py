"""The proxy's upstream client against scripted HTTP/1.1 servers, under asyncio and uvloop.

Each server is a few lines of ``asyncio.start_server`` that answer with exact
bytes, so every framing the client must handle (length, chunked, close-
delimited, HEAD, 1xx, cut short, malformed) is produced on purpose.
``authgate serve`` runs on uvloop and the test servers on asyncio, so each test
runs on both loops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from authgate.errors import ConfigError
from authgate.gateway.upstream import HIGH_WATER, UpstreamError, UpstreamPool, UpstreamTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

pytestmark = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


def run(loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if loop == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())


class Script:
    """A server that answers each request with the next of ``answers`` (bytes, or a callable)."""

    def __init__(self, *answers: bytes | Handler) -> None:
        self.answers = list(answers)
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                body = b""
                lower = head.lower()
                if b"content-length:" in lower:
                    n = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
                    body = await reader.readexactly(n)
                elif b"transfer-encoding: chunked" in lower:
                    body = await reader.readuntil(b"0\r\n\r\n")
                self.requests.append(head + body)
                answer = self.answers.pop(0)
                if callable(answer):
                    await answer(reader, writer)
                    return
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> tuple[asyncio.Server, UpstreamPool]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        return server, UpstreamPool(f"http://127.0.0.1:{port}", timeout=2.0)


async def fetch(pool: UpstreamPool, method: str = "GET", target: str = "/",
                headers: list[tuple[bytes, bytes]] | None = None,
                body: AsyncIterator[bytes] | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    response = await pool.send(method, target, headers or [], body)
    try:
        data = b"".join([c async for c in response.aiter_raw()])
    finally:
        await response.aclose()
    return response.status, dict(response.headers), data


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_keep_alive_connection_is_reused(loop: str) -> None:
    async def main() -> None:
        script = Script(OK, OK, OK)
        server, pool = await script.start()
        async with server:
            for _ in range(3):
                assert await fetch(pool, target="/x?y=1") == (200, {b"content-length": b"2"}, b"ok")
            await pool.aclose()
        assert script.connections == 1
        assert script.requests[0].startswith(b"GET /x?y=1 HTTP/1.1\r\nhost: 127.0.0.1:")

    run(loop, main)


def test_chunked_and_close_delimited_bodies(loop: str) -> None:
    async def main() -> None:
        script = Script(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
                        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        server, pool = await script.start()
        async with server:
            assert (await fetch(pool))[2] == b"abcdefg"
            assert (await fetch(pool))[2] == b"until the end"
            assert pool._idle == []  # a close-delimited answer ends its connection
            await pool.aclose()

    run(loop, main)


def test_head_and_no_content_answers_reuse_the_connection(loop: str) -> None:
    async def main() -> None:
        script = Script(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n",
                        b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 304 Not Modified\r\n\r\n", OK)
        server, pool = await script.start()
        async with server:
            assert await fetch(pool, "HEAD") == (200, {b"content-length": b"1000"}, b"")
            assert (await fetch(pool))[0::2] == (204, b"")
            assert (await fetch(pool))[0::2] == (304, b"")
            assert (await fetch(pool))[2] == b"ok"
            await pool.aclose()
        assert script.connections == 1

    run(loop, main)


def test_interim_1xx_answer_is_skipped(loop: str) -> None:
    async def main() -> None:
        script = Script(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n" + OK)
        server, pool = await script.start()
        async with server:
            assert await fetch(pool) == (200, {b"content-length": b"2"}, b"ok")
            await pool.aclose()

    run(loop, main)


def test_request_bodies_sized_or_chunked(loop: str) -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b""
        yield b"world"

    async def main() -> None:
        script = Script(OK, OK)
        server, pool = await script.start()
        async with server:
            await fetch(pool, "POST", headers=[(b"content-length", b"11")], body=parts())
            await fetch(pool, "POST", body=parts())
            await pool.aclose()
        assert script.requests[0].endswith(b"content-length: 11\r\n\r\nhello world")
        assert script.requests[1].endswith(b"transfer-encoding: chunked\r\n\r\n"
                                           b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")

    run(loop, main)


def test_idle_connection_closed_by_the_app_is_not_used(loop: str) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK)  # answers keep-alive, then closes as an idle-timeout would
        await writer.drain()

    async def main() -> None:
        script = Script(hang_up, OK)
        server, pool = await script.start()
        async with server:
            assert (await fetch(pool))[2] == b"ok"
            await asyncio.sleep(0.1)
            assert (await fetch(pool))[2] == b"ok"
            await pool.aclose()
        assert script.connections == 2

    run(loop, main)


def test_request_on_a_connection_that_dies_unanswered_is_retried_once(loop: str) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pass  # reads the request and closes without a word

    async def main() -> None:
        script = Script(OK, drop, OK)
        server, pool = await script.start()
        async with server:
            assert (await fetch(pool))[2] == b"ok"
            assert (await fetch(pool))[2] == b"ok"  # reused conn dies unanswered: resent
            await pool.aclose()
        assert len(script.requests) == 3

    run(loop, main)


def test_fresh_connection_dying_unanswered_is_an_error(loop: str) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pass

    async def main() -> None:
        script = Script(drop)
        server, pool = await script.start()
        async with server:
            with pytest.raises(UpstreamError, match="closed"):
                await fetch(pool)
            await pool.aclose()

    run(loop, main)


@pytest.mark.parametrize("answer", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"x-big: " + b"a" * 70_000 + b"\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
])
def test_malformed_answers_are_errors(loop: str, answer: bytes) -> None:
    async def main() -> None:
        script = Script(answer)
        server, pool = await script.start()
        async with server:
            with pytest.raises(UpstreamError):
                await fetch(pool)
            await pool.aclose()

    run(loop, main)


def test_body_cut_short_is_an_error(loop: str) -> None:
    async def main() -> None:
        script = Script(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\nonly this")
        server, pool = await script.start()
        async with server:
            with pytest.raises(UpstreamError, match="mid-response"):
                await fetch(pool)
            await pool.aclose()

    run(loop, main)


def test_silent_app_times_out(loop: str) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        script = Script(stall)
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = UpstreamPool(f"http://127.0.0.1:{port}", timeout=0.3)
        loop_ = asyncio.get_running_loop()
        began = loop_.time()
        with pytest.raises(UpstreamTimeout):
            await fetch(pool)
        assert loop_.time() - began < 2
        await pool.aclose()
        server.close()

    run(loop, main)


def test_unreachable_app_is_an_error(loop: str) -> None:
    async def main() -> None:
        pool = UpstreamPool("http://127.0.0.1:9", timeout=2)
        with pytest.raises(UpstreamError, match="cannot connect"):
            await fetch(pool)

    run(loop, main)


def test_slow_reader_pauses_reading_and_gets_every_byte(loop: str) -> None:
    size = 8 * HIGH_WATER
    payload = bytes(range(256)) * (size // 256)

    async def main() -> None:
        script = Script(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + payload)
        server, pool = await script.start()
        async with server:
            response = await pool.send("GET", "/", [])
            await asyncio.sleep(0.2)  # the app has written everything it could meanwhile
            assert response._buffered <= 2 * HIGH_WATER  # not the whole body
            got = b"".join([c async for c in response.aiter_raw()])
            await response.aclose()
            assert got == payload
            await pool.aclose()

    run(loop, main)


def test_base_url_prefix_and_host(loop: str) -> None:
    async def main() -> None:
        script = Script(OK)
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            pool = UpstreamPool(f"http://127.0.0.1:{port}/app/", timeout=2)
            await fetch(pool, target="/a?b=c")
            await pool.aclose()
        assert script.requests[0].startswith(b"GET /app/a?b=c HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n" % port)
        assert UpstreamPool("https://example.com", timeout=1).host_header == b"example.com"
        with pytest.raises(ConfigError):
            UpstreamPool("ftp://example.com", timeout=1)

    run(loop, main)
