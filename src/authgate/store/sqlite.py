"""The embedded default backend: SQLite (schema by SQLAlchemy Core + Alembic).

Statements run inline on the event loop rather than in a worker thread: a
point read or a single-row write on a local WAL database takes tens of
microseconds, less than a thread hop would cost. ``busy_timeout`` bounds the
wait when another process (the CLI, say) holds the write lock.

**Group commit.** What a write costs is mostly its commit: the WAL frames of
every page it touched (the row and four index entries) and, every ten thousand
pages, a checkpoint with two ``fsync``. So the writes made in one turn of the
event loop -- by every request that reached its next write in that turn --
share one transaction: the first opens it (``BEGIN IMMEDIATE``), a callback
queued behind them commits it, and each call returns only once that commit is
done. Each statement is still atomic on its own and nothing is answered before
it is durable; a read made while a transaction is open waits for the commit
too, so no caller ever acts on a write that could still roll back. Measured
on the refresh-token rotation (three writes a request, 32 concurrent
requests): about half the SQLite time per request.

**Checkpoints off the event loop.** Copying the WAL back into the database
file (and its two ``fsync``) used to run inside whichever commit crossed the
autocheckpoint threshold: a 30-50 ms stall of every request in flight, every
second or so under load. A thread of the backend's own, on a connection of its
own, runs a ``PASSIVE`` checkpoint every :data:`CHECKPOINT_SECONDS` (SQLite
releases the GIL while it copies and syncs; writers go on meanwhile). The
autocheckpoint stays as the bound on the WAL's size: when it fires, the thread
has already copied nearly everything, and the WAL starts over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa

from ..errors import ConfigError
from . import sql
from .base import Record

log = logging.getLogger("authgate.store")


def sqlite_path(url: str) -> str:
    """``sqlite:///relative/path.db``, ``sqlite:////abs/path.db`` or ``sqlite:///:memory:``."""
    parts = urlsplit(url)
    if parts.netloc:
        raise ConfigError(f"a sqlite store URL has no host: {url!r} (use sqlite:///path/to.db)")
    path = unquote(parts.path)
    if path.startswith("/"):
        path = path[1:]
    if not path:
        raise ConfigError("a sqlite store URL needs a file path: sqlite:///path/to.db")
    return path


_COLS = "kind, id, payload, expires_at, grant_id, subject, consumed_at"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"
# Fixed statements built from constants only; every value is a bound parameter.
_SQL = {
    "upsert": f"INSERT INTO authgate_records ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
              "ON CONFLICT (kind, id) DO UPDATE SET payload = excluded.payload, "
              "expires_at = excluded.expires_at, grant_id = excluded.grant_id, "
              "subject = excluded.subject, consumed_at = excluded.consumed_at",
    "insert": f"INSERT INTO authgate_records ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
              "ON CONFLICT (kind, id) DO UPDATE SET payload = excluded.payload, "
              "expires_at = excluded.expires_at, grant_id = excluded.grant_id, "
              "subject = excluded.subject, consumed_at = excluded.consumed_at "
              "WHERE authgate_records.expires_at IS NOT NULL AND authgate_records.expires_at <= ?",
    "find": f"SELECT {_COLS} FROM authgate_records WHERE kind = ? AND id = ? AND {_LIVE}",
    "consume": f"UPDATE authgate_records SET consumed_at = ? WHERE kind = ? AND id = ? "
               f"AND consumed_at IS NULL AND {_LIVE} RETURNING {_COLS}",
    "destroy": "DELETE FROM authgate_records WHERE kind = ? AND id = ?",
    "revoke": "DELETE FROM authgate_records WHERE grant_id = ?",
    "by_subject": f"SELECT {_COLS} FROM authgate_records WHERE kind = ? AND subject = ? AND {_LIVE} "
                  "ORDER BY id LIMIT ?",
    "scan": f"SELECT {_COLS} FROM authgate_records WHERE kind = ? AND id > ? ORDER BY id LIMIT ?",
    "purge": "DELETE FROM authgate_records WHERE rowid IN (SELECT rowid FROM authgate_records "
             "WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?)",
    "count": "SELECT count(*) FROM authgate_records",
    "count_kind": "SELECT count(*) FROM authgate_records WHERE kind = ?",
}


def _record(row: tuple[Any, ...]) -> Record:
    return Record(row[0], row[1], bytes(row[2]), row[3], row[4], row[5], row[6])


def _params(r: Record) -> tuple[Any, ...]:
    return (r.kind, r.id, r.payload, r.expires_at, r.grant_id, r.subject, r.consumed_at)


_TUNING = (
    # Checkpoint every ~40 MB of WAL rather than every 4 MB: a page written many times
    # between checkpoints (the newest index leaves) is copied and fsync'ed once; with the
    # cache and mmap below, about 20% less CPU per refresh-token rotation here.
    "PRAGMA wal_autocheckpoint=10000",
    "PRAGMA cache_size=-65536",  # KiB: the hot indexes of a few million records stay cached
    "PRAGMA mmap_size=268435456",  # cache misses are memory reads, not read() calls
)

CHECKPOINT_SECONDS = 0.2


class _Checkpointer(threading.Thread):
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection every ``interval``.

    PASSIVE never waits for a lock and never blocks a writer: it copies the frames no
    reader still needs and leaves the rest for next time."""

    def __init__(self, path: str, interval: float) -> None:
        super().__init__(name="authgate-sqlite-checkpoint", daemon=True)
        self.path = path
        self.interval = interval
        self.passes = 0
        """Checkpoints run so far (tests wait on it)."""
        self._stop_event = threading.Event()

    def run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            while not self._stop_event.wait(self.interval):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # e.g. the file went away; the autocheckpoint remains
                    log.warning("background WAL checkpoint failed: %s", exc)
                self.passes += 1
        finally:
            db.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


_open_batches: dict[str, SQLiteBackend] = {}
"""Database file -> the instance of this process holding a group transaction on it. A
second instance on the same file (tests, ``store migrate``) commits that one first
rather than wait for a write lock its own event loop would never release."""


class SQLiteBackend:
    """Schema and migrations through SQLAlchemy Core + Alembic; the lifecycle operations
    as fixed SQL on the driver connection (each one statement, so each is atomic on its
    own), writes grouped into one transaction per turn of the event loop. Building a
    SQLAlchemy statement per call cost ~4x the query itself here (660 rotations/s vs
    ~3,000/s in-process), so the hot path skips it."""

    url_scheme = "sqlite"

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._db: sqlite3.Connection | None = None
        self._file = os.path.realpath(self.path)
        self._waiters: list[asyncio.Future[None]] | None = None
        """While a group transaction is open: the calls waiting for its commit."""
        self._batch_loop: asyncio.AbstractEventLoop | None = None
        self._checkpointer: _Checkpointer | None = None

    async def open(self) -> None:
        if self._db is not None:
            return
        self._prepare_dir()
        engine = sa.create_engine(f"sqlite:///{self.path}", poolclass=sa.pool.StaticPool)
        try:
            self._migrate(engine)
            if self.path == ":memory:":
                raise ConfigError("sqlite:///:memory: cannot be shared between connections; use a file")
        finally:
            engine.dispose()
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        for pragma in _TUNING:
            db.execute(pragma)
        self._db = db
        self._checkpointer = _Checkpointer(self.path, CHECKPOINT_SECONDS)
        self._checkpointer.start()

    def _migrate(self, engine: sa.Engine) -> None:
        with engine.begin() as conn:
            sql.upgrade(conn)
        if self.path != ":memory:":
            Path(self.path).chmod(0o600)  # tokens are hashed and sealed, but keep the file private

    def _prepare_dir(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._db is not None:
            self._commit()
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("SQLiteBackend used before open()")
        return self._db

    # -- group commit -------------------------------------------------------------

    def _write(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        """Run a write inside the group transaction, opening one if none is."""
        loop = asyncio.get_running_loop()
        if self._waiters is not None and self._batch_loop is not loop:
            self._commit()  # left open by an event loop that has gone away
        if self._waiters is None:
            other = _open_batches.get(self._file)
            if other is not None and other is not self:
                other._commit()
            self.db.execute("BEGIN IMMEDIATE")
            self._waiters, self._batch_loop = [], loop
            _open_batches[self._file] = self
            loop.call_soon(self._commit)
        return self.db.execute(sql, params)

    def _commit(self) -> None:
        waiters, self._waiters = self._waiters, None
        if waiters is None:
            return
        if _open_batches.get(self._file) is self:
            del _open_batches[self._file]
        error: sqlite3.Error | None = None
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            error = exc
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
        for waiter in waiters:
            if waiter.done():  # its caller was cancelled
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(sqlite3.OperationalError(f"group commit failed: {error}"))

    async def _committed(self) -> None:
        """Return once every write this call made or saw is committed."""
        if self._waiters is None:
            return
        if self._batch_loop is not asyncio.get_running_loop():
            self._commit()
            return
        waiter = self._batch_loop.create_future()
        self._waiters.append(waiter)
        await waiter

    # -- the contract ------------------------------------------------------------

    async def upsert(self, record: Record, *, now: float) -> None:
        self._write(_SQL["upsert"], _params(record))
        await self._committed()

    async def insert(self, record: Record, *, now: float) -> bool:
        created = self._write(_SQL["insert"], (*_params(record), now)).rowcount > 0
        await self._committed()
        return created

    async def find(self, kind: str, id: str, *, now: float) -> Record | None:
        row = self.db.execute(_SQL["find"], (kind, id, now)).fetchone()
        await self._committed()
        return _record(row) if row is not None else None

    async def consume(self, kind: str, id: str, *, now: float) -> Record | None:
        row = self._write(_SQL["consume"], (now, kind, id, now)).fetchone()
        if row is not None:
            await self._committed()
            return Record(row[0], row[1], bytes(row[2]), row[3], row[4], row[5], None)  # as it was
        return await self.find(kind, id, now=now)

    async def consume_then(self, kind: str, id: str, *, now: float,
                           then: Callable[[Record], Iterable[tuple[Record, bool]]]) -> Record | None:
        """``consume`` and, when this caller won, the writes ``then`` derives from the record
        (:class:`~authgate.store.sealed.ConsumeThen`): every statement runs in the group
        transaction with no ``await`` between them, so no other request of this process
        runs in between, and other processes wait for the write lock that transaction
        holds. One commit wait instead of one per write."""
        row = self._write(_SQL["consume"], (now, kind, id, now)).fetchone()
        if row is None:
            return await self.find(kind, id, now=now)
        record = Record(row[0], row[1], bytes(row[2]), row[3], row[4], row[5], None)  # as it was
        for rec, create in then(record):
            if create:
                self._write(_SQL["insert"], (*_params(rec), now))
            else:
                self._write(_SQL["upsert"], _params(rec))
        await self._committed()
        return record

    async def destroy(self, kind: str, id: str) -> bool:
        deleted = self._write(_SQL["destroy"], (kind, id)).rowcount > 0
        await self._committed()
        return deleted

    async def revoke_by_grant(self, grant_id: str) -> int:
        n = int(self._write(_SQL["revoke"], (grant_id,)).rowcount)
        await self._committed()
        return n

    async def find_by_subject(
        self, kind: str, subject: str, *, now: float, limit: int = 1000
    ) -> list[Record]:
        rows = self.db.execute(_SQL["by_subject"], (kind, subject, now, limit)).fetchall()
        await self._committed()
        return [_record(r) for r in rows]

    async def scan(self, kind: str, *, after: str | None = None, limit: int = 500) -> list[Record]:
        rows = self.db.execute(_SQL["scan"], (kind, after if after is not None else "", limit)).fetchall()
        await self._committed()
        return [_record(r) for r in rows]

    async def purge(self, *, now: float, limit: int = 1000) -> int:
        n = int(self._write(_SQL["purge"], (now, limit)).rowcount)
        await self._committed()
        return n

    async def count(self, kind: str | None = None) -> int:
        if kind is None:
            row = self.db.execute(_SQL["count"]).fetchone()
        else:
            row = self.db.execute(_SQL["count_kind"], (kind,)).fetchone()
        await self._committed()
        return int(row[0]) if row else 0
