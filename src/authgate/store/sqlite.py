"""The embedded default backend: SQLite through SQLAlchemy Core.

Statements run inline on the event loop rather than in a worker thread: a
point read or a single-row write on a local WAL database takes tens of
microseconds, less than a thread hop would cost. ``busy_timeout`` bounds the
wait when another process (the CLI, say) holds the write lock.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..errors import ConfigError
from . import sql
from .base import Record


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


class SQLiteBackend:
    url_scheme = "sqlite"

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._engine: sa.Engine | None = None
        self._conn: sa.Connection | None = None

    async def open(self) -> None:
        if self._conn is not None:
            return
        self._prepare_dir()
        self._engine = sa.create_engine(f"sqlite:///{self.path}", poolclass=sa.pool.StaticPool)

        @sa.event.listens_for(self._engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

        self._migrate(self._engine)
        self._conn = self._engine.connect()

    def _migrate(self, engine: sa.Engine) -> None:
        with engine.begin() as conn:
            sql.upgrade(conn)
        if self.path != ":memory:":
            Path(self.path).chmod(0o600)  # tokens are hashed and sealed, but keep the file private

    def _prepare_dir(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def conn(self) -> sa.Connection:
        if self._conn is None:
            raise RuntimeError("SQLiteBackend used before open()")
        return self._conn

    def _run(self, stmt: sa.Executable) -> sa.CursorResult[Any]:
        conn = self.conn
        try:
            result = conn.execute(stmt)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return result

    async def upsert(self, record: Record, *, now: float) -> None:
        self._run(sql.upsert_stmt(sqlite_insert, record))

    async def insert(self, record: Record, *, now: float) -> bool:
        return self._run(sql.insert_stmt(sqlite_insert, record, now)).rowcount > 0

    async def find(self, kind: str, id: str, *, now: float) -> Record | None:
        row = self.conn.execute(sql.find_stmt(kind, id, now)).first()
        self.conn.commit()
        return sql.to_record(row) if row is not None else None

    async def consume(self, kind: str, id: str, *, now: float) -> Record | None:
        conn = self.conn
        try:
            row = conn.execute(sql.consume_stmt(kind, id, now)).first()
            if row is not None:
                conn.commit()
                return replace(sql.to_record(row), consumed_at=None)
            row = conn.execute(sql.find_stmt(kind, id, now)).first()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return sql.to_record(row) if row is not None else None

    async def destroy(self, kind: str, id: str) -> bool:
        return self._run(sql.destroy_stmt(kind, id)).rowcount > 0

    async def revoke_by_grant(self, grant_id: str) -> int:
        return self._run(sql.revoke_by_grant_stmt(grant_id)).rowcount

    async def find_by_subject(
        self, kind: str, subject: str, *, now: float, limit: int = 1000
    ) -> list[Record]:
        rows = self.conn.execute(sql.by_subject_stmt(kind, subject, now, limit)).all()
        self.conn.commit()
        return [sql.to_record(r) for r in rows]

    async def scan(self, kind: str, *, after: str | None = None, limit: int = 500) -> list[Record]:
        rows = self.conn.execute(sql.scan_stmt(kind, after, limit)).all()
        self.conn.commit()
        return [sql.to_record(r) for r in rows]

    async def purge(self, *, now: float, limit: int = 1000) -> int:
        return self._run(sql.purge_stmt(now, limit)).rowcount

    async def count(self, kind: str | None = None) -> int:
        value = self.conn.execute(sql.count_stmt(kind)).scalar_one()
        self.conn.commit()
        return int(value)
