"""Purge, reseal, sealing-key usage and retirement, on a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from authgate.clock import FrozenClock
from authgate.errors import ConfigError, InvalidGrant, StoreError
from authgate.keystore import LocalKeys, load_local_keys, new_sealing_key, save_local_keys
from authgate.sealing import Sealer
from authgate.service import AuthGate
from authgate.store import Backend, Record, SealedStore
from authgate.store.maintenance import (
    UNREADABLE,
    purge_expired,
    purge_periodically,
    reseal,
    retire_sealing_key,
    usage,
)

from . import test_migrate
from .conftest import opened
from .test_migrate import PASSWORD, Population, populate, settings

run = test_migrate.run  # the CLI fixture: `authgate ...` in-process with `store` registered


HOUR = 3600.0


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[Backend]:
    async with opened(f"sqlite:///{tmp_path}/store.db") as b:
        yield b


async def put(backend: Backend, now: float, kind: str, n: int, expires_in: float | None) -> None:
    for i in range(n):
        expires_at = None if expires_in is None else now + expires_in
        await backend.upsert(Record(kind, f"{kind}-{i:05d}", b"p", expires_at), now=now)


async def test_purge_removes_only_expired_in_bounded_batches(
    backend: Backend, clock: FrozenClock
) -> None:
    """Batches of ``batch``; ``max_batches`` stops early; the live records all stay."""
    now = clock.now()
    await put(backend, now, "audit", 180, -1)
    await put(backend, now, "code", 70, 0)  # expires_at == now is expired
    await put(backend, now, "refresh_token", 30, HOUR)
    await put(backend, now, "user", 5, None)
    first = await purge_expired(backend, clock, batch=100, max_batches=2, per_kind=True)
    assert (first.removed, first.batches, first.complete) == (200, 2, False)
    second = await purge_expired(backend, clock, batch=100, per_kind=True)
    assert (second.removed, second.batches, second.complete) == (50, 1, True)
    assert await backend.count() == 35
    assert await backend.count("refresh_token") == 30
    nothing = await purge_expired(backend, clock, per_kind=True)
    assert (nothing.removed, nothing.by_kind) == (0, {})


async def test_purge_reports_per_kind(backend: Backend, clock: FrozenClock) -> None:
    """The breakdown per kind adds up to what was removed."""
    now = clock.now()
    await put(backend, now, "audit", 3, -1)
    await put(backend, now, "sso", 2, -5)
    report = await purge_expired(backend, clock, batch=2, per_kind=True)
    assert report.by_kind == {"audit": 3, "sso": 2}
    assert report.batches == 3


async def test_purge_periodically_runs_and_survives_failures(
    backend: Backend, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The background purge retries after a store failure and keeps purging until cancelled."""
    now = clock.now()
    await put(backend, now, "code", 5, -1)
    calls = 0
    real_purge = backend.purge

    async def flaky_purge(*, now: float, limit: int = 1000) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("store is down")
        return await real_purge(now=now, limit=limit)

    backend.purge = flaky_purge  # type: ignore[method-assign]
    store = SealedStore(backend, Sealer([new_sealing_key()]), clock)
    caplog.set_level(logging.INFO, "authgate.store")
    task = asyncio.create_task(purge_periodically(store, interval=0.01, batch=2))
    try:
        for _ in range(500):
            if await backend.count() == 0 and calls >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await backend.count() == 0
    assert "purging expired records failed" in caplog.text
    assert "purged 5 expired records" in caplog.text


# -- reseal and key retirement ------------------------------------------------------------


@pytest.fixture
async def world(tmp_path: Path, clock: FrozenClock) -> tuple[LocalKeys, Population]:
    """A populated store and its key file, closed again (as between two CLI runs)."""
    keys = LocalKeys([new_sealing_key()], os.urandom(32), tmp_path / "keys.json")
    save_local_keys(keys)
    gate = await AuthGate.open(settings(f"sqlite:///{tmp_path}/store.db", tmp_path),
                               clock=clock, local_keys=keys)
    try:
        pop = await populate(gate, clock)
    finally:
        await gate.close()
    return keys, pop


async def open_with(tmp_path: Path, clock: FrozenClock) -> AuthGate:
    return await AuthGate.open(settings(f"sqlite:///{tmp_path}/store.db", tmp_path), clock=clock,
                               local_keys=load_local_keys(tmp_path, create=False))


async def test_reseal_moves_everything_to_the_new_key(
    tmp_path: Path, clock: FrozenClock, world: tuple[LocalKeys, Population]
) -> None:
    """After a rotation and a reseal the old key can go, and every credential still works."""
    keys, pop = world
    old = keys.sealing[0].kid
    keys.sealing.insert(0, new_sealing_key())  # authgate keys rotate --sealing
    save_local_keys(keys)
    new = keys.sealing[0].kid
    gate = await open_with(tmp_path, clock)
    try:
        before = await usage(gate.store)
        assert set(before.by_kid) == {old}
        before_records = {k: await gate.store.backend.scan(k) for k in before.kinds}
        with pytest.raises(StoreError, match=f"still sealed with {old}"):
            await retire_sealing_key(gate.store, keys, old)
        report = await reseal(gate.store, batch=2)
        assert report.resealed == sum(u.live for u in before.kinds.values())
        assert report.expired == 1  # the authorization code: left for purge
        assert report.by_kind["user"] == 2
        after = await usage(gate.store)
        assert set(after.by_kid) == {new}
        for kind, records in before_records.items():  # only the payload changed
            for was, now in zip(records, await gate.store.backend.scan(kind), strict=True):
                assert replace(now, payload=was.payload) == was
        again = await reseal(gate.store)
        assert (again.resealed, again.current) == (0, report.resealed)
        await retire_sealing_key(gate.store, keys, old)
    finally:
        await gate.close()
    stored = json.loads((tmp_path / "keys.json").read_text())
    assert [k["kid"] for k in stored["sealing"]] == [new]

    gate = await open_with(tmp_path, clock)  # the new key alone opens everything
    try:
        assert await gate.accounts.authenticate("alice", PASSWORD) is not None
        web = await gate.clients.get("web")
        assert web is not None
        await gate.refresh.rotate(pop.refresh, web, None)
        with pytest.raises(InvalidGrant, match="already used"):
            await gate.refresh.rotate(pop.rotated, web, None)  # still consumed after reseal
    finally:
        await gate.close()


async def test_retire_refusals(tmp_path: Path, clock: FrozenClock,
                               world: tuple[LocalKeys, Population]) -> None:
    """Unknown and active keys cannot be retired; neither can keys from the environment."""
    keys, _ = world
    gate = await open_with(tmp_path, clock)
    try:
        with pytest.raises(ConfigError, match="no sealing key 'nope'"):
            await retire_sealing_key(gate.store, keys, "nope")
        with pytest.raises(ConfigError, match="is the active sealing key"):
            await retire_sealing_key(gate.store, keys, keys.sealing[0].kid)
        spare = new_sealing_key()
        env_keys = LocalKeys([keys.sealing[0], spare], keys.hash_key)  # no path: environment
        with pytest.raises(ConfigError, match="AUTHGATE_SEALING_KEYS"):
            await retire_sealing_key(gate.store, env_keys, spare.kid)
    finally:
        await gate.close()


async def test_reseal_leaves_unreadable_and_expired_records_alone(
    backend: Backend, clock: FrozenClock
) -> None:
    """What cannot be opened is counted and kept; expired records are not rewritten."""
    old, new = new_sealing_key(), new_sealing_key()
    sealed = SealedStore(backend, Sealer([old]), clock)
    now = clock.now()
    await sealed.put("sso", "live", {"a": 1}, expires_at=now + HOUR)
    await sealed.put("sso", "dead", {"a": 2}, expires_at=now - 1)
    await backend.upsert(Record("sso", "junk", b"not sealed"), now=now)
    foreign = SealedStore(backend, Sealer([new_sealing_key()]), clock)
    await foreign.put("sso", "foreign", {"a": 3})
    rotated = SealedStore(backend, Sealer([new, old]), clock)
    report = await reseal(rotated)
    assert (report.resealed, report.expired, report.unreadable) == (1, 1, 2)
    u = await usage(rotated)
    assert u.kinds["sso"].stored == 4
    assert u.kinds["sso"].live == 3
    assert u.by_kid[new.kid] == 1
    assert u.by_kid[UNREADABLE] == 1
    dead = await backend.scan("sso")
    assert [r.id for r in dead] == ["dead", "foreign", "junk", "live"]
    assert Sealer([old]).kid_of(dead[0].payload) == old.kid


def test_cli_rotate_stats_reseal_retire(run: Callable[..., tuple[int, str, str]]) -> None:
    """The operator's path: rotate, see the old key in use, reseal --retire, see it gone."""
    code, out, _ = run("keys", "rotate", "--sealing")
    assert code == 0
    keys = json.loads(Path(".authgate/keys.json").read_text())["sealing"]
    new, old = keys[0]["kid"], keys[1]["kid"]
    code, out, _ = run("store", "stats")
    assert code == 0
    assert re.search(rf"^{new}\s+0\s+active$", out, re.M)
    assert re.search(rf"^{old}\s+[1-9]\d*\s+in use", out, re.M)
    code, out, err = run("store", "reseal", "--batch", "1", "--retire", old)
    assert (code, err) == (0, "")
    assert f"with the active key {new}" in out
    assert f"sealing key {old} retired" in out
    code, out, _ = run("store", "stats")
    assert old not in out
    code, out, _ = run("store", "purge")
    assert code == 0
    assert out.startswith("purged ")


def test_cli_retire_of_the_active_key(run: Callable[..., tuple[int, str, str]]) -> None:
    """``--retire`` of the active key fails with one line before anything is re-sealed."""
    active = json.loads(Path(".authgate/keys.json").read_text())["sealing"][0]["kid"]
    code, _, err = run("store", "reseal", "--retire", active)
    assert code == 2
    assert err.startswith("authgate: error: ")
    assert "active sealing key" in err
    assert len(err.splitlines()) == 1
    assert "re-sealed" not in err
