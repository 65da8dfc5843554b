"""PostgreSQL specifics: every hot statement is served by an index, and URLs map to asyncpg."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
import sqlalchemy as sa

from authgate.errors import ConfigError
from authgate.store import Record, sql
from authgate.store.postgres import STATEMENTS, PostgresBackend, engine_options

from .conftest import opened

pytestmark = pytest.mark.postgres

NOW = 1_800_000_000.0
ROWS = 5000
SEALED = b"\x01" * 240  # about the size of a sealed refresh-token record


@pytest.fixture
async def filled(store_url: Callable[[str], str]) -> AsyncIterator[PostgresBackend]:
    """A store with a few thousand realistic rows, analysed, so plans are the production ones."""
    async with opened(store_url("postgres")) as backend:
        assert isinstance(backend, PostgresBackend)
        rows = [
            {"kind": "refresh_token" if i % 3 else "code", "id": f"id-{i:05d}", "payload": SEALED,
             "expires_at": NOW - 10 if i % 250 == 0 else NOW + 86400 + i,
             "grant_id": f"fam-{i // 4}", "subject": f"user-{i % 700}", "consumed_at": None}
            for i in range(ROWS)
        ]
        async with backend.engine.begin() as conn:
            await conn.execute(sa.insert(sql.records), rows)
            await conn.execute(sa.text("ANALYZE authgate_records"))
        yield backend


async def _plan(backend: PostgresBackend, name: str, args: tuple[object, ...], *,
                seqscan: bool) -> str:
    """EXPLAIN one of the backend's own fixed statements with its parameters bound."""
    async with backend.connection() as conn, conn.transaction():
        if not seqscan:
            await conn.execute("SET LOCAL enable_seqscan = off")
        rows = await conn.fetch("EXPLAIN " + STATEMENTS[name], *args)
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize(
    ("operation", "args", "seqscan"),
    [
        ("find", ("code", "id-00042", NOW), True),
        ("consume", (NOW, "code", "id-00042"), True),
        ("insert", ("refresh_token", "id-new", SEALED, NOW + 60, "fam-1", "user-1", None, NOW),
         True),
        ("follow", ("code", "id-00042",
                    "refresh_token", "id-new", SEALED, NOW + 60, "fam-1", "user-1", None,
                    "audit", "ev-1", SEALED, NOW + 60, None, "user-1", None, NOW), True),
        ("revoke", ("fam-17",), True),
        ("by_subject", ("refresh_token", "user-5", NOW, 1000), True),
        ("scan_after", ("refresh_token", "id-00042", 500), True),
        # purge selects its victims through ix_authgate_records_expires, then joins them back
        # to the table; on a table of a few thousand rows the planner may rightly hash-join
        # that against a sequential scan. enable_seqscan=off turns the question into "is
        # there an index for this statement", which is what must hold as the table grows.
        ("purge", (NOW, 1000), False),
    ],
)
async def test_hot_statements_use_an_index(
    filled: PostgresBackend, operation: str, args: tuple[object, ...], seqscan: bool
) -> None:
    """EXPLAIN shows an index scan, never a sequential scan of the records table."""
    plan = await _plan(filled, operation, args, seqscan=seqscan)
    assert "Seq Scan on authgate_records" not in plan, f"{operation}:\n{plan}"
    wanted = "Arbiter Indexes: authgate_records_pkey" if operation == "insert" else "Index"
    assert wanted in plan, f"{operation}:\n{plan}"
    if operation == "follow":  # the consumed record is found (and held) by its primary key
        assert "Index Scan using authgate_records_pkey" in plan, plan
        assert plan.count("Arbiter Indexes: authgate_records_pkey") == 2, plan


@pytest.mark.parametrize(
    ("url", "driver", "schema"),
    [
        ("postgresql://u:p@db:5432/authgate", "postgresql+asyncpg", None),
        ("postgres://u@db/authgate?schema=tenant_a", "postgresql+asyncpg", "tenant_a"),
        ("postgresql+asyncpg://u@db/authgate?pool_size=3&max_overflow=0", "postgresql+asyncpg",
         None),
    ],
)
def test_url_variants(url: str, driver: str, schema: str | None) -> None:
    """postgresql://, postgres:// and postgresql+asyncpg:// all run on asyncpg."""
    target, got_schema, _pool = engine_options(url)
    assert target.drivername == driver
    assert got_schema == schema
    assert set(target.query) <= {"sslmode", "ssl"}


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg2://u@db/x", "postgresql://u@db/x?schema=Bad-Name", "mysql://u@db/x",
     "postgresql://u@db/x?pool_size=many"],
)
def test_bad_urls_are_config_errors(url: str) -> None:
    """A driver other than asyncpg, a bad schema or a bad pool size is rejected at startup."""
    with pytest.raises(ConfigError):
        PostgresBackend(url)


async def test_connections_closed_by_the_server_are_replaced(
    store_url: Callable[[str], str],
) -> None:
    """After the server drops the pool's idle connections (a restart), the next call succeeds."""
    async with opened(store_url("postgres")) as backend:
        assert isinstance(backend, PostgresBackend)
        await backend.upsert(Record("code", "c1", SEALED), now=NOW)
        async with backend.connection() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        killer = await asyncpg.connect(backend.dsn)
        try:
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await killer.close()
        await asyncio.sleep(0.2)  # the termination reaches the idle connections
        found = await backend.find("code", "c1", now=NOW)
        assert found is not None
        assert found.payload == SEALED


async def test_connections_are_bounded_and_survive_errors_and_cancellation(
    store_url: Callable[[str], str],
) -> None:
    """At most pool_size + max_overflow connections; a refused statement keeps its connection,
    a cancelled one is dropped, and the store keeps working after both."""
    async with opened(store_url("postgres") + "&pool_size=1&max_overflow=1") as backend:
        assert isinstance(backend, PostgresBackend)
        conns = backend.conns
        sleep = asyncpg.Connection.fetchval
        await asyncio.gather(*(conns.run(sleep, "SELECT pg_sleep(0.02)") for _ in range(10)))
        assert conns._opened <= 2
        with pytest.raises(asyncpg.DivisionByZeroError):
            await conns.run(asyncpg.Connection.fetchval, "SELECT 1 / 0")
        slow = asyncio.create_task(conns.run(sleep, "SELECT pg_sleep(5)"))
        await asyncio.sleep(0.2)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        await backend.upsert(Record("code", "c2", SEALED), now=NOW)
        assert await backend.find("code", "c2", now=NOW) is not None
        assert conns._opened <= 2
