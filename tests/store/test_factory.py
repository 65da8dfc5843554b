"""The store factory: every scheme maps to its backend, unknown ones fail clearly."""

from __future__ import annotations

import pytest

from authgate.errors import ConfigError
from authgate.store import Backend, create_backend
from authgate.store.azureblob import AzureBlobBackend
from authgate.store.factory import BACKENDS
from authgate.store.file import FileBackend
from authgate.store.postgres import PostgresBackend
from authgate.store.redis import RedisBackend
from authgate.store.sqlite import SQLiteBackend


@pytest.mark.parametrize(
    ("url", "cls"),
    [
        ("sqlite:///data/authgate.db", SQLiteBackend),
        ("postgresql://u@127.0.0.1/db", PostgresBackend),
        ("postgres://u@127.0.0.1/db", PostgresBackend),
        ("postgresql+asyncpg://u@127.0.0.1/db", PostgresBackend),
        ("redis://127.0.0.1:6379/0", RedisBackend),
        ("rediss://cache.example:6380/0?prefix=ag", RedisBackend),
        ("file:///var/lib/authgate/store", FileBackend),
        ("file://data/store", FileBackend),
        ("azureblob://acct.blob.core.windows.net/tokens?sv=1&sig=x", AzureBlobBackend),
        ("azureblob+http://azurite:10000/devstoreaccount1/tokens?sig=x", AzureBlobBackend),
    ],
)
def test_scheme_selects_backend(url: str, cls: type) -> None:
    """Each documented URL scheme builds its backend, without connecting."""
    backend = create_backend(url)
    assert type(backend) is cls
    assert isinstance(backend, Backend)


@pytest.mark.parametrize("url", ["mysql://u@h/db", "mongodb://h/x", "s3://bucket/x", "nothing"])
def test_unknown_scheme_is_a_config_error(url: str) -> None:
    """An unknown scheme names the schemes that do exist."""
    with pytest.raises(ConfigError, match="unknown store URL scheme") as info:
        create_backend(url)
    for scheme in ("sqlite://", "postgresql://", "redis://", "file://", "azureblob://"):
        assert scheme in str(info.value)


def test_every_registered_backend_imports() -> None:
    """Every entry in BACKENDS names an importable class with the matching url_scheme family."""
    import importlib

    for scheme, target in BACKENDS.items():
        module, _, name = target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        assert scheme.startswith(cls.url_scheme[:4])
