"""The token-store contract (authgate.store.base.Backend), run against every backend.

Time is a frozen clock passed in as ``now``, so expiry is tested exactly
(``expires_at == now`` is already expired) and without sleeping.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import replace

from authgate.clock import FrozenClock
from authgate.store import Backend, Record

from .conftest import opened

HOUR = 3600.0


def rec(kind: str, id: str, **fields: object) -> Record:
    fields.setdefault("payload", f"sealed:{kind}:{id}".encode())
    return Record(kind=kind, id=id, **fields)  # type: ignore[arg-type]


async def test_upsert_find_roundtrip_every_field(backend: Backend, clock: FrozenClock) -> None:
    """Every field written by upsert comes back unchanged from find."""
    now = clock.now()
    record = Record(kind="refresh_token", id="rt-1", payload=bytes(range(256)),
                    expires_at=now + HOUR + 0.125, grant_id="fam-1", subject="user-1",
                    consumed_at=now - 1.5)
    await backend.upsert(record, now=now)
    assert await backend.find("refresh_token", "rt-1", now=now) == record


async def test_upsert_replaces_every_field(backend: Backend, clock: FrozenClock) -> None:
    """A second upsert replaces the record whole, indexes included."""
    now = clock.now()
    await backend.upsert(rec("code", "c", expires_at=now + 60, grant_id="g1", subject="s1",
                             consumed_at=now), now=now)
    plain = rec("code", "c", payload=b"v2")
    await backend.upsert(plain, now=now)
    assert await backend.find("code", "c", now=now) == plain
    assert await backend.find_by_subject("code", "s1", now=now) == []
    assert await backend.revoke_by_grant("g1") == 0
    moved = rec("code", "c", subject="s2", grant_id="g2")
    await backend.upsert(moved, now=now)
    assert await backend.find_by_subject("code", "s2", now=now) == [moved]
    assert await backend.revoke_by_grant("g2") == 1
    assert await backend.find("code", "c", now=now) is None


async def test_find_absent_and_other_kind(backend: Backend, clock: FrozenClock) -> None:
    """find is keyed by kind and id together."""
    await backend.upsert(rec("code", "x"), now=clock.now())
    assert await backend.find("code", "y", now=clock.now()) is None
    assert await backend.find("sso", "x", now=clock.now()) is None


async def test_find_after_expiry(backend: Backend, clock: FrozenClock) -> None:
    """A record is found until expires_at and gone from that instant on."""
    await backend.upsert(rec("sso", "s", expires_at=clock.now() + 60), now=clock.now())
    clock.advance(59.5)
    assert await backend.find("sso", "s", now=clock.now()) is not None
    clock.advance(0.5)
    assert await backend.find("sso", "s", now=clock.now()) is None


async def test_insert_only_over_absent_or_expired(backend: Backend, clock: FrozenClock) -> None:
    """insert creates, refuses to replace a live record, and takes over an expired one."""
    now = clock.now()
    first = rec("refresh_token", "succ", payload=b"first", expires_at=now + 60, grant_id="g")
    assert await backend.insert(first, now=now) is True
    assert await backend.insert(rec("refresh_token", "succ", payload=b"second"), now=now) is False
    assert await backend.find("refresh_token", "succ", now=now) == first
    clock.advance(60)
    third = rec("refresh_token", "succ", payload=b"third", expires_at=clock.now() + 60)
    assert await backend.insert(third, now=clock.now()) is True
    assert await backend.find("refresh_token", "succ", now=clock.now()) == third
    forever = rec("client", "c1")
    assert await backend.insert(forever, now=clock.now()) is True
    assert await backend.insert(rec("client", "c1", payload=b"x"), now=clock.now() + 1e9) is False


async def test_consume_is_single_use(backend: Backend, clock: FrozenClock) -> None:
    """The first consume wins; later ones see when it was consumed."""
    now = clock.now()
    code = rec("code", "abc", expires_at=now + 60, grant_id="g", subject="u")
    await backend.upsert(code, now=now)
    assert await backend.consume("code", "abc", now=now + 1) == code
    clock.advance(2)
    again = await backend.consume("code", "abc", now=clock.now())
    assert again == replace(code, consumed_at=now + 1)
    assert await backend.find("code", "abc", now=clock.now()) == again


async def test_consume_absent_or_expired(backend: Backend, clock: FrozenClock) -> None:
    """consume of a missing or expired record returns None and changes nothing."""
    now = clock.now()
    assert await backend.consume("code", "nope", now=now) is None
    await backend.upsert(rec("code", "old", expires_at=now + 5), now=now)
    assert await backend.consume("code", "old", now=now + 5) is None
    assert await backend.find("code", "old", now=now) == rec("code", "old", expires_at=now + 5)


async def test_consume_concurrently_exactly_one_wins(backend: Backend, clock: FrozenClock) -> None:
    """Of 50 concurrent consume calls exactly one sees the record unconsumed."""
    now = clock.now()
    await backend.upsert(rec("code", "race", expires_at=now + 60), now=now)
    results = await asyncio.gather(*(backend.consume("code", "race", now=now) for _ in range(50)))
    assert all(r is not None for r in results)
    assert sum(r.consumed_at is None for r in results if r is not None) == 1


async def test_consume_across_instances_exactly_one_wins(
    backend: Backend, backend_url: str, clock: FrozenClock
) -> None:
    """Two backend instances on one store (two authgate processes) share single use."""
    now = clock.now()
    async with opened(backend_url) as other:
        for n in range(5):
            await backend.upsert(rec("code", f"twice-{n}", expires_at=now + 60), now=now)
            calls = [b.consume("code", f"twice-{n}", now=now) for b in (backend, other) * 10]
            results = await asyncio.gather(*calls)
            assert sum(r is not None and r.consumed_at is None for r in results) == 1
        created = await asyncio.gather(
            *(b.insert(rec("refresh_token", "succ"), now=now) for b in (backend, other) * 5))
        assert created.count(True) == 1


async def test_destroy(backend: Backend, clock: FrozenClock) -> None:
    """destroy deletes one record, with its index entries, and says whether it existed."""
    now = clock.now()
    await backend.upsert(rec("sso", "a", subject="u", grant_id="g"), now=now)
    await backend.upsert(rec("sso", "b", subject="u"), now=now)
    assert await backend.destroy("sso", "a") is True
    assert await backend.destroy("sso", "a") is False
    assert await backend.find("sso", "a", now=now) is None
    assert [r.id for r in await backend.find_by_subject("sso", "u", now=now)] == ["b"]
    assert await backend.revoke_by_grant("g") == 0
    assert await backend.count("sso") == 1


async def test_revoke_by_grant_removes_the_family_only(
    backend: Backend, clock: FrozenClock
) -> None:
    """revoke_by_grant deletes every record of one grant, of any kind, and nothing else."""
    now = clock.now()
    family = [rec("refresh_token", f"rt-{i}", grant_id="fam-a", subject="u") for i in range(3)]
    family.append(rec("code", "code-a", grant_id="fam-a", expires_at=now + 60))
    family.append(rec("audit", "ev-1", grant_id="fam-a", expires_at=now - 1))  # expired counts too
    others = [rec("refresh_token", "rt-b", grant_id="fam-b", subject="u"),
              rec("refresh_token", "rt-none", subject="u"), rec("code", "code-b", grant_id="fam-b")]
    for r in family + others:
        await backend.upsert(r, now=now)
    assert await backend.revoke_by_grant("fam-a") == len(family)
    for r in family:
        assert await backend.find(r.kind, r.id, now=now - 10) is None
    for r in others:
        assert await backend.find(r.kind, r.id, now=now) == r
    assert await backend.revoke_by_grant("fam-a") == 0
    assert await backend.revoke_by_grant("fam-unknown") == 0


async def test_find_by_subject_order_limit_expiry(backend: Backend, clock: FrozenClock) -> None:
    """find_by_subject lists live records of one kind and subject, ordered by id, up to limit."""
    now = clock.now()
    ids = [f"id-{i:03d}" for i in range(30)]
    shuffled = random.sample(ids, len(ids))
    for i, id in enumerate(shuffled):
        expires = now + 10 if i % 3 == 0 else now + HOUR if i % 3 == 1 else None
        await backend.upsert(rec("refresh_token", id, subject="alice", expires_at=expires), now=now)
    await backend.upsert(rec("refresh_token", "id-x", subject="bob"), now=now)
    await backend.upsert(rec("sso", "id-y", subject="alice"), now=now)
    found = await backend.find_by_subject("refresh_token", "alice", now=now)
    assert [r.id for r in found] == ids
    assert all(r.subject == "alice" and r.kind == "refresh_token" for r in found)
    limited = await backend.find_by_subject("refresh_token", "alice", now=now, limit=7)
    assert [r.id for r in limited] == ids[:7]
    clock.advance(10)
    live = [id for i, id in enumerate(shuffled) if i % 3 != 0]
    later = await backend.find_by_subject("refresh_token", "alice", now=clock.now())
    assert [r.id for r in later] == sorted(live)
    assert await backend.find_by_subject("refresh_token", "carol", now=now) == []


async def test_scan_pages_by_id(backend: Backend, clock: FrozenClock) -> None:
    """scan pages through one kind by id, expired records included."""
    now = clock.now()
    ids = sorted(f"k{i:02d}" for i in range(25))
    for i, id in enumerate(random.sample(ids, len(ids))):
        await backend.upsert(rec("client", id, expires_at=now + 5 if i % 2 else None), now=now)
    await backend.upsert(rec("code", "k00-other-kind"), now=now)
    clock.advance(10)
    seen: list[str] = []
    after: str | None = None
    while page := await backend.scan("client", after=after, limit=10):
        assert len(page) <= 10
        assert all(r.kind == "client" for r in page)
        seen.extend(r.id for r in page)
        after = page[-1].id
    assert seen == ids
    assert [r.id for r in await backend.scan("client", after="k20", limit=100)] == ids[21:]
    assert await backend.scan("nothing") == []


async def test_purge_is_bounded_and_spares_live_records(
    backend: Backend, clock: FrozenClock
) -> None:
    """purge deletes at most limit expired records and never a live one."""
    now = clock.now()
    for i in range(7):
        await backend.upsert(rec("code", f"dead-{i}", expires_at=now + 1, subject="u",
                                 grant_id="g"), now=now)
    live = [rec("code", f"live-{i}", expires_at=now + HOUR, subject="u") for i in range(3)]
    live += [rec("client", f"forever-{i}") for i in range(2)]
    for r in live:
        await backend.upsert(r, now=now)
    clock.advance(1)
    assert await backend.purge(now=clock.now(), limit=5) == 5
    assert await backend.count() == 7
    assert await backend.purge(now=clock.now(), limit=5) == 2
    assert await backend.purge(now=clock.now()) == 0
    assert await backend.count() == 5
    for r in live:
        assert await backend.find(r.kind, r.id, now=clock.now()) == r
    assert [r.id for r in await backend.find_by_subject("code", "u", now=clock.now())] == [
        "live-0", "live-1", "live-2"]
    assert await backend.revoke_by_grant("g") == 0


async def test_count(backend: Backend, clock: FrozenClock) -> None:
    """count counts all records, or those of one kind, expired ones included."""
    now = clock.now()
    assert await backend.count() == 0
    for i in range(4):
        await backend.upsert(rec("code", f"c{i}", expires_at=now + 1), now=now)
    for i in range(3):
        await backend.upsert(rec("user", f"u{i}", subject=f"name{i}"), now=now)
    await backend.upsert(rec("user", "u0", subject="renamed"), now=now)
    clock.advance(5)
    assert await backend.count("code") == 4
    assert await backend.count("user") == 3
    assert await backend.count("sso") == 0
    assert await backend.count() == 7


async def test_large_payload(backend: Backend, clock: FrozenClock) -> None:
    """A 1 MB payload survives upsert, find, consume and scan byte for byte."""
    now = clock.now()
    big = rec("provider_token", "u:google", payload=os.urandom(1024 * 1024), subject="u",
              expires_at=now + HOUR)
    await backend.upsert(big, now=now)
    assert await backend.find("provider_token", "u:google", now=now) == big
    assert await backend.consume("provider_token", "u:google", now=now) == big
    [scanned] = await backend.scan("provider_token")
    assert scanned.payload == big.payload


async def test_unicode_ids_subjects_and_grants(backend: Backend, clock: FrozenClock) -> None:
    """Non-ASCII ids, subjects and grant ids work in every operation."""
    now = clock.now()
    records = [
        rec("user", "ключ-🔑", subject="zoë 用户", grant_id="家族-1", expires_at=now + 60),
        rec("user", "é/../..\\x:y*?", subject="zoë 用户", grant_id="家族-1"),
        rec("user", "plain", subject="zoë 用户"),
        rec("user", "𝔘𝔫𝔦", subject="ZOË 用户", grant_id="家族-2"),
    ]
    for r in records:
        await backend.upsert(r, now=now)
    for r in records:
        assert await backend.find(r.kind, r.id, now=now) == r
    by_subject = await backend.find_by_subject("user", "zoë 用户", now=now)
    assert sorted(r.id for r in by_subject) == sorted(r.id for r in records[:3])
    assert {r.id for r in await backend.scan("user")} == {r.id for r in records}
    assert await backend.consume("user", "ключ-🔑", now=now) == records[0]
    assert await backend.revoke_by_grant("家族-1") == 2
    assert await backend.count("user") == 2
    assert await backend.destroy("user", "𝔘𝔫𝔦") is True


async def test_concurrent_writers(backend: Backend, clock: FrozenClock) -> None:
    """Many upserts in parallel, sharing subjects and grants, all land and index."""
    now = clock.now()
    records = [rec("refresh_token", f"w{i:03d}", subject=f"user-{i % 4}", grant_id=f"g{i % 5}",
                   expires_at=now + HOUR) for i in range(100)]
    await asyncio.gather(*(backend.upsert(r, now=now) for r in records))
    found = await asyncio.gather(*(backend.find(r.kind, r.id, now=now) for r in records))
    assert found == records
    assert await backend.count("refresh_token") == 100
    for s in range(4):
        listed = await backend.find_by_subject("refresh_token", f"user-{s}", now=now)
        assert [r.id for r in listed] == [r.id for r in records if r.subject == f"user-{s}"]
    assert await backend.revoke_by_grant("g0") == 20
    assert await backend.count() == 80
