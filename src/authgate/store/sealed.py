"""The layer above the backends: JSON payloads sealed with AES-256-GCM.

Every payload is sealed under the active sealing key with ``kind:id`` as
associated data, so a record that is truncated, bit-flipped or copied onto
another id fails to open. A record that fails to open is logged (never its
content) and treated as absent: authgate fails closed and stays up.
Records sealed under an older key are re-sealed whenever they are written,
and eagerly by ``authgate store reseal``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..clock import Clock
from ..errors import CorruptRecord
from ..sealing import Sealer
from .base import Backend, Record

log = logging.getLogger("authgate.store")

Data = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Entry:
    """An opened record."""

    id: str
    data: Data
    expires_at: float | None
    grant_id: str | None
    subject: str | None
    consumed_at: float | None


@dataclass(frozen=True, slots=True)
class Write:
    """A record to write as part of a rotation (:meth:`SealedStore.rotate`)."""

    kind: str
    id: str
    data: Data
    expires_at: float | None = None
    grant_id: str | None = None
    subject: str | None = None
    create: bool = True
    """True: ``insert`` (the successor; taken back if the rotation does not stand);
    False: ``upsert`` (a record *about* the rotation, e.g. its audit event)."""


@runtime_checkable
class ConsumeThen(Protocol):
    """An optional backend capability: ``consume`` and the writes that follow from the
    consumed record as one atomic step (:meth:`SealedStore.rotate` uses it when present)."""

    async def consume_then(self, kind: str, id: str, *, now: float,
                           then: Callable[[Record], Iterable[tuple[Record, bool]]]) -> Record | None:
        """``consume``; when this caller won, also write the ``(record, create)`` pairs
        ``then(record)`` returns (``create``: ``insert``, else ``upsert``).

        No other caller may consume the record in between, and the writes happen only
        while the consumed record still exists: SQLite does both in one stretch of its
        transaction; PostgreSQL and Redis take a second step that writes only if the
        record is still there (a revocation of its family in between deletes it). Returns
        what ``consume`` returned, or None when that second step found the record gone
        (nothing was written; the refresh fails as ``invalid_grant``)."""
        ...


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""Built once: ``json.dumps`` with options builds an encoder on every call."""
_DECODER = json.JSONDecoder()
"""Payloads are the UTF-8 that :meth:`SealedStore.seal` wrote: no encoding to detect."""


def _aad(kind: str, id: str) -> bytes:
    return f"{kind}:{id}".encode("utf-8", "surrogatepass")


class SealedStore:
    def __init__(self, backend: Backend, sealer: Sealer, clock: Clock) -> None:
        self.backend = backend
        self.sealer = sealer
        self.clock = clock
        self._consume_then = backend.consume_then if isinstance(backend, ConsumeThen) else None
        """Looked up once: a runtime Protocol check costs microseconds per call."""

    async def open(self) -> None:
        await self.backend.open()

    async def close(self) -> None:
        await self.backend.close()

    # -- sealing --------------------------------------------------------------

    def seal(self, kind: str, id: str, data: Mapping[str, Any]) -> bytes:
        raw = _ENCODER.encode(data).encode("utf-8", "surrogatepass")
        return self.sealer.seal(raw, _aad(kind, id))

    def open_record(self, record: Record) -> Entry | None:
        try:
            raw = self.sealer.open(record.payload, _aad(record.kind, record.id))
            data = _DECODER.decode(raw.decode("utf-8", "surrogatepass"))
        except (CorruptRecord, ValueError) as exc:
            log.error("store record %s/%s… fails to open (%s); treating it as absent",
                      record.kind, record.id[:8], exc)
            return None
        return Entry(record.id, data, record.expires_at, record.grant_id, record.subject,
                     record.consumed_at)

    def record(
        self,
        kind: str,
        id: str,
        data: Mapping[str, Any],
        *,
        expires_at: float | None = None,
        grant_id: str | None = None,
        subject: str | None = None,
    ) -> Record:
        return Record(kind, id, self.seal(kind, id, data), expires_at, grant_id, subject)

    def sealed(self, w: Write) -> Record:
        return self.record(w.kind, w.id, w.data, expires_at=w.expires_at, grant_id=w.grant_id,
                           subject=w.subject)

    # -- lifecycle --------------------------------------------------------------

    async def put(self, kind: str, id: str, data: Mapping[str, Any], *,
                  expires_at: float | None = None, grant_id: str | None = None,
                  subject: str | None = None) -> None:
        rec = self.record(kind, id, data, expires_at=expires_at, grant_id=grant_id, subject=subject)
        await self.backend.upsert(rec, now=self.clock.now())

    async def add(self, kind: str, id: str, data: Mapping[str, Any], *,
                  expires_at: float | None = None, grant_id: str | None = None,
                  subject: str | None = None) -> bool:
        rec = self.record(kind, id, data, expires_at=expires_at, grant_id=grant_id, subject=subject)
        return await self.backend.insert(rec, now=self.clock.now())

    async def write(self, w: Write) -> bool:
        """Store ``w``: ``insert`` when ``w.create`` (False: a live record is there), else ``upsert``."""
        if w.create:
            return await self.add(w.kind, w.id, w.data, expires_at=w.expires_at,
                                  grant_id=w.grant_id, subject=w.subject)
        await self.put(w.kind, w.id, w.data, expires_at=w.expires_at, grant_id=w.grant_id,
                       subject=w.subject)
        return True

    async def get(self, kind: str, id: str) -> Entry | None:
        rec = await self.backend.find(kind, id, now=self.clock.now())
        return self.open_record(rec) if rec is not None else None

    async def exists(self, kind: str, id: str, *, now: float | None = None) -> bool:
        """Whether a live record is there (nothing is opened)."""
        return await self.backend.find(kind, id, now=self.clock.now() if now is None else now) is not None

    async def consume(self, kind: str, id: str) -> Entry | None:
        """Mark used; ``Entry.consumed_at is None`` means this caller was first."""
        rec = await self.backend.consume(kind, id, now=self.clock.now())
        return self.open_record(rec) if rec is not None else None

    async def rotate(self, kind: str, id: str,
                     follow: Callable[[Entry], list[Write]]) -> tuple[Entry | None, bool]:
        """Consume a record and, if this caller was first, make the writes ``follow``
        derives from it (refresh-token rotation: the successor and its audit event).

        Returns the entry as it was before (``consume``) and whether the writes stand.
        They do not when the record was consumed before (``follow`` is not called), or
        when it was revoked (deleted) between the consume and the writes: then the
        created records are taken back, so a revoked family never gains a live member.
        A backend offering :class:`ConsumeThen` does it all in one atomic step; on the
        others the consumed record's presence is checked once the creates are stored.
        """
        now = self.clock.now()
        if self._consume_then is not None:
            opened: list[Entry | None] = []

            def then(rec: Record) -> list[tuple[Record, bool]]:
                entry = self.open_record(rec)
                opened.append(entry)
                if entry is None:
                    return []
                return [(self.sealed(w), w.create) for w in follow(entry)]

            rec = await self._consume_then(kind, id, now=now, then=then)
            if rec is None:
                return None, False
            if rec.consumed_at is not None:
                return self.open_record(rec), False
            return opened[0], opened[0] is not None
        entry = await self.consume(kind, id)
        if entry is None or entry.consumed_at is not None:
            return entry, False
        writes = follow(entry)
        creates = [w for w in writes if w.create]
        for w in creates:
            await self.write(w)
        if creates and not await self.exists(kind, id, now=now):
            for w in creates:
                await self.delete(w.kind, w.id)
            return entry, False
        for w in writes:
            if not w.create:
                await self.write(w)
        return entry, True

    async def delete(self, kind: str, id: str) -> bool:
        return await self.backend.destroy(kind, id)

    async def revoke_grant(self, grant_id: str) -> int:
        return await self.backend.revoke_by_grant(grant_id)

    async def by_subject(self, kind: str, subject: str, *, limit: int = 1000) -> list[Entry]:
        recs = await self.backend.find_by_subject(kind, subject, now=self.clock.now(), limit=limit)
        return [e for e in map(self.open_record, recs) if e is not None]

    async def all(self, kind: str, *, live_only: bool = True) -> list[Entry]:
        """Every record of a kind (CLI listings; not for hot paths)."""
        out: list[Entry] = []
        after: str | None = None
        now = self.clock.now()
        while True:
            batch = await self.backend.scan(kind, after=after, limit=500)
            if not batch:
                return out
            after = batch[-1].id
            for rec in batch:
                if live_only and not rec.live(now):
                    continue
                entry = self.open_record(rec)
                if entry is not None:
                    out.append(entry)

    async def purge(self, *, limit: int = 1000) -> int:
        return await self.backend.purge(now=self.clock.now(), limit=limit)
