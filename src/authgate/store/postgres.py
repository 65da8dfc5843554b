"""The production relational backend: PostgreSQL, schema by SQLAlchemy + Alembic, queries on asyncpg.

The schema and its migrations are the ones the SQLite backend uses
(:mod:`authgate.store.sql`, Alembic). The lifecycle operations are fixed SQL
run on asyncpg connections, each statement prepared once per connection (asyncpg's
statement cache) and every value a bound parameter. Building each statement
with SQLAlchemy cost more than running it (the SQLite backend measured ~4x);
``bench/backends.py`` measures this one. Several authgate instances share one
database, so the guarantees the contract makes across processes come from
PostgreSQL itself, never from a lock in this process:

* ``consume`` is one ``UPDATE ... WHERE consumed_at IS NULL RETURNING``: row
  locking makes every other concurrent updater re-check the condition after the
  winner commits, so exactly one caller sees the record unconsumed; a loser
  then reads the record in a statement of its own, whose snapshot includes the
  winner's commit;
* ``insert`` is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired``, so
  two instances creating the same rotation successor cannot both win;
* ``consume_then`` (refresh rotation) is the consume, then one statement that
  writes what follows from the consumed record while holding it (``FOR KEY
  SHARE``), so a revocation deleting it either waits and then deletes those
  writes too (``revoke_by_grant`` deletes until nothing is left) or goes first,
  and nothing is written.

Each operation is one statement in autocommit, so one round trip (``consume``
that loses, ``consume_then`` that wins: two; ``revoke_by_grant``: at least
two), on a connection lent by :mod:`authgate.store.pg_connections`
(lighter than asyncpg's pool; idle connections the server closed, a restart,
are replaced on checkout). ``pool_size`` and ``max_overflow`` in the URL query
bound the connections (at most their sum, default 20); SQLAlchemy keeps a
small pool of its own for migrations, notifications and advisory locks
(:mod:`authgate.store.notify`).
``?schema=name`` keeps the table (and Alembic's version table) in a schema of
its own, created on first open: one database can hold several stores, and the
test suite isolates itself that way.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..errors import ConfigError
from . import sql
from .base import Record
from .pg_connections import Connections

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_POOL_OPTIONS = ("pool_size", "max_overflow")
_MIGRATION_LOCK = 0x61757467  # "autg": the advisory lock serialising schema migrations
_DEADLOCK_RETRIES = 3

_COLUMNS = "(kind, id, payload, expires_at, grant_id, subject, consumed_at)"
_REPLACE = ("ON CONFLICT (kind, id) DO UPDATE SET payload = EXCLUDED.payload, "
            "expires_at = EXCLUDED.expires_at, grant_id = EXCLUDED.grant_id, "
            "subject = EXCLUDED.subject, consumed_at = EXCLUDED.consumed_at")

# Fixed statements, every value a bound parameter; ``tests/store/test_postgres.py`` EXPLAINs
# the hot ones on a filled table (index scans only).
STATEMENTS: dict[str, str] = {
    "upsert": "INSERT INTO authgate_records "
              "(kind, id, payload, expires_at, grant_id, subject, consumed_at) "
              "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (kind, id) DO UPDATE SET "
              "payload = EXCLUDED.payload, expires_at = EXCLUDED.expires_at, "
              "grant_id = EXCLUDED.grant_id, subject = EXCLUDED.subject, "
              "consumed_at = EXCLUDED.consumed_at",
    "insert": "INSERT INTO authgate_records "
              "(kind, id, payload, expires_at, grant_id, subject, consumed_at) "
              "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (kind, id) DO UPDATE SET "
              "payload = EXCLUDED.payload, expires_at = EXCLUDED.expires_at, "
              "grant_id = EXCLUDED.grant_id, subject = EXCLUDED.subject, "
              "consumed_at = EXCLUDED.consumed_at "
              "WHERE authgate_records.expires_at IS NOT NULL AND authgate_records.expires_at <= $8",
    "find": "SELECT kind, id, payload, expires_at, grant_id, subject, consumed_at "
            "FROM authgate_records WHERE kind = $1 AND id = $2 "
            "AND (expires_at IS NULL OR expires_at > $3)",
    "consume": "UPDATE authgate_records SET consumed_at = $1 "
               "WHERE kind = $2 AND id = $3 AND consumed_at IS NULL "
               "AND (expires_at IS NULL OR expires_at > $1) "
               "RETURNING kind, id, payload, expires_at, grant_id, subject",
    "destroy": "DELETE FROM authgate_records WHERE kind = $1 AND id = $2",
    "revoke": "DELETE FROM authgate_records WHERE grant_id = $1",
    "by_subject": "SELECT kind, id, payload, expires_at, grant_id, subject, consumed_at "
                  "FROM authgate_records WHERE kind = $1 AND subject = $2 "
                  "AND (expires_at IS NULL OR expires_at > $3) ORDER BY id LIMIT $4",
    "scan": "SELECT kind, id, payload, expires_at, grant_id, subject, consumed_at "
            "FROM authgate_records WHERE kind = $1 ORDER BY id LIMIT $2",
    "scan_after": "SELECT kind, id, payload, expires_at, grant_id, subject, consumed_at "
                  "FROM authgate_records WHERE kind = $1 AND id > $2 ORDER BY id LIMIT $3",
    # A bounded batch by primary key, so locks stay short.
    "purge": "DELETE FROM authgate_records WHERE (kind, id) IN (SELECT kind, id "
             "FROM authgate_records WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2)",
    "count": "SELECT count(*) FROM authgate_records",
    "count_kind": "SELECT count(*) FROM authgate_records WHERE kind = $1",
}


def follow_statement(creates: tuple[bool, ...]) -> str:
    """consume_then's writes in one statement, one ``INSERT`` per record (``create``: only
    over an expired record, as ``insert``; else replacing, as ``upsert``), made only while
    the consumed record ($1, $2) is still there. Each record is seven parameters from $3
    on, then ``now`` if anything is created. FOR KEY SHARE makes a revocation deleting the
    consumed record wait for this statement's commit (and ``revoke`` then runs again to
    catch what it wrote), or makes this statement wait for the revocation's commit and
    then find the record gone and write nothing. (Scalar parameters: the same statement
    over arrays and ``unnest`` cost ~12 us more client and ~20 us more server CPU.)"""
    now = 3 + 7 * len(creates)
    parts = ["WITH parent AS (SELECT 1 FROM authgate_records WHERE kind = $1 AND id = $2 "
             "FOR KEY SHARE)"]
    for i, create in enumerate(creates):
        values = ", ".join(f"${3 + 7 * i + j}" for j in range(7))
        only_expired = (" WHERE authgate_records.expires_at IS NOT NULL "
                        f"AND authgate_records.expires_at <= ${now}") if create else ""
        # (constants and parameter numbers only: every value is a bound parameter)
        parts.append(f"w{i} AS (INSERT INTO authgate_records {_COLUMNS} SELECT {values} "  # noqa: S608
                     f"WHERE EXISTS (SELECT 1 FROM parent) {_REPLACE}{only_expired} RETURNING 1)")
    return ", ".join(parts) + " SELECT EXISTS (SELECT 1 FROM parent)"  # noqa: S608


STATEMENTS["follow"] = follow_statement((True, False))  # a rotation: successor, audit event


def engine_options(url: str) -> tuple[sa.URL, str | None, dict[str, int]]:
    """Split a store URL into the asyncpg URL, the schema and the pool options."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"not a PostgreSQL URL: {exc}") from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ConfigError("a postgres store URL starts with postgresql:// or postgres://")
    if parsed.drivername not in ("postgresql", "postgres", "postgresql+asyncpg"):
        raise ConfigError(f"the postgres store uses asyncpg, not {parsed.drivername!r}")
    query = dict(parsed.query)
    schema = query.pop("schema", None)
    if isinstance(schema, tuple):
        raise ConfigError("give ?schema= once")
    if schema is not None and not _SCHEMA.fullmatch(schema):
        raise ConfigError(f"?schema= must be a lower-case SQL identifier, not {schema!r}")
    pool: dict[str, int] = {}
    for name in _POOL_OPTIONS:
        value = query.pop(name, None)
        if value is None:
            continue
        if isinstance(value, tuple) or not value.isdigit():
            raise ConfigError(f"?{name}= must be a whole number")
        pool[name] = int(value)
    target = parsed.set(drivername="postgresql+asyncpg", query=query)
    return target, schema, pool


def _record(row: Any) -> Record:
    return Record(row[0], row[1], bytes(row[2]), row[3], row[4], row[5], row[6])


def _rowcount(status: str) -> int:
    """``INSERT 0 1`` / ``UPDATE 1`` / ``DELETE 3``: the last word is the row count."""
    return int(status.rsplit(" ", 1)[-1])


def _params(r: Record) -> tuple[Any, ...]:
    return (r.kind, r.id, r.payload, r.expires_at, r.grant_id, r.subject, r.consumed_at)


class PostgresBackend:
    url_scheme = "postgresql"

    def __init__(self, url: str) -> None:
        self.url, self.schema, self._pool_options = engine_options(url)
        self._engine: AsyncEngine | None = None
        self._conns: Connections | None = None
        self._follow: dict[tuple[bool, ...], str] = {}
        """consume_then's statement per shape of its writes (which of them create)."""

    @property
    def dsn(self) -> str:
        """The libpq-style URL asyncpg connects to (it holds the password, if any: never log it)."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def _server_settings(self) -> dict[str, str]:
        return {"search_path": self.schema} if self.schema is not None else {}

    async def open(self) -> None:
        if self._conns is not None:
            return
        size = self._pool_options.get("pool_size", 10) + self._pool_options.get("max_overflow", 10)
        engine = create_async_engine(
            self.url,
            pool_pre_ping=True,
            pool_size=2,
            max_overflow=max(1, size - 2),
            connect_args={"server_settings": self._server_settings()},
        )
        try:
            async with engine.begin() as conn:
                # Instances starting together migrate one after the other.
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
                if self.schema is not None:
                    await conn.execute(sa.schema.CreateSchema(self.schema, if_not_exists=True))
                await conn.run_sync(sql.upgrade)
            conns = Connections(self.dsn, size, {**self._server_settings(),
                                                 "application_name": "authgate"})
            await conns.open()
        except BaseException:
            await engine.dispose()
            raise
        self._engine, self._conns = engine, conns

    async def close(self) -> None:
        conns, self._conns = self._conns, None
        engine, self._engine = self._engine, None
        if conns is not None:
            await conns.close()
        if engine is not None:
            await engine.dispose()

    @property
    def engine(self) -> AsyncEngine:
        """SQLAlchemy's engine: migrations, notifications, advisory locks, tests."""
        if self._engine is None:
            raise RuntimeError("PostgresBackend used before open()")
        return self._engine

    @property
    def conns(self) -> Connections:
        """The asyncpg connections every lifecycle operation runs on."""
        if self._conns is None:
            raise RuntimeError("PostgresBackend used before open()")
        return self._conns

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """One asyncpg connection for several statements (tests, bulk loading)."""
        async with self.conns.connection() as conn:
            yield conn

    async def _execute(self, name: str, *args: Any) -> int:
        return _rowcount(await self.conns.run(asyncpg.Connection.execute, STATEMENTS[name], *args))

    async def _rows(self, name: str, *args: Any) -> list[Record]:
        rows = await self.conns.run(asyncpg.Connection.fetch, STATEMENTS[name], *args)
        return [_record(r) for r in rows]

    async def _row(self, name: str, *args: Any) -> Any:
        return await self.conns.run(asyncpg.Connection.fetchrow, STATEMENTS[name], *args)

    async def upsert(self, record: Record, *, now: float) -> None:
        await self._execute("upsert", *_params(record))

    async def insert(self, record: Record, *, now: float) -> bool:
        return await self._execute("insert", *_params(record), now) > 0

    async def find(self, kind: str, id: str, *, now: float) -> Record | None:
        row = await self._row("find", kind, id, now)
        return _record(row) if row is not None else None

    async def consume(self, kind: str, id: str, *, now: float) -> Record | None:
        row = await self._row("consume", now, kind, id)
        if row is not None:
            return _record((*row, None))
        # Lost the race, already consumed, or absent: report what is there now.
        return await self.find(kind, id, now=now)

    async def consume_then(self, kind: str, id: str, *, now: float,
                           then: Callable[[Record], Iterable[tuple[Record, bool]]]) -> Record | None:
        """``consume``; when this caller won, the ``(record, create)`` writes ``then`` derives
        from it (``create``: ``insert``, else ``upsert``) in one more statement, which writes
        them only if the consumed record is still there (``STATEMENTS["follow"]``). A
        revocation either deletes the record first -- nothing is written, and this returns
        None, as for a record that is gone -- or deletes what was written too
        (:meth:`revoke_by_grant`). Two round trips and two commits, not one per write."""
        record = await self.consume(kind, id, now=now)
        if record is None or record.consumed_at is not None:
            return record
        writes = list(then(record))
        if not writes:
            return record
        if len({(r.kind, r.id) for r, _ in writes}) != len(writes):
            raise ValueError("consume_then writes each record once")
        creates = tuple(create for _, create in writes)
        sql = self._follow.get(creates)
        if sql is None:
            sql = self._follow[creates] = follow_statement(creates)
        args = [kind, id, *(v for rec, _ in writes for v in _params(rec))]
        if any(creates):
            args.append(now)
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                stands = await self.conns.run(asyncpg.Connection.fetchval, sql, *args)
                break
            except asyncpg.DeadlockDetectedError:
                # Only with a revocation of the same grant that locked a record these
                # writes replace; the statement is idempotent, so run it again.
                if attempt == _DEADLOCK_RETRIES - 1:
                    raise
        return record if stands else None

    async def destroy(self, kind: str, id: str) -> bool:
        return await self._execute("destroy", kind, id) > 0

    async def revoke_by_grant(self, grant_id: str) -> int:
        """Delete the grant's records, then again until nothing is left: a ``consume_then``
        that held its consumed record while the first delete waited for it has committed
        its writes by then, and the next delete (a new snapshot) sees them."""
        total = 0
        while True:
            for attempt in range(_DEADLOCK_RETRIES):
                try:
                    n = await self._execute("revoke", grant_id)
                    break
                except asyncpg.DeadlockDetectedError:
                    if attempt == _DEADLOCK_RETRIES - 1:
                        raise
            if n == 0:
                return total
            total += n

    async def find_by_subject(
        self, kind: str, subject: str, *, now: float, limit: int = 1000
    ) -> list[Record]:
        return await self._rows("by_subject", kind, subject, now, max(0, limit))

    async def scan(self, kind: str, *, after: str | None = None, limit: int = 500) -> list[Record]:
        if after is None:
            return await self._rows("scan", kind, max(0, limit))
        return await self._rows("scan_after", kind, after, max(0, limit))

    async def purge(self, *, now: float, limit: int = 1000) -> int:
        return await self._execute("purge", now, max(0, limit))

    async def count(self, kind: str | None = None) -> int:
        row = await self._row("count") if kind is None else await self._row("count_kind", kind)
        return int(row[0])
