"""From a store URL to a backend: one explicit table, unknown schemes rejected."""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import Backend

# scheme -> "module:Class", imported lazily so optional drivers load only when used.
BACKENDS: dict[str, str] = {
    "sqlite": "authgate.store.sqlite:SQLiteBackend",
    "postgresql": "authgate.store.postgres:PostgresBackend",  # also postgresql+asyncpg://
    "postgres": "authgate.store.postgres:PostgresBackend",
    "redis": "authgate.store.redis:RedisBackend",
    "rediss": "authgate.store.redis:RedisBackend",
    "file": "authgate.store.file:FileBackend",
    "azureblob": "authgate.store.azureblob:AzureBlobBackend",  # also azureblob+http[s]://
}


def register(scheme: str, target: str) -> None:
    BACKENDS[scheme] = target


def create_backend(url: str) -> Backend:
    scheme = urlsplit(url).scheme.lower()
    if "+" in scheme:
        scheme = scheme.split("+", 1)[0]
    target = BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(f"{s}://" for s in sorted(BACKENDS))
        given = f"{scheme}://" if scheme else repr(url)
        raise ConfigError(f"unknown store URL scheme {given}; use one of {known}")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = cls(url)
    return backend
