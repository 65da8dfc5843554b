"""Fixtures for the multi-instance tests: stores on the real PostgreSQL and Redis.

A server that is not there fails the test with what to start -- never a skip --
like the store contract suite (``tests/store/conftest.py``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack

import pytest

from authgate.keystore import LocalKeys, new_sealing_key
from authgate.store import Backend, create_backend

from ._instances import NEEDS, Instances, two_instances

SHARED = ("postgres", "redis")
MARKS = {"postgres": pytest.mark.postgres, "redis": pytest.mark.redis}


def shared_backends() -> list[object]:
    """``params=`` for a fixture run once per backend that reaches other instances."""
    return [pytest.param(n, id=n, marks=MARKS[n]) for n in SHARED]


async def open_or_fail(stack: AsyncExitStack, url: str, name: str) -> Backend:
    """An opened backend, closed with ``stack``; a server that is down fails the test loudly."""
    backend = create_backend(url)
    try:
        await backend.open()
    except Exception as exc:
        await backend.close()
        pytest.fail(f"the {name} store cannot open; it needs {NEEDS[name]}: "
                    f"{type(exc).__name__}: {exc}", pytrace=False)
    stack.push_async_callback(backend.close)
    return backend


@pytest.fixture(params=shared_backends())
def shared_url(request: pytest.FixtureRequest, store_url: Callable[[str], str]) -> str:
    """An empty PostgreSQL schema or Redis prefix, dropped after the test."""
    return store_url(request.param)


@pytest.fixture
def shared_name(shared_url: str) -> str:
    return "postgres" if shared_url.startswith("postgres") else "redis"


@pytest.fixture
async def backends(shared_url: str, shared_name: str) -> AsyncIterator[tuple[Backend, Backend]]:
    """Two backends on one store, as two instances would have: separate connections."""
    async with AsyncExitStack() as stack:
        yield (await open_or_fail(stack, shared_url, shared_name),
               await open_or_fail(stack, shared_url, shared_name))


@pytest.fixture
def local_keys() -> LocalKeys:
    """One set of store keys, shared by every instance of a test."""
    return LocalKeys([new_sealing_key()], os.urandom(32))


@pytest.fixture(scope="module", params=shared_backends())
def instances(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instances]:
    """Two ``authgate serve`` processes on one fresh store, for every test of a module."""
    name: str = request.param
    with two_instances(name, tmp_path_factory.mktemp(f"cluster-{name}")) as running:
        yield running
