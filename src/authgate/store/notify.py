"""Change notifications and a distributed lock, for several instances sharing one store.

Each instance keeps a little state in process -- the denylist mirror, the
signing keys, a short client cache -- to answer requests without I/O. When
another instance (or the CLI) changes that state in the store, this instance
must hear of it at once rather than on its next periodic check, and some
work (refreshing a provider token, which rotates the provider's refresh
token) must run in one place at a time. A :class:`Notifier` gives both:

* ``publish(channel, payload)`` -- tell every other instance that something
  changed (a small string; the store stays the source of truth, so a message
  only says "re-read", never carries the change itself);
* ``subscribe(callback)`` -- a background listener calling
  ``callback(channel, payload)`` for what others published. It reconnects with
  jittered exponential backoff, and after every (re)connection it calls
  ``callback(RESYNC, "")``: messages sent while it was away are lost, so
  everything may have changed. A publisher never hears its own messages;
* ``lock(name, ttl)`` -- an async context manager holding a mutex across
  instances; a holder that crashed or hangs loses it after ``ttl`` seconds,
  so a dead instance cannot block the others for longer.

Implementations, chosen by :func:`notifier_for` from the store's backend:

* PostgreSQL: LISTEN/NOTIFY on one dedicated asyncpg connection per instance
  (``pg_notify`` through the pool to publish); the lock is
  ``pg_advisory_xact_lock`` in a transaction held for the critical section
  (the database wakes a waiter the moment the holder ends; it works through
  PgBouncer's transaction pooling too), bounded by ``lock_timeout`` for
  waiters and ``idle_in_transaction_session_timeout`` for a hung holder.
* Redis: pub/sub on a dedicated connection; the lock is ``SET name token NX PX
  ttl``, waiters retrying with small jittered sleeps, released by a Lua
  compare-and-delete so a holder whose lock expired cannot free a successor's.
* Everything else (SQLite, file, Azure Blob): :class:`LocalNotifier`, which
  tells no one and locks in process. Run several instances on PostgreSQL or
  Redis; elsewhere the denylist's 1 s re-check is all that propagates changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import secrets
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .base import Backend
    from .postgres import PostgresBackend
    from .redis import RedisBackend

log = logging.getLogger("authgate.store.notify")

RESYNC = "*"
"""The channel :meth:`Notifier.subscribe` reports after (re)connecting: drop every cache."""

Callback = Callable[[str, str], Awaitable[None]]

KEEPALIVE = 15.0
"""Probe an idle listening connection this often, so a silently dead one is replaced."""
CONNECT_TIMEOUT = 5.0
READY_WAIT = 5.0
"""How long ``subscribe`` waits for the first connection before going on in the background."""
BACKOFF = (0.2, 10.0)
"""First and longest pause between reconnection attempts."""
_jitter = secrets.SystemRandom()


class LockTimeout(TimeoutError):
    """The lock was not acquired within the allowed wait."""


class Notifier(Protocol):
    """Change notifications and a distributed mutex for the instances sharing one store."""

    shared: bool
    """True when other instances (on other hosts) hear what this one publishes."""

    async def publish(self, channel: str, payload: str = "") -> None:
        """Tell every other subscribed instance; raises if the server cannot be reached."""
        ...

    async def subscribe(self, callback: Callback) -> None:
        """Start the background listener (once); returns when connected or after ``READY_WAIT``."""
        ...

    def lock(self, name: str, ttl: float, *,
             wait: float | None = None) -> AbstractAsyncContextManager[None]:
        """Hold ``name`` across instances; a holder that crashed or hangs loses it after ``ttl`` s.

        Waits at most ``wait`` seconds (default: ``ttl``), then raises :class:`LockTimeout`.
        Releasing never raises: the work is done, and a lock that cannot be freed lapses.
        """
        ...

    async def close(self) -> None:
        """Stop listening and release the listener's connection."""
        ...


def notifier_for(backend: Backend) -> Notifier:
    """The notifier that fits a backend; only PostgreSQL and Redis reach other instances."""
    if backend.url_scheme == "postgresql":
        from .postgres import PostgresBackend

        assert isinstance(backend, PostgresBackend)
        return PostgresNotifier(backend)
    if backend.url_scheme == "redis":
        from .redis import RedisBackend

        assert isinstance(backend, RedisBackend)
        return RedisNotifier(backend)
    return LocalNotifier()


class LocalNotifier:
    """One process: nobody to notify, and an :class:`asyncio.Lock` per name."""

    shared = False

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def publish(self, channel: str, payload: str = "") -> None:
        return None

    async def subscribe(self, callback: Callback) -> None:
        return None

    @asynccontextmanager
    async def lock(self, name: str, ttl: float, *, wait: float | None = None) -> AsyncIterator[None]:
        lock = self._locks.setdefault(name, asyncio.Lock())  # gone when no one holds or awaits it
        try:
            await asyncio.wait_for(lock.acquire(), ttl if wait is None else wait)
        except TimeoutError:
            raise LockTimeout(name) from None
        try:
            yield
        finally:
            lock.release()

    async def close(self) -> None:
        return None


class _Subscriber(ABC):
    """The reconnecting listener shared by the networked notifiers."""

    shared = True

    def __init__(self) -> None:
        self.origin = secrets.token_hex(8)
        """Stamped on what this instance publishes, so it can ignore its own messages."""
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    def _encode(self, channel: str, payload: str) -> str:
        return json.dumps({"c": channel, "o": self.origin, "p": payload}, separators=(",", ":"))

    async def subscribe(self, callback: Callback) -> None:
        if self._task is not None:
            raise RuntimeError("already subscribed")
        self._task = asyncio.create_task(self._run(callback), name="authgate-notify")
        try:
            await asyncio.wait_for(self._connected.wait(), READY_WAIT)
        except TimeoutError:
            log.warning("change notifications are not connected yet; retrying in the background "
                        "(until then other instances' changes arrive within the 1 s re-check)")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._connected.clear()

    @abstractmethod
    async def _listen(self, callback: Callback) -> None:
        """Connect, call :meth:`_ready`, deliver messages; return or raise when the connection is lost."""

    async def _ready(self, callback: Callback) -> None:
        self._connected.set()
        await self._call(callback, RESYNC, "")

    async def _run(self, callback: Callback) -> None:
        delay = BACKOFF[0]
        while True:
            try:
                await self._listen(callback)
                problem = "the connection closed"
            except Exception as exc:  # OSError, timeouts, driver errors: they share no base class
                problem = f"{type(exc).__name__}: {exc}"
            if self._connected.is_set():
                delay = BACKOFF[0]  # it was up: start the backoff over
            self._connected.clear()
            pause = delay * _jitter.uniform(0.5, 1.0)
            log.warning("change notifications lost (%s); reconnecting in %.1f s, "
                        "meanwhile the 1 s re-check applies", problem, pause)
            await asyncio.sleep(pause)
            delay = min(delay * 2, BACKOFF[1])

    async def _deliver(self, raw: str | bytes, callback: Callback) -> None:
        try:
            message = json.loads(raw)
            channel, origin, payload = str(message["c"]), message["o"], str(message["p"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed change notification")
            return
        if origin != self.origin:
            await self._call(callback, channel, payload)

    @staticmethod
    async def _call(callback: Callback, channel: str, payload: str) -> None:
        try:
            await callback(channel, payload)
        except Exception:
            log.exception("handling the %r change notification failed", channel)


class PostgresNotifier(_Subscriber):
    """LISTEN/NOTIFY and transaction-scoped advisory locks."""

    def __init__(self, backend: PostgresBackend) -> None:
        super().__init__()
        self.backend = backend
        # Channels are per database; a schema is a store of its own.
        schema = backend.schema or ""
        self.channel = "authgate_" + hashlib.sha256(schema.encode()).hexdigest()[:16] if schema else "authgate"

    async def publish(self, channel: str, payload: str = "") -> None:
        import sqlalchemy as sa

        async with self.backend.engine.begin() as conn:  # delivered on commit
            await conn.execute(sa.select(sa.func.pg_notify(self.channel, self._encode(channel, payload))))

    async def _listen(self, callback: Callback) -> None:
        import asyncpg

        dsn = self.backend.url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT, server_settings={
            "application_name": f"authgate-notify {self.origin}"})
        inbox: asyncio.Queue[str | None] = asyncio.Queue()
        try:
            conn.add_termination_listener(lambda _conn: inbox.put_nowait(None))
            await conn.add_listener(self.channel, lambda _c, _pid, _ch, payload: inbox.put_nowait(payload))
            await self._ready(callback)
            while True:
                try:
                    raw = await asyncio.wait_for(inbox.get(), KEEPALIVE)
                except TimeoutError:
                    await conn.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT)
                    continue
                if raw is None:
                    return
                await self._deliver(raw, callback)
        finally:
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()

    def lock_key(self, name: str) -> int:
        """Advisory locks are database-wide: the schema is part of the key."""
        digest = hashlib.sha256(f"{self.backend.schema or ''}\x00{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    @asynccontextmanager
    async def lock(self, name: str, ttl: float, *, wait: float | None = None) -> AsyncIterator[None]:
        import sqlalchemy as sa

        wait_ms = max(1, math.ceil((ttl if wait is None else wait) * 1000))
        async with self.backend.engine.connect() as conn:
            trans = await conn.begin()
            try:
                await conn.execute(sa.select(
                    sa.func.set_config("lock_timeout", f"{wait_ms}ms", True),
                    sa.func.set_config("idle_in_transaction_session_timeout",
                                       f"{max(1, math.ceil(ttl * 1000))}ms", True)))
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(self.lock_key(name))))
            except sa.exc.DBAPIError as exc:
                await trans.rollback()
                if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                    raise LockTimeout(name) from None
                raise
            try:
                yield
            finally:
                try:
                    await trans.rollback()  # ends the transaction, and with it the lock
                except sa.exc.DBAPIError as exc:
                    log.warning("lock %r expired before it was released (held over %s s?): %s",
                                name, ttl, exc.orig)


_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisNotifier(_Subscriber):
    """Pub/sub and ``SET NX PX`` locks."""

    def __init__(self, backend: RedisBackend) -> None:
        super().__init__()
        self.backend = backend
        self.channel = f"{backend.prefix}:@notify"
        self._unlock: Any = None
        self._stale = False

    async def publish(self, channel: str, payload: str = "") -> None:
        await self.backend.client.publish(self.channel, self._encode(channel, payload))

    def _reconnected(self, _connection: object) -> None:
        """redis-py re-subscribes by itself after a brief outage; messages may be lost meanwhile."""
        self._stale = True

    async def _listen(self, callback: Callback) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(
            self.backend.url, socket_connect_timeout=CONNECT_TIMEOUT, socket_keepalive=True,
            client_name=f"authgate-notify-{self.origin}")
        pubsub = client.pubsub()
        loop = asyncio.get_running_loop()
        try:
            await pubsub.subscribe(self.channel)
            confirmed = await pubsub.get_message(timeout=CONNECT_TIMEOUT)
            if confirmed is None or confirmed["type"] != "subscribe":
                raise ConnectionError("Redis did not confirm the subscription")
            assert pubsub.connection is not None
            pubsub.connection.register_connect_callback(self._reconnected)
            self._stale = False
            await self._ready(callback)
            # A silently dead connection (a NAT or load balancer forgot it) only shows as
            # silence: after KEEPALIVE quiet seconds, PING and expect the pong in time.
            probe_at, answer_by = loop.time() + KEEPALIVE, math.inf
            while True:
                message = await pubsub.get_message(timeout=max(0.01, min(probe_at, answer_by) - loop.time()))
                if self._stale:
                    self._stale = False
                    await self._call(callback, RESYNC, "")
                if message is not None:
                    probe_at, answer_by = loop.time() + KEEPALIVE, math.inf  # it is alive
                    if message["type"] == "message":
                        await self._deliver(message["data"], callback)
                elif loop.time() >= answer_by:
                    raise ConnectionError(f"no answer to PING within {CONNECT_TIMEOUT} s")
                elif loop.time() >= probe_at and answer_by == math.inf:
                    await pubsub.ping()
                    answer_by = loop.time() + CONNECT_TIMEOUT
        finally:
            # Older redis-py leaves aclose unannotated; calling it through a typed
            # name keeps mypy quiet on every version.
            close_pubsub: Callable[[], Awaitable[None]] = pubsub.aclose
            await close_pubsub()
            await client.aclose()

    @asynccontextmanager
    async def lock(self, name: str, ttl: float, *, wait: float | None = None) -> AsyncIterator[None]:
        from redis.exceptions import RedisError

        client = self.backend.client
        key, token = f"{self.backend.prefix}:@lock:{name}", secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (ttl if wait is None else wait)
        pause = 0.005
        while not await client.set(key, token, nx=True, px=max(1, math.ceil(ttl * 1000))):
            left = deadline - loop.time()
            if left <= 0:
                raise LockTimeout(name)
            await asyncio.sleep(min(left, pause * _jitter.uniform(0.5, 1.5)))
            pause = min(pause * 2, 0.1)
        try:
            yield
        finally:
            if self._unlock is None:
                self._unlock = client.register_script(_UNLOCK)
            try:
                released = await self._unlock(keys=[key], args=[token])
            except (OSError, RedisError) as exc:  # the work is done; the key lapses by itself
                log.warning("lock %r could not be released (%s); it lapses in %s s", name, exc, ttl)
            else:
                if not released:
                    log.warning("lock %r expired before it was released (held over %s s?)", name, ttl)
