"""Azure Blob specifics: the URL mapping, the blob layout, and stale index markers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from authgate.clock import FrozenClock
from authgate.errors import ConfigError, StoreError
from authgate.store import Record
from authgate.store.azureblob import AzureBlobBackend, container_url

from ..peers.azurite import Azurite
from .conftest import opened


@pytest.mark.parametrize(
    ("url", "container", "prefix"),
    [
        ("azureblob://acct.blob.core.windows.net/tokens?sv=2024&sig=a%2Bb",
         "https://acct.blob.core.windows.net/tokens?sv=2024&sig=a%2Bb", ""),
        ("azureblob://127.0.0.1:10000/devstoreaccount1/tokens?sig=x&prefix=app1",
         "http://127.0.0.1:10000/devstoreaccount1/tokens?sig=x", "app1/"),
        ("azureblob://localhost:10000/devstoreaccount1/tokens/",
         "http://localhost:10000/devstoreaccount1/tokens", ""),
        ("azureblob+http://azurite:10000/devstoreaccount1/tokens?prefix=a/b/&sig=x",
         "http://azurite:10000/devstoreaccount1/tokens?sig=x", "a/b/"),
        ("azureblob+https://127.0.0.1:443/acct/tokens", "https://127.0.0.1:443/acct/tokens", ""),
    ],
)
def test_url_mapping(url: str, container: str, prefix: str) -> None:
    """azureblob:// is the container URL: https, http for loopback, or the forced scheme."""
    assert container_url(url) == (container, prefix)


@pytest.mark.parametrize(
    "url",
    ["azureblob://acct.blob.core.windows.net", "azureblob://acct.blob.core.windows.net/",
     "azureblob://user@acct.blob.core.windows.net/c", "azureblob://h/c?prefix=a&prefix=b",
     "azureblob://h/c?prefix=../x y", "azureblob+ftp://h/c"],
)
def test_bad_urls_are_config_errors(url: str) -> None:
    """A URL without a container, with credentials in the host part or a bad prefix fails."""
    with pytest.raises(ConfigError):
        container_url(url)


@pytest.fixture
async def store(store_url: Callable[[str], str]) -> AsyncIterator[AzureBlobBackend]:
    async with opened(store_url("azureblob")) as backend:
        assert isinstance(backend, AzureBlobBackend)
        yield backend


async def names(store: AzureBlobBackend) -> list[str]:
    return [n[len(store.prefix):] async for n in
            store.client.list_blob_names(name_starts_with=store.prefix)]


@pytest.mark.azurite
async def test_blob_layout(store: AzureBlobBackend, clock: FrozenClock) -> None:
    """A record is one blob named by kind and hex id, plus one marker per index."""
    await store.upsert(Record("refresh_token", "rt", b"x", subject="alice", grant_id="fam"),
                       now=clock.now())
    layout = await names(store)
    assert len(layout) == 3
    assert "r/refresh_token/" + b"rt".hex() in layout
    assert sum(n.startswith("s/refresh_token/") and n.endswith("/" + b"rt".hex())
               for n in layout) == 1
    assert sum(n.startswith("g/") and n.endswith("/refresh_token/" + b"rt".hex())
               for n in layout) == 1


@pytest.mark.azurite
async def test_stale_markers_are_ignored_and_collected(store: AzureBlobBackend,
                                                       clock: FrozenClock) -> None:
    """Markers a destroy or a subject change leaves are never used, and go at purge or read."""
    now = clock.now()
    await store.upsert(Record("sso", "a", b"x", subject="alice", grant_id="g1"), now=now)
    await store.upsert(Record("sso", "b", b"x", subject="alice", grant_id="g2"), now=now)
    await store.upsert(Record("sso", "b", b"x", subject="bob", grant_id="g2"), now=now)
    await store.destroy("sso", "a")
    assert len(await names(store)) == 2 + 4  # b, its two markers; a's two and b's old one
    assert await store.find_by_subject("sso", "alice", now=now) == []
    assert await store.revoke_by_grant("g1") == 0
    assert len(await names(store)) == 3  # the reads dropped what they found stale
    await store.upsert(Record("sso", "b", b"x"), now=now)
    assert await store.purge(now=now) == 0
    assert await names(store) == ["r/sso/" + b"b".hex()]


@pytest.mark.azurite
async def test_missing_container_is_a_clear_error(azurite: Azurite) -> None:
    """Opening a store on a container that does not exist fails without echoing the SAS."""
    backend = AzureBlobBackend(azurite.store_url("no-such-container"))
    with pytest.raises(StoreError, match="does not exist") as info:
        await backend.open()
    assert "sig=" not in str(info.value)
    await backend.close()
