"""The token-store backend contract.

Backends move opaque, already-sealed bytes and know nothing about tokens
(sealing, serialisation and key rotation live once, above them, in
:mod:`authgate.store.sealed`). The contract is shaped around the lifecycle of
a credential rather than CRUD, after node-oidc-provider's adapter:

* ``upsert``  -- create or replace a record;
* ``insert``  -- create a record only if no live one has that id (idempotent
  creation of a rotation successor);
* ``find``    -- read a live record;
* ``consume`` -- atomically mark a record used, telling the caller whether it
  was the first (single-use codes, refresh-token rotation);
* ``destroy`` -- delete one record;
* ``revoke_by_grant`` -- delete every record that descends from one grant
  (a refresh-token family, the code that started it);
* ``find_by_subject`` -- the live records of one kind that belong to a user;
* ``scan`` / ``purge`` / ``count`` -- maintenance, migration, metrics.

Time is always passed in (``now``), never read by a backend, so the same
contract suite runs every backend against a frozen clock.

Record kinds used by authgate (``Record.kind``), with what ``id``,
``grant_id`` and ``subject`` hold:

=================  ===========================  ===========  ==============
kind               id                           grant_id     subject
=================  ===========================  ===========  ==============
``user``           user id (``sub``)            --           lower-cased username
``client``         client_id                    --           --
``signing_key``    JWK ``kid``                  --           --
``refresh_token``  HMAC of the token            family id    user id
``code``           HMAC of the code             family id    user id
``sso``            HMAC of the SSO session id   --           user id
``deny``           ``jti:<jti>``/``grant:<id>`` --           --
``audit``          time-ordered event id        --           user id / client
``throttle``       ``<what>:<key>``             --           --
``provider_token`` ``<user key>:<provider>``    --           user key
``gw_session``     gateway session id           --           user key
``gw_login``       pending upstream login state --           --
=================  ===========================  ===========  ==============

Audit events name their family in the payload, never as ``grant_id``: revoking a
family deletes its records by ``grant_id``, and its audit trail must outlive it.

The list every tool iterates (migration, stats) is :data:`authgate.store.kinds.KINDS`;
a test fails when a ``KIND`` constant is missing from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Record:
    """One stored record. ``payload`` is sealed bytes the backend must not interpret."""

    kind: str
    id: str
    payload: bytes
    expires_at: float | None = None
    """Seconds since the epoch after which the record is gone; None: never expires."""
    grant_id: str | None = None
    """The grant (refresh-token family) this record descends from, for ``revoke_by_grant``."""
    subject: str | None = None
    """Secondary key for ``find_by_subject`` (usually the user id)."""
    consumed_at: float | None = None
    """When ``consume`` first marked the record used; None while unused."""

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    def with_payload(self, payload: bytes) -> Record:
        return replace(self, payload=payload)


@runtime_checkable
class Backend(Protocol):
    """What every token-store backend implements. All methods are coroutine-safe."""

    url_scheme: str

    async def open(self) -> None:
        """Connect and apply schema migrations. Idempotent."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def upsert(self, record: Record, *, now: float) -> None:
        """Create or replace ``(record.kind, record.id)`` with every field of ``record``."""
        ...

    async def insert(self, record: Record, *, now: float) -> bool:
        """Create the record unless a live one with that id exists. True if created."""
        ...

    async def find(self, kind: str, id: str, *, now: float) -> Record | None:
        """The live record, or None when absent or expired."""
        ...

    async def consume(self, kind: str, id: str, *, now: float) -> Record | None:
        """Atomically set ``consumed_at = now`` if it is unset.

        Returns the record *as it was before the call*: ``consumed_at is None``
        means this caller won; otherwise it holds the first consumption time.
        None when absent or expired. Exactly one of any number of concurrent
        callers (in any number of processes) sees ``consumed_at is None``.
        """
        ...

    async def destroy(self, kind: str, id: str) -> bool:
        """Delete one record. True if it existed."""
        ...

    async def revoke_by_grant(self, grant_id: str) -> int:
        """Delete every record whose ``grant_id`` matches. Returns how many."""
        ...

    async def find_by_subject(
        self, kind: str, subject: str, *, now: float, limit: int = 1000
    ) -> list[Record]:
        """Live records of ``kind`` with this subject, ordered by id."""
        ...

    async def scan(self, kind: str, *, after: str | None = None, limit: int = 500) -> list[Record]:
        """Records of ``kind`` (expired ones included) with id > ``after``, ordered by id."""
        ...

    async def purge(self, *, now: float, limit: int = 1000) -> int:
        """Delete at most ``limit`` expired records. Returns how many."""
        ...

    async def count(self, kind: str | None = None) -> int:
        """How many records are stored (of one kind, or in all)."""
        ...
