"""Stores for the backend benchmark: isolated namespaces, bulk preloading, clean-up.

Every run gets a namespace of its own, dropped afterwards: a PostgreSQL schema,
a Redis key prefix, a temporary directory (sqlite, file), a fresh Azurite
(azureblob). Families are preloaded as real sealed refresh-token records (the
same fields :mod:`authgate.refresh_tokens` stores), written in bulk by the
fastest means each backend has -- asyncpg ``COPY``, one SQLite transaction of
``executemany``, pipelined ``EVALSHA`` of the Redis backend's own write script
-- and through ``Backend.upsert`` (64 at a time) for the file and Azure Blob
backends, which have no bulk path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import servers  # noqa: F401 - puts the repository root on sys.path (tests.peers)

from authgate.hashing import b64url, new_id
from authgate.store.base import Backend, Record
from authgate.store.sealed import SealedStore

POSTGRES = os.environ.get("AUTHGATE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("AUTHGATE_BENCH_REDIS", "redis://127.0.0.1:6379/0")
KIND = "refresh_token"
MONTH = 30 * 86400.0
IN_FLIGHT = 64
COLUMNS = ("kind", "id", "payload", "expires_at", "grant_id", "subject", "consumed_at")


@contextlib.contextmanager
def namespace(backend: str) -> Iterator[str]:
    """A store URL for an empty, private store of ``backend``; removed on exit."""
    token = secrets.token_hex(5)
    tmp = Path(tempfile.mkdtemp(prefix=f"authgate-bench-{backend}-"))
    azurite: Any = None
    try:
        if backend == "sqlite":
            yield f"sqlite:///{tmp}/store.db"
        elif backend == "file":
            yield f"file://{tmp}/files"
        elif backend == "postgres":
            yield f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}schema=authgate_bench_{token}"
        elif backend == "redis":
            yield f"{REDIS}{'&' if '?' in REDIS else '?'}prefix=authgate-bench:{token}"
        elif backend == "azureblob":
            from tests.peers import azurite as peer

            azurite = peer.start()
            azurite.create_container("bench")
            yield azurite.store_url("bench")
        else:
            raise ValueError(f"no benchmark store for {backend!r}")
    finally:
        if backend == "postgres":
            asyncio.run(_drop_schema(f"authgate_bench_{token}"))
        elif backend == "redis":
            asyncio.run(_drop_prefix(f"authgate-bench:{token}"))
        if azurite is not None:
            from tests.peers import azurite as peer

            peer.stop(azurite)
        shutil.rmtree(tmp, ignore_errors=True)


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES.split("?", 1)[0])
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def _drop_prefix(prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()


# --- preloading ---------------------------------------------------------------------

def families(store: SealedStore, start: int, count: int, now: float,
             client_id: str) -> list[Record]:
    """``count`` sealed refresh-token records, one family each, four families per user."""
    out = []
    for i in range(start, start + count):
        user = f"pre-{i // 4:08d}"
        data = {"user_id": user, "client_id": client_id, "scope": "openid offline_access",
                "auth_time": now, "absolute_expires_at": now + MONTH, "issued_at": now,
                "parent": None, "sid": None}
        out.append(store.record(KIND, b64url(secrets.token_bytes(32)), data,
                                expires_at=now + MONTH, grant_id=new_id(), subject=user))
    return out


async def bulk_load(backend: Any, records: Sequence[Record], now: float) -> None:
    name = type(backend).__name__
    if name == "PostgresBackend":
        rows = [(r.kind, r.id, r.payload, r.expires_at, r.grant_id, r.subject, r.consumed_at)
                for r in records]
        async with backend.connection() as conn:
            await conn.copy_records_to_table("authgate_records", records=rows, columns=COLUMNS,
                                             schema_name=backend.schema)
    elif name == "SQLiteBackend":
        db = backend.db
        db.execute("BEGIN")
        db.executemany("INSERT INTO authgate_records (kind, id, payload, expires_at, grant_id, "
                       "subject, consumed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [(r.kind, r.id, r.payload, r.expires_at, r.grant_id, r.subject,
                         r.consumed_at) for r in records])
        db.execute("COMMIT")
    elif name == "RedisBackend":
        await _redis_load(backend, records, now)
    else:
        await gather_bounded(backend.upsert(r, now=now) for r in records)


async def _redis_load(backend: Any, records: Sequence[Record], now: float) -> None:
    """Pipelined EVALSHA of the backend's own ``upsert`` script: the keys and indexes
    come out exactly as ``upsert`` makes them, a thousand records per round trip, two
    pipelines in flight so that packing one overlaps Redis running the other."""
    script = backend._scripts["upsert"]
    await backend.client.script_load(script.script)

    async def pipeline(batch: Sequence[Record]) -> None:
        async with backend.client.pipeline(transaction=False) as pipe:
            for r in batch:
                pipe.evalsha(script.sha, 0, backend.prefix, *backend._write_args(r, now))
            await pipe.execute()
    await gather_bounded((pipeline(records[i:i + 1000]) for i in range(0, len(records), 1000)),
                         limit=2)


async def analyse(backend: Any) -> None:
    """After a bulk load: fresh planner statistics, and on PostgreSQL what autovacuum and
    the checkpointer would do shortly -- the vacuum a million inserts call for, the flush of
    the pages they dirtied -- done now, so that it does not land in a measured window of
    the large store only."""
    if type(backend).__name__ == "PostgresBackend":
        import asyncpg

        async with backend.connection() as conn:
            await conn.execute("VACUUM (ANALYZE) authgate_records")
            with contextlib.suppress(asyncpg.InsufficientPrivilegeError):  # (a role without it)
                await conn.execute("CHECKPOINT")
    elif type(backend).__name__ == "SQLiteBackend":
        backend.db.execute("ANALYZE")


async def gather_bounded(coros: Iterable[Awaitable[Any]], limit: int = IN_FLIGHT) -> None:
    pending: set[asyncio.Future[Any]] = set()
    for coro in coros:
        pending.add(asyncio.ensure_future(coro))
        if len(pending) >= limit:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for d in done:
                d.result()
    if pending:
        for d in (await asyncio.wait(pending))[0]:
            d.result()


# --- clean-up between cases -----------------------------------------------------------

async def remove(backend: Backend, grants: Iterable[str], users: Iterable[str],
                 progress: Callable[[str], None] | None = None) -> None:
    """Delete what a case created: its families (``revoke_by_grant``) and the audit
    events of its users, so the next case runs on the preloaded store alone."""
    grants = list(grants)
    await gather_bounded(backend.revoke_by_grant(g) for g in grants)
    for user in users:
        while True:
            now = 0.0  # audit events expire in 400 days: every one is live
            events = await backend.find_by_subject("audit", user, now=now, limit=1000)
            if not events:
                break
            await gather_bounded(backend.destroy("audit", e.id) for e in events)
    if progress is not None:
        progress(f"removed {len(grants):,} families")
