"""Keeping a store small and its data under current keys: purge, reseal, stats, retire.

**Purge.** Revoked records are deleted when they are revoked
(``revoke_by_grant``), so what accumulates is what has expired. It is deleted
in bounded batches, yielding to the event loop between them, so neither a
``serve`` process running :func:`purge_periodically` nor a database holding a
long delete's locks stalls the requests around it. (Redis expires records by
itself; a purge there only drops their index entries.)

**Reseal.** ``authgate keys rotate --sealing`` puts a new sealing key first:
everything written from then on is sealed with it, and older records move
over when they are next written. :func:`reseal` moves the rest eagerly, so an
old key -- a suspected-compromised one, say -- can be retired without waiting
for every record it sealed to expire. Each stale record is re-read right
before it is re-sealed and written back with every other field of that fresh
read (``consumed_at`` above all), so a refresh token consumed meanwhile is not
un-consumed. The backend contract has no compare-and-swap, so a write racing
in the single round trip between that read and the write can still be lost;
reseal when traffic is low, after every instance has the new key.

**Retire.** :func:`usage` counts live records per sealing key id; a key no
live record uses can leave the key list (:func:`retire_sealing_key`), which
refuses while one still does. Expired records sealed with it need not be
re-sealed: they can never be read again anyway, and purge removes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from ..clock import Clock
from ..errors import ConfigError, CorruptRecord, StoreError
from ..keystore import LocalKeys, save_local_keys
from .base import Backend, Record
from .kinds import KINDS
from .sealed import SealedStore

log = logging.getLogger("authgate.store")

DEFAULT_PURGE_INTERVAL = 600.0
"""How often ``serve`` purges (10 minutes): expired records cost space, not correctness."""
PURGE_BATCH = 1000
RESEAL_BATCH = 500
UNREADABLE = "?"
"""The key id :func:`usage` reports for records that are not sealed blobs at all."""


@dataclass
class PurgeReport:
    removed: int = 0
    batches: int = 0
    complete: bool = False
    """False when ``max_batches`` stopped the purge with records possibly left."""
    by_kind: dict[str, int] | None = None
    """Removed per kind when that could be told exactly (see :func:`purge_expired`)."""


async def _counts(backend: Backend, kinds: Sequence[str]) -> dict[str, int]:
    return {kind: await backend.count(kind) for kind in kinds}


async def purge_expired(backend: Backend, clock: Clock, *, batch: int = PURGE_BATCH,
                        max_batches: int | None = None, per_kind: bool = False,
                        kinds: Sequence[str] = KINDS) -> PurgeReport:
    """Delete expired records, ``batch`` at a time, until none is left or ``max_batches``.

    ``per_kind`` counts each kind before and after (two ``count`` calls per
    kind): the breakdown is reported only when it adds up to exactly what
    purge removed, i.e. nobody else wrote meanwhile -- otherwise just the total.
    """
    if batch < 1:
        raise ConfigError("--batch must be at least 1")
    before = await _counts(backend, kinds) if per_kind else None
    report = PurgeReport()
    while max_batches is None or report.batches < max_batches:
        removed = await backend.purge(now=clock.now(), limit=batch)
        report.batches += 1
        report.removed += removed
        if removed < batch:
            report.complete = True
            break
        await asyncio.sleep(0)  # let requests run between batches
    if before is not None:
        after = await _counts(backend, kinds)
        delta = {kind: before[kind] - after[kind] for kind in kinds}
        if min(delta.values(), default=0) >= 0 and sum(delta.values()) == report.removed:
            report.by_kind = {kind: n for kind, n in delta.items() if n}
    return report


async def purge_periodically(store: SealedStore, interval: float = DEFAULT_PURGE_INTERVAL,
                             batch: int = PURGE_BATCH) -> NoReturn:
    """Purge now and then every ``interval`` seconds, for ``serve``; cancel the task to stop.

    A failing store is logged and tried again next time: the purge is
    housekeeping and must never take the server down with it.
    """
    while True:
        try:
            report = await purge_expired(store.backend, store.clock, batch=batch)
        except Exception:
            log.warning("purging expired records failed; next attempt in %gs", interval,
                        exc_info=True)
        else:
            if report.removed:
                log.info("purged %d expired records", report.removed)
        await asyncio.sleep(interval)


@dataclass
class ResealReport:
    scanned: int = 0
    resealed: int = 0
    current: int = 0
    """Already sealed with the active key."""
    expired: int = 0
    """Left alone: nothing will read them again; purge removes them."""
    vanished: int = 0
    """Deleted, or expired, between the scan and the re-seal."""
    unreadable: int = 0
    """Open with no key we hold (logged); they stay as they are."""
    by_kind: Counter[str] = field(default_factory=Counter)
    """Re-sealed records per kind."""


async def _reseal_one(store: SealedStore, rec: Record) -> str:
    """Re-seal one record if it needs it; returns the :class:`ResealReport` field to count."""
    sealer, backend = store.sealer, store.backend
    now = store.clock.now()
    if not rec.live(now):
        return "expired"
    try:
        if not sealer.needs_reseal(rec.payload):
            return "current"
        fresh = await backend.find(rec.kind, rec.id, now=now)
        if fresh is None:
            return "vanished"
        if not sealer.needs_reseal(fresh.payload):
            return "current"
    except CorruptRecord:
        return "unreadable"
    entry = store.open_record(fresh)
    if entry is None:
        return "unreadable"
    payload = store.seal(fresh.kind, fresh.id, entry.data)
    await backend.upsert(fresh.with_payload(payload), now=now)
    return "resealed"


async def reseal(store: SealedStore, *, batch: int = RESEAL_BATCH,
                 kinds: Sequence[str] = KINDS) -> ResealReport:
    """Re-seal every live record not sealed with the active key; every other field kept."""
    if batch < 1:
        raise ConfigError("--batch must be at least 1")
    report = ResealReport()
    for kind in kinds:
        after: str | None = None
        while records := await store.backend.scan(kind, after=after, limit=batch):
            after = records[-1].id
            for rec in records:
                outcome = await _reseal_one(store, rec)
                report.scanned += 1
                setattr(report, outcome, getattr(report, outcome) + 1)
                if outcome == "resealed":
                    report.by_kind[kind] += 1
            await asyncio.sleep(0)
    return report


@dataclass
class KindUsage:
    stored: int = 0
    live: int = 0
    by_kid: Counter[str] = field(default_factory=Counter)
    """Live records per sealing key id."""


@dataclass
class Usage:
    kinds: dict[str, KindUsage]

    @property
    def by_kid(self) -> Counter[str]:
        """Live records per sealing key id, all kinds together."""
        total: Counter[str] = Counter()
        for k in self.kinds.values():
            total.update(k.by_kid)
        return total


async def usage(store: SealedStore, *, kinds: Sequence[str] = KINDS) -> Usage:
    """Records per kind (stored, live) and live records per sealing key id. Reads every record."""
    now = store.clock.now()
    out = Usage({})
    for kind in kinds:
        u = out.kinds[kind] = KindUsage()
        after: str | None = None
        while records := await store.backend.scan(kind, after=after, limit=1000):
            after = records[-1].id
            u.stored += len(records)
            for rec in records:
                if not rec.live(now):
                    continue
                u.live += 1
                try:
                    u.by_kid[store.sealer.kid_of(rec.payload)] += 1
                except CorruptRecord:
                    u.by_kid[UNREADABLE] += 1
    return out


def check_retirable(keys: LocalKeys, kid: str) -> None:
    """Refuse an unknown key id or the active key (which seals everything new)."""
    kids = [k.kid for k in keys.sealing]
    if kid not in kids:
        raise ConfigError(f"there is no sealing key {kid!r}; the keys are {', '.join(kids)}")
    if kid == kids[0]:
        raise ConfigError(f"{kid} is the active sealing key; rotate first "
                          "(authgate keys rotate --sealing), then reseal")


async def retire_sealing_key(store: SealedStore, keys: LocalKeys, kid: str) -> None:
    """Drop sealing key ``kid`` from ``keys`` (and its file), unless a live record uses it.

    The active key cannot be retired (rotate first), and key material from
    the environment has to be changed there (:func:`save_local_keys` says so).
    """
    check_retirable(keys, kid)
    in_use = (await usage(store)).by_kid[kid]
    if in_use:
        raise StoreError(f"{in_use} live records are still sealed with {kid}; "
                         "run `authgate store reseal` first")
    keys.sealing = [k for k in keys.sealing if k.kid != kid]
    save_local_keys(keys)
