"""Copy a whole store onto another backend without signing anybody out.

Records are copied *as they are*: sealed payloads byte for byte, with their
ids, grant ids, subjects, expiry and ``consumed_at``. A payload is bound to
its ``kind:id`` (the AES-GCM associated data), not to a backend, and the
sealing and hashing keys do not change, so nothing is decrypted on the way:
refresh tokens keep rotating on the new store, a token rotated before the
move is still detected as reused after it, and every session stays valid.

The copy is resumable. Each kind is walked in id order with ``scan`` and a
checkpoint file records, after every batch, the last id copied; a rerun
continues from there, and because ``upsert`` is idempotent a batch cut short
half-way is simply copied again. Expired records are left behind.

It ends with a verification: per kind, the live records on both sides are
counted, and a random sample (1 %, at least 50 per kind) is read back from the
target, compared field by field with the source and opened with the sealing
keys -- proof that the instances pointed at the new store can read it.

Instances must not write to the source while it is copied (stop them, or
migrate during a maintenance window): a record changed after its batch was
copied would be stale in the target, and verification would say so.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..clock import Clock, SystemClock
from ..errors import ConfigError, StoreError
from ..sealing import Sealer
from .base import Backend, Record
from .kinds import KINDS
from .sealed import SealedStore

CHECKPOINT_FILE = "store-migrate.json"
"""Default checkpoint name, in the data directory."""
SAMPLE_RATE = 0.01
SAMPLE_MIN = 50
_IN_FLIGHT = 32
"""Upserts awaited together: enough to hide a network round trip, few enough for any pool."""


def _store_identity(url: str) -> str:
    """A URL reduced to what names the store: scheme alias, path case and password ignored."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower().split("+", 1)[0].replace("postgresql", "postgres")
    if scheme == "sqlite":
        return f"sqlite:{os.path.realpath(unquote(parts.path).removeprefix('/'))}"
    if scheme == "file":
        return f"file:{os.path.realpath(unquote(parts.netloc + parts.path))}"
    host = (parts.hostname or "").lower()
    user = parts.username or ""
    return f"{scheme}://{user}@{host}:{parts.port or ''}{parts.path}?{parts.query}"


def same_store(a: str, b: str) -> bool:
    """Whether two store URLs name the same store (copying a store onto itself is refused)."""
    return _store_identity(a) == _store_identity(b)


def _fingerprint(url: str) -> str:
    return hashlib.sha256(_store_identity(url).encode()).hexdigest()[:16]


@dataclass
class KindProgress:
    """Where the copy of one kind stands; persisted in the checkpoint."""

    kind: str
    total: int = 0
    """Records of this kind in the source when this run reached it (expired included)."""
    scanned: int = 0
    copied: int = 0
    expired: int = 0
    after: str | None = None
    """The last id copied: the next batch starts after it."""
    done: bool = False


class Checkpoint:
    """The resumable state of one migration between one pair of stores.

    It names the pair by fingerprints (never by URL: URLs carry passwords and
    SAS tokens), so a checkpoint is never applied to a different migration.
    """

    def __init__(self, path: Path, source_url: str, target_url: str) -> None:
        self.path = path
        self.source = _fingerprint(source_url)
        self.target = _fingerprint(target_url)
        self.kinds: dict[str, KindProgress] = {}
        self.existed = False

    @classmethod
    def load(cls, path: str | Path, source_url: str, target_url: str) -> Checkpoint:
        cp = cls(Path(path), source_url, target_url)
        if not cp.path.exists():
            return cp
        try:
            data = json.loads(cp.path.read_text(encoding="utf-8"))
            pair = (data["source"], data["target"])
            kinds = {k: KindProgress(**v) for k, v in data["kinds"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{cp.path} is not a migration checkpoint ({exc}); "
                              "remove it to start over") from None
        if pair != (cp.source, cp.target):
            raise ConfigError(f"{cp.path} belongs to a migration between other stores; "
                              "finish that one, remove the file, or pass another --checkpoint")
        cp.kinds, cp.existed = kinds, True
        return cp

    def progress(self, kind: str) -> KindProgress:
        return self.kinds.setdefault(kind, KindProgress(kind))

    def save(self) -> None:
        """Atomically, so a crash leaves the previous checkpoint or this one, never half."""
        data = {"version": 1, "source": self.source, "target": self.target,
                "kinds": {k: asdict(v) for k, v in self.kinds.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self.existed = True

    def restart(self) -> None:
        """Copy everything again on the next run (the target is known to be ours)."""
        self.kinds = {}
        self.save()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class MigrationReport:
    kinds: dict[str, KindProgress]
    complete: bool
    """False when the run stopped early (``max_batches``); run again to resume."""
    live: dict[str, int] = field(default_factory=dict)
    """Verified live records per kind, equal in source and target."""
    sampled: int = 0

    @property
    def copied(self) -> int:
        return sum(p.copied for p in self.kinds.values())

    @property
    def expired(self) -> int:
        return sum(p.expired for p in self.kinds.values())


async def migrate(
    source: Backend,
    target: Backend,
    sealer: Sealer,
    checkpoint: Checkpoint,
    *,
    batch: int = 500,
    clock: Clock | None = None,
    kinds: Sequence[str] = KINDS,
    progress: Callable[[KindProgress], None] | None = None,
    max_batches: int | None = None,
) -> MigrationReport:
    """Copy every live record of ``kinds`` from ``source`` to ``target``, then verify.

    Both backends must be open. Raises :class:`StoreError` with the reason when
    the target is not empty (and this is not a resumed run) or verification
    fails. ``max_batches`` stops early, as an interruption would (tests).
    """
    if batch < 1:
        raise ConfigError("--batch must be at least 1")
    clock = clock or SystemClock()
    if not checkpoint.existed:
        held = await target.count()
        if held:
            raise StoreError(f"the target store is not empty ({held} records); migrate into "
                             "an empty store (an interrupted run resumes from its checkpoint)")
        checkpoint.save()  # from now on the target is ours: a rerun resumes instead of refusing
    report = MigrationReport({k: checkpoint.progress(k) for k in kinds}, complete=False)
    batches = 0
    for kind in kinds:
        p = checkpoint.progress(kind)
        if not p.done:
            p.total = max(await source.count(kind), p.scanned)
        if progress is not None:
            progress(p)  # starting this kind, or it was copied by an earlier run
        while not p.done:
            if max_batches is not None and batches >= max_batches:
                return report
            records = await source.scan(kind, after=p.after, limit=batch)
            if records:
                now = clock.now()
                live = [r for r in records if r.live(now)]
                await _copy(target, live, now)
                p.after = records[-1].id
                p.scanned += len(records)
                p.copied += len(live)
                p.expired += len(records) - len(live)
                p.total = max(p.total, p.scanned)
                batches += 1
            p.done = len(records) < batch
            checkpoint.save()
            if progress is not None:
                progress(p)
    try:
        report.live, report.sampled = await verify(source, target, sealer, kinds, clock)
    except StoreError:
        checkpoint.restart()  # the next run copies everything again, over what is there
        raise
    checkpoint.remove()
    report.complete = True
    return report


async def _copy(target: Backend, records: list[Record], now: float) -> None:
    """Upsert a batch, a few at a time; every write settles before a failure is raised."""
    for i in range(0, len(records), _IN_FLIGHT):
        chunk = records[i : i + _IN_FLIGHT]
        results = await asyncio.gather(*(target.upsert(r, now=now) for r in chunk),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


async def _live_and_sample(backend: Backend, kind: str, now: float, k: int
                           ) -> tuple[int, list[Record]]:
    """How many live records of ``kind``, and ``k`` of them chosen uniformly (reservoir)."""
    n, after = 0, None
    sample: list[Record] = []
    while True:
        records = await backend.scan(kind, after=after, limit=1000)
        if not records:
            return n, sample
        after = records[-1].id
        for rec in records:
            if not rec.live(now):
                continue
            n += 1
            if len(sample) < k:
                sample.append(rec)
            elif (j := secrets.randbelow(n)) < k:
                sample[j] = rec


async def verify(source: Backend, target: Backend, sealer: Sealer, kinds: Sequence[str],
                 clock: Clock) -> tuple[dict[str, int], int]:
    """Equal live counts per kind, and a sample that reads back equal and opens.

    Returns (live records per kind, records sampled); raises
    :class:`StoreError` naming the first difference.
    """
    now = clock.now()
    opener = SealedStore(target, sealer, clock)
    live: dict[str, int] = {}
    sampled = 0
    for kind in kinds:
        want = max(SAMPLE_MIN, math.ceil(SAMPLE_RATE * await source.count(kind)))
        n_source, sample = await _live_and_sample(source, kind, now, want)
        n_target, _ = await _live_and_sample(target, kind, now, 0)
        if n_source != n_target:
            raise StoreError(f"verification failed: {n_source} live {kind} records in the "
                             f"source, {n_target} in the target")
        for rec in sample:
            got = await target.find(kind, rec.id, now=now)
            what = f"{kind} record {rec.id[:12]}…"
            if got != rec:
                raise StoreError(f"verification failed: {what} differs in the target (was the "
                                 "source written to during the migration?)")
            if opener.open_record(got) is None:
                raise StoreError(f"verification failed: {what} does not open with the sealing "
                                 "keys in use (wrong --data-dir or AUTHGATE_SEALING_KEYS?)")
        live[kind] = n_source
        sampled += len(sample)
    return live, sampled
