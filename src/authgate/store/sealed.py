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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


def _aad(kind: str, id: str) -> bytes:
    return f"{kind}:{id}".encode("utf-8", "surrogatepass")


class SealedStore:
    def __init__(self, backend: Backend, sealer: Sealer, clock: Clock) -> None:
        self.backend = backend
        self.sealer = sealer
        self.clock = clock

    async def open(self) -> None:
        await self.backend.open()

    async def close(self) -> None:
        await self.backend.close()

    # -- sealing --------------------------------------------------------------

    def seal(self, kind: str, id: str, data: Mapping[str, Any]) -> bytes:
        raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
        return self.sealer.seal(raw, _aad(kind, id))

    def open_record(self, record: Record) -> Entry | None:
        try:
            raw = self.sealer.open(record.payload, _aad(record.kind, record.id))
            data = json.loads(raw)
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
