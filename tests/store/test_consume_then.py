"""``consume_then``: the optional backend capability refresh rotation uses
(:class:`authgate.store.sealed.ConsumeThen`): consume a record and, if this caller won, write
what follows from it -- never for a loser, and never into a grant revoked meanwhile.

Run against every backend that offers it; the others are rotated by ``SealedStore.rotate``'s
fallback (consume, insert, check, upsert), covered by the refresh-token tests.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import asyncpg
import pytest

from authgate.clock import FrozenClock
from authgate.store import Backend, Record

from ..conftest import POSTGRES
from .conftest import MARKS, opened

HOUR = 3600.0
Then = Callable[[Record], Iterable[tuple[Record, bool]]]


OFFERED_BY = ("sqlite", "postgres", "redis")
"""The backends with ``consume_then``; file and azureblob rotate through the fallback."""


@pytest.fixture(params=[pytest.param(n, id=n, marks=MARKS.get(n, ())) for n in OFFERED_BY])
def backend_url(request: pytest.FixtureRequest, store_url: Callable[[str], str]) -> str:
    """Only the backends that offer it (the store conftest's fixture takes every backend)."""
    name: str = request.param
    return store_url(name)


def consume_then(backend: Backend) -> Any:
    method = getattr(backend, "consume_then", None)
    assert method is not None, f"the {backend.url_scheme} backend no longer offers consume_then"
    return method


@pytest.mark.parametrize("scheme", ["file", "azureblob"])
def test_the_other_backends_rotate_through_the_fallback(scheme: str) -> None:
    from authgate.store.azureblob import AzureBlobBackend
    from authgate.store.file import FileBackend

    cls = {"file": FileBackend, "azureblob": AzureBlobBackend}[scheme]
    assert not hasattr(cls, "consume_then"), f"{scheme} offers consume_then: add it to OFFERED_BY"


def parent(now: float, id: str = "rt-1", grant: str = "fam") -> Record:
    return Record("refresh_token", id, b"parent", expires_at=now + HOUR, grant_id=grant,
                  subject="alice")


def follows(now: float, grant: str = "fam", calls: list[Record] | None = None) -> Then:
    """The successor (created) and an audit event (upserted), as a rotation writes them."""
    def then(rec: Record) -> list[tuple[Record, bool]]:
        if calls is not None:
            calls.append(rec)
        return [(Record("refresh_token", f"{rec.id}.next", b"successor", expires_at=now + HOUR,
                        grant_id=grant, subject="alice"), True),
                (Record("audit", f"ev-{rec.id}", b"event", expires_at=now + HOUR,
                        subject="alice"), False)]
    return then


async def test_the_winner_writes_what_follows(backend: Backend, clock: FrozenClock) -> None:
    now = clock.now()
    await backend.upsert(parent(now), now=now)
    calls: list[Record] = []
    got = await consume_then(backend)("refresh_token", "rt-1", now=now,
                                      then=follows(now, calls=calls))
    assert got == parent(now)  # as it was: unconsumed, so this caller won
    assert calls == [parent(now)]
    found = await backend.find("refresh_token", "rt-1", now=now)
    assert found is not None and found.consumed_at == now
    successor = await backend.find("refresh_token", "rt-1.next", now=now)
    assert successor is not None and successor.payload == b"successor"
    assert successor.grant_id == "fam" and successor.consumed_at is None
    assert await backend.find("audit", "ev-rt-1", now=now) is not None
    assert [r.id for r in await backend.find_by_subject("refresh_token", "alice", now=now)] == [
        "rt-1", "rt-1.next"]
    assert await backend.revoke_by_grant("fam") == 2


async def test_a_loser_or_a_missing_record_writes_nothing(backend: Backend,
                                                          clock: FrozenClock) -> None:
    now = clock.now()
    method = consume_then(backend)
    await backend.upsert(parent(now), now=now)
    await backend.consume("refresh_token", "rt-1", now=now - 5)
    calls: list[Record] = []
    got = await method("refresh_token", "rt-1", now=now, then=follows(now, calls=calls))
    assert got is not None and got.consumed_at == now - 5
    assert calls == []
    assert await backend.find("refresh_token", "rt-1.next", now=now) is None
    assert await method("refresh_token", "absent", now=now, then=follows(now, calls=calls)) is None
    await backend.upsert(Record("refresh_token", "old", b"x", expires_at=now - 1), now=now)
    assert await method("refresh_token", "old", now=now, then=follows(now, calls=calls)) is None
    assert calls == []
    assert await backend.count("audit") == 0


async def test_create_keeps_a_live_record_and_replaces_an_expired_one(
        backend: Backend, clock: FrozenClock) -> None:
    """``create`` has ``insert``'s meaning: a live record of that id stays as it is."""
    now = clock.now()
    method = consume_then(backend)
    for id in ("a", "b"):
        await backend.upsert(parent(now, id), now=now)
    await backend.upsert(Record("refresh_token", "a.next", b"live", expires_at=now + 60), now=now)
    await backend.upsert(Record("refresh_token", "b.next", b"stale", expires_at=now - 60), now=now)
    for id in ("a", "b"):
        assert await method("refresh_token", id, now=now, then=follows(now)) is not None
    a = await backend.find("refresh_token", "a.next", now=now)
    b = await backend.find("refresh_token", "b.next", now=now)
    assert a is not None and a.payload == b"live"
    assert b is not None and b.payload == b"successor"


async def test_one_winner_among_concurrent_callers(backend: Backend, clock: FrozenClock) -> None:
    now = clock.now()
    method = consume_then(backend)
    await backend.upsert(parent(now), now=now)
    calls: list[Record] = []
    got = await asyncio.gather(*(method("refresh_token", "rt-1", now=now,
                                        then=follows(now, calls=calls)) for _ in range(12)))
    assert sum(1 for r in got if r is not None and r.consumed_at is None) == 1
    assert len(calls) == 1
    assert await backend.count("refresh_token") == 2
    assert await backend.count("audit") == 1


# --- a revocation between the consume and the writes (the two-step backends) -----------

TWO_STEP = ("postgres", "redis")


@pytest.fixture(params=[pytest.param(n, id=n, marks=MARKS[n]) for n in TWO_STEP])
async def two_step(request: pytest.FixtureRequest,
                   store_url: Callable[[str], str]) -> AsyncIterator[tuple[Backend, str]]:
    url = store_url(request.param)
    async with opened(url) as backend:
        yield backend, url


def revoke_elsewhere(url: str, grant: str) -> int:
    """Revoke from another instance (its own connections and event loop), synchronously."""
    out: list[int] = []

    async def go() -> None:
        async with opened(url) as other:
            out.append(await other.revoke_by_grant(grant))

    thread = threading.Thread(target=lambda: asyncio.run(go()))
    thread.start()
    thread.join(30)
    assert out, "the other instance did not revoke"
    return out[0]


async def test_a_grant_revoked_after_the_consume_gets_no_writes(
        two_step: tuple[Backend, str], clock: FrozenClock) -> None:
    """Revoked by another instance between the consume and the writes: nothing is written
    and the result is None, as for a record that is gone."""
    backend, url = two_step
    now = clock.now()
    await backend.upsert(parent(now), now=now)
    inner = follows(now)
    revoked: list[int] = []

    def then(rec: Record) -> Iterable[tuple[Record, bool]]:
        revoked.append(revoke_elsewhere(url, "fam"))  # lands after the consume, before the writes
        return inner(rec)

    assert await consume_then(backend)("refresh_token", "rt-1", now=now, then=then) is None
    assert revoked == [1]
    assert await backend.find("refresh_token", "rt-1.next", now=now) is None
    assert await backend.count("audit") == 0
    assert await backend.count() == 0


@pytest.mark.postgres
async def test_postgres_revocation_waits_for_writes_holding_the_record(
        store_url: Callable[[str], str], clock: FrozenClock) -> None:
    """A revocation that meets the consumed record locked by writes in progress deletes
    those writes too once they commit (its first DELETE cannot see them: it runs again)."""
    url = store_url("postgres")
    now = clock.now()
    async with opened(url) as backend:
        await backend.upsert(parent(now), now=now)
        schema = url.rsplit("schema=", 1)[1]
        conn = await asyncpg.connect(POSTGRES, server_settings={"search_path": schema})
        try:
            tx = conn.transaction()
            await tx.start()  # what STATEMENTS["follow"] does, held open
            await conn.execute("SELECT 1 FROM authgate_records WHERE kind = 'refresh_token' "
                               "AND id = 'rt-1' FOR KEY SHARE")
            await conn.execute("INSERT INTO authgate_records (kind, id, payload, expires_at, "
                               "grant_id) VALUES ('refresh_token', 'rt-1.next', 'x', $1, 'fam')",
                               now + HOUR)
            revoke = asyncio.create_task(backend.revoke_by_grant("fam"))
            await asyncio.sleep(0.3)
            assert not revoke.done()  # waiting for the lock on rt-1
            await tx.commit()
            assert await asyncio.wait_for(revoke, 10) == 2
        finally:
            await conn.close()
        assert await backend.count() == 0


async def test_any_number_of_writes_of_either_kind(backend: Backend, clock: FrozenClock) -> None:
    """Not only a rotation's shape (one create, one upsert): none, upserts only, creates only."""
    now = clock.now()
    method = consume_then(backend)
    for id in ("a", "b", "c"):
        await backend.upsert(parent(now, id), now=now)
    await backend.upsert(Record("audit", "kept", b"old"), now=now)
    shapes: dict[str, list[tuple[Record, bool]]] = {
        "a": [],
        "b": [(Record("audit", "kept", b"new"), False), (Record("audit", "b2", b"x"), False)],
        "c": [(Record("code", "c1", b"x", expires_at=now + 60), True),
              (Record("code", "c2", b"x", grant_id="fam"), True),
              (Record("code", "c3", b"x", subject="alice"), True)],
    }
    for id, writes in shapes.items():
        got = await method("refresh_token", id, now=now, then=lambda _rec, w=writes: w)
        assert got is not None and got.consumed_at is None
    kept = await backend.find("audit", "kept", now=now)
    assert kept is not None and kept.payload == b"new"
    assert {r.id for r in await backend.scan("code")} == {"c1", "c2", "c3"}
    assert await backend.count("audit") == 2


async def test_racing_revocations_never_leave_a_live_successor(
        two_step: tuple[Backend, str], clock: FrozenClock) -> None:
    """Rotations and revocations of the same grant from two instances, started together with
    random offsets, many times: whatever the interleaving, the grant ends empty."""
    backend, url = two_step
    now = clock.now()
    rng = random.Random(4)
    async with opened(url) as other:
        for round_ in range(40):
            grant = f"fam-{round_}"
            await backend.upsert(parent(now, f"rt-{round_}", grant), now=now)

            async def rotate(id: str = f"rt-{round_}", grant: str = grant) -> None:
                await asyncio.sleep(rng.random() * 0.002)
                await consume_then(backend)("refresh_token", id, now=now, then=follows(now, grant))

            async def revoke(grant: str = grant) -> None:
                await asyncio.sleep(rng.random() * 0.002)
                await other.revoke_by_grant(grant)

            await asyncio.gather(rotate(), revoke())
            left = [r.id for r in await backend.find_by_subject("refresh_token", "alice", now=now)
                    if r.grant_id == grant]
            assert left == [], (round_, left)
