"""Fixtures for the store tests: each backend opened on an empty store, and a frozen clock.

``backend`` is parametrized over every backend, so a test written once runs
against all of them (the contract suite, after oauth2-proxy's
``session_store_tests.go``). A backend whose server is down fails here with
what to start, rather than skipping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from authgate.clock import FrozenClock
from authgate.store import Backend, create_backend

from ..conftest import POSTGRES, REDIS, STORE_BACKENDS

MARKS = {
    "postgres": pytest.mark.postgres, "redis": pytest.mark.redis, "azureblob": pytest.mark.azurite,
}
NEEDS = {
    "postgres": f"PostgreSQL at {POSTGRES} (or set AUTHGATE_TEST_POSTGRES)",
    "redis": f"Redis at {REDIS} (or set AUTHGATE_TEST_REDIS)",
    "azureblob": "the Azurite emulator started by the azurite fixture",
}


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Backend]:
    """Open a backend for ``url``; a server that is not there fails the test loudly."""
    backend = create_backend(url)
    try:
        await backend.open()
    except Exception as exc:
        await backend.close()
        need = NEEDS.get(backend.url_scheme.replace("postgresql", "postgres"), "its server")
        why = f"{type(exc).__name__}: {exc}"
        pytest.fail(f"the {backend.url_scheme} store cannot open; it needs {need}: {why}",
                    pytrace=False)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture(params=[pytest.param(n, id=n, marks=MARKS.get(n, ())) for n in STORE_BACKENDS])
def backend_url(request: pytest.FixtureRequest, store_url: Callable[[str], str]) -> str:
    name: str = request.param
    return store_url(name)


@pytest.fixture
async def backend(backend_url: str) -> AsyncIterator[Backend]:
    async with opened(backend_url) as b:
        yield b


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()
