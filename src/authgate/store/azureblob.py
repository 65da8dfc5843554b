"""The Azure Blob Storage backend: a container reached by URL, as App Service's token store.

A container with a SAS token is all an App Service-style deployment has, so
this backend needs nothing else: no leases, no tables, no blob index tags
(``Find Blobs by Tags`` is eventually consistent, and a revocation that
misses a fresh family member is not acceptable). Atomicity comes from ETags:
``insert`` is a PUT with ``If-None-Match: *`` (or ``If-Match`` the ETag of the
expired record it takes over) and ``consume`` a metadata update with
``If-Match``; the loser of a race re-reads and answers from what it finds.

URL mapping (the URL minus its ``azureblob`` scheme is the container URL)::

    azureblob://<account>.blob.core.windows.net/<container>?<SAS>  -> https://…
    azureblob://127.0.0.1:10000/devstoreaccount1/<container>?<SAS> -> http://…   (Azurite)
    azureblob+http://host/…  /  azureblob+https://host/…          -> forced scheme

``localhost``/``127.0.0.1``/``[::1]`` default to ``http``, every other host to
``https``. ``&prefix=dir/`` keeps the store under a folder of the container
(the rest of the query is the SAS, which needs the ``racwdl`` permissions).

Blob names (``hex`` is the UTF-8 id in hex, so that listing order is id order;
``sha`` is SHA-256 hex, so any subject or grant id fits in a name)::

    <prefix>r/<kind>/<hex id>                 payload; metadata expires, grant, subject, consumed
    <prefix>s/<kind>/<sha subject>/<hex id>   empty marker: find_by_subject
    <prefix>g/<sha grant_id>/<kind>/<hex id>  empty marker: revoke_by_grant

Markers are written before the record (so a reader or a revocation never
misses a committed record) and written again after it; they are deleted only
with ``If-Match`` the ETag seen *before* the record was found not to need them.
Together these mean a concurrent writer's marker is never lost. A marker left
over (destroy, a changed subject, a failed insert) is ignored by readers and
deleted by them or by ``purge``.

Costs, in requests: ``find`` 1; ``consume`` 2 (more under contention);
``upsert``/``insert`` 1 plus 2 per marker; ``destroy`` 1; ``revoke_by_grant``
1 listing plus about 3 per family member; ``find_by_subject`` 1 listing plus 1
per candidate; ``scan`` a listing from ``after`` plus 1 per record;
``count`` and ``purge`` list the whole store (5,000 names per request):
maintenance operations, run them off the request path.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Awaitable, Iterable
from dataclasses import replace
from typing import TypeVar
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob.aio import ContainerClient

from ..errors import ConfigError, StoreError
from .base import Record

_KIND = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PREFIX = re.compile(r"(?:[A-Za-z0-9_.-]+/)*")
_LOCAL = {"localhost", "127.0.0.1", "::1"}
_RETRIES = 100
_IF_MATCH = MatchConditions.IfNotModified
_PARALLEL = 32
_BATCH = 32

T = TypeVar("T")


def container_url(url: str) -> tuple[str, str]:
    """Map a store URL to the container URL and the name prefix (see the module docstring)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("azureblob", "azureblob+http", "azureblob+https"):
        raise ConfigError("an azureblob store URL starts with azureblob:// (or azureblob+http[s]://)")
    if not parts.hostname or "@" in parts.netloc:
        raise ConfigError("an azureblob store URL is azureblob://<host>/<container>?<SAS>")
    if not parts.path.strip("/"):
        raise ConfigError("an azureblob store URL names a container: azureblob://<host>/<container>")
    http = scheme == "azureblob+http" or (scheme == "azureblob" and parts.hostname in _LOCAL)
    query: list[str] = []
    prefixes: list[str] = []
    for item in parts.query.split("&") if parts.query else []:
        (prefixes if item.startswith("prefix=") else query).append(item)
    if len(prefixes) > 1:
        raise ConfigError("give &prefix= once")
    prefix = prefixes[0].removeprefix("prefix=").strip("/") + "/" if prefixes else ""
    if prefix == "/":
        prefix = ""
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError("&prefix= may hold letters, digits, '_', '.', '-' and '/'")
    base = f"{'http' if http else 'https'}://{parts.netloc}{parts.path.rstrip('/')}"
    return (f"{base}?{'&'.join(query)}" if query else base), prefix


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _dec(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def _sha(text: str) -> str:
    return hashlib.sha256(_enc(text)).hexdigest()


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(_enc(text)).decode()


def _unb64(text: str | None) -> str | None:
    return None if text is None else _dec(base64.urlsafe_b64decode(text))


def _num(text: str | None) -> float | None:
    return None if text is None else float(text)


def _kind(kind: str) -> str:
    if not _KIND.fullmatch(kind):
        raise ValueError(f"record kind {kind!r} is not usable in a blob name")
    return kind


def _metadata(record: Record) -> dict[str, str]:
    meta: dict[str, str] = {}
    if record.expires_at is not None:
        meta["expires"] = repr(float(record.expires_at))
    if record.grant_id is not None:
        meta["grant"] = _b64(record.grant_id)
    if record.subject is not None:
        meta["subject"] = _b64(record.subject)
    if record.consumed_at is not None:
        meta["consumed"] = repr(float(record.consumed_at))
    return meta


def _record(kind: str, id: str, payload: bytes, meta: dict[str, str]) -> Record:
    meta = {k.lower(): v for k, v in meta.items()}
    return Record(
        kind=kind,
        id=id,
        payload=payload,
        expires_at=_num(meta.get("expires")),
        grant_id=_unb64(meta.get("grant")),
        subject=_unb64(meta.get("subject")),
        consumed_at=_num(meta.get("consumed")),
    )


class AzureBlobBackend:
    url_scheme = "azureblob"

    def __init__(self, url: str) -> None:
        self.container_url, self.prefix = container_url(url)
        self._client: ContainerClient | None = None
        self._limit = asyncio.Semaphore(_PARALLEL)

    @property
    def where(self) -> str:
        """The container URL without its SAS, for messages."""
        return self.container_url.split("?", 1)[0]

    async def open(self) -> None:
        if self._client is not None:
            return
        client = ContainerClient.from_container_url(self.container_url)
        try:
            async for _ in client.list_blob_names(name_starts_with=self.prefix, results_per_page=1):
                break
        except ResourceNotFoundError:
            await client.close()
            raise StoreError(f"azureblob container {self.where} does not exist") from None
        except BaseException:
            await client.close()
            raise
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    @property
    def client(self) -> ContainerClient:
        if self._client is None:
            raise RuntimeError("AzureBlobBackend used before open()")
        return self._client

    # -- names --------------------------------------------------------------------

    def _name(self, kind: str, id: str) -> str:
        name = f"{self.prefix}r/{_kind(kind)}/{_enc(id).hex()}"
        if len(name) > 900:
            raise ValueError("record id too long for a blob name")
        return name

    def _markers(self, record: Record) -> list[str]:
        hexid = _enc(record.id).hex()
        out = []
        if record.subject is not None:
            out.append(f"{self.prefix}s/{_kind(record.kind)}/{_sha(record.subject)}/{hexid}")
        if record.grant_id is not None:
            out.append(f"{self.prefix}g/{_sha(record.grant_id)}/{_kind(record.kind)}/{hexid}")
        return out

    async def _gather(self, coros: Iterable[Awaitable[T]]) -> list[T]:
        async def bounded(coro: Awaitable[T]) -> T:
            async with self._limit:
                return await coro

        return list(await asyncio.gather(*(bounded(c) for c in coros)))

    # -- blobs --------------------------------------------------------------------

    async def _get(self, kind: str, id: str) -> tuple[Record, str] | None:
        try:
            download = await self.client.download_blob(self._name(kind, id))
            payload = await download.readall()
        except ResourceNotFoundError:
            return None
        props = download.properties
        return _record(kind, id, payload, props.metadata or {}), props.etag

    async def _put_markers(self, names: list[str]) -> None:
        await self._gather(self.client.upload_blob(n, b"", overwrite=True) for n in names)

    async def _drop_marker(self, name: str, etag: str) -> None:
        """Delete a stale marker unless it was rewritten since it was listed."""
        await self._delete_if(name, etag)

    # -- the contract -------------------------------------------------------------

    async def upsert(self, record: Record, *, now: float) -> None:
        markers = self._markers(record)
        await self._put_markers(markers)
        name = self._name(record.kind, record.id)
        meta = _metadata(record)
        await self.client.upload_blob(name, record.payload, metadata=meta, overwrite=True)
        await self._put_markers(markers)

    async def insert(self, record: Record, *, now: float) -> bool:
        name, markers = self._name(record.kind, record.id), self._markers(record)
        await self._put_markers(markers)
        for _ in range(_RETRIES):
            try:
                await self.client.upload_blob(
                    name, record.payload, metadata=_metadata(record), overwrite=False)
                break
            except (ResourceExistsError, ResourceModifiedError):
                pass
            try:
                props = await self.client.get_blob_client(name).get_blob_properties()
            except ResourceNotFoundError:
                continue
            if _record(record.kind, record.id, b"", props.metadata or {}).live(now):
                return False
            try:  # take over the expired record, unless someone else just did
                await self.client.upload_blob(
                    name, record.payload, metadata=_metadata(record), overwrite=True,
                    etag=props.etag, match_condition=_IF_MATCH,
                )
                break
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
        else:
            raise StoreError(f"insert {record.kind}/{record.id[:8]}…: too much contention")
        await self._put_markers(markers)
        return True

    async def find(self, kind: str, id: str, *, now: float) -> Record | None:
        got = await self._get(kind, id)
        return got[0] if got is not None and got[0].live(now) else None

    async def consume(self, kind: str, id: str, *, now: float) -> Record | None:
        blob = self.client.get_blob_client(self._name(kind, id))
        for _ in range(_RETRIES):
            got = await self._get(kind, id)
            if got is None or not got[0].live(now):
                return None
            record, etag = got
            if record.consumed_at is not None:
                return record
            try:
                await blob.set_blob_metadata(
                    _metadata(replace(record, consumed_at=now)),
                    etag=etag, match_condition=_IF_MATCH,
                )
                return record
            except (ResourceModifiedError, ResourceNotFoundError):
                continue  # another consumer (or writer) got there first: look again
        raise StoreError(f"consume {kind}/{id[:8]}…: too much contention")

    async def destroy(self, kind: str, id: str) -> bool:
        try:
            await self.client.delete_blob(self._name(kind, id))
        except ResourceNotFoundError:
            return False
        return True  # its markers are left to readers and purge

    async def revoke_by_grant(self, grant_id: str) -> int:
        prefix = f"{self.prefix}g/{_sha(grant_id)}/"
        markers = [(b.name, b.etag) async for b in self.client.list_blobs(name_starts_with=prefix)]
        done = await self._gather(self._revoke_one(grant_id, prefix, n, e) for n, e in markers)
        return sum(done)

    async def _revoke_one(self, grant_id: str, prefix: str, marker: str, etag: str) -> int:
        kind, _, hexid = marker[len(prefix):].partition("/")
        blob = self.client.get_blob_client(self._name(kind, _dec(bytes.fromhex(hexid))))
        removed = 0
        for _ in range(_RETRIES):
            try:
                props = await blob.get_blob_properties()
            except ResourceNotFoundError:
                break
            if _unb64((props.metadata or {}).get("grant")) != grant_id:
                break
            try:
                await blob.delete_blob(etag=props.etag, match_condition=_IF_MATCH)
                removed = 1
                break
            except ResourceNotFoundError:
                break
            except ResourceModifiedError:
                continue
        await self._drop_marker(marker, etag)
        return removed

    async def find_by_subject(
        self, kind: str, subject: str, *, now: float, limit: int = 1000
    ) -> list[Record]:
        prefix = f"{self.prefix}s/{_kind(kind)}/{_sha(subject)}/"
        out: list[Record] = []
        batch: list[tuple[str, str]] = []

        async def check(marker: str, etag: str) -> Record | None:
            got = await self._get(kind, _dec(bytes.fromhex(marker[len(prefix):])))
            if got is None or got[0].subject != subject:
                await self._drop_marker(marker, etag)
                return None
            return got[0] if got[0].live(now) else None

        async def flush() -> None:
            found = await self._gather(check(n, e) for n, e in batch)
            out.extend(r for r in found if r is not None)
            batch.clear()

        async for blob in self.client.list_blobs(name_starts_with=prefix):
            if len(out) >= limit:
                break
            batch.append((blob.name, blob.etag))
            if len(batch) >= _BATCH:
                await flush()
        if batch and len(out) < limit:
            await flush()
        return out[:limit]

    async def scan(self, kind: str, *, after: str | None = None, limit: int = 500) -> list[Record]:
        prefix = f"{self.prefix}r/{_kind(kind)}/"
        start = None if after is None else prefix + _enc(after).hex()
        out: list[Record] = []
        ids: list[str] = []

        async def flush() -> None:
            found = await self._gather(self._get(kind, i) for i in ids)
            out.extend(g[0] for g in found if g is not None)
            ids.clear()

        async for name in self.client.list_blob_names(name_starts_with=prefix, start_from=start):
            if len(out) >= limit:
                break
            id = _dec(bytes.fromhex(name[len(prefix):]))
            if after is not None and id <= after:
                continue
            ids.append(id)
            if len(ids) >= min(_BATCH, limit - len(out)):
                await flush()
        if ids and len(out) < limit:
            await flush()
        return out[:limit]

    async def purge(self, *, now: float, limit: int = 1000) -> int:
        # Markers are listed before records, so a marker found stale below was
        # stale when listed; deleting it If-Match its listed ETag cannot hit a
        # marker that a concurrent writer has since rewritten.
        markers: list[tuple[str, str]] = []
        for where in ("s/", "g/"):
            async for b in self.client.list_blobs(name_starts_with=self.prefix + where):
                markers.append((b.name, b.etag))
        records: dict[str, Record] = {}
        expired: list[tuple[str, str]] = []
        listing = self.client.list_blobs(name_starts_with=f"{self.prefix}r/", include=["metadata"])
        async for b in listing:
            kind, _, hexid = b.name[len(self.prefix) + 2:].partition("/")
            record = _record(kind, _dec(bytes.fromhex(hexid)), b"", b.metadata or {})
            records[b.name] = record
            if not record.live(now) and len(expired) < limit:
                expired.append((b.name, b.etag))
        deleted = await self._gather(self._delete_if(n, e) for n, e in expired)
        for (name, _), gone in zip(expired, deleted, strict=True):
            if gone:
                records.pop(name)
        stale = [(n, e) for n, e in markers if not self._marker_holds(n, records)][:limit]
        await self._gather(self._drop_marker(n, e) for n, e in stale)
        return sum(deleted)

    def _marker_holds(self, marker: str, records: dict[str, Record]) -> bool:
        parts = marker[len(self.prefix):].split("/")
        if len(parts) != 4:
            return True  # not ours to judge
        if parts[0] == "s":
            _, kind, digest, hexid = parts
        else:
            _, digest, kind, hexid = parts
        record = records.get(f"{self.prefix}r/{kind}/{hexid}")
        if record is None:
            return False
        value = record.subject if parts[0] == "s" else record.grant_id
        return value is not None and _sha(value) == digest

    async def _delete_if(self, name: str, etag: str) -> bool:
        try:
            await self.client.delete_blob(name, etag=etag, match_condition=_IF_MATCH)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    async def count(self, kind: str | None = None) -> int:
        prefix = f"{self.prefix}r/" + ("" if kind is None else f"{_kind(kind)}/")
        return sum([1 async for _ in self.client.list_blob_names(name_starts_with=prefix)])

    def __repr__(self) -> str:
        return f"AzureBlobBackend({self.where!r}, prefix={self.prefix!r})"

