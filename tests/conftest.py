"""Suite-wide fixtures: token-store backends on the real servers they run on in production.

Every backend is tested against the real thing (PostgreSQL and Redis on
loopback, Azurite for Azure Blob Storage), isolated per test by a fresh
schema, key prefix or blob prefix. A server that is not there fails the test
with a message saying what to start; it is never a skip, so a green run
means every backend was exercised. Override the servers with
``AUTHGATE_TEST_POSTGRES`` and ``AUTHGATE_TEST_REDIS``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from .peers import azurite as azurite_peer
from .peers.azurite import Azurite, AzuriteError

POSTGRES = os.environ.get("AUTHGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("AUTHGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
CONTAINER = "authgate-test"
STORE_BACKENDS = ("sqlite", "postgres", "redis", "file", "azureblob")

@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite, installed from npm on first use and started once per session."""
    try:
        server = azurite_peer.start()
    except AzuriteError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(f"the azureblob backend needs Azurite: {problem}", pytrace=False)
    try:
        server.create_container(CONTAINER)
        yield server
    finally:
        azurite_peer.stop(server)


def _with_query(url: str, param: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{param}"


@pytest.fixture
async def store_url(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[[str], str]]:
    """``store_url(backend)``: a URL for an empty store of that backend, dropped after the test."""
    schemas: list[str] = []
    prefixes: list[str] = []

    def make(backend: str) -> str:
        token = secrets.token_hex(6)
        if backend == "sqlite":
            return f"sqlite:///{tmp_path}/store-{token}.db"
        if backend == "file":
            return f"file://{tmp_path}/files-{token}"
        if backend == "postgres":
            schemas.append(f"authgate_test_{token}")
            return _with_query(POSTGRES, f"schema={schemas[-1]}")
        if backend == "redis":
            prefixes.append(f"authgate-test:{token}")
            return _with_query(REDIS, f"prefix={prefixes[-1]}")
        if backend == "azureblob":
            peer: Azurite = request.getfixturevalue("azurite")
            return peer.store_url(CONTAINER, prefix=f"t-{token}")  # Azurite's data goes with it
        raise ValueError(f"no test store for {backend!r}")

    yield make

    # A server that is down already failed the test when the store opened.
    with contextlib.suppress(OSError, aioredis.ConnectionError):
        if schemas:
            conn = await asyncpg.connect(POSTGRES)
            try:
                for schema in schemas:
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()
    with contextlib.suppress(OSError, aioredis.ConnectionError):
        if prefixes:
            client = aioredis.Redis.from_url(REDIS)
            try:
                for prefix in prefixes:
                    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
                    if keys:
                        await client.delete(*keys)
            finally:
                await client.aclose()
