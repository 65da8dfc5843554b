"""SQLite: the WAL is copied back into the database file by a thread, not by a commit."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from authgate.store.base import Record
from authgate.store.sqlite import SQLiteBackend

NOW = 1_700_000_000.0


async def test_committed_pages_reach_the_database_file_without_a_checkpointing_commit(
    tmp_path: Path,
) -> None:
    """Far fewer pages than the autocheckpoint threshold still land in the main file."""
    path = tmp_path / "store.db"
    backend = SQLiteBackend(f"sqlite:///{path}")
    await backend.open()
    try:
        checkpointer = backend._checkpointer
        assert checkpointer is not None and checkpointer.is_alive()
        before = path.stat().st_size
        await asyncio.gather(*(backend.upsert(Record("code", f"r{i}", os.urandom(2000), NOW + 60),
                                              now=NOW) for i in range(200)))
        passes = checkpointer.passes
        for _ in range(200):  # two full passes after the commit, or 10 s
            if checkpointer.passes >= passes + 2:
                break
            await asyncio.sleep(0.05)
        assert path.stat().st_size > before + 200 * 2000
    finally:
        await backend.close()


async def test_close_stops_the_checkpoint_thread(tmp_path: Path) -> None:
    """No thread outlives its backend."""
    backend = SQLiteBackend(f"sqlite:///{tmp_path}/store.db")
    await backend.open()
    checkpointer = backend._checkpointer
    assert checkpointer is not None
    await backend.close()
    assert not checkpointer.is_alive()
    assert checkpointer not in threading.enumerate()
