"""SQLite backend specifics: group commit (the contract itself is in test_contract.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from authgate.store.base import Record
from authgate.store.sqlite import SQLiteBackend

NOW = 1_700_000_000.0


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    b = SQLiteBackend(f"sqlite:///{tmp_path}/store.db")
    await b.open()
    yield b
    await b.close()


def commits(backend: SQLiteBackend) -> list[str]:
    seen: list[str] = []
    backend.db.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


def rec(id: str) -> Record:
    return Record("code", id, b"sealed", NOW + 60, "g", "u")


async def test_writes_of_one_loop_turn_share_one_commit(backend: SQLiteBackend) -> None:
    """Fifty concurrent writes are one transaction; each returns once it is committed."""
    seen = commits(backend)
    await asyncio.gather(*(backend.upsert(rec(f"r{i}"), now=NOW) for i in range(50)))
    assert seen == ["COMMIT"]
    other = sqlite3.connect(backend.path)  # another process sees every one of them
    assert other.execute("SELECT count(*) FROM authgate_records").fetchone() == (50,)
    other.close()


async def test_a_read_returns_only_committed_state(backend: SQLiteBackend) -> None:
    """A read made while a group transaction is open answers after its commit."""
    seen = commits(backend)
    write = asyncio.ensure_future(backend.upsert(rec("a"), now=NOW))
    await asyncio.sleep(0)  # the write ran; its commit is queued behind us
    assert backend.db.in_transaction
    found = await backend.find("code", "a", now=NOW)
    assert found is not None and seen == ["COMMIT"] and not backend.db.in_transaction
    await write


async def test_a_failed_commit_fails_every_write_of_the_group(
    backend: SQLiteBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the commit fails, the group is rolled back and every writer is told."""
    real = backend.db

    class FailingCommit:
        in_transaction = property(lambda self: real.in_transaction)

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            if sql == "COMMIT":
                raise sqlite3.OperationalError("disk I/O error")
            return real.execute(sql, *args)

    monkeypatch.setattr(SQLiteBackend, "db", property(lambda self: FailingCommit()))
    results = await asyncio.gather(*(backend.upsert(rec(f"r{i}"), now=NOW) for i in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    monkeypatch.undo()
    assert await backend.count() == 0 and not backend.db.in_transaction


async def test_an_abandoned_group_is_committed_by_the_next_loop(tmp_path: Path) -> None:
    """A group left open by an event loop that went away does not block the next one."""
    b = SQLiteBackend(f"sqlite:///{tmp_path}/store.db")

    async def start() -> None:
        await b.open()
        b._write("DELETE FROM authgate_records WHERE kind = ?", ("none",))  # opens a group
        asyncio.get_running_loop().stop()  # the loop ends before the queued commit runs

    def elsewhere() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(start())
        loop.close()

    await asyncio.to_thread(elsewhere)
    assert b.db.in_transaction
    await b.upsert(rec("x"), now=NOW)
    assert await b.find("code", "x", now=NOW) is not None and not b.db.in_transaction
    await b.close()
