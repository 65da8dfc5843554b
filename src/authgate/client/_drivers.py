"""Drivers for the refresh flow: they interpret its instructions for a sync or an async client.

A flow (see :mod:`authgate.client._flow`) yields requests to send and two
instructions, ``LOCK`` and ``UNLOCK``, around a refresh; a refresh request is
wrapped in :class:`Fetch` ("read the body for me"). :class:`SyncDriver` holds a
``threading.Lock`` for :class:`httpx.Client` (threads); :class:`AsyncDriver` a
per-event-loop ``asyncio.Lock`` for :class:`httpx.AsyncClient` (tasks) and then
also the thread lock, polled so the event loop never blocks -- one client
object may be shared by threads and tasks at once.

A driver never leaves a lock held: the flow yields ``UNLOCK`` on its error
paths, and :meth:`close` (httpx closes an auth flow in a ``finally``) releases
whatever a cancelled or failed flow still held.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx

Clock = Callable[[], float]


class Op(enum.Enum):
    LOCK = "lock"
    UNLOCK = "unlock"


LOCK, UNLOCK = Op.LOCK, Op.UNLOCK


@dataclass(frozen=True)
class Fetch:
    """A request whose response the flow reads (a refresh), unlike the caller's own request."""

    request: httpx.Request


Step = httpx.Request | Fetch | Op
Flow = Generator[Step, httpx.Response | None, Any]


class _Driver:
    """Advances a flow up to its next request, handling instructions on the way."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.fetching = False
        self.result: Any = None

    def _next(self, value: httpx.Response | None) -> Step | None:
        try:
            step = self.flow.send(value)
        except StopIteration as stop:
            self.result = stop.value
            return None
        self.fetching = isinstance(step, Fetch)
        return step


class SyncDriver(_Driver):
    def __init__(self, flow: Flow, lock: threading.Lock) -> None:
        super().__init__(flow)
        self.lock = lock
        self.held = False

    def start(self) -> httpx.Request | None:
        return self.send(None)

    def send(self, response: httpx.Response | None) -> httpx.Request | None:
        if response is not None and self.fetching:
            response.read()
        while True:
            step = self._next(response)
            response = None
            if step is LOCK:
                self.lock.acquire()
                self.held = True
            elif step is UNLOCK:
                self._release()
            elif isinstance(step, Fetch):
                return step.request
            elif isinstance(step, httpx.Request):
                return step
            else:
                self._release()
                return None

    def _release(self) -> None:
        if self.held:
            self.held = False
            self.lock.release()

    def close(self) -> None:
        self._release()
        self.flow.close()


class AsyncDriver(_Driver):
    def __init__(self, flow: Flow, lock: threading.Lock, loop_locks: LoopLocks) -> None:
        super().__init__(flow)
        self.lock = lock
        self.loop_locks = loop_locks
        self.held: asyncio.Lock | None = None

    async def start(self) -> httpx.Request | None:
        return await self.send(None)

    async def send(self, response: httpx.Response | None) -> httpx.Request | None:
        if response is not None and self.fetching:
            await response.aread()
        while True:
            step = self._next(response)
            response = None
            if step is LOCK:
                await self._acquire()
            elif step is UNLOCK:
                self._release()
            elif isinstance(step, Fetch):
                return step.request
            elif isinstance(step, httpx.Request):
                return step
            else:
                self._release()
                return None

    async def _acquire(self) -> None:
        alock = self.loop_locks.get()
        await alock.acquire()
        try:
            # A thread holds it: a threading.Lock cannot be awaited, so poll (loop stays free).
            while not self.lock.acquire(blocking=False):  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        except BaseException:
            alock.release()
            raise
        self.held = alock

    def _release(self) -> None:
        if self.held is not None:
            alock, self.held = self.held, None
            self.lock.release()
            alock.release()

    def close(self) -> None:
        self._release()
        self.flow.close()


class LoopLocks:
    """One ``asyncio.Lock`` per event loop (an asyncio lock must not cross loops)."""

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary())
        self._guard = threading.Lock()

    def get(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._guard:
            lock = self._locks.get(loop)
            if lock is None:
                lock = self._locks[loop] = asyncio.Lock()
            return lock


def run_sync(flow: Flow, client: httpx.Client, lock: threading.Lock) -> Any:
    """Run a flow to its end with ``client`` (its own auth is not applied); the flow's result."""
    driver = SyncDriver(flow, lock)
    try:
        request = driver.start()
        while request is not None:
            request = driver.send(client.send(request, auth=None))
        return driver.result
    finally:
        driver.close()


async def run_async(flow: Flow, client: httpx.AsyncClient, lock: threading.Lock,
                    loop_locks: LoopLocks) -> Any:
    driver = AsyncDriver(flow, lock, loop_locks)
    try:
        request = await driver.start()
        while request is not None:
            request = await driver.send(await client.send(request, auth=None))
        return driver.result
    finally:
        driver.close()
