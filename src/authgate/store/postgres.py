"""The production relational backend: PostgreSQL through SQLAlchemy Core and asyncpg.

It runs the very statements the SQLite backend runs (:mod:`authgate.store.sql`),
compiled for PostgreSQL, so the two cannot drift apart; only the dialect's
``INSERT ... ON CONFLICT`` differs. Several authgate instances share one
database, so the guarantees the contract makes across processes come from
PostgreSQL itself, never from a lock in this process:

* ``consume`` is one ``UPDATE ... WHERE consumed_at IS NULL RETURNING``: row
  locking makes every other concurrent updater re-check the condition after the
  winner commits, so exactly one caller sees the record unconsumed;
* ``insert`` is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired``, so
  two instances creating the same rotation successor cannot both win.

Connections are pooled (``pool_size`` and ``max_overflow`` may be given in the
URL query) and checked before use, so a database restart costs one failed
ping, not a failed request. ``?schema=name`` keeps the table (and Alembic's
version table) in a schema of its own, created on first open: one database
can hold several stores, and the test suite isolates itself that way.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..errors import ConfigError
from . import sql
from .base import Record

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_POOL_OPTIONS = ("pool_size", "max_overflow")
_MIGRATION_LOCK = 0x61757467  # "autg": the advisory lock serialising schema migrations


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


class PostgresBackend:
    url_scheme = "postgresql"

    def __init__(self, url: str) -> None:
        self.url, self.schema, self._pool = engine_options(url)
        self._engine: AsyncEngine | None = None

    async def open(self) -> None:
        if self._engine is not None:
            return
        connect_args: dict[str, Any] = {}
        if self.schema is not None:
            connect_args["server_settings"] = {"search_path": self.schema}
        engine = create_async_engine(
            self.url,
            pool_pre_ping=True,
            pool_size=self._pool.get("pool_size", 10),
            max_overflow=self._pool.get("max_overflow", 10),
            connect_args=connect_args,
        )
        try:
            async with engine.begin() as conn:
                # Instances starting together migrate one after the other.
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
                if self.schema is not None:
                    await conn.execute(sa.schema.CreateSchema(self.schema, if_not_exists=True))
                await conn.run_sync(sql.upgrade)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("PostgresBackend used before open()")
        return self._engine

    async def _write(self, stmt: sa.Executable) -> int:
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount

    async def _rows(self, stmt: sa.Executable) -> list[Record]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [sql.to_record(r) for r in rows]

    async def upsert(self, record: Record, *, now: float) -> None:
        await self._write(sql.upsert_stmt(pg_insert, record))

    async def insert(self, record: Record, *, now: float) -> bool:
        return await self._write(sql.insert_stmt(pg_insert, record, now)) > 0

    async def find(self, kind: str, id: str, *, now: float) -> Record | None:
        rows = await self._rows(sql.find_stmt(kind, id, now))
        return rows[0] if rows else None

    async def consume(self, kind: str, id: str, *, now: float) -> Record | None:
        conn: AsyncConnection
        async with self.engine.begin() as conn:
            row = (await conn.execute(sql.consume_stmt(kind, id, now))).first()
            if row is not None:
                return replace(sql.to_record(row), consumed_at=None)
            # Lost the race, already consumed, or absent: report what is there now.
            row = (await conn.execute(sql.find_stmt(kind, id, now))).first()
        return sql.to_record(row) if row is not None else None

    async def destroy(self, kind: str, id: str) -> bool:
        return await self._write(sql.destroy_stmt(kind, id)) > 0

    async def revoke_by_grant(self, grant_id: str) -> int:
        return await self._write(sql.revoke_by_grant_stmt(grant_id))

    async def find_by_subject(
        self, kind: str, subject: str, *, now: float, limit: int = 1000
    ) -> list[Record]:
        return await self._rows(sql.by_subject_stmt(kind, subject, now, limit))

    async def scan(self, kind: str, *, after: str | None = None, limit: int = 500) -> list[Record]:
        return await self._rows(sql.scan_stmt(kind, after, limit))

    async def purge(self, *, now: float, limit: int = 1000) -> int:
        return await self._write(sql.purge_stmt(now, limit))

    async def count(self, kind: str | None = None) -> int:
        async with self.engine.connect() as conn:
            value = (await conn.execute(sql.count_stmt(kind))).scalar_one()
        return int(value)
