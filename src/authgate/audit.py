"""The audit log: who got, rotated, reused or lost which grant, when and why.

Events are records of kind ``audit`` keyed by a time-ordered id, with the
user (or ``client:<id>``) as subject so ``authgate audit --user NAME`` is an
index lookup. An event never contains a token -- only the family id, which is
a random identifier, not a credential.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .hashing import new_id
from .store.sealed import SealedStore, Write

KIND = "audit"
RETENTION = 400 * 86400
log = logging.getLogger("authgate.audit")


@dataclass(frozen=True)
class Event:
    at: float
    event: str
    user: str | None
    client: str | None
    family: str | None
    reason: str

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Event:
        return cls(data["at"], data["event"], data.get("user"), data.get("client"),
                   data.get("family"), data.get("reason", ""))


class AuditLog:
    def __init__(self, store: SealedStore, retention: float = RETENTION) -> None:
        self.store = store
        self.retention = retention
        self._last: tuple[int, int] = (0, 0)  # (milliseconds, sequence) of the last event id

    def _next_id(self, now: float) -> str:
        """Time-ordered ids: events of one process sort in the order they happened,
        even within one millisecond (a sequence number breaks the tie)."""
        ms = int(now * 1000)
        last_ms, seq = self._last
        self._last = (last_ms, seq + 1) if ms <= last_ms else (ms, 0)
        return f"{self._last[0]:015d}-{self._last[1]:06d}-{new_id(6)}"

    def write(self, event: str, *, user: str | None = None, client: str | None = None,
              family: str | None = None, reason: str = "") -> Write:
        """The event as a record to store along with the change it describes
        (:meth:`SealedStore.rotate`); :meth:`log` it once that stands."""
        now = self.store.clock.now()
        return Write(KIND, self._next_id(now), {
            "at": now, "event": event, "user": user, "client": client,
            "family": family, "reason": reason,
        }, expires_at=now + self.retention, subject=user or (f"client:{client}" if client else None),
            create=False)

    @staticmethod
    def log(write: Write) -> None:
        d = write.data
        log.info("audit %s user=%s client=%s family=%s reason=%s", d["event"], d["user"], d["client"],
                 d["family"], d["reason"])

    async def record(self, event: str, *, user: str | None = None, client: str | None = None,
                     family: str | None = None, reason: str = "") -> None:
        w = self.write(event, user=user, client=client, family=family, reason=reason)
        await self.store.write(w)
        self.log(w)

    async def for_subject(self, subject: str, limit: int = 1000) -> list[Event]:
        entries = await self.store.by_subject(KIND, subject, limit=limit)
        return [Event.from_data(e.data) for e in entries]
