"""The PostgreSQL backend's connections: asyncpg connections lent out one statement at a time.

asyncpg's own ``Pool`` wraps every checkout in timeouts, a proxy object and a
shielded release; measured here that cost ~35 µs of CPU per statement, more
than the statement's own client-side work (~25 µs), and a refresh rotation is
four statements. The backend's hot path needs much less: take an idle
connection (or open one, up to ``size``, or wait for one), run one statement
in autocommit, give it back. This module does only that.

A connection is reused only when it is known to be in a clean state: the
statement completed, or PostgreSQL refused it (``PostgresError``: the server
sent its error and is ready for the next). Anything else -- a cancelled
caller, a lost connection, a transaction left open -- terminates it, and the
next caller opens a fresh one. Connections the server closed while idle (a
restart) are noticed on checkout and replaced.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")


class Connections:
    def __init__(self, dsn: str, size: int, server_settings: dict[str, str]) -> None:
        self.dsn = dsn
        self.size = max(1, size)
        self.server_settings = server_settings
        self._idle: list[asyncpg.Connection] = []
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._opened = 0
        self._closed = False

    async def open(self) -> None:
        """Open the first connection now, so a wrong URL fails at start, not on first use."""
        self._put(await self._connect(), clean=True)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RuntimeError("the PostgreSQL store was closed"))

    async def run(self, statement: Callable[..., Awaitable[T]], sql: str, *args: Any) -> T:
        """``statement(connection, sql, *args)``, e.g. ``asyncpg.Connection.fetchrow``."""
        conn = await self._get()
        clean = False
        try:
            result = await statement(conn, sql, *args)
            clean = True
            return result
        except asyncpg.PostgresError:
            clean = True  # refused by the server, which is ready for the next statement
            raise
        finally:
            self._put(conn, clean=clean)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for several statements (tests, bulk loading); back in use only if it
        comes back without a transaction open."""
        conn = await self._get()
        clean = False
        try:
            yield conn
            clean = True
        finally:
            self._put(conn, clean=clean and not conn.is_in_transaction())

    async def _get(self) -> asyncpg.Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
            self._opened -= 1
        if self._closed:
            raise RuntimeError("the PostgreSQL store was closed")
        if self._opened < self.size:
            return await self._connect()
        waiter: asyncio.Future[asyncpg.Connection | None] = (
            asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            conn = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()  # handed over just as we were cancelled: pass it on
                if handed is not None:
                    self._put(handed, clean=True)
                else:
                    self._wake()
            raise
        return conn if conn is not None else await self._connect()

    async def _connect(self) -> asyncpg.Connection:
        self._opened += 1
        try:
            conn: asyncpg.Connection = await asyncpg.connect(
                self.dsn, server_settings=self.server_settings)
        except BaseException:
            self._opened -= 1
            self._wake()
            raise
        return conn

    def _put(self, conn: asyncpg.Connection, *, clean: bool) -> None:
        if clean and not self._closed and not conn.is_closed():
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(conn)
                    return
            self._idle.append(conn)
            return
        if not conn.is_closed():
            conn.terminate()
        self._opened -= 1
        self._wake()

    def _wake(self) -> None:
        """A connection slot came free: the first waiter opens a connection of its own."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
